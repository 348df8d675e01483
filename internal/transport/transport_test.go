package transport

// The test server, its handler and the raw WebSocket client the tests use.

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// handler answers every message with "re:" + message, except "block",
// which waits for unblock first, and "push N", which writes N messages
// from N goroutines.
type handler struct {
	conn    chan *Conn
	c       *Conn
	ready   chan struct{} // closed once c is set
	unblock chan struct{}
	closed  chan error
}

func (h *handler) OnMessage(text bool, data []byte) {
	<-h.ready
	msg := string(data)
	switch {
	case msg == "block":
		<-h.unblock
	case strings.HasPrefix(msg, "push "):
		n, _ := strconv.Atoi(strings.TrimPrefix(msg, "push "))
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _ = h.c.WriteText([]byte("p" + strconv.Itoa(i))) })
		}
		wg.Wait()
		return
	}
	if err := h.c.WriteText([]byte("re:" + msg)); err != nil {
		panic(err)
	}
}

func (h *handler) OnClose(err error) { h.closed <- err }

// serve starts an acceptor behind an httptest server and returns the
// WebSocket URL and the handler of the next connection.
func serve(t *testing.T, cfg Config) (string, *handler) {
	return serveWith(t, cfg, false)
}

// serveWith is serve, over TLS when secure (nbio then serves the
// connection in blocking mode).
func serveWith(t *testing.T, cfg Config, secure bool) (string, *handler) {
	t.Helper()
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = time.Second
	}
	a := New(cfg)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	h := &handler{conn: make(chan *Conn, 1), unblock: make(chan struct{}), ready: make(chan struct{}), closed: make(chan error, 1)}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Upgrade(w, r, h)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		h.c = c
		close(h.ready)
		h.conn <- c
	}))
	if secure {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() {
		ts.Close()
		a.Stop()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http"), h
}

// both runs f over plain TCP and over TLS.
func both(t *testing.T, f func(t *testing.T, secure bool)) {
	t.Run("tcp", func(t *testing.T) { f(t, false) })
	t.Run("tls", func(t *testing.T) { f(t, true) })
}

func dial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := ws.Dialer{TLSConfig: &tls.Config{InsecureSkipVerify: true}} // the test server's own certificate
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	} else {
		br = bufio.NewReader(io.MultiReader(br, nc))
	}
	return nc, br
}

func send(t *testing.T, nc net.Conn, msgs ...string) {
	t.Helper()
	// All frames in one write, so that the server reads them together.
	var b []byte
	for _, m := range msgs {
		var buf writerBuf
		if err := wsutil.WriteClientText(&buf, []byte(m)); err != nil {
			t.Fatal(err)
		}
		b = append(b, buf...)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

type writerBuf []byte

func (w *writerBuf) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

func read(t *testing.T, nc net.Conn, br *bufio.Reader, timeout time.Duration) (string, ws.OpCode) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatalf("read: %v", err)
		}
		if h.OpCode == ws.OpPing || h.OpCode == ws.OpPong {
			continue
		}
		return string(p), h.OpCode
	}
}

// waitFor polls cond every 5 ms for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
