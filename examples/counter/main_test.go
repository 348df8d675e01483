package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/rockettest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// tick is the stats interval in tests.
const tick = 10 * time.Millisecond

// start starts the dashboard for a test, with its stats ticker, and an
// uptime of an hour. The ticker is stopped, and waited for, before the
// server shuts down.
func start(t *testing.T) *rockettest.App {
	t.Helper()
	a := &app{started: time.Now().Add(-time.Hour), log: slog.New(slog.DiscardHandler)}
	ta := rockettest.Start(t, rocket.Config{}, a.register)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.pushStats(ctx, ta.Server, tick)
	}()
	t.Cleanup(func() { // runs before rockettest's (cleanups run last first)
		cancel()
		<-done
	})
	return ta
}

// expectChanged checks that the next message c gets is the change want.
func expectChanged(t *testing.T, c *rockettest.Client, want Changed) {
	t.Helper()
	var got Changed
	c.ExpectInto("Counter.changed", &got)
	if got != want {
		t.Fatalf("client %s: Counter.changed %+v, want %+v", c.ID, got, want)
	}
}

// incr calls Counter.incr and checks the new value.
func incr(t *testing.T, c *rockettest.Client, by, want int64) {
	t.Helper()
	var got int64
	if err := c.Call("Counter.incr", IncrArgs{By: by}, &got); err != nil || got != want {
		t.Fatalf("Counter.incr %d = %d, %v; want %d", by, got, err, want)
	}
}

func TestCounterPushedToWatchers(t *testing.T) {
	app := start(t)
	ann, bob, eve := app.Connect(t), app.Connect(t), app.Connect(t)
	for _, c := range []*rockettest.Client{ann, bob} {
		var v int64
		if err := c.Call("Counter.watch", nil, &v); err != nil || v != 0 {
			t.Fatalf("Counter.watch = %d, %v", v, err)
		}
		expectChanged(t, c, Changed{Value: 0}) // the current value, pushed at once
	}

	incr(t, ann, 0, 1) // 0 means 1
	incr(t, bob, -3, -2)
	incr(t, eve, 10, 8) // eve does not watch, but may change the counter
	for _, c := range []*rockettest.Client{ann, bob} {
		expectChanged(t, c, Changed{Value: 1, By: 1})
		expectChanged(t, c, Changed{Value: -2, By: -3})
		expectChanged(t, c, Changed{Value: 8, By: 10})
	}

	// A late watcher starts from the current value.
	if err := eve.Call("Counter.watch", nil, nil); err != nil {
		t.Fatal(err)
	}
	expectChanged(t, eve, Changed{Value: 8})

	for _, by := range []int64{maxBy + 1, -maxBy - 1} {
		err := ann.Call("Counter.incr", IncrArgs{By: by}, nil)
		var re *rocket.Error
		if !errors.As(err, &re) || re.Code != rocket.CodeBadArgs {
			t.Errorf("Counter.incr %d: err = %v, want bad_args", by, err)
		}
	}
}

// TestConcurrentIncrementsArriveInOrder: two clients increment at the
// same time; every watcher sees every value, in order.
func TestConcurrentIncrementsArriveInOrder(t *testing.T) {
	app := start(t)
	ann, bob := app.Connect(t), app.Connect(t)
	for _, c := range []*rockettest.Client{ann, bob} {
		if err := c.Call("Counter.watch", nil, nil); err != nil {
			t.Fatal(err)
		}
		expectChanged(t, c, Changed{Value: 0})
	}
	const n = 40 // per client, within the default rate limit's burst
	for range n {
		ann.Send("Counter.incr", IncrArgs{By: 1})
		bob.Send("Counter.incr", IncrArgs{By: 1})
	}
	for _, c := range []*rockettest.Client{ann, bob} {
		for want := int64(1); want <= 2*n; want++ {
			expectChanged(t, c, Changed{Value: want, By: 1})
		}
	}
}

func TestStatsPushedEverySecond(t *testing.T) {
	app := start(t)
	ann, bob := app.Connect(t), app.Connect(t)
	var ok bool
	if err := ann.Call("Stats.watch", nil, &ok); err != nil || !ok {
		t.Fatalf("Stats.watch: %v, %v", ok, err)
	}
	// The first snapshot comes at once, the next ones from the ticker:
	// nobody asks for them.
	for range 3 {
		var s Stats
		ann.ExpectInto("Stats.snapshot", &s)
		if s.Clients != 2 || s.UptimeSeconds < 3600 || s.UptimeSeconds > 3700 {
			t.Fatalf("snapshot %+v, want 2 clients and an uptime of an hour", s)
		}
	}
	// bob leaves: the snapshots soon say so. Each Expect waits at most
	// rockettest.DefaultTimeout; the count bounds the whole wait.
	bob.Close()
	for i := 0; ; i++ {
		var s Stats
		ann.ExpectInto("Stats.snapshot", &s)
		if s.Clients == 1 {
			break
		}
		if i > int(rockettest.DefaultTimeout/tick) {
			t.Fatalf("snapshots still count %d clients", s.Clients)
		}
	}
}

// TestServes runs the whole program on a loopback listener: the page,
// rocket.js and WebSockets at /ws, then a graceful stop.
func TestServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, slog.New(slog.DiscardHandler)) }()
	base := "http://" + ln.Addr().String()

	for path, want := range map[string]string{"/": `rocket.request("Counter.incr"`, "/rocket.js": "export class Rocket"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: status %d, %v, no %q in the body", path, resp.StatusCode, err, want)
		}
	}

	// A client of the real program watches the stats and gets a snapshot.
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	defer ws.CloseNow()
	if _, welcome, err := ws.Read(dctx); err != nil || !strings.Contains(string(welcome), `"welcome"`) {
		t.Fatalf("first frame: %s, %v", welcome, err)
	}
	if err := ws.Write(dctx, websocket.MessageText, []byte(`{"Stats.watch":null}`)); err != nil {
		t.Fatal(err)
	}
	if _, frame, err := ws.Read(dctx); err != nil || !strings.Contains(string(frame), `{"Stats.snapshot":{"clients":1,`) {
		t.Fatalf("read %s, %v; want a snapshot counting 1 client", frame, err)
	}

	// Stop: the client is closed with 1001 (going away), and run returns.
	cancel()
	for {
		_, _, err := ws.Read(dctx)
		if err == nil {
			continue // a snapshot pushed before the stop
		}
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("after the stop, read: %v; want close code 1001", err)
		}
		break
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15s of its context's end")
	}
}
