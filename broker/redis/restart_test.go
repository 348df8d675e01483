package redis

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/internal/redistest"
)

// TestRedisRestart: while Redis is down, calls fail within their contexts
// (Subscribe records the wish and succeeds), the goroutines retry with
// backoff rather than spinning and log once; when Redis is back they
// recover by themselves: sends and publishes are delivered again, including
// to a room subscribed during the outage.
func TestRedisRestart(t *testing.T) {
	const outage = 1500 * time.Millisecond
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	la, lb := newLogs(t), newLogs(t)
	cfg := Config{Prefix: prefix, HeartbeatInterval: 100 * time.Millisecond, DeadAfter: 10 * time.Second}
	acfg, bcfg := cfg, cfg
	acfg.Logger, bcfg.Logger = la.logger(), lb.logger()
	a := newBroker(t, srv, acfg)
	b := newBroker(t, srv, bcfg)
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, rb)
	c, _ := b.NewClientID(ctx)
	if err := b.Connect(ctx, broker.Client{ID: c, Server: sb, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	ca, _ := a.NewClientID(ctx)
	if err := a.Connect(ctx, broker.Client{ID: ca, Server: sa, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []struct {
		b  *Broker
		id string
	}{{a, sa}, {b, sb}} {
		if err := sub.b.Subscribe(ctx, sub.id, "room"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Send(ctx, c, []byte("warm")); err != nil {
		t.Fatal(err)
	}
	rb.WaitDirect(t, c, 1, 5*time.Second)
	if err := b.Publish(ctx, sb, "room", []byte("warm")); err != nil {
		t.Fatal(err)
	}
	ra.WaitRoom(t, "room", 1, 5*time.Second)

	// Traffic on both nodes, across the outage.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, nd := range []*Broker{a, b} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				_ = nd.Send(cctx, c, []byte("traffic"))
				_ = nd.Publish(cctx, "", "room", []byte("traffic"))
				cancel()
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	srv.Stop(t)
	retries := func() (consumer, subscriber int64) {
		return a.consumerRetries.Load() + b.consumerRetries.Load(), a.subscriberRetries.Load() + b.subscriberRetries.Load()
	}

	// Every call returns an error within its context; Subscribe succeeds.
	const callTimeout = 500 * time.Millisecond
	for _, call := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Send", func(ctx context.Context) error { return a.Send(ctx, c, []byte("x")) }},
		{"Publish", func(ctx context.Context) error { return a.Publish(ctx, sa, "room", []byte("x")) }},
		{"Lookup", func(ctx context.Context) error { _, err := a.Lookup(ctx, c); return err }},
		{"NewClientID", func(ctx context.Context) error { _, err := a.NewClientID(ctx); return err }},
		{"RegisterServer", func(ctx context.Context) error { _, err := a.RegisterServer(ctx, new(brokertest.Recorder)); return err }},
		{"Connect", func(ctx context.Context) error { return a.Connect(ctx, broker.Client{ID: "999", Server: sa}) }},
		{"Resume", func(ctx context.Context) error { _, err := a.Resume(ctx, c, "s", sa, 0); return err }},
		{"Disconnect", func(ctx context.Context) error { return a.Disconnect(ctx, "999", sa) }},
		{"Forget", func(ctx context.Context) error { return a.Forget(ctx, "999") }},
		{"Stats", func(ctx context.Context) error { _, err := a.Stats(ctx); return err }},
	} {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		start := time.Now()
		err := call.fn(cctx)
		took := time.Since(start)
		cancel()
		if err == nil {
			t.Errorf("%s with Redis down: nil error", call.name)
		}
		if took > callTimeout+callGrace+200*time.Millisecond {
			t.Errorf("%s with Redis down took %v, beyond its context's %v", call.name, took, callTimeout)
		}
	}
	for _, sub := range []struct {
		b  *Broker
		id string
	}{{a, sa}, {b, sb}} {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		if err := sub.b.Subscribe(cctx, sub.id, "room2"); err != nil {
			t.Errorf("Subscribe with Redis down: %v", err)
		}
		cancel()
	}

	time.Sleep(outage)
	cons, subs := retries()
	t.Logf("during the outage: %d consumer retries, %d subscriber retries", cons, subs)
	// Backoff from 50ms doubling to 2s: about 6 retries per goroutine in
	// 1.5s; a spinning goroutine would make thousands.
	if cons > 2*12 || subs > 2*12 {
		t.Errorf("goroutines spin: %d consumer and %d subscriber retries in %v", cons, subs, outage)
	}

	srv.Start(t)
	close(stop)
	wg.Wait()

	// Sends are kept in Redis: one is enough.
	for _, to := range []struct {
		id string
		r  *brokertest.Recorder
	}{{c, rb}, {ca, ra}} {
		if err := a.Send(ctx, to.id, []byte("after")); err != nil {
			t.Fatalf("Send after restart: %v", err)
		}
		waitFor(t, 10*time.Second, "direct message after restart", func() bool {
			got := to.r.Direct(to.id)
			return len(got) > 0 && string(got[len(got)-1]) == "after"
		})
	}
	// Room messages are not kept: publish until the subscriptions are
	// back.
	for _, room := range []string{"room", "room2"} {
		waitFor(t, 10*time.Second, "room message after restart in "+room, func() bool {
			if err := b.Publish(ctx, sb, room, []byte("after")); err != nil {
				return false
			}
			time.Sleep(20 * time.Millisecond)
			got := ra.Room(room)
			return len(got) > 0 && string(got[len(got)-1]) == "after"
		})
	}

	// Recovered: no more retries.
	cons, subs = retries()
	time.Sleep(300 * time.Millisecond)
	if c2, s2 := retries(); c2 != cons || s2 != subs {
		t.Errorf("retries go on after recovery: consumer %d -> %d, subscriber %d -> %d", cons, c2, subs, s2)
	}

	// One line per goroutine for the outage, one for the recovery.
	for node, l := range map[string]*logs{"a": la, "b": lb} {
		for _, what := range []string{"inbox consumer", "pub/sub connection", "heartbeat"} {
			failed := l.lines("level=WARN", what+" failed")
			if len(failed) != 1 {
				t.Errorf("node %s: %d %q failure lines, want 1: %q", node, len(failed), what, failed)
			}
			if rec := l.lines("level=INFO", what+" recovered"); len(rec) != 1 {
				t.Errorf("node %s: %d %q recovery lines, want 1", node, len(rec), what)
			}
		}
		if n := len(l.lines("level=WARN")) + len(l.lines("level=ERROR")); n > 8 {
			t.Errorf("node %s logged %d warnings for one outage:\n%s", node, n, strings.Join(l.lines("level="), ""))
		}
	}
}

// TestDownWithoutRooms: a Broker with no room and no server retries with
// backoff while Redis is down, logs once, recovers, and closes promptly
// while Redis is down.
func TestDownWithoutRooms(t *testing.T) {
	srv := redistest.Start(t)
	l := newLogs(t)
	b := newBroker(t, srv, Config{HeartbeatInterval: 50 * time.Millisecond, Logger: l.logger()})
	srv.Kill(t)
	time.Sleep(time.Second)
	if n := b.subscriberRetries.Load(); n > 8 {
		t.Errorf("%d subscriber retries in 1s", n)
	}
	if n := len(l.lines("level=WARN", "pub/sub connection failed")); n != 1 {
		t.Errorf("%d pub/sub failure lines, want 1", n)
	}
	if n := len(l.lines("level=INFO", "recovered")); n != 0 {
		t.Errorf("%d recovery lines while Redis is down", n)
	}
	srv.Start(t)
	waitFor(t, 5*time.Second, "pub/sub recovery", func() bool { return len(l.lines("level=INFO", "pub/sub connection recovered")) == 1 })
	ctx := t.Context()
	s, err := b.RegisterServer(ctx, new(brokertest.Recorder))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, s, "room"); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %v with Redis down", took)
	}
}

// TestLongOutage: after an outage longer than DeadAfter, the reapers let
// the servers that lived through it refresh their heartbeats rather than
// cleaning them up.
func TestLongOutage(t *testing.T) {
	const interval, deadAfter = 100 * time.Millisecond, 300 * time.Millisecond
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	la, lb := newLogs(t), newLogs(t)
	// a's reaper runs far more often than b's heartbeat: without the
	// hold-off it would find b's server dead as soon as Redis is back.
	a := newBroker(t, srv, Config{Prefix: prefix, HeartbeatInterval: 10 * time.Millisecond, DeadAfter: deadAfter, Logger: la.logger()})
	b := newBroker(t, srv, Config{Prefix: prefix, HeartbeatInterval: interval, DeadAfter: deadAfter, Logger: lb.logger()})
	ctx := t.Context()
	rb := new(brokertest.Recorder)
	sb, _ := b.RegisterServer(ctx, rb)
	c, _ := b.NewClientID(ctx)
	if err := b.Connect(ctx, broker.Client{ID: c, Server: sb, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	time.Sleep(3 * deadAfter)
	srv.Start(t)
	waitFor(t, 5*time.Second, "reapers recovered", func() bool {
		return len(la.lines("level=INFO", "reaper recovered")) == 1 && len(lb.lines("level=INFO", "reaper recovered")) == 1
	})
	time.Sleep(deadAfter + 4*interval)
	if rec, err := a.Lookup(ctx, c); err != nil || rec.Server != sb {
		t.Fatalf("client after the outage: %+v, %v; want it still on %s", rec, err, sb)
	}
	for _, l := range []*logs{la, lb} {
		if lines := append(l.lines("cleaned up"), l.lines("reclaim")...); len(lines) != 0 {
			t.Fatalf("live server reaped: %q", lines)
		}
	}
	if err := a.Send(ctx, c, []byte("m")); err != nil {
		t.Fatal(err)
	}
	rb.WaitDirect(t, c, 1, 5*time.Second)
}
