// Tests of Rocket's patches to its copy of nbio's poller (see README.md):
// each fails on upstream v1.6.12.

package nbio

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pair returns a loopback TCP connection whose server side is served by g,
// and the client side.
func pair(t *testing.T, g *Engine) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.AddConn(server)
	if err != nil {
		t.Fatal(err)
	}
	_ = server.Close() // AddConn works on a duplicate of the descriptor
	return c, client
}

func startEngine(t *testing.T, conf Config) *Engine {
	t.Helper()
	g := NewEngine(conf)
	g.Execute = func(f func()) { go f() } // jobs off the poller, as nbhttp runs them
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return g
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPatchStopRightAfterStart(t *testing.T) {
	// Upstream's pollers cleared their shutdown flag when their loop
	// began, so a Stop that came first was lost and Stop never returned.
	for range 20 {
		g := NewEngine(Config{NPoller: 2})
		if err := g.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { g.Stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Stop right after Start did not return")
		}
	}
}

func TestPatchStaleEventIgnored(t *testing.T) {
	// An event of a closed connection, handled after another connection
	// got the same descriptor, must not close the new one.
	g := startEngine(t, Config{NPoller: 1})
	var closed atomic.Bool
	g.OnClose(func(*Conn, error) { closed.Store(true) })
	c, _ := pair(t, g)
	stale := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLIN, Fd: int32(c.fd), Pad: int32(c.gen - 1)}
	c.p.handleEvent(&stale, false, false)
	if closed.Load() {
		t.Fatal("a stale event closed the connection that reuses its descriptor")
	}
	current := stale
	current.Pad = int32(c.gen)
	c.p.handleEvent(&current, false, false)
	waitFor(t, "the connection's own hang-up event to close it", closed.Load)
}

func TestPatchTimersStoppedOnWriteFailure(t *testing.T) {
	// A connection closed because a write failed (here: its output over
	// MaxWriteBufferSize) must not keep its read-deadline timer.
	g := startEngine(t, Config{NPoller: 1, MaxWriteBufferSize: 64 << 10})
	c, _ := pair(t, g) // the client never reads
	if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for i := 0; ; i++ {
		if _, err := c.Write(chunk); err != nil {
			break
		}
		if i > 10_000 {
			t.Fatal("writes never failed")
		}
	}
	c.mux.Lock()
	timer := c.rTimer
	c.mux.Unlock()
	if timer != nil {
		t.Fatal("the read-deadline timer of a connection closed on a failed write is still set")
	}
}

func TestPatchInputBackPressure(t *testing.T) {
	// While a connection's input is not handled, the poller stops reading
	// it: the sender is blocked by TCP flow control, the input stays near
	// the bound, and everything arrives once it is handled.
	const limit = 256 << 10
	g := startEngine(t, Config{NPoller: 1, MaxConnInputBytes: limit, ReadBufferSize: 32 << 10})
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	var (
		mu       sync.Mutex
		received int
		peak     int
		resumed  atomic.Int32
	)
	g.OnInputResumed(func(*Conn, time.Duration) { resumed.Add(1) })
	g.OnData(func(c *Conn, data []byte) {
		n := len(data) + InputJobOverhead
		c.AddInput(n)
		mu.Lock()
		peak = max(peak, c.InputBytes())
		mu.Unlock()
		c.Execute(func() {
			<-gate
			mu.Lock()
			received += len(data)
			mu.Unlock()
			c.DoneInput(n)
		})
	})
	c, client := pair(t, g)

	const total = 8 << 20
	sent := make(chan error, 1)
	go func() {
		_, err := client.Write(bytes.Repeat([]byte("y"), total))
		sent <- err
	}()
	waitFor(t, "reading to pause", c.ReadPaused)
	select {
	case err := <-sent:
		t.Fatalf("the sender was not slowed down (write returned %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	mu.Lock()
	p := peak
	mu.Unlock()
	// One read beyond the bound at most.
	if max := limit + 32<<10 + InputJobOverhead; p > max {
		t.Fatalf("input reached %d bytes, bound %d", p, max)
	}

	open()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every byte to be handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received == total
	})
	if resumed.Load() == 0 {
		t.Fatal("OnInputResumed was never called")
	}
	if c.InputBytes() != 0 {
		t.Fatalf("input %d after everything was handled", c.InputBytes())
	}
}

func TestPatchPausedConnectionHalfClosed(t *testing.T) {
	// A connection not read because of its input, whose peer then closes
	// its side, is closed only once everything it sent is handled.
	g := startEngine(t, Config{NPoller: 1, MaxConnInputBytes: 1024})
	var closed atomic.Bool
	g.OnClose(func(*Conn, error) { closed.Store(true) })
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	var received atomic.Int64
	g.OnData(func(c *Conn, data []byte) {
		n := len(data)
		c.AddInput(n)
		c.Execute(func() {
			<-gate
			received.Add(int64(n))
			c.DoneInput(n)
		})
	})
	c, client := pair(t, g)
	const total = 8192
	if _, err := client.Write(bytes.Repeat([]byte("z"), total)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reading to pause", c.ReadPaused)
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let a hang-up event arrive, if one is asked for
	if closed.Load() {
		t.Fatal("closed on the peer's half-close while input was still unread")
	}
	open()
	waitFor(t, "the close after everything was read", closed.Load)
	if got := received.Load(); got != total {
		t.Fatalf("handled %d bytes of %d", got, total)
	}
}

func TestPatchPausedConnectionReset(t *testing.T) {
	// A paused connection whose peer is gone (reset) is closed at once.
	g := startEngine(t, Config{NPoller: 1, MaxConnInputBytes: 1024})
	var closed atomic.Bool
	g.OnClose(func(*Conn, error) { closed.Store(true) })
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	g.OnData(func(c *Conn, data []byte) {
		c.AddInput(len(data))
		c.Execute(func() { <-gate })
	})
	c, client := pair(t, g)
	if _, err := client.Write(bytes.Repeat([]byte("z"), 4096)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reading to pause", c.ReadPaused)
	_ = client.(*net.TCPConn).SetLinger(0)
	_ = client.Close()
	waitFor(t, "the close", closed.Load)
}

func TestPatchPending(t *testing.T) {
	// Pending counts what nbio holds of the output to a peer that does not
	// read, until the peer has read it all, and nothing once the
	// connection is closed.
	const total = 32 << 20 // more than loopback's socket buffers take
	g := startEngine(t, Config{NPoller: 1, MaxWriteBufferSize: 2 * total})
	c, client := pair(t, g)
	if got := c.Pending(); got != 0 {
		t.Fatalf("Pending() = %d before any write, want 0", got)
	}
	if _, err := c.Write(bytes.Repeat([]byte("p"), total)); err != nil {
		t.Fatal(err)
	}
	if got := c.Pending(); got <= 0 || got > total {
		t.Fatalf("Pending() = %d with %d bytes written to a peer that does not read, want 1 to %d", got, total, total)
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.CopyN(io.Discard, client, total); err != nil {
		t.Fatalf("reading what was written: %v", err)
	}
	waitFor(t, "Pending() to be 0 once the peer has read everything", func() bool { return c.Pending() == 0 })

	// Another connection, whose receive buffer has not grown from reads.
	c, _ = pair(t, g)
	if _, err := c.Write(bytes.Repeat([]byte("p"), total)); err != nil {
		t.Fatal(err)
	}
	if c.Pending() == 0 {
		t.Fatal("Pending() = 0 with output written to a peer that does not read")
	}
	_ = c.Close()
	if got := c.Pending(); got != 0 {
		t.Fatalf("Pending() = %d once closed, want 0 (the output is dropped)", got)
	}
}
