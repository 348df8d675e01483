// Command multinode is one Rocket app run as several nodes of a cluster on
// Redis: a client connected to one node talks to clients connected to
// any other, and a client whose node goes away resumes its session on
// another one.
//
// Actions:
//
//	Room.join   {"room"}          join a room; the result is {"room", "node"}
//	Room.say    {"room", "text"}  every member of the room, on every node, gets {"Room.message": {"room", "from", "node", "text"}}
//	Direct.send {"to", "text"}    the client with id "to", on whichever node, gets {"Direct.message": {"from", "node", "text"}}
//
// ("from" is the sender's client id, "node" the id of the sender's node.)
//
// Every node started with the same ROCKET_REDIS_URL joins one cluster;
// without it the app runs as a single node on Rocket's in-memory broker.
// Each node serves its page, the JavaScript client at /rocket.js and
// WebSockets at /ws on ROCKET_HTTP_ADDR (default :9346). See README.md
// for three nodes behind nginx.
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
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/client"
)

// public holds the page.
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
		err = run(ctx, ln, os.Getenv("ROCKET_REDIS_URL"), log)
	}
	if err != nil {
		log.Error("multinode stopped", "err", err)
		os.Exit(1)
	}
}

// register adds the app's actions to srv.
func register(srv *rocket.Server) {
	srv.Handle("Room.join", rocket.Action(join))
	srv.Handle("Room.say", rocket.Action(say))
	srv.Handle("Direct.send", rocket.Action(send))
}

// JoinArgs are the arguments of Room.join.
type JoinArgs struct {
	Room string `json:"room"`
}

// Joined is the result of Room.join.
type Joined struct {
	Room string `json:"room"`
	Node string `json:"node"` // the id of the node the client is connected to
}

// SayArgs are the arguments of Room.say.
type SayArgs struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

// RoomMessage is what room members get: {"Room.message": RoomMessage}.
type RoomMessage struct {
	Room string `json:"room"`
	From string `json:"from"`
	Node string `json:"node"`
	Text string `json:"text"`
}

// SendArgs are the arguments of Direct.send.
type SendArgs struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// DirectMessage is what the addressee gets: {"Direct.message": DirectMessage}.
type DirectMessage struct {
	From string `json:"from"`
	Node string `json:"node"`
	Text string `json:"text"`
}

func join(c *rocket.Context, in JoinArgs) (Joined, error) {
	if err := check("room", in.Room, 32); err != nil {
		return Joined{}, err
	}
	// The node subscribes to the room in Redis while it has members in it.
	if err := c.Client().Join(c.Context(), in.Room); err != nil {
		return Joined{}, err
	}
	return Joined{Room: in.Room, Node: c.Server().ID()}, nil
}

func say(c *rocket.Context, in SayArgs) (bool, error) {
	if err := check("text", in.Text, 1000); err != nil {
		return false, err
	}
	if !slices.Contains(c.Client().Rooms(), in.Room) {
		return false, rocket.Errorf(rocket.CodeUnauthorized, "join %q before saying something in it", in.Room)
	}
	msg := RoomMessage{Room: in.Room, From: c.Client().ID(), Node: c.Server().ID(), Text: in.Text}
	// Through Redis pub/sub to every node with members in the room.
	return true, c.Server().Publish(c.Context(), in.Room, rocket.Push{Name: "Room.message", Value: msg})
}

func send(c *rocket.Context, in SendArgs) (bool, error) {
	if err := check("text", in.Text, 1000); err != nil {
		return false, err
	}
	msg := DirectMessage{From: c.Client().ID(), Node: c.Server().ID(), Text: in.Text}
	// To the node that holds the client, or to its mailbox while it is away.
	err := c.Server().Send(c.Context(), in.To, rocket.Push{Name: "Direct.message", Value: msg})
	if errors.Is(err, rocket.ErrUnknownClient) {
		return false, rocket.Errorf(rocket.CodeBadArgs, "no client %q", in.To)
	}
	return err == nil, err
}

// check returns a bad_args error when the field's value is empty or longer
// than max characters.
func check(field, value string, max int) error {
	if strings.TrimSpace(value) == "" {
		return rocket.Errorf(rocket.CodeBadArgs, "%s is required", field)
	}
	if utf8.RuneCountInString(value) > max {
		return rocket.Errorf(rocket.CodeBadArgs, "%s is longer than %d characters", field, max)
	}
	return nil
}

// newBroker connects to the cluster's Redis at redisURL. The caller closes
// the broker after shutting its server down.
func newBroker(ctx context.Context, redisURL string, log *slog.Logger) (*redis.Broker, error) {
	b, err := redis.New(ctx, redis.Config{URL: redisURL, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("ROCKET_REDIS_URL %s: %w", redact(redisURL), err)
	}
	return b, nil
}

// redact hides the password of a Redis URL, for errors and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// handler serves the page, rocket.js, and WebSockets at /ws (where
// rocket.js connects by default).
func handler(srv *rocket.Server) (http.Handler, error) {
	page, err := fs.Sub(public, "public")
	if err != nil {
		return nil, fmt.Errorf("page: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", srv)
	mux.Handle("GET /rocket.js", http.FileServerFS(client.Files))
	mux.Handle("GET /", http.FileServerFS(page))
	return mux, nil
}

// run serves one node on ln until ctx ends, then shuts down gracefully:
// it leaves the cluster and closes its clients with code 1001, and
// rocket.js reconnects (through the load balancer, to another node) and
// resumes. With an empty redisURL the node is alone, on the in-memory
// broker. run closes ln.
func run(ctx context.Context, ln net.Listener, redisURL string, log *slog.Logger) error {
	defer ln.Close()
	cfg := rocket.Config{Logger: log}
	if redisURL != "" {
		b, err := newBroker(ctx, redisURL, log)
		if err != nil {
			return err
		}
		defer b.Close() // after srv.Shutdown below, which leaves the cluster
		cfg.Broker = b
	}
	srv, err := rocket.New(cfg)
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
	log.Info("node listening", "node", srv.ID(), "page", "http://"+ln.Addr().String()+"/", "cluster", redisURL != "")

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
