package brokertest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// The Servers subtests (broker.Servers): server ids, unknown servers,
// UnregisterServer, and Handlers that call the broker back.

var serversTests = []subtest{
	{"ServerIDsUnique", testServerIDsUnique},
	{"UnknownServer", testUnknownServer},
	{"UnregisterServer", testUnregisterServer},
	{"HandlerCallsBack", testHandlerCallsBack},
}

func testServerIDsUnique(t *testing.T, e *env) {
	e.open(defaultConfig)
	const goroutines, perGoroutine = 8, 10
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				id, err := e.b.RegisterServer(e.ctx, new(Recorder))
				if err != nil {
					t.Errorf("RegisterServer: %v", err)
					return
				}
				ids[g] = append(ids[g], id)
			}
		})
	}
	wg.Wait()
	expectDistinct(t, "server", slices.Concat(ids...), goroutines*perGoroutine)
}

func testUnknownServer(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connect(a)
	const ghost = "no-such-server"
	err := e.b.Connect(e.ctx, broker.Client{ID: c + "x", Server: ghost, Session: "s"})
	expectErr(t, "Connect(unknown server)", err, broker.ErrUnknownServer)
	_, err = e.b.Resume(e.ctx, c, sess, ghost, 0)
	expectErr(t, "Resume(unknown server)", err, broker.ErrUnknownServer)
	e.expectServer(c, a)
	err = e.b.Subscribe(e.ctx, ghost, "room")
	expectErr(t, "Subscribe(unknown server)", err, broker.ErrUnknownServer)
	err = e.b.UnregisterServer(e.ctx, ghost)
	expectErr(t, "UnregisterServer(unknown server)", err, broker.ErrUnknownServer)
}

func testUnregisterServer(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	d, dsess := e.connect(a)
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	if err := e.b.UnregisterServer(e.ctx, a); err != nil {
		t.Fatalf("UnregisterServer: %v", err)
	}
	e.expectServer(c, "")
	e.expectServer(d, "")
	e.send(c, "m0", "m1")
	e.publish("room", "r0")
	rb.WaitRoom(t, "room", 1, WaitTimeout)
	ra.ExpectQuiet(t, QuietPeriod)
	if n := ra.Total(); n != 0 {
		t.Fatalf("unregistered server got %d deliveries, want 0", n)
	}
	err := e.b.UnregisterServer(e.ctx, a)
	expectErr(t, "UnregisterServer twice", err, broker.ErrUnknownServer)

	// The clients are resumable elsewhere, with their mail.
	expectMsgs(t, "mail", e.resume(c, sess, b), "m0", "m1")
	expectMsgs(t, "mail", e.resume(d, dsess, b))
	e.send(c, "m2")
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 1, WaitTimeout), "m2")
}

// funcHandler is a broker.Handler made of functions.
type funcHandler struct {
	deliver     func(clientID string, data []byte)
	deliverRoom func(room string, data []byte)
}

func (h funcHandler) Deliver(clientID string, _ uint64, data []byte) { h.deliver(clientID, data) }
func (h funcHandler) DeliverRoom(room string, data []byte)           { h.deliverRoom(room, data) }

// testHandlerCallsBack checks that handlers may call the broker, as servers
// do when they forward a message for a client they no longer hold.
func testHandlerCallsBack(t *testing.T, e *env) {
	e.open(defaultConfig)
	b, rb := e.server()
	target, _ := e.connect(b)
	e.subscribe(b, "out")
	ctx := e.ctx
	fwd := funcHandler{
		deliver: func(clientID string, data []byte) {
			if _, err := e.b.Lookup(ctx, clientID); err != nil {
				t.Errorf("Lookup from handler: %v", err)
			}
			if err := e.b.Send(ctx, target, data); err != nil {
				t.Errorf("Send from handler: %v", err)
			}
		},
		deliverRoom: func(_ string, data []byte) {
			if err := e.b.Publish(ctx, "", "out", data); err != nil {
				t.Errorf("Publish from handler: %v", err)
			}
		},
	}
	a, err := e.b.RegisterServer(ctx, fwd)
	if err != nil {
		t.Fatal(err)
	}
	e.subscribe(a, "in")
	c, _ := e.connect(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.b.Send(ctx, c, []byte("via-a")); err != nil {
			t.Errorf("Send: %v", err)
		}
		if err := e.b.Publish(ctx, "", "in", []byte("room-via-a")); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(WaitTimeout):
		e.abandoned = true
		t.Fatal("Send or Publish blocked: deadlock with a handler calling the broker?")
	}
	expectMsgs(t, "forwarded", rb.WaitDirect(t, target, 1, WaitTimeout), "via-a")
	expectMsgs(t, "republished", rb.WaitRoom(t, "out", 1, WaitTimeout), "room-via-a")
}
