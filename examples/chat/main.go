// Command chat is a minimal chat on Rocket, written to be read: clients
// join rooms under a name and say things in them.
//
// Actions:
//
//	Chat.join  {"room", "name"}  join a room under a name; the result is {"room", "name"}
//	Chat.leave {"room"}          leave a room
//	Chat.say   {"room", "text"}  every member of the room gets {"Chat.message": {"room", "from", "text"}}
//
// It serves its page, the JavaScript client at /rocket.js and WebSockets
// at /ws on one address, :9346 unless ROCKET_HTTP_ADDR says otherwise:
//
//	go run ./examples/chat
//
// then open http://localhost:9346/ in two tabs.
package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/client"
)

// public holds the chat page.
//
//go:embed public
var public embed.FS

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	addr := os.Getenv("ROCKET_HTTP_ADDR")
	if addr == "" {
		addr = ":9346"
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		log.Info("chat: open http://" + ln.Addr().String() + "/ in two tabs")
		err = run(ctx, ln, log)
	}
	if err != nil {
		log.Error("chat stopped", "err", err)
		os.Exit(1)
	}
}

// register adds the chat's actions to srv.
func register(srv *rocket.Server) {
	srv.Handle("Chat.join", rocket.Action(join))
	srv.Handle("Chat.leave", rocket.Action(leave))
	srv.Handle("Chat.say", rocket.Action(say))
}

// JoinArgs are the arguments of Chat.join, and its result.
type JoinArgs struct {
	Room string `json:"room"`
	Name string `json:"name"`
}

// LeaveArgs are the arguments of Chat.leave.
type LeaveArgs struct {
	Room string `json:"room"`
}

// SayArgs are the arguments of Chat.say.
type SayArgs struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

// Message is what the members of a room get: {"Chat.message": Message}.
type Message struct {
	Room string `json:"room"`
	From string `json:"from"`
	Text string `json:"text"`
}

// nameKey is where a client's name is kept: it lives with the connection.
const nameKey = "chat.name"

func join(c *rocket.Context, in JoinArgs) (JoinArgs, error) {
	in.Room, in.Name = strings.TrimSpace(in.Room), strings.TrimSpace(in.Name)
	if err := check("room", in.Room, 32); err != nil {
		return JoinArgs{}, err
	}
	if err := check("name", in.Name, 32); err != nil {
		return JoinArgs{}, err
	}
	c.Client().Set(nameKey, in.Name)
	// From now on, what is published to the room reaches this client.
	return in, c.Client().Join(c.Context(), in.Room)
}

func leave(c *rocket.Context, in LeaveArgs) (bool, error) {
	return true, c.Client().Leave(c.Context(), in.Room)
}

func say(c *rocket.Context, in SayArgs) (bool, error) {
	if err := check("text", in.Text, 1000); err != nil {
		return false, err
	}
	if !slices.Contains(c.Client().Rooms(), in.Room) {
		return false, rocket.Errorf(rocket.CodeUnauthorized, "join %q before saying something in it", in.Room)
	}
	name, _ := c.Client().Get(nameKey).(string)
	msg := rocket.Push{Name: "Chat.message", Value: Message{Room: in.Room, From: name, Text: in.Text}}
	// Every member of the room gets it, the sender included.
	return true, c.Server().Publish(c.Context(), in.Room, msg)
}

// check returns a bad_args error, which the client gets as it is, when
// the field's value is empty or longer than max characters.
func check(field, value string, max int) error {
	if strings.TrimSpace(value) == "" {
		return rocket.Errorf(rocket.CodeBadArgs, "%s is required", field)
	}
	if utf8.RuneCountInString(value) > max {
		return rocket.Errorf(rocket.CodeBadArgs, "%s is longer than %d characters", field, max)
	}
	return nil
}

// handler serves the page, rocket.js, and WebSockets at /ws (where
// rocket.js connects by default).
func handler(srv *rocket.Server) (http.Handler, error) {
	page, err := fs.Sub(public, "public")
	if err != nil {
		return nil, fmt.Errorf("chat page: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", srv)
	mux.Handle("GET /rocket.js", http.FileServerFS(client.Files))
	mux.Handle("GET /", http.FileServerFS(page))
	return mux, nil
}

// run serves the chat on ln until ctx ends, then shuts down gracefully:
// clients are closed with code 1001 and rocket.js reconnects. It closes ln.
func run(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	defer ln.Close()
	srv, err := rocket.New(rocket.Config{Logger: log})
	if err != nil {
		return err
	}
	register(srv)
	h, err := handler(srv)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs = append(errs, hs.Shutdown(sctx), srv.Shutdown(sctx))
	return errors.Join(errs...)
}
