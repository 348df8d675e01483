package rocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/internal/redistest"
)

// sizeBroker records the size of the largest message given to Send.
type sizeBroker struct {
	broker.Broker
	mu      sync.Mutex
	largest int
}

func (b *sizeBroker) Send(ctx context.Context, clientID string, data []byte) error {
	b.mu.Lock()
	b.largest = max(b.largest, len(data))
	b.mu.Unlock()
	return b.Broker.Send(ctx, clientID, data)
}

func (b *sizeBroker) sent() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.largest
}

// TestMessagesNotHTMLEscaped sends 4 KB of "<" to an away client, on each
// broker, and checks that it is handed to the broker, stored and delivered
// as about 4 KB (encoding/json's default would write 6 bytes, \u003c, for
// each).
func TestMessagesNotHTMLEscaped(t *testing.T) {
	const n = 4096
	text := strings.Repeat("<", n)
	bound := n + 64
	for _, kind := range []string{"memory", "redis"} {
		t.Run(kind, func(t *testing.T) {
			var stored func(id string) int
			var inner broker.Broker
			switch kind {
			case "memory":
				mb := memory.New(memory.Config{})
				t.Cleanup(func() { _ = mb.Close() })
				inner = mb
			case "redis":
				rs := redistest.Start(t)
				prefix := clusterPrefix(t)
				inner = redisBroker(t, rs, prefix, 100*time.Millisecond)
				rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rs.Addr}, DisableCache: true})
				if err != nil {
					t.Fatalf("rueidis: %v", err)
				}
				t.Cleanup(rc.Close)
				stored = func(id string) int {
					ctx, cancel := context.WithTimeout(context.Background(), wait)
					defer cancel()
					s, err := rc.Do(ctx, rc.B().Lindex().Key(prefix+"mail:"+id).Index(0).Build()).ToString()
					if err != nil {
						t.Fatalf("LINDEX mail:%s: %v", id, err)
					}
					return len(s)
				}
			}
			b := &sizeBroker{Broker: inner}
			n1 := startNode(t, rocket.Config{Broker: b, CommandRate: -1}, nil)
			c := dial(t, n1.url, "")
			id, session := c.welcome.Client, c.welcome.Session
			_ = c.ws.CloseNow()
			waitGone(t, n1, id)

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := n1.srv.Send(ctx, id, rocket.Push{Name: "Big", Value: text}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := b.sent(); got > bound || got < n {
				t.Fatalf("broker given %d bytes for %d bytes of <, want about %d", got, n, n)
			}
			if stored != nil {
				if got := stored(id); got > bound || got < n {
					t.Fatalf("mailbox entry in Redis is %d bytes, want about %d", got, n)
				}
				t.Logf("stored in Redis: %d bytes", stored(id))
			}
			t.Logf("given to the broker: %d bytes", b.sent())
			c2 := dial(t, n1.url, session)
			frame := c2.read()
			if len(frame) > bound || !strings.Contains(string(frame), text) {
				t.Fatalf("delivered %d bytes (%.40q...), want the text as it is", len(frame), frame)
			}
		})
	}
}

// TestMailboxBytes checks Config.MailboxBytes on the default broker: the
// oldest messages of an away client are dropped past the bound and
// counted in rocket_mailbox_dropped_total, and a message over the bound is
// refused to its sender with too_large, even for a connected client.
func TestMailboxBytes(t *testing.T) {
	const bound = 250
	reg := prometheus.NewRegistry()
	n := startNode(t, rocket.Config{MailboxBytes: bound, CommandRate: -1, Metrics: reg}, func(s *rocket.Server) {
		s.HandleFunc("Test.sendTo", func(c *rocket.Context) (any, error) {
			var in struct {
				To   string `json:"to"`
				Size int    `json:"size"`
			}
			if err := c.Bind(&in); err != nil {
				return nil, err
			}
			return true, c.Server().Send(c.Context(), in.To, json.RawMessage(`"`+strings.Repeat("x", in.Size-2)+`"`))
		})
	})
	sender := dial(t, n.url, "")
	away := dial(t, n.url, "")
	id, session := away.welcome.Client, away.welcome.Session
	_ = away.ws.CloseNow()
	waitGone(t, n, id)
	for range 3 {
		sender.call("Test.sendTo", map[string]any{"to": id, "size": 100}, nil)
	}
	if got := metricValue(t, reg, "rocket_mailbox_dropped_total"); got != 1 {
		t.Fatalf("rocket_mailbox_dropped_total = %v, want 1", got)
	}
	for _, to := range []string{id, sender.welcome.Client} {
		f := sender.request("Test.sendTo", map[string]any{"to": to, "size": bound + 1})
		if f.Error == nil || f.Error.Code != rocket.CodeTooLarge || !strings.Contains(f.Error.Message, "mailbox limit") {
			t.Fatalf("send of %d bytes to %s: %+v, want a too_large error", bound+1, to, f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := n.srv.Send(ctx, id, json.RawMessage(`"`+strings.Repeat("x", bound)+`"`))
	var re *rocket.Error
	if !errors.As(err, &re) || re.Code != rocket.CodeTooLarge || !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("Send over the bound = %v, want a too_large *Error wrapping broker.ErrTooLarge", err)
	}
	back := dial(t, n.url, session)
	for range 2 {
		if f := back.read(); len(f) != 100 {
			t.Fatalf("kept message of %d bytes, want 100", len(f))
		}
	}
}

// TestClientIDsAfterRestart: a single node restarted on the default
// in-memory broker does not hand its first client the id of the first
// client before the restart.
func TestClientIDsAfterRestart(t *testing.T) {
	first := func() string {
		n := startNode(t, rocket.Config{}, nil)
		c := dial(t, n.url, "")
		id := c.welcome.Client
		if strings.ContainsAny(id, " #") || len(id) > 24 {
			t.Fatalf("client id %q: want a short id without spaces or #", id)
		}
		return id
	}
	a, b := first(), first()
	if a == b {
		t.Fatalf("first client id %q before and after the restart", a)
	}
	t.Logf("first client ids: %s, then %s", a, b)
}
