package rocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/internal/demo"
	"github.com/rocket-go/rocket/internal/redistest"
	"github.com/rocket-go/rocket/rockettest"
)

// startRedisNode starts a server of the cluster on rs whose keys start
// with prefix, behind the hand-rolled test client of helpers_test.go
// (dial); startRedisApp is the same with rockettest.
func startRedisNode(t *testing.T, rs *redistest.Server, prefix string, cfg rocket.Config) *node {
	t.Helper()
	b, err := redis.New(context.Background(), redis.Config{
		URL:               rs.URL,
		Prefix:            prefix,
		MailboxSize:       cfg.MailboxSize,
		MailboxBytes:      cfg.MailboxBytes,
		MailboxTTL:        cfg.MailboxTTL,
		HeartbeatInterval: 100 * time.Millisecond,
		Logger:            testLogger(t),
	})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	// Cleanups run last-in first-out: the broker closes after the server.
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	cfg.Broker = b
	return startNode(t, cfg, nil)
}

// clusterPrefix returns a key prefix of the test's own.
func clusterPrefix(t *testing.T) string {
	return "test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
}

// startRedisApp starts a node of the cluster on rs whose keys start with
// prefix, with the demo app and no command rate limit.
func startRedisApp(t *testing.T, rs *redistest.Server, prefix string) *rockettest.App {
	t.Helper()
	// The broker's cleanup is registered first, so it runs after the
	// node's shutdown.
	return startDemoApp(t, rocket.Config{Broker: redisBroker(t, rs, prefix, 100*time.Millisecond), CommandRate: -1})
}

// callOK calls action on c and fails the test on an error.
func callOK(t *testing.T, c *rockettest.Client, action string, args, result any) {
	t.Helper()
	if err := c.Call(action, args, result); err != nil {
		t.Fatalf("client %s: %s: %v", c.ID, action, err)
	}
}

func TestClusterChatAndWhisper(t *testing.T) {
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	var nodes []*rockettest.App
	for range 3 {
		nodes = append(nodes, startRedisApp(t, rs, prefix))
	}
	ids := map[string]bool{}
	var clients []*rockettest.Client
	for i, n := range nodes {
		if ids[n.Server.ID()] {
			t.Fatalf("server id %s used twice", n.Server.ID())
		}
		ids[n.Server.ID()] = true
		c := n.Connect(t)
		if c.ServerID != n.Server.ID() {
			t.Fatalf("client %s welcomed by server %s on node %s", c.ID, c.ServerID, n.Server.ID())
		}
		callOK(t, c, "Chat.join", map[string]string{"room": "lobby", "name": fmt.Sprint("member", i)}, nil)
		clients = append(clients, c)
	}
	// Every member, on every node, gets every message, in order, once.
	const says = 50
	for i := range says {
		clients[i%3].Send("Chat.say", map[string]string{"room": "lobby", "text": fmt.Sprint(i)})
	}
	for ci, c := range clients {
		got := map[string]int{}
		var order []string
		for range says {
			var m demo.Message
			c.ExpectInto("Chat.message", &m)
			got[m.Text]++
			order = append(order, m.From+":"+m.Text)
		}
		for i := range says {
			if got[fmt.Sprint(i)] != 1 {
				t.Fatalf("client %d got message %d %d times (%v)", ci, i, got[fmt.Sprint(i)], order)
			}
		}
	}
	// Whispers cross nodes, in order, none lost or duplicated.
	const whispers = 300
	a, c := clients[0], clients[2]
	for i := range whispers {
		a.Send("Chat.whisper", map[string]string{"to": c.ID, "text": fmt.Sprint(i)})
	}
	for i := range whispers {
		var w demo.Whisper
		c.ExpectInto("Chat.whisper", &w)
		if w.Text != fmt.Sprint(i) || w.From != a.ID {
			t.Fatalf("whisper %d: got %+v", i, w)
		}
	}
	// Server.Send from a node reaches a client on another node.
	if err := nodes[1].Server.Send(context.Background(), c.ID, rocket.Push{Name: "Note.x", Value: 1}); err != nil {
		t.Fatalf("Send across nodes: %v", err)
	}
	if name, value := c.Next(); name != "Note.x" || string(value) != "1" {
		t.Fatalf("got %s %s", name, value)
	}
}

func TestClusterResumeOnAnotherNode(t *testing.T) {
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	n1 := startRedisApp(t, rs, prefix)
	n2 := startRedisApp(t, rs, prefix)
	n3 := startRedisApp(t, rs, prefix)
	ann := n1.Connect(t)
	bob := n2.Connect(t)
	bob.Close() // returns once node 2 has let bob go
	const count = 100
	for i := range count {
		callOK(t, ann, "Chat.whisper", map[string]string{"to": bob.ID, "text": fmt.Sprint(i)}, nil)
	}
	bob2 := n3.Resume(t, bob.Session)
	if !bob2.Resumed || bob2.ID != bob.ID || bob2.ServerID != n3.Server.ID() {
		t.Fatalf("welcome: client %s by server %s, resumed %v", bob2.ID, bob2.ServerID, bob2.Resumed)
	}
	for i := range count {
		var w demo.Whisper
		bob2.ExpectInto("Chat.whisper", &w)
		if w.Text != fmt.Sprint(i) {
			t.Fatalf("mail %d: got %+v", i, w)
		}
	}
	callOK(t, ann, "Chat.whisper", map[string]string{"to": bob.ID, "text": "live"}, nil)
	var w demo.Whisper
	bob2.ExpectInto("Chat.whisper", &w)
	if w.Text != "live" {
		t.Fatalf("got %+v", w)
	}
}

// TestClusterRedisRestart: Redis stops under traffic and comes back. While
// it is down, local work goes on, cross-node whispers are refused with
// internal_error and the node is not ready; afterwards the nodes recover
// by themselves. Every whisper accepted is delivered exactly once.
// The receiver either acknowledges its messages or not.
func TestClusterRedisRestart(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testClusterRedisRestart(t, false) })
	t.Run("acks", func(t *testing.T) { testClusterRedisRestart(t, true) })
}

func testClusterRedisRestart(t *testing.T, acks bool) {
	var opts []rockettest.DialOption
	if acks {
		opts = append(opts, rockettest.Acks(0))
	}
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	n1 := startRedisApp(t, rs, prefix)
	n2 := startRedisApp(t, rs, prefix)
	ann := n1.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, wait)
	bob, err := n2.Dial(dctx, opts...) // a Conn, to read from another goroutine; n2 closes it
	dcancel()
	if err != nil {
		t.Fatal(err)
	}
	if bob.Acks != acks {
		t.Fatalf("bob's welcome says acks %v, want %v", bob.Acks, acks)
	}
	callOK(t, ann, "Chat.join", map[string]string{"room": "local", "name": "ann"}, nil)

	// bob counts what he receives in the background.
	var mu sync.Mutex
	received := map[string]int{}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			name, value, err := bob.Next(ctx)
			if err != nil {
				return
			}
			var w demo.Whisper
			if name == "Chat.whisper" && json.Unmarshal(value, &w) == nil {
				mu.Lock()
				received[w.Text]++
				mu.Unlock()
			}
		}
	}()

	accepted := map[string]bool{}
	refused := 0
	seq := 0
	whisper := func() {
		seq++
		text := fmt.Sprint(seq)
		err := ann.Call("Chat.whisper", map[string]string{"to": bob.ID, "text": text}, nil)
		var re *rocket.Error
		switch {
		case err == nil:
			accepted[text] = true
		case errors.As(err, &re) && re.Code == rocket.CodeInternal:
			refused++
		default:
			t.Fatalf("whisper %s: %v", text, err)
		}
	}
	for range 50 {
		whisper()
	}
	rs.Stop(t)
	// While Redis is down: whispers are refused, echo and the local room
	// work, the node says it is not ready.
	for range 20 {
		whisper()
	}
	var echoed string
	callOK(t, ann, "Echo.echo", "still here", &echoed)
	ann.Send("Chat.say", map[string]string{"room": "local", "text": "local room"})
	var m demo.Message
	ann.ExpectInto("Chat.message", &m)
	if m.Text != "local room" {
		t.Fatalf("local room with Redis down: %+v", m)
	}
	// The other nodes could not be told: a frame-level error.
	var e struct{ Code string }
	if name, value := ann.Next(); name != "error" || json.Unmarshal(value, &e) != nil || e.Code != rocket.CodeInternal {
		t.Fatalf("got %s %s, want error %q", name, value, rocket.CodeInternal)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	if err := n1.Server.Ready(rctx); err == nil {
		t.Fatal("node ready with Redis down")
	}
	rcancel()
	if refused == 0 {
		t.Fatal("no whisper was refused while Redis was down")
	}

	rs.Start(t)
	eventually(t, func() error {
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		defer rcancel()
		return n1.Server.Ready(rctx)
	})
	// Once the nodes have recovered, whispers go through again.
	eventually(t, func() error {
		before := len(accepted)
		whisper()
		if len(accepted) == before {
			return notYet("whisper still refused")
		}
		return nil
	})
	for range 50 {
		whisper()
	}
	eventually(t, func() error {
		mu.Lock()
		defer mu.Unlock()
		for text := range accepted {
			if received[text] == 0 {
				return notYet("whisper %s accepted but not received (%d of %d)", text, len(received), len(accepted))
			}
		}
		return nil
	})
	mu.Lock()
	for text, n := range received {
		if n != 1 || !accepted[text] {
			t.Errorf("whisper %s received %d times, accepted %v", text, n, accepted[text])
		}
	}
	mu.Unlock()
	t.Logf("%d whispers accepted and delivered once each, %d refused while Redis was down", len(accepted), refused)
	cancel()
	<-readDone
}
