package rocket_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
)

// gate wraps a broker for one node: it can hold back the Replaced calls its
// node's Handler gets (as the Redis inbox does) and its node's Resume calls.
type gate struct {
	broker.Broker
	mu       sync.Mutex
	replaced chan struct{} // nil: Replaced goes through at once
	resume   chan struct{} // nil: Resume goes through at once
}

func (g *gate) RegisterServer(ctx context.Context, h broker.Handler) (string, error) {
	return g.Broker.RegisterServer(ctx, gateHandler{g, h})
}

func (g *gate) Resume(ctx context.Context, id, session, sid string, ack uint64) (broker.Resumed, error) {
	g.mu.Lock()
	ch := g.resume
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return g.Broker.Resume(ctx, id, session, sid, ack)
}

type gateHandler struct {
	g *gate
	h broker.Handler
}

func (h gateHandler) Deliver(id string, seq uint64, d []byte) { h.h.Deliver(id, seq, d) }
func (h gateHandler) DeliverRoom(r string, d []byte)          { h.h.DeliverRoom(r, d) }
func (h gateHandler) Kick(id, reason string)                  { h.h.(broker.Kicker).Kick(id, reason) }
func (h gateHandler) Replaced(id string) {
	h.g.mu.Lock()
	ch := h.g.replaced
	h.g.mu.Unlock()
	if ch == nil {
		h.h.(broker.Replacer).Replaced(id)
		return
	}
	go func() { <-ch; h.h.(broker.Replacer).Replaced(id) }()
}

// TestReplacedRacingResumeBack: a client on n1 resumes on n2 (n1 is told
// Replaced late, as through a Redis inbox), then back on n1 (C) while that
// notice is on its way: C, the last resume, keeps its connection. Before,
// n1's Replaced found C in setup, looked the client up before C's Resume
// had moved it back, and closed C: both connections ended up closed.
func TestReplacedRacingResumeBack(t *testing.T) {
	b := memory.New(memory.Config{})
	t.Cleanup(func() { _ = b.Close() })
	g1, g2 := &gate{Broker: b}, &gate{Broker: b}
	n1 := startNode(t, rocket.Config{Broker: g1}, nil)
	n2 := startNode(t, rocket.Config{Broker: g2}, nil)
	a := dial(t, n1.url, "")
	id, session := a.welcome.Client, a.welcome.Session
	aCl := n1.srv.Client(id)

	g1.mu.Lock()
	relReplaced := make(chan struct{})
	g1.replaced = relReplaced
	g1.mu.Unlock()
	bc := dial(t, n2.url, session) // n1's Replaced held back
	if !bc.welcome.Resumed {
		t.Fatal("B not resumed")
	}

	g1.mu.Lock()
	relResume := make(chan struct{})
	g1.resume = relResume
	g1.mu.Unlock()
	cDone := make(chan *client, 1)
	go func() { cDone <- dialNoFatal(t, n1.url, session) }()
	eventually(t, func() error {
		if cl := n1.srv.Client(id); cl == nil || cl == aCl {
			return notYet("C not set up on n1 yet")
		}
		return nil
	})
	close(relReplaced) // n1 learns of B's resume now, C not resumed yet
	time.Sleep(100 * time.Millisecond)
	close(relResume) // C's Resume moves the client back to n1
	c := <-cDone
	if code, reason := bc.expectCloseReason(); code != websocket.StatusPolicyViolation {
		t.Errorf("B closed with %v %q, want 1008 (replaced by C)", code, reason)
	}
	if c == nil {
		t.Fatalf("C, the last resume, was closed before its welcome")
	}
	var echoed int
	c.call("Echo.echo", 1, &echoed)
}

// dialNoFatal is dial that returns nil when the connection is closed before
// its welcome.
func dialNoFatal(t *testing.T, url, session string) (c *client) {
	defer func() {
		if r := recover(); r != nil {
			c = nil
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url+"?session="+session, nil)
	if err != nil {
		t.Errorf("dial: %v", err)
		return nil
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Logf("C read before welcome: %v", err)
		return nil
	}
	t.Logf("C first frame: %s", data)
	return &client{t: t, ws: ws}
}
