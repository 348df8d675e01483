package transport

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRepliesToOneReadInOrder(t *testing.T) { both(t, testRepliesToOneReadInOrder) }

func testRepliesToOneReadInOrder(t *testing.T, secure bool) {
	url, _ := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 1 << 20}, secure)
	nc, br := dial(t, url)
	var msgs []string
	for i := range 200 {
		msgs = append(msgs, "m"+strconv.Itoa(i))
	}
	send(t, nc, msgs...)
	for _, m := range msgs {
		if got, _ := read(t, nc, br, 5*time.Second); got != "re:"+m {
			t.Fatalf("got %q, want %q", got, "re:"+m)
		}
	}
}

func TestWritesFromManyGoroutinesAllArrive(t *testing.T) {
	both(t, testWritesFromManyGoroutinesAllArrive)
}

func testWritesFromManyGoroutinesAllArrive(t *testing.T, secure bool) {
	url, _ := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 1 << 20}, secure)
	nc, br := dial(t, url)
	const n = 500
	send(t, nc, "push "+strconv.Itoa(n))
	seen := make(map[string]bool)
	for range n {
		got, _ := read(t, nc, br, 5*time.Second)
		if seen[got] || !strings.HasPrefix(got, "p") {
			t.Fatalf("unexpected or duplicate message %q", got)
		}
		seen[got] = true
	}
}

// A message whose handling blocks must not hold back the reply to the
// message before it in the same read.
func TestBlockedHandlerDoesNotHoldBackEarlierReplies(t *testing.T) {
	url, h := serve(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 1 << 20})
	nc, br := dial(t, url)
	send(t, nc, "first", "block")
	if got, _ := read(t, nc, br, 2*time.Second); got != "re:first" {
		t.Fatalf("got %q while the second message blocks, want re:first", got)
	}
	close(h.unblock)
	if got, _ := read(t, nc, br, 2*time.Second); got != "re:block" {
		t.Fatalf("got %q, want re:block", got)
	}
}

func TestSlowPeerOverflows(t *testing.T) { both(t, testSlowPeerOverflows) }

func testSlowPeerOverflows(t *testing.T, secure bool) {
	url, h := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 64 << 10}, secure)
	_, _ = dial(t, url) // never reads
	c := <-h.conn
	payload := []byte(strings.Repeat("y", 4096))
	var err error
	for i := 0; i < 100_000 && err == nil; i++ {
		err = c.WriteText(payload)
	}
	switch {
	case errors.Is(err, ErrSlow):
		// Rocket's buffer is full: the caller aborts.
		c.Abort(ErrSlow)
		if err := <-h.closed; err == nil {
			t.Fatal("abort reported a clean close")
		}
	case errors.Is(err, ErrClosed):
		// nbio's buffer overflowed while flushing: the close says so.
		if err := <-h.closed; !errors.Is(err, ErrSlow) {
			t.Fatalf("closed with %v, want ErrSlow", err)
		}
	default:
		t.Fatalf("400 MB of writes to a peer that never reads ended with %v, want ErrSlow or ErrClosed", err)
	}
}
