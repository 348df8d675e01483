package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/internal/demo"
)

// serveRocket serves a whole Rocket server with its demo app: what one
// idle client costs in Rocket itself (transport, client record, directory
// entry in the in-memory broker, welcome sent).
func serveRocket(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error {
	srv, err := rocket.New(rocket.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	demo.Register(srv)
	srv.OnDisconnect(func(*rocket.DisconnectEvent) { conns.Add(-1) })
	if err := srv.Start(context.Background()); err != nil {
		return err
	}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		before := srv.ClientCount()
		srv.ServeHTTP(w, r)
		if srv.ClientCount() > before {
			conns.Add(1)
		}
	})
	return stdServe(ln, mux)
}
