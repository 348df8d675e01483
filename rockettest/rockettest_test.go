package rockettest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/internal/demo"
	"github.com/rocket-go/rocket/internal/redistest"
	"github.com/rocket-go/rocket/rockettest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// fakeTB is a testing.TB that records Fatalf instead of stopping the test;
// everything else goes to the real test.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	fatals []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

func (f *fakeTB) failures() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.fatals...)
}

// startApp starts an app with the demo and the test actions:
// Test.add {"A","B"} returns A+B; Test.fail returns a bad_args error;
// Test.pushes {"N"} pushes Test.tick 1..N to the caller, then replies.
func startApp(t *testing.T) *rockettest.App {
	return rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
		demo.Register(srv)
		srv.Handle("Test.add", rocket.Action(func(c *rocket.Context, in struct{ A, B int }) (int, error) {
			return in.A + in.B, nil
		}))
		srv.HandleFunc("Test.fail", func(c *rocket.Context) (any, error) {
			return nil, rocket.Errorf(rocket.CodeBadArgs, "no good")
		})
		srv.Handle("Test.pushes", rocket.Action(func(c *rocket.Context, in struct{ N int }) (int, error) {
			for i := 1; i <= in.N; i++ {
				if err := c.Client().Send(rocket.Push{Name: "Test.tick", Value: i}); err != nil {
					return 0, err
				}
			}
			return in.N, nil
		}))
	})
}

func TestCallResult(t *testing.T) {
	app := startApp(t)
	c := app.Connect(t)
	if c.ID == "" || c.Session == "" || c.ServerID != app.Server.ID() || c.Resumed {
		t.Fatalf("welcome: %+v", c)
	}
	var sum int
	if err := c.Call("Test.add", map[string]int{"A": 2, "B": 3}, &sum); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if sum != 5 {
		t.Fatalf("sum = %d, want 5", sum)
	}
	// A nil result is allowed.
	if err := c.Call("Echo.echo", "x", nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
}

func TestCallErrorReply(t *testing.T) {
	app := startApp(t)
	c := app.Connect(t)
	err := c.Call("Test.fail", nil, nil)
	var re *rocket.Error
	if !errors.As(err, &re) || re.Code != rocket.CodeBadArgs || re.Message != "no good" {
		t.Fatalf("err = %#v, want *rocket.Error bad_args", err)
	}
	err = c.Call("Nope.nothing", 1, nil)
	if !errors.As(err, &re) || re.Code != rocket.CodeUnknownAction {
		t.Fatalf("err = %#v, want unknown_action", err)
	}
	// Bad args for a typed action.
	err = c.Call("Test.add", "not an object", nil)
	if !errors.As(err, &re) || re.Code != rocket.CodeBadArgs {
		t.Fatalf("err = %#v, want bad_args", err)
	}
}

func TestPushesKeptInOrderWhileCalling(t *testing.T) {
	app := startApp(t)
	c := app.Connect(t)
	const n = 20
	var got int
	if err := c.Call("Test.pushes", map[string]int{"N": n}, &got); err != nil || got != n {
		t.Fatalf("Call = %d, %v", got, err)
	}
	// A second call while the first call's pushes wait in the queue.
	var sum int
	if err := c.Call("Test.add", map[string]int{"A": 1, "B": 1}, &sum); err != nil || sum != 2 {
		t.Fatalf("Call = %d, %v", sum, err)
	}
	for i := 1; i <= n; i++ {
		var v int
		c.ExpectInto("Test.tick", &v)
		if v != i {
			t.Fatalf("tick %d: got %d", i, v)
		}
	}
	// Fire and forget: the push arrives, the reply does not.
	c.Send("Test.pushes", map[string]int{"N": 1})
	name, value := c.Next()
	if name != "Test.tick" || string(value) != "1" {
		t.Fatalf("Next = %q %s", name, value)
	}
}

func TestNextOtherShapes(t *testing.T) {
	app := startApp(t)
	c := app.Connect(t)
	// A frame-level error is a one-key object named "error".
	c.Send("Nope.nothing", 1)
	name, value := c.Next()
	var e struct{ Code string }
	if name != "error" || json.Unmarshal(value, &e) != nil || e.Code != rocket.CodeUnknownAction {
		t.Fatalf("Next = %q %s", name, value)
	}
	// A frame of another shape comes back whole.
	if err := app.Server.Send(t.Context(), c.ID, json.RawMessage(`[1,2]`)); err != nil {
		t.Fatal(err)
	}
	name, value = c.Next()
	if name != "" || string(value) != "[1,2]" {
		t.Fatalf("Next = %q %s", name, value)
	}
}

func TestExpectMismatch(t *testing.T) {
	app := startApp(t)
	fake := &fakeTB{TB: t}
	c := app.Connect(fake)
	c.Send("Test.pushes", map[string]int{"N": 1})
	if v := c.Expect("Test.other"); v != nil {
		t.Fatalf("Expect returned %s on a mismatch", v)
	}
	f := fake.failures()
	if len(f) != 1 || !strings.Contains(f[0], "expected Test.other") || !strings.Contains(f[0], `{"Test.tick":1}`) {
		t.Fatalf("failures = %q", f)
	}
}

func TestExpectTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release) // before the cleanups close the client
	app := rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
		srv.Handle("Test.add", rocket.Action(func(c *rocket.Context, in struct{ A, B int }) (int, error) {
			return in.A + in.B, nil
		}))
		srv.HandleFunc("Test.block", func(c *rocket.Context) (any, error) {
			<-release // replies when the test ends
			return nil, nil
		})
	})
	fake := &fakeTB{TB: t}
	c := app.Connect(fake)
	c.Timeout = 50 * time.Millisecond
	c.Expect("Test.tick")
	if f := fake.failures(); len(f) != 1 || !strings.Contains(f[0], "got nothing") {
		t.Fatalf("failures = %q", f)
	}
	// Call times out too, as an error, without failing the test.
	c.Send("Test.add", "not an object") // a frame-level error, queued meanwhile
	if err := c.Call("Test.block", nil, nil); err == nil || !strings.Contains(err.Error(), "nothing within") {
		t.Fatalf("Call = %v, want a timeout", err)
	}
	if name, _ := c.Next(); name != "error" {
		t.Fatalf("Next = %q, want the queued error", name)
	}
	if f := fake.failures(); len(f) != 1 {
		t.Fatalf("failures = %q", f)
	}
}

func TestResumeGetsMail(t *testing.T) {
	app := startApp(t)
	ann := app.Connect(t)
	bob := app.Connect(t)
	if err := ann.Call("Chat.join", map[string]string{"room": "lobby", "name": "ann"}, nil); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	if app.Server.Client(bob.ID) != nil {
		t.Fatal("bob still connected after Close")
	}
	for _, text := range []string{"one", "two"} {
		if err := ann.Call("Chat.whisper", map[string]string{"to": bob.ID, "text": text}, nil); err != nil {
			t.Fatalf("whisper: %v", err)
		}
	}
	back := app.Resume(t, bob.Session)
	if !back.Resumed || back.ID != bob.ID {
		t.Fatalf("resume: %+v", back)
	}
	for _, text := range []string{"one", "two"} {
		var w demo.Whisper
		back.ExpectInto("Chat.whisper", &w)
		if w.From != ann.ID || w.Name != "ann" || w.Text != text {
			t.Fatalf("whisper = %+v, want %q from ann", w, text)
		}
	}
	back.Close()
	back.Close() // harmless
}

// TestExample is the usage shown in the package documentation: an app
// with one typed action that also pushes.
func TestExample(t *testing.T) {
	app := rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
		srv.Handle("Greet.hello", rocket.Action(func(c *rocket.Context, in struct{ Name string }) (string, error) {
			err := c.Client().Send(rocket.Push{Name: "Greet.done", Value: in.Name})
			return "hello " + in.Name, err
		}))
	})
	c := app.Connect(t)
	var got string
	if err := c.Call("Greet.hello", map[string]string{"Name": "ann"}, &got); err != nil {
		t.Fatal(err)
	}
	if got != "hello ann" {
		t.Fatalf("got %q", got)
	}
	var who string
	c.ExpectInto("Greet.done", &who)
	if who != "ann" {
		t.Fatalf("pushed %q", who)
	}
}

// TestConnFromGoroutines: a Conn is safe for concurrent use, each Call
// gets its own reply, and pushes are kept for Next.
func TestConnFromGoroutines(t *testing.T) {
	app := startApp(t)
	ctx, cancel := context.WithTimeout(t.Context(), rockettest.DefaultTimeout)
	defer cancel()
	c, err := app.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var sum int
			if err := c.Call(ctx, "Test.add", map[string]int{"A": i, "B": 100}, &sum); err != nil {
				errs <- err
			} else if sum != i+100 {
				errs <- fmt.Errorf("Test.add %d+100 = %d", i, sum)
			}
		})
	}
	wg.Go(func() {
		if err := c.Call(ctx, "Test.pushes", map[string]int{"N": 2}, nil); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 1; i <= 2; i++ {
		var v int
		if err := c.Expect(ctx, "Test.tick", &v); err != nil || v != i {
			t.Fatalf("Expect = %d, %v; want tick %d", v, err, i)
		}
	}
	// Send, then a mismatch: the error says what came instead.
	if err := c.Send(ctx, "Test.pushes", map[string]int{"N": 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Expect(ctx, "Test.other", nil); err == nil || !strings.Contains(err.Error(), `{"Test.tick":1}`) {
		t.Fatalf("Expect mismatch = %v", err)
	}
	// A context that ends is the cause of the error.
	short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
	defer stop()
	if _, _, err := c.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want a deadline error", err)
	}
}

// TestDialOptions: Dial by URL reaches any server; Header reaches the
// connect hook; Session resumes; a refused upgrade is an error.
func TestDialOptions(t *testing.T) {
	app := rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
		srv.OnConnect(func(e *rocket.ConnectEvent) (rocket.ConnectReply, error) {
			user := e.Request.Header.Get("X-User")
			if user == "" {
				return rocket.ConnectReply{}, rocket.Errorf(rocket.CodeUnauthorized, "who are you?")
			}
			return rocket.ConnectReply{UserID: user}, nil
		})
		srv.HandleFunc("Who.am", func(c *rocket.Context) (any, error) { return c.Client().UserID(), nil })
	})
	ctx, cancel := context.WithTimeout(t.Context(), rockettest.DefaultTimeout)
	defer cancel()
	if _, err := rockettest.Dial(ctx, app.URL); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Dial without the header = %v, want a 401", err)
	}
	ann := http.Header{"X-User": {"ann"}}
	c, err := rockettest.Dial(ctx, app.URL, rockettest.Header(ann))
	if err != nil {
		t.Fatal(err)
	}
	var who string
	if err := c.Call(ctx, "Who.am", nil, &who); err != nil || who != "ann" {
		t.Fatalf("Who.am = %q, %v", who, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // harmless
		t.Fatal(err)
	}
	// The connection has ended: an error, not a wait.
	if _, _, err := c.Next(ctx); err == nil || !strings.Contains(err.Error(), "connection ended") {
		t.Fatalf("Next after Close = %v", err)
	}
	// A Conn from the package-level Dial does not wait for the server on
	// Close, so the session may not be free at once: resume through the
	// app, after waiting for it as the app's Close does.
	for app.Server.Client(c.ID) != nil {
		select {
		case <-ctx.Done():
			t.Fatal("the server kept the client")
		case <-time.After(time.Millisecond):
		}
	}
	back, err := app.Dial(ctx, rockettest.Session(c.Session), rockettest.Header(ann))
	if err != nil {
		t.Fatal(err)
	}
	if !back.Resumed || back.ID != c.ID {
		t.Fatalf("resume: %+v", back)
	}
	if _, err := rockettest.Dial(ctx, "ws://[::1"); err == nil {
		t.Fatal("Dial with a bad URL succeeded")
	}
	// back is closed by the app's Close.
}

// TestNewAndClose: New's errors, and Close closing what is left open.
func TestNewAndClose(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	if _, err := rockettest.New(rocket.Config{Logger: quiet, MaxFrameBytes: -1}, nil); err == nil {
		t.Fatal("New with a bad config succeeded")
	}
	b := memory.New(memory.Config{})
	defer b.Close()
	if _, err := rockettest.New(rocket.Config{Logger: quiet, Broker: b}, nil, rockettest.Redis("redis://127.0.0.1:1/0", "")); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("New with Broker and Redis = %v", err)
	}
	if _, err := rockettest.New(rocket.Config{Logger: quiet}, nil, rockettest.Redis("redis://127.0.0.1:1/0", "")); err == nil {
		t.Fatal("New with an unreachable Redis succeeded")
	}

	app, err := rockettest.New(rocket.Config{Logger: quiet}, demo.Register)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), rockettest.DefaultTimeout)
	defer cancel()
	c, err := app.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, "Echo.echo", 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil { // harmless
		t.Fatal(err)
	}
	if err := c.Call(ctx, "Echo.echo", 1, nil); err == nil {
		t.Fatal("Call after the app's Close succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Dial(ctx); err == nil {
		t.Fatal("Dial after the app's Close succeeded")
	}
}

// TestRedis: two apps on a redis-server of the test's own form a cluster
// (two memory brokers could not): a whisper crosses from one to the
// other, and a session resumes on the other node with its mail.
func TestRedis(t *testing.T) {
	rs := redistest.Start(t)
	prefix := "rockettest:" + t.Name() + ":"
	n1 := rockettest.Start(t, rocket.Config{}, demo.Register, rockettest.Redis(rs.URL, prefix))
	n2 := rockettest.Start(t, rocket.Config{}, demo.Register, rockettest.Redis(rs.URL, prefix))
	if n1.Server.ID() == n2.Server.ID() {
		t.Fatalf("both nodes are %s", n1.Server.ID())
	}
	ann, bob := n1.Connect(t), n2.Connect(t)
	if err := ann.Call("Chat.join", map[string]string{"room": "lobby", "name": "ann"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ann.Call("Chat.whisper", map[string]string{"to": bob.ID, "text": "live"}, nil); err != nil {
		t.Fatal(err)
	}
	var w demo.Whisper
	bob.ExpectInto("Chat.whisper", &w)
	if w.From != ann.ID || w.Text != "live" {
		t.Fatalf("whisper %+v", w)
	}
	bob.Close()
	if err := ann.Call("Chat.whisper", map[string]string{"to": bob.ID, "text": "kept"}, nil); err != nil {
		t.Fatal(err)
	}
	back := n1.Resume(t, bob.Session)
	if !back.Resumed || back.ID != bob.ID || back.ServerID != n1.Server.ID() {
		t.Fatalf("resume on node 1: %+v", back)
	}
	back.ExpectInto("Chat.whisper", &w)
	if w.Text != "kept" {
		t.Fatalf("mail %+v", w)
	}
}
