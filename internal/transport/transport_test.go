package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// handler answers every message with "re:" + message, except "block",
// which waits for unblock first, and "push N", which writes N messages
// from N goroutines.
type handler struct {
	conn    chan *Conn
	c       *Conn
	ready   chan struct{} // closed once c is set
	unblock chan struct{}
	closed  chan error
}

func (h *handler) OnMessage(text bool, data []byte) {
	<-h.ready
	msg := string(data)
	switch {
	case msg == "block":
		<-h.unblock
	case strings.HasPrefix(msg, "push "):
		n, _ := strconv.Atoi(strings.TrimPrefix(msg, "push "))
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _ = h.c.WriteText([]byte("p" + strconv.Itoa(i))) })
		}
		wg.Wait()
		return
	}
	if err := h.c.WriteText([]byte("re:" + msg)); err != nil {
		panic(err)
	}
}

func (h *handler) OnClose(err error) { h.closed <- err }

// serve starts an acceptor behind an httptest server and returns the
// WebSocket URL and the handler of the next connection.
func serve(t *testing.T, cfg Config) (string, *handler) {
	return serveWith(t, cfg, false)
}

// serveWith is serve, over TLS when secure (nbio then serves the
// connection in blocking mode).
func serveWith(t *testing.T, cfg Config, secure bool) (string, *handler) {
	t.Helper()
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = time.Second
	}
	a := New(cfg)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	h := &handler{conn: make(chan *Conn, 1), unblock: make(chan struct{}), ready: make(chan struct{}), closed: make(chan error, 1)}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := a.Upgrade(w, r, h)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		h.c = c
		close(h.ready)
		h.conn <- c
	}))
	if secure {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() {
		ts.Close()
		a.Stop()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http"), h
}

// both runs f over plain TCP and over TLS.
func both(t *testing.T, f func(t *testing.T, secure bool)) {
	t.Run("tcp", func(t *testing.T) { f(t, false) })
	t.Run("tls", func(t *testing.T) { f(t, true) })
}

func dial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := ws.Dialer{TLSConfig: &tls.Config{InsecureSkipVerify: true}} // the test server's own certificate
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	} else {
		br = bufio.NewReader(io.MultiReader(br, nc))
	}
	return nc, br
}

func send(t *testing.T, nc net.Conn, msgs ...string) {
	t.Helper()
	// All frames in one write, so that the server reads them together.
	var b []byte
	for _, m := range msgs {
		var buf writerBuf
		if err := wsutil.WriteClientText(&buf, []byte(m)); err != nil {
			t.Fatal(err)
		}
		b = append(b, buf...)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

type writerBuf []byte

func (w *writerBuf) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }

func read(t *testing.T, nc net.Conn, br *bufio.Reader, timeout time.Duration) (string, ws.OpCode) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatalf("read: %v", err)
		}
		if h.OpCode == ws.OpPing || h.OpCode == ws.OpPong {
			continue
		}
		return string(p), h.OpCode
	}
}

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

func TestOutputPrecedesCloseFrame(t *testing.T) { both(t, testOutputPrecedesCloseFrame) }

func testOutputPrecedesCloseFrame(t *testing.T, secure bool) {
	url, h := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 1 << 20}, secure)
	nc, br := dial(t, url)
	c := <-h.conn
	for i := range 100 {
		if err := c.WriteText([]byte("x" + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(CloseGoingAway, "bye")
	if err := c.WriteText([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close = %v, want ErrClosed", err)
	}
	for i := range 100 {
		if got, _ := read(t, nc, br, 2*time.Second); got != "x"+strconv.Itoa(i) {
			t.Fatalf("got %q, want x%d", got, i)
		}
	}
	got, op := read(t, nc, br, 2*time.Second)
	if op != ws.OpClose || len(got) < 2 || int(got[0])<<8|int(got[1]) != CloseGoingAway {
		t.Fatalf("got %v %q, want a close frame with 1001", op, got)
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

func TestCloseReasonFitsAndStaysUTF8(t *testing.T) {
	for _, in := range []string{"", "bye", strings.Repeat("a", 200), strings.Repeat("é", 100), "a" + strings.Repeat("€", 60)} {
		got := CloseReason(in)
		if len(got) > MaxCloseReason || !utf8.ValidString(got) || !strings.HasPrefix(in, got) {
			t.Errorf("CloseReason(%d bytes) = %d bytes %q", len(in), len(got), got)
		}
		if len(in) <= MaxCloseReason && got != in {
			t.Errorf("CloseReason(%q) = %q, want it unchanged", in, got)
		}
	}
}
