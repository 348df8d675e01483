package main

import (
	"context"
	"log"
	"net"
	"net/http"
	"sort"
	"sync/atomic"

	coder "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	gorilla "github.com/gorilla/websocket"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	nbws "github.com/lesismal/nbio/nbhttp/websocket"
	"github.com/lxzan/gws"
)

// libs maps a -lib name to its server. Every server echoes each data message
// back, so an idle connection is exactly what a real echo server keeps.
var libs = map[string]serveFunc{
	"nbio":        serveNbio,
	"nbio-engine": serveNbioEngine,
	"gobwas":      serveGobwas,
	"gws":         serveGws,
	"gorilla":     serveGorilla,
	"coder":       serveCoder,
	"rocket":      serveRocket,
}

// libOrder is the order in which "run" measures the libraries.
var libOrder = []string{"nbio", "nbio-engine", "gobwas", "gws", "gorilla", "coder", "rocket"}

func libNames() []string {
	names := make([]string, 0, len(libs))
	for n := range libs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// newNbioUpgrader returns an nbio upgrader bound to engine that counts
// connections and echoes messages.
func newNbioUpgrader(engine *nbhttp.Engine, conns *atomic.Int64) *nbws.Upgrader {
	u := nbws.NewUpgrader()
	u.Engine = engine
	u.OnOpen(func(*nbws.Conn) { conns.Add(1) })
	u.OnClose(func(*nbws.Conn, error) { conns.Add(-1) })
	u.OnMessage(func(c *nbws.Conn, mt nbws.MessageType, data []byte) {
		_ = c.WriteMessage(mt, data)
	})
	return u
}

// serveNbio uses a standard net/http server and moves each upgraded
// connection to nbio's epoll poller: no goroutine per connection.
func serveNbio(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	logging.SetLevel(logging.LevelError)
	engine := nbhttp.NewEngine(nbhttp.Config{ReleaseWebsocketPayload: true})
	if err := engine.Start(); err != nil {
		return err
	}
	u := newNbioUpgrader(engine, conns)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if _, err := u.UpgradeAndTransferConnToPoller(w, r, nil); err != nil {
			log.Print("nbio upgrade: ", err)
		}
	})
	return stdServe(ln, mux)
}

// serveNbioEngine lets nbhttp's own non-blocking engine accept on ln and
// serve both /ws and /stats.
func serveNbioEngine(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	logging.SetLevel(logging.LevelError)
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{ln.Addr().String()},
		Listen:                  func(string, string) (net.Listener, error) { return ln, nil },
		Handler:                 mux,
		ReleaseWebsocketPayload: true,
	})
	u := newNbioUpgrader(engine, conns)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if _, err := u.Upgrade(w, r, nil); err != nil {
			log.Print("nbio-engine upgrade: ", err)
		}
	})
	if err := engine.Start(); err != nil {
		return err
	}
	select {}
}

// serveGobwas upgrades with ws.UpgradeHTTP and reads in one goroutine per
// connection with wsutil.
func serveGobwas(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			defer conn.Close()
			for {
				msg, op, err := wsutil.ReadClientData(conn)
				if err != nil {
					return
				}
				if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
					return
				}
			}
		}()
	})
	return stdServe(ln, mux)
}

// gwsEcho is a gws event handler that echoes data messages.
type gwsEcho struct{ gws.BuiltinEventHandler }

// OnMessage writes the message back.
func (gwsEcho) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	_ = c.WriteMessage(m.Opcode, m.Bytes())
}

// serveGws upgrades with gws's Upgrader and runs ReadLoop in one goroutine
// per connection.
func serveGws(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	u := gws.NewUpgrader(gwsEcho{}, nil)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Upgrade(w, r)
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			c.ReadLoop()
		}()
	})
	return stdServe(ln, mux)
}

// serveGorilla upgrades with a default gorilla Upgrader and reads with
// ReadMessage in one goroutine per connection.
func serveGorilla(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	var u gorilla.Upgrader
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := u.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			defer c.Close()
			for {
				mt, p, err := c.ReadMessage()
				if err != nil {
					return
				}
				if err := c.WriteMessage(mt, p); err != nil {
					return
				}
			}
		}()
	})
	return stdServe(ln, mux)
}

// serveCoder accepts with coder/websocket and reads with Read in one
// goroutine per connection.
func serveCoder(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, nil)
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Add(-1)
			defer c.CloseNow()
			ctx := context.Background()
			for {
				mt, p, err := c.Read(ctx)
				if err != nil {
					return
				}
				if err := c.Write(ctx, mt, p); err != nil {
					return
				}
			}
		}()
	})
	return stdServe(ln, mux)
}
