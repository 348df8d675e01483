package rocket_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
)

// TestBoundDropsCounted: every bound on the delivery path that drops a
// message counts it: the mailbox's count bound and its age bound here, its
// bytes bound in TestMailboxBytes, and the pending-output bound of a
// client that does not read (rocket_messages_dropped_total).
func TestBoundDropsCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("mailbox size", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := startNode(t, rocket.Config{MailboxSize: 3, Metrics: reg}, nil)
		c := awayClient(t, n, "")
		id, session := c.welcome.Client, c.welcome.Session
		for i := range 5 {
			if err := n.srv.Send(ctx, id, map[string]int{"n": i}); err != nil {
				t.Fatal(err)
			}
		}
		if got := metricValue(t, reg, "rocket_mailbox_dropped_total"); got != 2 {
			t.Fatalf("rocket_mailbox_dropped_total = %v after 5 messages to a mailbox of 3, want 2", got)
		}
		back := dial(t, n.url, session)
		for want := 2; want < 5; want++ {
			var m struct{ N int }
			back.readInto(&m)
			if m.N != want {
				t.Fatalf("kept message %d, want %d (the oldest are dropped)", m.N, want)
			}
		}
	})
	t.Run("mailbox ttl", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := startNode(t, rocket.Config{MailboxTTL: 200 * time.Millisecond, Metrics: reg}, nil)
		c := dial(t, n.url, "")
		id := c.welcome.Client
		_ = c.ws.CloseNow()
		waitGone(t, n, id)
		for i := range 4 {
			if err := n.srv.Send(ctx, id, map[string]int{"n": i}); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, func() error {
			if got := metricValue(t, reg, "rocket_mailbox_expired_total"); got != 4 {
				return notYet("rocket_mailbox_expired_total = %v, want 4", got)
			}
			return nil
		})
	})
	t.Run("pending output", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := startNode(t, rocket.Config{MaxPendingBytes: 64 << 10, Metrics: reg}, nil)
		ws := dialSmallWindow(t, ctx, n.url)
		// The welcome, then the join's reply: the client reads nothing
		// after them.
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatal(err)
		}
		join, _ := json.Marshal(map[string]any{"ref": 1, "Chat.join": map[string]string{"room": "r", "name": "n"}})
		if err := ws.Write(ctx, 1, join); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatal(err)
		}
		payload := json.RawMessage(fmt.Sprintf(`{"pad":"%s"}`, strings.Repeat("x", 4<<10)))
		// Far more than the kernel's buffers and the bound take.
		for range 4000 {
			if err := n.srv.Publish(ctx, "r", payload); err != nil {
				t.Fatal(err)
			}
			if metricValue(t, reg, "rocket_slow_client_disconnects_total") > 0 {
				break
			}
		}
		eventually(t, func() error {
			if got := metricValue(t, reg, "rocket_slow_client_disconnects_total"); got != 1 {
				return notYet("rocket_slow_client_disconnects_total = %v, want 1", got)
			}
			return nil
		})
		if got := metricValue(t, reg, "rocket_messages_dropped_total"); got < 1 {
			t.Fatalf("rocket_messages_dropped_total = %v after a slow disconnect under room messages, want at least the one that did not fit", got)
		}
	})
}
