// Command counter is a live dashboard on Rocket: the server pushes state to
// the page without being asked.
//
// A counter is shared by every client: any client can change it, and each
// change is pushed to every client watching it. A ticker on the server
// pushes a small snapshot of the server's state every second to the
// clients watching the stats.
//
// Actions:
//
//	Counter.watch {}      watch the counter: {"Counter.changed": {"value", "by"}} comes at once, then at every change
//	Counter.incr  {"by"}  add by (-100..100; 0 or absent means 1) to the counter; the result is the new value
//	Stats.watch   {}      watch the stats: {"Stats.snapshot": {"clients", "uptime_seconds"}} at once, then every second
//
// It serves its page, the JavaScript client at /rocket.js and WebSockets
// at /ws on one address, :9346 unless ROCKET_HTTP_ADDR says otherwise:
//
//	go run ./examples/counter
//
// then open http://localhost:9346/ in a few tabs.
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
	"sync"
	"syscall"
	"time"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/client"
)

// Rooms: the watchers of the counter, and of the stats.
const (
	counterRoom = "counter"
	statsRoom   = "stats"
)

// maxBy bounds one change of the counter.
const maxBy = 100

// public holds the dashboard page.
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
		log.Info("counter: open http://" + ln.Addr().String() + "/ in a few tabs")
		err = run(ctx, ln, log)
	}
	if err != nil {
		log.Error("counter stopped", "err", err)
		os.Exit(1)
	}
}

// app is the dashboard's state. It lives here rather than in globals, so
// that every server (and every test) has its own.
type app struct {
	started time.Time // when the server started, for the uptime
	log     *slog.Logger

	mu    sync.Mutex // held while the counter changes and the change is published
	value int64
}

// IncrArgs are the arguments of Counter.incr.
type IncrArgs struct {
	By int64 `json:"by"`
}

// Changed is pushed to the counter's watchers: {"Counter.changed": Changed}.
type Changed struct {
	Value int64 `json:"value"` // the counter's value
	By    int64 `json:"by"`    // the change (0 for the first push to a new watcher)
}

// Stats is pushed to the stats' watchers: {"Stats.snapshot": Stats}.
type Stats struct {
	Clients       int   `json:"clients"`        // clients connected to this server
	UptimeSeconds int64 `json:"uptime_seconds"` // since the server started
}

// register adds the dashboard's actions to srv.
func (a *app) register(srv *rocket.Server) {
	srv.Handle("Counter.watch", rocket.Action(a.watchCounter))
	srv.Handle("Counter.incr", rocket.Action(a.incr))
	srv.Handle("Stats.watch", rocket.Action(a.watchStats))
}

// watchCounter joins the client to the counter's room and pushes it the
// current value. The value is pushed, not returned, and under the lock
// that changes take: so the page has one code path for every value, and
// no change can reach it before the value it changes.
func (a *app) watchCounter(c *rocket.Context, _ struct{}) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := c.Client().Join(c.Context(), counterRoom); err != nil {
		return 0, err
	}
	return a.value, c.Client().Send(rocket.Push{Name: "Counter.changed", Value: Changed{Value: a.value}})
}

// incr changes the counter and pushes the change to every watcher. The
// change is published under the lock, so every watcher sees the values
// in the order they were reached.
func (a *app) incr(c *rocket.Context, in IncrArgs) (int64, error) {
	if in.By == 0 {
		in.By = 1
	}
	if in.By < -maxBy || in.By > maxBy {
		return 0, rocket.Errorf(rocket.CodeBadArgs, "by must be between %d and %d", -maxBy, maxBy)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.value += in.By
	msg := rocket.Push{Name: "Counter.changed", Value: Changed{Value: a.value, By: in.By}}
	return a.value, c.Server().Publish(c.Context(), counterRoom, msg)
}

// watchStats joins the client to the stats' room and pushes it a first
// snapshot at once; pushStats sends the next ones.
func (a *app) watchStats(c *rocket.Context, _ struct{}) (bool, error) {
	if err := c.Client().Join(c.Context(), statsRoom); err != nil {
		return false, err
	}
	return true, c.Client().Send(rocket.Push{Name: "Stats.snapshot", Value: a.snapshot(c.Server())})
}

// snapshot returns the server's current stats.
func (a *app) snapshot(srv *rocket.Server) Stats {
	return Stats{Clients: srv.ClientCount(), UptimeSeconds: int64(time.Since(a.started).Seconds())}
}

// pushStats publishes a snapshot to the stats' room every interval until
// ctx ends. Nobody asks for them: this is the server pushing on its own.
func (a *app) pushStats(ctx context.Context, srv *rocket.Server, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		msg := rocket.Push{Name: "Stats.snapshot", Value: a.snapshot(srv)}
		if err := srv.Publish(ctx, statsRoom, msg); err != nil && ctx.Err() == nil {
			a.log.Warn("push stats", "err", err)
		}
	}
}

// handler serves the page, rocket.js, and WebSockets at /ws (where
// rocket.js connects by default).
func handler(srv *rocket.Server) (http.Handler, error) {
	page, err := fs.Sub(public, "public")
	if err != nil {
		return nil, fmt.Errorf("dashboard page: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", srv)
	mux.Handle("GET /rocket.js", http.FileServerFS(client.Files))
	mux.Handle("GET /", http.FileServerFS(page))
	return mux, nil
}

// run serves the dashboard on ln, and pushes stats every second, until
// ctx ends; then it stops the ticker and shuts down gracefully. It closes
// ln.
func run(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	defer ln.Close()
	a := &app{started: time.Now(), log: log}
	srv, err := rocket.New(rocket.Config{Logger: log})
	if err != nil {
		return err
	}
	a.register(srv)
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
	tickCtx, stopTicker := context.WithCancel(ctx)
	ticker := make(chan struct{}) // closed when pushStats has returned
	go func() {
		defer close(ticker)
		a.pushStats(tickCtx, srv, time.Second)
	}()

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}
	stopTicker()
	<-ticker
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs = append(errs, hs.Shutdown(sctx), srv.Shutdown(sctx))
	return errors.Join(errs...)
}
