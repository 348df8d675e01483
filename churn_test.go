package rocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// churnDefault is the connections TestChurnNoEarlyClose opens under the
// race detector; ROCKET_CHURN sets another count (.ci/run runs 100,000
// without the race detector).
const churnDefault = 1500

// TestChurnNoEarlyClose opens and closes connections without pause, half
// of them closed cleanly and half dropped, while messages are published to
// the room every one of them joins. The server must never close one of
// them by itself: a connection of the transport used to be closed with EOF
// by a poller event meant for an earlier socket with the same descriptor
// (about 50 in 10,000 under this load).
func TestChurnNoEarlyClose(t *testing.T) {
	total := churnDefault
	if v := os.Getenv("ROCKET_CHURN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("ROCKET_CHURN=%q: want a positive count", v)
		}
		total = n
	}
	n := startNode(t, rocket.Config{CommandRate: -1}, nil)

	// The room traffic: one message every 200 µs, published by the server.
	ctx, stop := context.WithCancel(context.Background())
	var published atomic.Int64
	var pub sync.WaitGroup
	pub.Go(func() {
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = n.srv.Publish(ctx, "churn", rocket.Push{Name: "Chat.message", Value: published.Add(1)})
			}
		}
	})
	defer pub.Wait()
	defer stop()

	const workers = 16
	var (
		next  atomic.Int64
		early atomic.Int64
		mu    sync.Mutex
		first []string
	)
	deadline := time.Now().Add(time.Minute + time.Duration(total)*3*time.Millisecond)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(total) || time.Now().After(deadline) {
					return
				}
				if err := churnOnce(n.url, i%2 == 0); err != nil {
					early.Add(1)
					mu.Lock()
					if len(first) < 5 {
						first = append(first, fmt.Sprintf("connection %d: %v", i, err))
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if done := next.Load() - workers; done < int64(total) {
		t.Fatalf("only %d of %d connections within the time bound", done, total)
	}
	t.Logf("%d connections, %d room messages published", total, published.Load())
	if e := early.Load(); e > 0 {
		t.Fatalf("%d of %d connections ended early, e.g.\n%v", e, total, first)
	}
}

// churnOnce connects, joins the room, reads a message of it and closes
// (cleanly or by dropping the TCP connection). Any error before the close
// is an early end.
func churnOnce(url string, clean bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // the welcome
		return fmt.Errorf("welcome: %w", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ref":1,"Chat.join":{"room":"churn","name":"c"}}`)); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	joined, got := false, false
	for !joined || !got {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return fmt.Errorf("read (joined %v): %w", joined, err)
		}
		var f struct {
			Ref     json.RawMessage `json:"ref"`
			Error   json.RawMessage `json:"error"`
			Message json.RawMessage `json:"Chat.message"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("frame %q: %w", data, err)
		}
		switch {
		case f.Error != nil:
			return errors.New(string(data))
		case f.Ref != nil:
			joined = true
		case f.Message != nil && joined:
			got = true
		}
	}
	if clean {
		return ws.Close(websocket.StatusNormalClosure, "")
	}
	return nil // CloseNow drops the connection
}
