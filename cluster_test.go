package rocket_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/internal/redistest"
)

// startRedisNode starts a server of the cluster on rs whose keys start
// with prefix.
func startRedisNode(t *testing.T, rs *redistest.Server, prefix string, cfg rocket.Config) *node {
	t.Helper()
	b, err := redis.New(context.Background(), redis.Config{
		URL:               rs.URL,
		Prefix:            prefix,
		MailboxSize:       cfg.MailboxSize,
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

func TestClusterChatAndWhisper(t *testing.T) {
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	var nodes []*node
	for range 3 {
		nodes = append(nodes, startRedisNode(t, rs, prefix, rocket.Config{CommandRate: -1}))
	}
	ids := map[string]bool{}
	var clients []*client
	for i, n := range nodes {
		if ids[n.srv.ID()] {
			t.Fatalf("server id %s used twice", n.srv.ID())
		}
		ids[n.srv.ID()] = true
		c := dial(t, n.url, "")
		if c.welcome.Server != n.srv.ID() {
			t.Fatalf("welcome %+v from node %s", c.welcome, n.srv.ID())
		}
		c.call("Chat.join", map[string]string{"room": "lobby", "name": fmt.Sprint("member", i)}, nil)
		clients = append(clients, c)
	}
	// Every member, on every node, gets every message, in order, once.
	const says = 50
	for i := range says {
		clients[i%3].say("lobby", fmt.Sprint(i))
	}
	for ci, c := range clients {
		got := map[string]int{}
		var order []string
		for range says {
			f := c.next()
			if f.Message == nil {
				t.Fatalf("client %d got %+v, want a chat message", ci, f)
			}
			got[f.Message.Text]++
			order = append(order, f.Message.From+":"+f.Message.Text)
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
		a.send(map[string]any{"Chat.whisper": map[string]string{"to": c.welcome.Client, "text": fmt.Sprint(i)}})
	}
	for i := range whispers {
		f := c.next()
		if f.Whisper == nil || f.Whisper.Text != fmt.Sprint(i) || f.Whisper.From != a.welcome.Client {
			t.Fatalf("whisper %d: got %+v", i, f)
		}
	}
	// Server.Send from a node reaches a client on another node.
	if err := nodes[1].srv.Send(context.Background(), c.welcome.Client, rocket.Push{Name: "Note.x", Value: 1}); err != nil {
		t.Fatalf("Send across nodes: %v", err)
	}
	if data := c.read(); string(data) != `{"Note.x":1}` {
		t.Fatalf("got %s", data)
	}
}

func TestClusterResumeOnAnotherNode(t *testing.T) {
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	n1 := startRedisNode(t, rs, prefix, rocket.Config{CommandRate: -1})
	n2 := startRedisNode(t, rs, prefix, rocket.Config{CommandRate: -1})
	n3 := startRedisNode(t, rs, prefix, rocket.Config{CommandRate: -1})
	ann := dial(t, n1.url, "")
	bob := dial(t, n2.url, "")
	bob.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, func() error {
		if n2.srv.Client(bob.welcome.Client) != nil {
			return notYet("bob still on node 2")
		}
		return nil
	})
	const count = 100
	for i := range count {
		ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": fmt.Sprint(i)}, nil)
	}
	bob2 := dial(t, n3.url, bob.welcome.Session)
	if !bob2.welcome.Resumed || bob2.welcome.Client != bob.welcome.Client || bob2.welcome.Server != n3.srv.ID() {
		t.Fatalf("welcome %+v", bob2.welcome)
	}
	for i := range count {
		if f := bob2.next(); f.Whisper == nil || f.Whisper.Text != fmt.Sprint(i) {
			t.Fatalf("mail %d: got %+v", i, f)
		}
	}
	ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "live"}, nil)
	if f := bob2.next(); f.Whisper == nil || f.Whisper.Text != "live" {
		t.Fatalf("got %+v", f)
	}
}

// TestClusterRedisRestart: Redis stops under traffic and comes back. While
// it is down, local work goes on, cross-node whispers are refused with
// internal_error and the node is not ready; afterwards the nodes recover
// by themselves. Every whisper accepted is delivered exactly once.
func TestClusterRedisRestart(t *testing.T) {
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	n1 := startRedisNode(t, rs, prefix, rocket.Config{CommandRate: -1})
	n2 := startRedisNode(t, rs, prefix, rocket.Config{CommandRate: -1})
	ann := dial(t, n1.url, "")
	bob := dial(t, n2.url, "")
	ann.call("Chat.join", map[string]string{"room": "local", "name": "ann"}, nil)

	// bob counts what he receives in the background.
	var mu sync.Mutex
	received := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			_, data, err := bob.ws.Read(ctx)
			if err != nil {
				return
			}
			var f frame
			if json.Unmarshal(data, &f) == nil && f.Whisper != nil {
				mu.Lock()
				received[f.Whisper.Text]++
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
		f := ann.request("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": text})
		switch {
		case f.Error == nil:
			accepted[text] = true
		case f.Error.Code == rocket.CodeInternal:
			refused++
		default:
			t.Fatalf("whisper %s: %+v", text, f.Error)
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
	ann.call("Echo.echo", "still here", &echoed)
	ann.send(map[string]any{"Chat.say": map[string]string{"room": "local", "text": "local room"}})
	if f := ann.next(); f.Message == nil || f.Message.Text != "local room" {
		t.Fatalf("local room with Redis down: %+v", f)
	}
	ann.expectError(rocket.CodeInternal) // the other nodes could not be told
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	if err := n1.srv.Ready(rctx); err == nil {
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
		return n1.srv.Ready(rctx)
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
