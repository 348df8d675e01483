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
	"github.com/rocket-go/rocket/internal/redistest"
	"github.com/rocket-go/rocket/rockettest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// quiet is the logger of the nodes in tests.
var quiet = slog.New(slog.DiscardHandler)

// startNodes starts a redis-server of the test's own (on a free loopback
// port) and n nodes of the app on it, in this process.
func startNodes(t *testing.T, n int) []*rockettest.App {
	t.Helper()
	rs := redistest.Start(t)
	nodes := make([]*rockettest.App, n)
	for i := range nodes {
		b, err := newBroker(context.Background(), rs.URL, quiet)
		if err != nil {
			t.Fatal(err)
		}
		// Registered before the node's own cleanup, so it runs after the
		// node has shut down and left the cluster.
		t.Cleanup(func() { _ = b.Close() })
		nodes[i] = rockettest.Start(t, rocket.Config{Broker: b, Logger: quiet}, register)
	}
	return nodes
}

// joinRoom makes c join room and checks that its node answered.
func joinRoom(t *testing.T, c *rockettest.Client, room string) {
	t.Helper()
	var got Joined
	if err := c.Call("Room.join", JoinArgs{Room: room}, &got); err != nil {
		t.Fatalf("Room.join: %v", err)
	}
	if want := (Joined{Room: room, Node: c.ServerID}); got != want {
		t.Fatalf("Room.join = %+v, want %+v", got, want)
	}
}

func TestMessagesCrossNodes(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0].Server.ID(), nodes[1].Server.ID()
	if a == b {
		t.Fatalf("both nodes have the id %s", a)
	}
	ann, bob := nodes[0].Connect(t), nodes[1].Connect(t)
	if ann.ServerID != a || bob.ServerID != b {
		t.Fatalf("ann is on %s, bob on %s; want %s and %s", ann.ServerID, bob.ServerID, a, b)
	}

	// A room spans the nodes: ann's message, said on node a, reaches bob
	// on node b (through Redis), and ann herself.
	joinRoom(t, ann, "lobby")
	joinRoom(t, bob, "lobby")
	var ok bool
	if err := ann.Call("Room.say", SayArgs{Room: "lobby", Text: "hello from a"}, &ok); err != nil || !ok {
		t.Fatalf("Room.say: %v, %v", ok, err)
	}
	want := RoomMessage{Room: "lobby", From: ann.ID, Node: a, Text: "hello from a"}
	for _, c := range []*rockettest.Client{bob, ann} {
		var got RoomMessage
		c.ExpectInto("Room.message", &got)
		if got != want {
			t.Fatalf("%s got %+v, want %+v", c.ID, got, want)
		}
	}

	// A direct message from node b finds ann on node a by her id alone.
	if err := bob.Call("Direct.send", SendArgs{To: ann.ID, Text: "hi ann"}, &ok); err != nil || !ok {
		t.Fatalf("Direct.send: %v, %v", ok, err)
	}
	var dm DirectMessage
	ann.ExpectInto("Direct.message", &dm)
	if want := (DirectMessage{From: bob.ID, Node: b, Text: "hi ann"}); dm != want {
		t.Fatalf("ann got %+v, want %+v", dm, want)
	}

	// No such client anywhere in the cluster.
	err := bob.Call("Direct.send", SendArgs{To: "nobody", Text: "hi"}, nil)
	var re *rocket.Error
	if !errors.As(err, &re) || re.Code != rocket.CodeBadArgs {
		t.Fatalf("Direct.send to nobody: err = %v, want bad_args", err)
	}
}

// TestResumeOnAnotherNode: ann leaves node a; a message sent to her
// meanwhile waits in her mailbox, and she gets it when she resumes her
// session on node b.
func TestResumeOnAnotherNode(t *testing.T) {
	nodes := startNodes(t, 2)
	ann, bob := nodes[0].Connect(t), nodes[1].Connect(t)
	ann.Close() // returns once node a has let her go: she is away

	var ok bool
	if err := bob.Call("Direct.send", SendArgs{To: ann.ID, Text: "while you were away"}, &ok); err != nil || !ok {
		t.Fatalf("Direct.send to an away client: %v, %v", ok, err)
	}
	again := nodes[1].Resume(t, ann.Session)
	if !again.Resumed || again.ID != ann.ID || again.ServerID != nodes[1].Server.ID() {
		t.Fatalf("resume on node b: %+v", again)
	}
	var dm DirectMessage
	again.ExpectInto("Direct.message", &dm)
	if want := (DirectMessage{From: bob.ID, Node: nodes[1].Server.ID(), Text: "while you were away"}); dm != want {
		t.Fatalf("after the resume ann got %+v, want %+v", dm, want)
	}
}

// TestServes runs the whole program as a node on Redis: the page,
// rocket.js and WebSockets at /ws, then a graceful stop; and it fails
// clearly when Redis cannot be reached.
func TestServes(t *testing.T) {
	rs := redistest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, rs.URL, quiet) }()
	base := "http://" + ln.Addr().String()

	for path, want := range map[string]string{"/": `rocket.request("Direct.send"`, "/rocket.js": "export class Rocket"} {
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

	cancel()
	if _, _, err := ws.Read(dctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after the stop, read: %v; want close code 1001", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15s of its context's end")
	}

	// A Redis that is not there: run says which setting is wrong.
	rs.Stop(t)
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer rcancel()
	if err := run(rctx, ln, rs.URL, quiet); err == nil || !strings.Contains(err.Error(), "ROCKET_REDIS_URL "+rs.URL) {
		t.Fatalf("run without Redis: %v, want an error naming ROCKET_REDIS_URL", err)
	}
}
