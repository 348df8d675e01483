package rocket_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
)

// numberedFrame is {"seq": N, "message": {"Chat.whisper": ...}}.
type numberedFrame struct {
	Seq     uint64 `json:"seq"`
	Message struct {
		Whisper *struct {
			Text string `json:"text"`
		} `json:"Chat.whisper"`
	} `json:"message"`
}

// expectNumbered reads the next frame: a numbered whisper seq with text.
func (c *client) expectNumbered(seq uint64, text string) {
	c.t.Helper()
	data := c.read()
	var f numberedFrame
	if err := json.Unmarshal(data, &f); err != nil || f.Seq != seq || f.Message.Whisper == nil || f.Message.Whisper.Text != text {
		c.t.Fatalf("got %s, want whisper %q numbered %d", data, text, seq)
	}
}

// TestAcks: a connection opened with ?acks=1 gets its directed messages
// numbered, even from its own server; what it has not acknowledged is
// sent again when it resumes, after the number it gives, and nothing twice.
func TestAcks(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	ann := dial(t, n.url+"?acks=1", "")
	bob := dial(t, n.url, "")
	if !n.srv.Client(ann.welcome.Client).Acks() {
		t.Fatal("Client.Acks() = false for a connection opened with ?acks=1")
	}
	if n.srv.Client(bob.welcome.Client).Acks() {
		t.Fatal("Client.Acks() = true for a connection opened without")
	}
	whisper := func(text string) {
		t.Helper()
		bob.call("Chat.whisper", map[string]string{"to": ann.welcome.Client, "text": text}, nil)
	}
	for i := 1; i <= 3; i++ {
		whisper(fmt.Sprint("w", i))
	}
	for i := uint64(1); i <= 3; i++ {
		ann.expectNumbered(i, fmt.Sprint("w", i))
	}
	ann.sendRaw(`{"ack":1}`)
	ann.sendRaw(`{"ack":1}`) // again: harmless
	// ann received 1 and 2 (say), then lost its connection.
	_ = ann.ws.CloseNow()
	waitGone(t, n, ann.welcome.Client)
	whisper("w4")
	again := dial(t, n.url+"?acks=1&ack=2", ann.welcome.Session)
	if !again.welcome.Resumed || again.welcome.Client != ann.welcome.Client {
		t.Fatalf("welcome %+v, want ann resumed", again.welcome)
	}
	again.expectNumbered(3, "w3")
	again.expectNumbered(4, "w4")
	whisper("w5")
	again.expectNumbered(5, "w5")
	// Plain clients get plain whispers.
	again.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "plain"}, nil)
	if f := bob.next(); f.Whisper == nil || f.Whisper.Text != "plain" {
		t.Fatalf("bob got %+v, want a plain whisper", f)
	}
}

// TestAcksWelcome: the welcome says "acks": true only when the connection
// acknowledges; a session keeps the mode it was opened with.
func TestAcksWelcome(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	a := dial(t, n.url+"?acks=1", "")
	alt := dial(t, n.url+"?acks=true", "")
	b := dial(t, n.url+"?acks=0", "")
	for _, tt := range []struct {
		c    *client
		want bool
	}{{a, true}, {alt, true}, {b, false}} {
		if tt.c.welcome.Acks != tt.want || n.srv.Client(tt.c.welcome.Client).Acks() != tt.want {
			t.Errorf("client %s: welcome acks %v, Acks() %v; want %v", tt.c.welcome.Client,
				tt.c.welcome.Acks, n.srv.Client(tt.c.welcome.Client).Acks(), tt.want)
		}
	}
	// The session of b was opened without acks: resuming it with acks=1
	// does not change that, and the reverse.
	_ = b.ws.CloseNow()
	_ = a.ws.CloseNow()
	eventually(t, func() error {
		if n.srv.ClientCount() != 1 { // alt
			return notYet("%d clients", n.srv.ClientCount())
		}
		return nil
	})
	b2 := dial(t, n.url+"?acks=1", b.welcome.Session)
	a2 := dial(t, n.url, a.welcome.Session)
	if !b2.welcome.Resumed || b2.welcome.Acks || n.srv.Client(b2.welcome.Client).Acks() {
		t.Errorf("b resumed with acks=1: resumed %v, Acks %v; want resumed without acks", b2.welcome.Resumed, n.srv.Client(b2.welcome.Client).Acks())
	}
	if !a2.welcome.Resumed || !a2.welcome.Acks || !n.srv.Client(a2.welcome.Client).Acks() {
		t.Errorf("a resumed without acks=1: resumed %v, Acks %v; want resumed with acks", a2.welcome.Resumed, n.srv.Client(a2.welcome.Client).Acks())
	}
}

// TestAcksBadInput: a bad ack gets a bad_frame error and the connection
// goes on.
func TestAcksBadInput(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	plain := dial(t, n.url, "")
	plain.sendRaw(`{"ack":1}`)
	if f := plain.expectError(rocket.CodeBadFrame); !strings.Contains(f.Error.Message, "acks=1") {
		t.Errorf("ack without acks: %q", f.Error.Message)
	}
	c := dial(t, n.url+"?acks=1", "")
	for _, tt := range []struct{ frame, want string }{
		{`{"ack":5}`, "past the last message sent, 0"},
		{`{"ack":-1}`, "must be a message number"},
		{`{"ack":"1"}`, "must be a message number"},
		{`{"ack":1.0}`, "must be a message number"},
		{`{"ack":1,"ack":1}`, `duplicate "ack"`},
	} {
		c.sendRaw(tt.frame)
		if f := c.expectError(rocket.CodeBadFrame); !strings.Contains(f.Error.Message, tt.want) {
			t.Errorf("%s: error %q, want it to say %q", tt.frame, f.Error.Message, tt.want)
		}
	}
	var got string
	c.call("Echo.echo", "still here", &got)
	plain.call("Echo.echo", "me too", &got)
}

// TestAcksSendUser: SendUser numbers the messages of the user's
// connections that acknowledge, on this server too, once each.
func TestAcksSendUser(t *testing.T) {
	n := startNode(t, rocket.Config{}, func(srv *rocket.Server) { srv.OnConnect(userHook) })
	acked := dial(t, n.url+"?user=ann&acks=1", "")
	plain := dial(t, n.url+"?user=ann", "")
	got, err := n.srv.SendUser(t.Context(), "ann", rocket.Push{Name: "Chat.whisper", Value: map[string]string{"text": "hi"}})
	if err != nil || got != 2 {
		t.Fatalf("SendUser = %d, %v; want 2", got, err)
	}
	acked.expectNumbered(1, "hi")
	if f := plain.next(); f.Whisper == nil || f.Whisper.Text != "hi" {
		t.Fatalf("plain connection got %+v", f)
	}
	// Nothing more: the next frame on each is the reply to this echo.
	var s string
	acked.call("Echo.echo", "x", &s)
	plain.call("Echo.echo", "x", &s)
}

// tappedBroker wraps a broker for tests: it keeps the Handler of the (one)
// server registered, and before each Resume it calls inject, if set, with
// that Handler, as a networked broker's inbox consumer may deliver at that
// moment.
type tappedBroker struct {
	broker.Broker
	mu     sync.Mutex
	h      broker.Handler
	inject func(h broker.Handler, clientID string)
}

func (b *tappedBroker) RegisterServer(ctx context.Context, h broker.Handler) (string, error) {
	b.mu.Lock()
	b.h = h
	b.mu.Unlock()
	return b.Broker.RegisterServer(ctx, h)
}

func (b *tappedBroker) Resume(ctx context.Context, clientID, session, serverID string, ack uint64) (broker.Resumed, error) {
	b.mu.Lock()
	h, inject := b.h, b.inject
	b.mu.Unlock()
	if inject != nil {
		inject(h, clientID)
	}
	return b.Broker.Resume(ctx, clientID, session, serverID, ack)
}

func (b *tappedBroker) setInject(f func(h broker.Handler, clientID string)) {
	b.mu.Lock()
	b.inject = f
	b.mu.Unlock()
}

// awayClient connects a client (with query, e.g. "?acks=1") and waits
// until it has gone away.
func awayClient(t *testing.T, n *node, query string) *client {
	t.Helper()
	c := dial(t, n.url+query, "")
	_ = c.ws.CloseNow()
	waitGone(t, n, c.welcome.Client)
	return c
}

// TestAcksFailedResume: what the broker delivers for a session while a
// connection tries to resume it and fails (a wrong secret) goes neither to
// the new client that connection becomes nor into its numbering; the old
// client keeps it.
func TestAcksFailedResume(t *testing.T) {
	b := &tappedBroker{Broker: memory.New(memory.Config{})}
	t.Cleanup(func() { b.Close() })
	n := startNode(t, rocket.Config{Broker: b}, nil)
	old := awayClient(t, n, "?acks=1")
	plain := awayClient(t, n, "")
	for _, gone := range []*client{old, plain} {
		b.setInject(func(h broker.Handler, id string) {
			if gone == old {
				h.Deliver(id, 7, []byte(`{"Chat.whisper":{"text":"numbered, for the old client"}}`))
			} else {
				h.Deliver(id, 0, []byte(`{"Chat.whisper":{"text":"plain, for the old client"}}`))
			}
		})
		c := dial(t, n.url+"?acks=1", gone.welcome.Client+".AAAAAAAAAAAAAAAAAAAAAAAA")
		b.setInject(nil)
		if c.welcome.Resumed || c.welcome.Client == gone.welcome.Client {
			t.Fatalf("welcome %+v: want a new client", c.welcome)
		}
		if err := n.srv.Send(t.Context(), c.welcome.Client, rocket.Push{Name: "Chat.whisper", Value: map[string]string{"text": "mine"}}); err != nil {
			t.Fatal(err)
		}
		c.expectNumbered(1, "mine")
	}
	// The plain message went on to the old plain client's mailbox.
	again := dial(t, n.url, plain.welcome.Session)
	if f := again.next(); !again.welcome.Resumed || f.Whisper == nil || f.Whisper.Text != "plain, for the old client" {
		t.Fatalf("old plain client resumed %v, got %+v", again.welcome.Resumed, f)
	}
}

// TestAcksResumeAckIsReceived: a numbered message at or below the ack a
// connection resumes with is not written to it, even when the broker
// delivers it during the resume (a reclaimed server's inbox may).
func TestAcksResumeAckIsReceived(t *testing.T) {
	b := &tappedBroker{Broker: memory.New(memory.Config{})}
	t.Cleanup(func() { b.Close() })
	n := startNode(t, rocket.Config{Broker: b}, nil)
	c := dial(t, n.url+"?acks=1", "")
	for i := 1; i <= 3; i++ {
		if err := n.srv.Send(t.Context(), c.welcome.Client, rocket.Push{Name: "Chat.whisper", Value: map[string]string{"text": fmt.Sprint("w", i)}}); err != nil {
			t.Fatal(err)
		}
		c.expectNumbered(uint64(i), fmt.Sprint("w", i))
	}
	_ = c.ws.CloseNow()
	waitGone(t, n, c.welcome.Client)
	b.setInject(func(h broker.Handler, id string) {
		h.Deliver(id, 2, []byte(`{"Chat.whisper":{"text":"w2"}}`))
	})
	again := dial(t, n.url+"?acks=1&ack=3", c.welcome.Session)
	b.setInject(nil)
	if !again.welcome.Resumed {
		t.Fatal("not resumed")
	}
	if err := n.srv.Send(t.Context(), c.welcome.Client, rocket.Push{Name: "Chat.whisper", Value: map[string]string{"text": "w4"}}); err != nil {
		t.Fatal(err)
	}
	again.expectNumbered(4, "w4")
}
