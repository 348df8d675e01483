package rocket_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// roundTrip sends one frame on a fresh connection to url and prints the
// frames that come back, welcome excluded.
func roundTrip(url, frame string, replies int) {
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // the welcome frame
		log.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		log.Fatal(err)
	}
	for range replies {
		_, data, err := ws.Read(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(data))
	}
}

// serve starts srv and serves it over HTTP on a loopback port, as Example
// shows in full; it returns the WebSocket URL and a function that stops
// both.
func serve(srv *rocket.Server) (url string, stop func()) {
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	return "ws" + strings.TrimPrefix(hs.URL, "http"), func() {
		srv.Shutdown(ctx)
		hs.Close()
	}
}

// quiet is a logger for examples.
var quiet = slog.New(slog.DiscardHandler)

// A server with one typed action, served over HTTP.
func Example() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	type AddArgs struct{ A, B int }
	srv.Handle("Math.add", rocket.Action(func(c *rocket.Context, in AddArgs) (int, error) {
		return in.A + in.B, nil
	}))
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	hs := httptest.NewServer(srv)
	defer hs.Close()

	roundTrip("ws"+strings.TrimPrefix(hs.URL, "http"), `{"ref":1,"Math.add":{"A":2,"B":3}}`, 1)
	// Output:
	// {"ref":1,"action":"Math.add","result":5}
}

// Errors reach the client with their code; a panic is recovered and
// reported as action_failed, and the connection carries on.
func ExampleServer_HandleFunc() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	srv.HandleFunc("Vault.open", func(c *rocket.Context) (any, error) {
		if c.Client().UserID() == "" {
			return nil, rocket.Errorf(rocket.CodeUnauthorized, "sign in first")
		}
		return "gold", nil
	})
	srv.HandleFunc("Vault.crash", func(c *rocket.Context) (any, error) {
		panic("the vault fell over")
	})
	srv.HandleFunc("Vault.fail", func(c *rocket.Context) (any, error) {
		return nil, errors.New("disk full") // logged, not shown to the client
	})
	url, stop := serve(srv)
	defer stop()

	roundTrip(url, `{"ref":"a","Vault.open":null,"Vault.crash":null,"Vault.fail":null}`, 3)
	// Output:
	// {"ref":"a","action":"Vault.open","error":{"code":"unauthorized","message":"sign in first"}}
	// {"ref":"a","action":"Vault.crash","error":{"code":"action_failed","message":"Vault.crash failed"}}
	// {"ref":"a","action":"Vault.fail","error":{"code":"action_failed","message":"Vault.fail failed"}}
}

// Middleware wraps every action; here it logs each command's name.
func ExampleServer_Use() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	srv.Use(func(next rocket.Handler) rocket.Handler {
		return rocket.HandlerFunc(func(c *rocket.Context) (any, error) {
			fmt.Println("running", c.Action())
			return next.ServeCommand(c)
		})
	})
	srv.HandleFunc("Echo.echo", func(c *rocket.Context) (any, error) { return c.Args(), nil })
	url, stop := serve(srv)
	defer stop()

	roundTrip(url, `{"ref":1,"Echo.echo":[1,2]}`, 1)
	// Output:
	// running Echo.echo
	// {"ref":1,"action":"Echo.echo","result":[1,2]}
}

// Rooms: members of a room get what is published to it, on every node of
// the cluster.
func ExampleServer_Publish() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	srv.HandleFunc("News.follow", func(c *rocket.Context) (any, error) {
		if err := c.Client().Join(c.Context(), "news"); err != nil {
			return nil, err
		}
		err := c.Server().Publish(c.Context(), "news", rocket.Push{Name: "News.item", Value: "Rocket launched"})
		return nil, err
	})
	url, stop := serve(srv)
	defer stop()

	roundTrip(url, `{"News.follow":null}`, 1)
	// Output:
	// {"News.item":"Rocket launched"}
}
