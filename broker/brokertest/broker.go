package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// The Broker subtests: what broker.Broker adds to its roles, for every
// method of every role: Close, and contexts that end.

var brokerTests = []subtest{
	{"Closed", testClosed},
	{"CanceledContext", testCanceledContext},
}

func testClosed(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connect(a)
	e.subscribe(a, "room")
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, call := range calls(a, c, sess) {
		expectErr(t, call.name+" after Close", call.fn(e.ctx, e.b), broker.ErrClosed)
	}
}

func testCanceledContext(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	c, sess := e.connect(a)
	e.subscribe(a, "room")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	for _, call := range calls(a, c, sess) {
		if err := call.fn(ctx, e.b); err == nil {
			t.Errorf("%s with a canceled context: got nil error", call.name)
		}
	}
	// The broker is still usable with a live context.
	e.send(c, "m0")
	ra.WaitDirect(t, c, 1, WaitTimeout)
}

// call is one use of every broker method but Close.
type call struct {
	name string
	fn   func(context.Context, broker.Broker) error
}

// calls returns a call of every broker method but Close, for a registered
// server, a client on it and its session.
func calls(serverID, clientID, session string) []call {
	return []call{
		{"RegisterServer", func(ctx context.Context, b broker.Broker) error {
			_, err := b.RegisterServer(ctx, new(Recorder))
			return err
		}},
		{"NewClientID", func(ctx context.Context, b broker.Broker) error {
			_, err := b.NewClientID(ctx)
			return err
		}},
		{"Connect", func(ctx context.Context, b broker.Broker) error {
			return b.Connect(ctx, broker.Client{ID: clientID + "-new", Server: serverID, Session: "s"})
		}},
		{"Lookup", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Lookup(ctx, clientID)
			return err
		}},
		{"Send", func(ctx context.Context, b broker.Broker) error {
			return b.Send(ctx, clientID, []byte("x"))
		}},
		{"Subscribe", func(ctx context.Context, b broker.Broker) error {
			return b.Subscribe(ctx, serverID, "room2")
		}},
		{"Publish", func(ctx context.Context, b broker.Broker) error {
			return b.Publish(ctx, "", "room", []byte("x"))
		}},
		{"Unsubscribe", func(ctx context.Context, b broker.Broker) error {
			return b.Unsubscribe(ctx, serverID, "room")
		}},
		{"Stats", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Stats(ctx)
			return err
		}},
		{"PresenceAdd", func(ctx context.Context, b broker.Broker) error {
			return b.PresenceAdd(ctx, "room", broker.Member{ClientID: clientID, ServerID: serverID, JoinedAt: time.Now()})
		}},
		{"Presence", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Presence(ctx, "room")
			return err
		}},
		{"PresenceRemove", func(ctx context.Context, b broker.Broker) error {
			_, err := b.PresenceRemove(ctx, "room", clientID, serverID)
			return err
		}},
		{"UserClients", func(ctx context.Context, b broker.Broker) error {
			_, err := b.UserClients(ctx, "user")
			return err
		}},
		{"SendUser", func(ctx context.Context, b broker.Broker) error {
			_, err := b.SendUser(ctx, "", "user", []byte("x"))
			return err
		}},
		{"ForgetUser", func(ctx context.Context, b broker.Broker) error {
			_, err := b.ForgetUser(ctx, "user", "reason")
			return err
		}},
		{"Resume", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Resume(ctx, clientID, session, serverID, 0)
			return err
		}},
		{"Ack", func(ctx context.Context, b broker.Broker) error {
			return b.Ack(ctx, clientID, 1)
		}},
		{"Disconnect", func(ctx context.Context, b broker.Broker) error {
			return b.Disconnect(ctx, clientID, serverID)
		}},
		{"Forget", func(ctx context.Context, b broker.Broker) error {
			return b.Forget(ctx, clientID)
		}},
		{"UnregisterServer", func(ctx context.Context, b broker.Broker) error {
			return b.UnregisterServer(ctx, serverID)
		}},
	}
}
