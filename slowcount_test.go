package rocket_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
)

// TestSlowDisconnectCountedOnce: a client whose resumed mail is over
// MaxPendingBytes is disconnected as slow while it is being welcomed, and
// rocket_slow_client_disconnects_total grows by one for it (it grew by two:
// once when setup found it slow, once more when the transport reported the
// same close as ErrSlow).
func TestSlowDisconnectCountedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	var (
		mu      sync.Mutex
		reasons = map[string]int{}
		left    = make(chan struct{}, 64)
	)
	n := startNode(t, rocket.Config{MaxPendingBytes: 64 << 10, Metrics: reg}, func(s *rocket.Server) {
		s.OnDisconnect(func(e *rocket.DisconnectEvent) {
			mu.Lock()
			reasons[e.Reason]++
			mu.Unlock()
			left <- struct{}{}
		})
	})
	c := dial(t, n.url, "")
	id, session := c.welcome.Client, c.welcome.Session
	payload := json.RawMessage(`{"Big.push":"` + strings.Repeat("x", 4<<10) + `"}`)
	awaitLeft := func() {
		t.Helper()
		select {
		case <-left:
		case <-time.After(wait):
			t.Fatal("no disconnect")
		}
	}
	_ = c.ws.CloseNow()
	awaitLeft()

	// Each round mails 128 messages of 4 KB (512 KiB, eight times the
	// bound) to the away client and resumes it; the welcome loop writes
	// them faster than the output is flushed, so the resume is nearly
	// always dropped as slow (its session stays: the next round resumes
	// it again).
	const rounds = 10
	for range rounds {
		for range 128 {
			if err := n.srv.Send(context.Background(), id, payload); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		ws, _, err := websocket.Dial(ctx, n.url+"?session="+session, nil)
		if err != nil {
			cancel()
			t.Fatalf("resume: %v", err)
		}
		ws.SetReadLimit(16 << 20)
		// Read until the server ends the connection, or the mail was
		// all delivered and the client closes.
		for got := 0; got < 129; got++ {
			if _, _, err := ws.Read(ctx); err != nil {
				break
			}
		}
		_ = ws.CloseNow()
		cancel()
		awaitLeft()
	}
	mu.Lock()
	slow := reasons["slow client"]
	mu.Unlock()
	if slow == 0 {
		t.Fatalf("no resume of %d was dropped as slow (reasons %v): the test did not reach the case", rounds, reasons)
	}
	if got := metricValue(t, reg, "rocket_slow_client_disconnects_total"); got != float64(slow) {
		t.Fatalf("rocket_slow_client_disconnects_total = %v after %d slow disconnects, want %d", got, slow, slow)
	}
	t.Logf("%d of %d resumes dropped as slow, each counted once", slow, rounds)
}
