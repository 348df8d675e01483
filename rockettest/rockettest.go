// Package rockettest helps test Rocket applications in-process, without
// sleeps.
//
// An App is a rocket.Server built, started and served on a loopback
// httptest server: with an in-memory broker by default, the broker of
// the given Config, or a Redis broker built by the package when the
// Redis option gives a URL. A Conn is a WebSocket client of any Rocket
// server, an App's (App.Dial) or one started elsewhere (Dial): it calls
// actions and waits for their replies (Call), sends commands without a
// reply (Send), and reads what the server pushes (Next, Expect). Pushed
// messages that arrive while a Call waits for its reply are kept, in
// order, for Next and Expect: nothing is dropped. Every method that waits
// takes a context.Context and returns an error, so a Conn can be used
// from any goroutine, in a test or in an Example.
//
// In tests, Start, Connect and Resume do the same on a testing.TB: the App
// and its Clients are closed by t.Cleanup, each wait is bounded by
// DefaultTimeout (or Client.Timeout), and the methods fail the test
// instead of returning errors:
//
//	func TestHello(t *testing.T) {
//		app := rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
//			srv.Handle("Greet.hello", rocket.Action(func(c *rocket.Context, in struct{ Name string }) (string, error) {
//				err := c.Client().Send(rocket.Push{Name: "Greet.done", Value: in.Name})
//				return "hello " + in.Name, err
//			}))
//		})
//		c := app.Connect(t)
//		var got string
//		if err := c.Call("Greet.hello", map[string]string{"Name": "ann"}, &got); err != nil {
//			t.Fatal(err)
//		}
//		var who string
//		c.ExpectInto("Greet.done", &who)
//	}
//
// Calls that fail on the server return a *rocket.Error carrying the
// error's code and message:
//
//	err := c.Call("Nope.nothing", nil, nil)
//	var re *rocket.Error
//	if errors.As(err, &re) && re.Code == rocket.CodeUnknownAction { ... }
//
// Client methods that fail the test (Connect, Resume, Send, Next, Expect,
// ExpectInto, Close) call Fatalf on the testing.TB they were given, so
// they must be called from the test's goroutine; use a Conn (App.Dial)
// from other goroutines.
//
// To run an app on Redis, give the Redis option the URL of a Redis
// server; apps given the same URL and prefix form one cluster:
//
//	node1 := rockettest.Start(t, rocket.Config{}, register, rockettest.Redis(url, "test:"))
//	node2 := rockettest.Start(t, rocket.Config{}, register, rockettest.Redis(url, "test:"))
package rockettest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/redis"
)

// DefaultTimeout is how long a Client waits for a reply or a pushed
// message unless its Timeout says otherwise. It also bounds building a
// Redis broker, dialing in Connect and Resume, closing a connection, and
// the server's shutdown in App.Close.
const DefaultTimeout = 5 * time.Second

// App is a Rocket server started in this process and served by a
// loopback httptest server.
type App struct {
	// Server is the started server.
	Server *rocket.Server
	// URL is the server's WebSocket URL, ws://127.0.0.1:port.
	URL string

	hs     *httptest.Server
	broker broker.Broker // built by New (Redis option), closed by Close; or nil

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	conns  map[*Conn]struct{} // open Conns dialed by App.Dial
	closed bool               // Close has begun: Dial refuses
}

// An Option configures New and Start.
type Option func(*options)

type options struct {
	redisURL    string
	redisPrefix string
}

// Redis makes New build the app's broker with broker/redis, on the Redis
// server at url (redis://host:port/db; see redis.Config.URL) with keys
// and channels starting with prefix (empty means redis.DefaultPrefix).
// Apps given the same url and prefix form one cluster. The broker gets
// the Config's MailboxSize, MailboxTTL and Logger, and is closed by
// App.Close after the server has shut down. New fails if the Config has a
// Broker too.
func Redis(url, prefix string) Option {
	return func(o *options) {
		o.redisURL = url
		o.redisPrefix = prefix
	}
}

// New builds a server from cfg, lets setup (if not nil) register actions
// and hooks on it, starts it and serves it on a loopback httptest server.
// When cfg.Logger is nil the server logs warnings and errors to standard
// error. Close shuts it all down.
func New(cfg rocket.Config, setup func(*rocket.Server), opts ...Option) (*App, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	var owned broker.Broker
	if o.redisURL != "" {
		if cfg.Broker != nil {
			return nil, errors.New("rockettest: New: the Redis option and Config.Broker are both given")
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		b, err := redis.New(ctx, redis.Config{
			URL:         o.redisURL,
			Prefix:      o.redisPrefix,
			MailboxSize: cfg.MailboxSize,
			MailboxTTL:  cfg.MailboxTTL,
			Logger:      cfg.Logger,
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("rockettest: New: Redis broker: %w", err)
		}
		cfg.Broker, owned = b, b
	}
	fail := func(err error) (*App, error) {
		if owned != nil {
			err = errors.Join(err, owned.Close())
		}
		return nil, err
	}
	srv, err := rocket.New(cfg)
	if err != nil {
		return fail(fmt.Errorf("rockettest: New: %w", err))
	}
	if setup != nil {
		setup(srv)
	}
	if err := srv.Start(context.Background()); err != nil {
		return fail(fmt.Errorf("rockettest: New: %w", err))
	}
	hs := httptest.NewServer(srv)
	return &App{
		Server: srv,
		URL:    "ws" + strings.TrimPrefix(hs.URL, "http"),
		hs:     hs,
		broker: owned,
		conns:  make(map[*Conn]struct{}),
	}, nil
}

// Close closes the Conns of the app that are still open (with close code
// 1001, going away, without waiting for the server), shuts the server
// down (bounded by DefaultTimeout), closes the HTTP server and, last, the
// broker built by the Redis option. Later calls return the first call's
// result.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		conns := make([]*Conn, 0, len(a.conns))
		for c := range a.conns {
			conns = append(conns, c)
		}
		a.mu.Unlock()
		for _, c := range conns {
			c.stop()
		}
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		if err := a.Server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut the server down: %w", err))
		}
		a.hs.Close()
		if a.broker != nil {
			if err := a.broker.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close the Redis broker: %w", err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			a.closeErr = fmt.Errorf("rockettest: Close: %w", err)
		}
	})
	return a.closeErr
}

// Dial connects to the app as a new client, or as the client of a
// session given with the Session option, and reads its welcome. Unlike a
// Conn from the package-level Dial, the Conn's Close waits until the
// server has let the client go, and Close of the app closes the Conn if it
// is still open.
func (a *App) Dial(ctx context.Context, opts ...DialOption) (*Conn, error) {
	return dial(ctx, a, a.URL, opts)
}

// add records c as an open Conn of the app, unless the app is closing.
func (a *App) add(c *Conn) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("app closed")
	}
	a.conns[c] = struct{}{}
	return nil
}

// remove forgets c and reports whether another open Conn of the app has
// the same client id.
func (a *App) remove(c *Conn) (others bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.conns, c)
	for o := range a.conns {
		if o.ID == c.ID {
			return true
		}
	}
	return false
}

// Start is New for a test: it fails the test if the app cannot be built
// or started, and closes the app with t.Cleanup. When cfg.Logger is nil
// the server logs to t.Log, at warn level and above.
func Start(t testing.TB, cfg rocket.Config, setup func(*rocket.Server), opts ...Option) *App {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	app, err := New(cfg, setup, opts...)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := app.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return app
}

// logWriter writes log lines to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
