package rocket_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/internal/redistest"
)

// TestConcurrentResumesLeaveOneConnection: connections resuming one session
// at the same moment on one node end with one of them open and recorded,
// the others closed; none stays open beside it under the same id.
func TestConcurrentResumesLeaveOneConnection(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	first := dial(t, n.url, "")
	session := first.welcome.Session
	first.ws.CloseNow()
	waitGone(t, n, first.welcome.Client)

	const racers = 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	urls := make([]string, racers)
	for i := range urls {
		urls[i] = n.url
	}
	conns := resumeAtOnce(t, ctx, session, urls...)
	defer func() {
		for _, ws := range conns {
			if ws != nil {
				ws.CloseNow()
			}
		}
	}()
	// Each connection either answers an echo or is closed; exactly one
	// answers.
	open := 0
	for _, ws := range conns {
		if ws == nil {
			continue
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ref":1,"Echo.echo":1}`)); err != nil {
			continue
		}
		answered := false
		for {
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			_, data, err := ws.Read(rctx)
			rcancel()
			if err != nil {
				break
			}
			if string(data) == `{"ref":1,"action":"Echo.echo","result":1}` {
				answered = true
				break
			}
		}
		if answered {
			open++
		}
	}
	if open != 1 {
		t.Fatalf("%d of %d racing resumes are open and answer, want 1", open, racers)
	}
	if c := n.srv.ClientCount(); c != 1 {
		t.Fatalf("ClientCount = %d, want 1", c)
	}
}

// TestRacingResumesLoseNoMail: two connections resume a session holding 20
// messages at the same moment, on one node or one on each of two, 25 times
// over; one of them is closed ("replaced by a newer connection"), and
// between the two of them (and the next resume, for what the closed one
// left in the mailbox) every message arrives once, each connection's in
// order. Before, the connection closed during its welcome dropped the mail
// it had taken; on two nodes, both connections stayed open.
func TestRacingResumesLoseNoMail(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		n := startNode(t, rocket.Config{}, nil)
		testRacingResumes(t, n, n)
	})
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		n := startRedisNode(t, rs, clusterPrefix(t), rocket.Config{})
		testRacingResumes(t, n, n)
	})
	t.Run("memory/two-nodes", func(t *testing.T) {
		b := memory.New(memory.Config{})
		t.Cleanup(func() { _ = b.Close() })
		testRacingResumes(t, startNode(t, rocket.Config{Broker: b}, nil), startNode(t, rocket.Config{Broker: b}, nil))
	})
	t.Run("redis/two-nodes", func(t *testing.T) {
		rs := redistest.Start(t)
		prefix := clusterPrefix(t)
		testRacingResumes(t, startRedisNode(t, rs, prefix, rocket.Config{}), startRedisNode(t, rs, prefix, rocket.Config{}))
	})
}

// testRacingResumes races a resume on n and one on other (which may be n).
func testRacingResumes(t *testing.T, n, other *node) {
	nodes := []*node{n}
	if other != n {
		nodes = append(nodes, other)
	}
	first := dial(t, n.url, "")
	id, session := first.welcome.Client, first.welcome.Session
	first.ws.CloseNow()
	waitGone(t, n, id)

	const rounds, perRound = 25, 20
	var mu sync.Mutex         // guards seen: both connections' readers count in it
	seen := make(map[int]int) // message number -> times received
	next := 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// readConn reads messages {"n":i} from ws until it is closed, it
	// has read the marker {"n":-1}, or rctx ends, checking their order.
	readConn := func(rctx context.Context, ws *websocket.Conn) (marker bool) {
		last := -1
		for {
			rctx, rcancel := context.WithTimeout(rctx, wait)
			_, data, err := ws.Read(rctx)
			rcancel()
			if err != nil {
				return false
			}
			var m struct {
				N *int `json:"n"`
			}
			if json.Unmarshal(data, &m) != nil || m.N == nil {
				continue // the welcome
			}
			if *m.N == -1 {
				return true
			}
			if *m.N <= last {
				t.Errorf("message %d after %d on one connection", *m.N, last)
			}
			last = *m.N
			mu.Lock()
			seen[*m.N]++
			mu.Unlock()
		}
	}
	for range rounds {
		for range perRound {
			if err := n.srv.Send(ctx, id, map[string]int{"n": next}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			next++
		}
		conns := resumeAtOnce(t, ctx, session, n.url, other.url)
		if t.Failed() {
			return
		}
		// Once one connection is left, the marker follows the mail to it.
		eventually(t, func() error {
			held, count := 0, 0
			for _, nd := range nodes {
				if nd.srv.Client(id) != nil {
					held++
				}
				count += nd.srv.ClientCount()
			}
			if held != 1 || count != 1 {
				return notYet("client held by %d nodes, %d clients in all", held, count)
			}
			return nil
		})
		var markers int
		var rwg sync.WaitGroup
		// Once the marker is read, the other connection has had what it
		// gets (it was replaced before the winner resumed) but may stay
		// open without the marker: the first connection got the mail and
		// the marker before the second replaced it.
		roundCtx, roundCancel := context.WithCancel(ctx)
		for _, ws := range conns {
			rwg.Go(func() {
				got := readConn(roundCtx, ws)
				mu.Lock()
				if got {
					markers++
					time.AfterFunc(300*time.Millisecond, roundCancel)
				}
				mu.Unlock()
			})
		}
		// The marker is sent at once: the replaced connection's
		// leftovers went back to the head of the mailbox as it went away,
		// so the marker comes after them.
		if err := n.srv.Send(ctx, id, map[string]int{"n": -1}); err != nil {
			t.Fatalf("Send marker: %v", err)
		}
		// The winner stops at the marker; the loser at its close.
		done := make(chan struct{})
		go func() { rwg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * wait):
			t.Fatal("connections still reading")
		}
		roundCancel()
		for _, ws := range conns {
			ws.CloseNow()
		}
		if markers != 1 {
			t.Fatalf("marker read by %d connections, want 1", markers)
		}
		for _, nd := range nodes {
			waitGone(t, nd, id)
		}
	}
	// What a replaced connection left is in the mailbox: a last resume
	// gets it.
	last := dial(t, n.url, session)
	if err := n.srv.Send(ctx, id, map[string]int{"n": -1}); err != nil {
		t.Fatalf("Send marker: %v", err)
	}
	if !readConn(ctx, last.ws) {
		t.Fatal("the last resume did not get the marker")
	}
	last.ws.CloseNow()
	lost, dup := 0, 0
	for i := range next {
		switch seen[i] {
		case 0:
			if lost < 30 {
				t.Logf("lost %d", i)
			}
			lost++
		case 1:
		default:
			dup++
		}
	}
	if lost > 0 || dup > 0 {
		t.Fatalf("%d of %d messages lost, %d received twice", lost, next, dup)
	}
}

// resumeAtOnce dials one connection to each of urls resuming session, at
// the same moment; a failed dial is a test error and leaves a nil
// connection.
func resumeAtOnce(t *testing.T, ctx context.Context, session string, urls ...string) []*websocket.Conn {
	conns := make([]*websocket.Conn, len(urls))
	var wg sync.WaitGroup
	for i, url := range urls {
		wg.Go(func() {
			ws, _, err := websocket.Dial(ctx, url+"?session="+session, nil)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			conns[i] = ws
		})
	}
	wg.Wait()
	return conns
}

// TestTwoNodeResumeHandBack: a resume on one node is handing over a large
// mailbox to a client that reads nothing when a second resume of the
// session on another node takes it. The first connection is closed, what
// it had not written goes back to the head of the mailbox, and the second
// connection takes it from there before anything sent to it after its
// welcome: the marker sent then comes last, after the older mail, and
// between the two connections and a last resume nothing written to the
// second is missing. Before, the older mail came after the marker, pushed
// through the second node's inbox.
func TestTwoNodeResumeHandBack(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		b := memory.New(memory.Config{MailboxSize: 4096, MailboxBytes: 16 << 20})
		t.Cleanup(func() { _ = b.Close() })
		cfg := handBackConfig(b)
		testHandBack(t, startNode(t, cfg, nil), startNode(t, cfg, nil))
	})
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		prefix := clusterPrefix(t)
		cfg := handBackConfig(nil)
		testHandBack(t, startRedisNode(t, rs, prefix, cfg), startRedisNode(t, rs, prefix, cfg))
	})
}

func handBackConfig(b *memory.Broker) rocket.Config {
	cfg := rocket.Config{MaxPendingBytes: 64 << 10, PingInterval: time.Minute, PongTimeout: time.Minute, MailboxSize: 4096, MailboxBytes: 16 << 20}
	if b != nil {
		cfg.Broker = b
	}
	return cfg
}

func testHandBack(t *testing.T, n1, n2 *node) {
	c := awayClient(t, n1, "")
	id, session := c.welcome.Client, c.welcome.Session
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const total = 1024
	for i := range total {
		if err := n1.srv.Send(ctx, id, bigMessage(i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = dialSmallWindow(t, ctx, n1.url+"?session="+session) // reads nothing
	eventually(t, func() error {
		if n1.srv.Client(id) == nil {
			return notYet("not resumed on n1")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the hand-over stalls on the bound
	w := dial(t, n2.url, session)
	if err := n2.srv.Send(ctx, id, json.RawMessage(`{"n":-1}`)); err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		var m struct{ N int }
		w.readInto(&m)
		if m.N == -1 {
			break
		}
		got = append(got, m.N)
	}
	if len(got) == 0 {
		t.Fatal("the second connection got none of the mail the first had not written")
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("the second connection's mail is out of order or has a gap at %d: %d after %d", i, got[i], got[i-1])
		}
	}
	if got[len(got)-1] != total-1 {
		t.Fatalf("the second connection's mail ends at %d, want %d (the marker came before the rest)", got[len(got)-1], total-1)
	}
	t.Logf("the first connection took %d messages to its transport, the second got the other %d, then the marker", got[0], len(got))
}
