package rocket_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/internal/redistest"
)

// Resumes as an attacker, or an unlucky client, makes them.

// TestHostileResumeLoop: one client resumes its own session over and over
// from 8 goroutines, closing each connection as soon as it is upgraded.
// The setups stay bounded by the connection caps (a connection keeps its
// place until its setup is over, and one closed meanwhile resumes
// nothing), and the owner can still resume at the end. Before, each setup
// waited for the previous one's and they piled up: 17,169 goroutines in 5
// s on Redis with MaxConnections 50.
func TestHostileResumeLoop(t *testing.T) {
	cfg := rocket.Config{MaxConnections: 50, MaxConnectionsPerIP: 20}
	t.Run("memory", func(t *testing.T) { testResumeLoop(t, startNode(t, cfg, nil)) })
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		testResumeLoop(t, startRedisNode(t, rs, clusterPrefix(t), cfg))
	})
}

func testResumeLoop(t *testing.T, n *node) {
	c := awayClient(t, n, "")
	id, session := c.welcome.Client, c.welcome.Session
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var dials atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ws, _, err := websocket.Dial(ctx, n.url+"?session="+session, nil)
				if err != nil {
					time.Sleep(time.Millisecond) // refused by a cap
					continue
				}
				dials.Add(1)
				_ = ws.CloseNow()
			}
		})
	}
	peak := 0
	for start := time.Now(); time.Since(start) < 2*time.Second; {
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, runtime.NumGoroutine())
	}
	close(stop)
	wg.Wait()
	t.Logf("%d resumes in 2 s; peak goroutines %d (base %d)", dials.Load(), peak, base)
	if peak > base+300 {
		t.Errorf("goroutines grew to %d (base %d) with at most 50 connections", peak, base)
	}
	// The setups of the loop's last connections end (their sockets are
	// closed); then the owner resumes its session.
	eventually(t, func() error {
		if g := runtime.NumGoroutine(); g > base+20 {
			return notYet("%d goroutines, base %d", g, base)
		}
		return nil
	})
	waitGone(t, n, id)
	r := dial(t, n.url, session)
	if !r.welcome.Resumed || r.welcome.Client != id {
		t.Fatalf("the owner's resume after the loop: %+v", r.welcome)
	}
}

// TestHostileSessionSquat: an attacker who knows a client's id (it is
// public: whispers carry it) dials ?session=<id>.<made-up secret> in a
// loop while the client resumes with its real token again and again:
// every resume of the client gets its session, and none is closed as
// "replaced". Before, a resume that came while an attacker's connection
// was set up under the id was given a new client (157 of 200 on Redis) or
// closed with 1008.
func TestHostileSessionSquat(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testSessionSquat(t, startNode(t, rocket.Config{}, nil)) })
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		testSessionSquat(t, startRedisNode(t, rs, clusterPrefix(t), rocket.Config{}))
	})
}

func testSessionSquat(t *testing.T, n *node) {
	v := dial(t, n.url, "")
	id, session := v.welcome.Client, v.welcome.Session
	_ = v.ws.CloseNow()
	waitGone(t, n, id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ws, _, err := websocket.Dial(ctx, n.url+"?session="+id+".AAAAAAAAAAAAAAAAAAAAAAAA", nil)
				if err != nil {
					return
				}
				_ = ws.CloseNow()
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	const rounds = 30
	for r := range rounds {
		ws, _, err := websocket.Dial(ctx, n.url+"?session="+session, nil)
		if err != nil {
			t.Fatalf("round %d: dial: %v", r, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, wait)
		_, data, err := ws.Read(wctx)
		wcancel()
		if err != nil {
			t.Fatalf("round %d: the client's resume got no welcome: %v", r, err)
		}
		var w struct {
			Welcome welcome `json:"welcome"`
		}
		if err := json.Unmarshal(data, &w); err != nil || !w.Welcome.Resumed || w.Welcome.Client != id {
			t.Fatalf("round %d: the client's resume was not resumed: %s", r, data)
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ref":1,"Echo.echo":1}`)); err != nil {
			t.Fatalf("round %d: write: %v", r, err)
		}
		rctx, rcancel := context.WithTimeout(ctx, wait)
		_, data, err = ws.Read(rctx)
		rcancel()
		if err != nil || !strings.Contains(string(data), `"result":1`) {
			t.Fatalf("round %d: the resumed client's echo: %s, %v", r, data, err)
		}
		_ = ws.CloseNow()
		waitGone(t, n, id)
	}
}

// TestHandOverSteadyReader: a client that reads its resumed mail steadily,
// but slower than the node writes it (a small receive window and a short
// pause every few messages), gets all of it in order: the hand-over never
// takes the transport over its bound, frame headers included. Before, the
// header was not counted and the client was dropped as slow after 2,094
// to 7,999 of 20,000 small messages.
func TestHandOverSteadyReader(t *testing.T) {
	for _, tc := range []struct {
		name           string
		every          int
		minSize, sizes int
	}{
		{"small frames", 8, 40, 200},
		{"medium frames", 2, 400, 1200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			// Pings every 100 ms go out behind the data the kernel
			// holds; the pong timeout leaves the slow reader (under the
			// race detector, too) time to answer them.
			n := startNode(t, rocket.Config{
				MaxPendingBytes: 16 << 10, Metrics: reg,
				PingInterval: 100 * time.Millisecond, PongTimeout: 30 * time.Second,
				MailboxSize: 20000, MailboxBytes: 8 << 20,
			}, nil)
			c := awayClient(t, n, "")
			id, session := c.welcome.Client, c.welcome.Session
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			total, size := 0, 0
			for ; size < 2<<20 && total < 20000; total++ {
				m := json.RawMessage(fmt.Sprintf(`{"n":%d,"p":"%s"}`, total, strings.Repeat("y", tc.minSize+(total*7919)%tc.sizes)))
				if err := n.srv.Send(ctx, id, m); err != nil {
					t.Fatalf("Send: %v", err)
				}
				size += len(m)
			}
			ws := dialSmallWindow(t, ctx, n.url+"?session="+session)
			for got := 0; got < total; {
				_, data, err := ws.Read(ctx)
				if err != nil {
					t.Fatalf("read %d of %d messages, then: %v (slow disconnects %v)", got, total, err,
						metricValue(t, reg, "rocket_slow_client_disconnects_total"))
				}
				if strings.HasPrefix(string(data), `{"welcome"`) {
					continue
				}
				var m struct{ N int }
				if err := json.Unmarshal(data, &m); err != nil || m.N != got {
					t.Fatalf("message %s, want number %d", data[:min(len(data), 20)], got)
				}
				got++
				if got%tc.every == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
			if got := metricValue(t, reg, "rocket_slow_client_disconnects_total"); got != 0 {
				t.Errorf("rocket_slow_client_disconnects_total = %v for a client that read everything", got)
			}
		})
	}
}

// TestResumeAckValues: a resume's ?ack= that is not a message number
// (garbage, negative, overflowing 64 bits) counts as 0, so every kept
// message comes again; before, an overflowing number acknowledged all of
// them. An ack during a hand-over for a number not yet written is refused
// with bad_frame and drops nothing.
func TestResumeAckValues(t *testing.T) {
	n := startNode(t, rocket.Config{MaxPendingBytes: 16 << 10}, nil)
	c := awayClient(t, n, "?acks=1")
	id, session := c.welcome.Client, c.welcome.Session
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if err := n.srv.Send(ctx, id, json.RawMessage(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, ack := range []string{"abc", "-1", "1e3", "99999999999999999999", strings.Repeat("9", 300)} {
		r := dial(t, n.url+"?acks=1&ack="+ack, session)
		var f struct{ Seq uint64 }
		r.readInto(&f)
		if f.Seq != 1 {
			t.Fatalf("ack=%.25s: first kept message %d, want 1 (nothing acknowledged)", ack, f.Seq)
		}
		_ = r.ws.CloseNow()
		waitGone(t, n, id)
	}

	// 100 messages of 4 KB with a bound of 16 KiB: the hand-over waits
	// for the client, who acknowledges them all at once before reading.
	for i := range 100 {
		if err := n.srv.Send(ctx, id, json.RawMessage(fmt.Sprintf(`{"n":%d,"p":"%s"}`, i, strings.Repeat("a", 4000)))); err != nil {
			t.Fatal(err)
		}
	}
	ws := dialSmallWindow(t, ctx, n.url+"?acks=1&session="+session)
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ack":103}`)); err != nil {
		t.Fatal(err)
	}
	refused := false
	for range 200 {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), `"bad_frame"`) {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("an ack for numbers not written yet was not refused")
	}
	_ = ws.CloseNow()
	waitGone(t, n, id)
	r := dial(t, n.url+"?acks=1&ack=0", session)
	var f struct{ Seq uint64 }
	r.readInto(&f)
	if f.Seq != 1 {
		t.Fatalf("after the refused ack, the next resume starts at %d, want 1", f.Seq)
	}
}

// TestLargestMessageReachesAckedClient: with the default bounds, a message
// as large as the mailbox takes (MailboxBytes, 1 MiB) reaches a client that
// acknowledges, although its numbered frame is larger than
// MaxPendingBytes (also 1 MiB): the transport takes one frame over the
// bound when nothing else is pending. Before, such a client was dropped
// as slow on every resume, the message kept and never received.
func TestLargestMessageReachesAckedClient(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	c := awayClient(t, n, "?acks=1")
	id, session := c.welcome.Client, c.welcome.Session
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	msg := json.RawMessage(`"` + strings.Repeat("x", rocket.DefaultConfig().MailboxBytes-2) + `"`)
	if err := n.srv.Send(ctx, id, msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := dial(t, n.url+"?acks=1", session)
	var f struct {
		Seq     uint64
		Message string
	}
	r.readInto(&f)
	if f.Seq != 1 || len(f.Message) != len(msg)-2 {
		t.Fatalf("got seq %d with %d bytes, want seq 1 with %d", f.Seq, len(f.Message), len(msg)-2)
	}
}
