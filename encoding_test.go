package rocket_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

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
