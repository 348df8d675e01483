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

func TestBufferedUntilPeerReads(t *testing.T) { both(t, testBufferedUntilPeerReads) }

// Output to a peer that does not read is Buffered until the peer has read
// it all.
func testBufferedUntilPeerReads(t *testing.T, secure bool) {
	url, h := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 2 * fillBytes}, secure)
	nc, br := dial(t, url) // does not read until told below
	c := <-h.conn
	if got := c.Buffered(); got != 0 {
		t.Fatalf("Buffered() = %d before any write, want 0", got)
	}
	fill(t, c, secure)
	if got, _ := read(t, nc, br, 10*time.Second); len(got) != fillBytes {
		t.Fatalf("read %d bytes, want %d", len(got), fillBytes)
	}
	waitFor(t, 5*time.Second, "Buffered() to be 0 once the peer has read everything", func() bool { return c.Buffered() == 0 })
}

func TestBufferedZeroOnceClosed(t *testing.T) { both(t, testBufferedZeroOnceClosed) }

// A connection closed with output left buffered has nothing Buffered: it is
// never sent.
func testBufferedZeroOnceClosed(t *testing.T, secure bool) {
	url, h := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 2 * fillBytes}, secure)
	_, _ = dial(t, url) // never reads
	c := <-h.conn
	fill(t, c, secure)
	// Left in Rocket's buffer too, over TLS (the blocked write holds the
	// flush).
	if err := c.WriteText([]byte("left")); err != nil {
		t.Fatal(err)
	}
	c.Abort(ErrSlow)
	select {
	case <-h.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose not called within 10 s of Abort")
	}
	if got := c.Buffered(); got != 0 {
		t.Fatalf("Buffered() = %d once closed, want 0", got)
	}
}

// fill writes one message of fillBytes to c, whose peer does not read,
// waits for it to be held up (by nbio once the kernel's buffers are full,
// or in a blocking write over TLS), and checks that Buffered counts it.
func fill(t *testing.T, c *Conn, secure bool) {
	t.Helper()
	if err := c.WriteText([]byte(strings.Repeat("b", fillBytes))); err != nil {
		t.Fatal(err)
	}
	if secure {
		waitFor(t, 5*time.Second, "a blocking write to be under way", func() bool { return c.flushing.Load() > 0 })
	} else {
		// Handed to nbio (not counted twice), which holds the rest.
		waitFor(t, 5*time.Second, "nbio to hold output", func() bool { return c.flushing.Load() == 0 && c.nbc.Pending() > 0 })
	}
	const frame = fillBytes + 10 // a 2-byte header and a 64-bit length
	if got := c.Buffered(); got <= 0 || got > frame {
		t.Fatalf("Buffered() = %d with a frame of %d bytes written to a peer that does not read, want 1 to %d", got, frame, frame)
	}
}

// fillBytes is more than loopback's socket buffers take from a peer that
// does not read.
const fillBytes = 32 << 20
