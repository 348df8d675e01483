package rocket_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/internal/redistest"
)

// handOverBound is the pending-output bound of the hand-over tests: the 128
// messages of 4 KB a resume gets are eight times it.
const handOverBound = 64 << 10

// TestResumeMailOverPendingBound: a resume whose mail is far over
// MaxPendingBytes (128 messages of 4 KB, about 512 KiB, with a bound of 64
// KiB) gets all of it, in order, handed over as it reads, round after
// round, with and without acknowledged delivery, on both brokers; nothing
// is counted slow or dropped. Before, the resume was dropped as slow and
// the mail not yet written lost.
func TestResumeMailOverPendingBound(t *testing.T) {
	for _, acks := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory/acks=%v", acks), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			n := startNode(t, rocket.Config{MaxPendingBytes: handOverBound, Metrics: reg}, nil)
			testResumeMailOverBound(t, n, reg, acks)
		})
		t.Run(fmt.Sprintf("redis/acks=%v", acks), func(t *testing.T) {
			rs := redistest.Start(t)
			reg := prometheus.NewRegistry()
			n := startRedisNode(t, rs, clusterPrefix(t), rocket.Config{MaxPendingBytes: handOverBound, Metrics: reg})
			testResumeMailOverBound(t, n, reg, acks)
		})
	}
}

// bigMessage is message i of a hand-over test, about 4 KB.
func bigMessage(i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 4<<10)))
}

func testResumeMailOverBound(t *testing.T, n *node, reg *prometheus.Registry, acks bool) {
	query := ""
	if acks {
		query = "?acks=1"
	}
	c := awayClient(t, n, query)
	id, session := c.welcome.Client, c.welcome.Session
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const rounds, perRound = 3, 128
	next, seq := 0, uint64(0)
	for round := range rounds {
		first := next
		for range perRound {
			if err := n.srv.Send(ctx, id, bigMessage(next)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			next++
		}
		q := query
		if acks {
			q += fmt.Sprintf("&ack=%d", seq)
		}
		r := dial(t, n.url+q, session)
		if !r.welcome.Resumed {
			t.Fatalf("round %d: not resumed", round)
		}
		for want := first; want < next; want++ {
			var m struct {
				N   *int   `json:"n"`
				Seq uint64 `json:"seq"`
				Msg *struct {
					N *int `json:"n"`
				} `json:"message"`
			}
			r.readInto(&m)
			got := m.N
			if acks {
				if m.Msg == nil || m.Seq != seq+1 {
					t.Fatalf("round %d: want numbered message %d, got seq %d", round, seq+1, m.Seq)
				}
				seq = m.Seq
				got = m.Msg.N
			}
			if got == nil || *got != want {
				t.Fatalf("round %d: message %v, want %d", round, got, want)
			}
		}
		if acks {
			r.send(map[string]uint64{"ack": seq})
		}
		// The connection is still served: an echo comes back.
		var echoed int
		r.call("Echo.echo", 7, &echoed)
		_ = r.ws.CloseNow()
		waitGone(t, n, id)
	}
	if got := metricValue(t, reg, "rocket_slow_client_disconnects_total"); got != 0 {
		t.Errorf("rocket_slow_client_disconnects_total = %v, want 0", got)
	}
}

// dialSmallWindow dials url with a receive buffer of a few KB and returns
// the connection unread: what the server writes piles up on its side.
func dialSmallWindow(t *testing.T, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(16 << 20)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

// TestSlowDisconnectCountedOnce: a client that reads nothing of a resume's
// mail (8 MiB) far over MaxPendingBytes is disconnected as slow once the transport
// holds the bound and it takes nothing for PongTimeout, and
// rocket_slow_client_disconnects_total grows by one for it (it grew by two:
// once when setup found it slow, once more when the transport reported the
// same close). With acknowledged delivery, the next resume gets all the
// mail; without, it gets what was not handed to the transport, in order.
func TestSlowDisconnectCountedOnce(t *testing.T) {
	for _, acks := range []bool{false, true} {
		t.Run(fmt.Sprintf("acks=%v", acks), func(t *testing.T) {
			testSlowHandOver(t, acks)
		})
	}
}

func testSlowHandOver(t *testing.T, acks bool) {
	reg := prometheus.NewRegistry()
	var (
		mu      sync.Mutex
		reasons = map[string]int{}
	)
	cfg := rocket.Config{
		MaxPendingBytes: handOverBound, Metrics: reg,
		PingInterval: time.Second, PongTimeout: 500 * time.Millisecond,
		// Mail over what the kernel's socket buffers take (up to 4 MiB
		// on the server's side), so that the transport holds the rest.
		MailboxSize: 4096, MailboxBytes: 16 << 20,
	}
	n := startNode(t, cfg, func(s *rocket.Server) {
		s.OnDisconnect(func(e *rocket.DisconnectEvent) {
			mu.Lock()
			reasons[e.Reason]++
			mu.Unlock()
		})
	})
	query := ""
	if acks {
		query = "?acks=1"
	}
	c := awayClient(t, n, query)
	id, session := c.welcome.Client, c.welcome.Session
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const total = 2048
	for i := range total {
		if err := n.srv.Send(ctx, id, bigMessage(i)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	sep := "?"
	if acks {
		sep = "&"
	}
	// Reads nothing: the hand-over stalls with the bound buffered.
	_ = dialSmallWindow(t, ctx, n.url+query+sep+"session="+session)
	eventually(t, func() error {
		mu.Lock()
		defer mu.Unlock()
		if reasons["slow client"] == 0 {
			return notYet("not disconnected as slow yet (reasons %v)", reasons)
		}
		return nil
	})
	waitGone(t, n, id)
	if got := metricValue(t, reg, "rocket_slow_client_disconnects_total"); got != 1 {
		t.Fatalf("rocket_slow_client_disconnects_total = %v after one slow disconnect, want 1", got)
	}

	r := dial(t, n.url+query, session)
	if !r.welcome.Resumed {
		t.Fatal("not resumed after the slow disconnect")
	}
	// The marker ends the mail.
	if err := n.srv.Send(ctx, id, json.RawMessage(`{"n":-1}`)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var got []int
	for {
		var m struct {
			N   *int `json:"n"`
			Msg *struct {
				N *int `json:"n"`
			} `json:"message"`
		}
		r.readInto(&m)
		v := m.N
		if m.Msg != nil {
			v = m.Msg.N
		}
		if v == nil {
			t.Fatalf("unexpected frame %+v", m)
		}
		if *v == -1 {
			break
		}
		got = append(got, *v)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("resumed mail out of order or with a gap: %v", got)
		}
	}
	if acks && (len(got) != total || got[0] != 0) {
		t.Fatalf("acknowledged delivery: the next resume got %d messages from %v, want all %d", len(got), got[:min(1, len(got))], total)
	}
	if !acks && (len(got) == 0 || got[len(got)-1] != total-1) {
		t.Fatalf("the next resume got %d messages, want the last ones up to %d", len(got), total-1)
	}
	t.Logf("the next resume got %d of %d messages", len(got), total)
}
