package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Hostile clients against a cmd/rocket process with its defaults: floods
// of large frames and of acknowledgements from 1 and from 50 connections
// (the node's memory stays under the bound docs/security.md gives, the
// flooders are slowed down by TCP, a bystander is served throughout), and
// malformed frames that a WebSocket library would not send (a negative
// length, an unmasked frame, an empty frame, invalid UTF-8). The hostile
// clients speak WebSocket by hand over raw TCP.

// The defaults of cmd/rocket that the memory bound is made of.
const (
	defMaxFrameBytes   = 64 << 10
	defMaxInputBytes   = 4 * defMaxFrameBytes
	defMaxMessageBytes = 4 * defMaxFrameBytes // the hard frame limit
	defMaxPendingBytes = 1 << 20
	nbioReadBuffer     = 64 << 10 // nbio's read buffer, one per poller
)

// hostileConnBytes is what one connection can make the node hold, by
// docs/security.md: its unhandled input (up to MaxInputBytes, plus the one
// read that took it over), a frame being received (up to the hard frame
// limit), and its output (Rocket's buffer and nbio's, MaxPendingBytes
// each).
const hostileConnBytes = defMaxInputBytes + nbioReadBuffer + defMaxMessageBytes + 2*defMaxPendingBytes

// hostileRuntimeBytes is what the node may take under load besides the
// connections' data, whatever their number: goroutines of nbio's pool and
// their stacks, the runtime's and the allocator's own structures.
const hostileRuntimeBytes = 32 << 20

// memoryBound is the RSS the node must stay under with conns connections
// flooding it, by the formula of docs/security.md: the RSS before the
// flood, plus twice what the connections can hold (the garbage collector
// lets the heap grow to twice what is live, GOGC=100), plus the runtime's
// share. Under the race detector, which keeps shadow memory for the heap,
// the connections' share counts raceFactor times more.
func memoryBound(baseline int64, conns int) int64 {
	perConn := int64(2 * hostileConnBytes)
	if raceEnabled() {
		perConn *= raceFactor
	}
	return baseline + int64(conns)*perConn + hostileRuntimeBytes
}

// raceFactor is how much more memory the race detector may need per byte
// of heap: its shadow memory (the Go documentation says 5 to 10 times more
// memory for a typical program in all). Under -race the flooders get less
// through, and these tests measured about as much growth as without it.
const raceFactor = 4

var raceOnce = sync.OnceValue(func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
})

// bystanderBound is the longest a bystander may wait for a reply during a
// flood, without the race detector.
const bystanderBound = time.Second

// raceEnabled reports whether this test binary, and so the rocket
// processes it starts, runs with the race detector.
func raceEnabled() bool { return raceOnce() }

// procStatus returns a size field of /proc/<pid>/status (VmRSS, VmHWM) in
// bytes, or -1 where it cannot be read.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// rssSampler polls a process's RSS until stopped and keeps the peak.
type rssSampler struct {
	pid  int
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.peak.Store(procStatus(pid, "VmRSS"))
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if rss := procStatus(pid, "VmRSS"); rss > s.peak.Load() {
				s.peak.Store(rss)
			}
		}
	}()
	return s
}

// end stops the sampler and returns the peak RSS it saw.
func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// hostileConn is a WebSocket client written by hand over TCP, to send what
// a library would not.
type hostileConn struct {
	net.Conn
	r *bufio.Reader
}

// hostileDial opens a WebSocket to addr (host:port) with the query
// (without "?") and reads the welcome.
func hostileDial(addr, query string) (*hostileConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	hc := &hostileConn{Conn: c, r: bufio.NewReader(c)}
	if err := hc.handshake(addr, query); err != nil {
		c.Close()
		return nil, err
	}
	return hc, nil
}

func (hc *hostileConn) handshake(addr, query string) error {
	hc.SetDeadline(time.Now().Add(5 * time.Second))
	defer hc.SetDeadline(time.Time{})
	var key [16]byte
	rand.Read(key[:])
	path := "/"
	if query != "" {
		path += "?" + query
	}
	if _, err := fmt.Fprintf(hc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, base64.StdEncoding.EncodeToString(key[:])); err != nil {
		return err
	}
	resp, err := http.ReadResponse(hc.r, nil)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("upgrade: HTTP %d", resp.StatusCode)
	}
	op, payload, err := hc.readFrame(5 * time.Second)
	if err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	var w struct{ Welcome *struct{ Client string } }
	if op != 0x1 || json.Unmarshal(payload, &w) != nil || w.Welcome == nil {
		return fmt.Errorf("first frame (opcode %d) is not a welcome: %.200s", op, payload)
	}
	return nil
}

// wsFrame encodes a final frame of opcode with payload, masked with a
// fixed key or not masked.
func wsFrame(opcode byte, payload []byte, masked bool) []byte {
	b := make([]byte, 0, len(payload)+14)
	b = append(b, 0x80|opcode)
	var m byte
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// send writes frames within 5 s.
func (hc *hostileConn) send(frames ...[]byte) error {
	hc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for _, f := range frames {
		if _, err := hc.Write(f); err != nil {
			return err
		}
	}
	return nil
}

// readFrame reads one frame from the server within wait.
func (hc *hostileConn) readFrame(wait time.Duration) (opcode byte, payload []byte, err error) {
	hc.SetReadDeadline(time.Now().Add(wait))
	var h [2]byte
	if _, err := io.ReadFull(hc.r, h[:]); err != nil {
		return 0, nil, err
	}
	size := uint64(h[1] & 0x7f)
	switch size {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(hc.r, b[:]); err != nil {
			return 0, nil, err
		}
		size = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(hc.r, b[:]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(b[:])
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 || size > 1<<20 {
		return 0, nil, fmt.Errorf("bad frame from the server: % x, %d bytes", h, size)
	}
	payload = make([]byte, size)
	if _, err := io.ReadFull(hc.r, payload); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, payload, nil
}

// expectClose reads until the server's close frame, checks its code, and
// then that the server closes the TCP connection (without waiting for an
// answer to its close frame).
func (hc *hostileConn) expectClose(t *testing.T, code int) {
	t.Helper()
	for i := 0; ; i++ {
		op, payload, err := hc.readFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("before a close frame %d: %v", code, err)
		}
		if op != 0x8 {
			if i > 100 {
				t.Fatalf("no close frame in %d frames", i)
			}
			continue
		}
		if len(payload) < 2 || int(binary.BigEndian.Uint16(payload)) != code {
			t.Fatalf("close frame % x (%q), want code %d", payload, payload, code)
		}
		t.Logf("close %d %q", code, payload[2:])
		break
	}
	start := time.Now()
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, hc.r)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		t.Logf("TCP closed by the server %v after its close frame (%d bytes more)", time.Since(start).Round(time.Millisecond), n)
		return
	}
	t.Fatalf("after the close frame: %v (%d bytes more), want the TCP connection closed", err, n)
}

// bystander sends {"ref":N,"Echo.echo":N} every 100 ms on a well-behaved
// connection and records how long each reply takes.
type bystanderRun struct {
	sent    int
	maxWait time.Duration
	err     error
}

func runBystander(addr string, until time.Time) (res bystanderRun) {
	// Without the race detector a reply comes within bystanderBound (the
	// caller checks it); with it, the node is several times slower and
	// shares the machine with the rest of the suite, and a reply behind
	// 50 flooders' queued commands was seen to take over 10 s: the
	// bystander then only has to be served at all.
	wait := 10 * time.Second
	if raceEnabled() {
		wait = time.Minute
	}
	ctx, cancel := context.WithDeadline(context.Background(), until.Add(wait))
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		return bystanderRun{err: fmt.Errorf("dial: %w", err)}
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil { // the welcome
		return bystanderRun{err: fmt.Errorf("welcome: %w", err)}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ref := 1; time.Now().Before(until); ref++ {
		start := time.Now()
		if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"ref":%d,"Echo.echo":%d}`, ref, ref)); err != nil {
			res.err = fmt.Errorf("request %d: %w", ref, err)
			return res
		}
		res.sent++
		_, data, err := c.Read(ctx)
		if err != nil {
			res.err = fmt.Errorf("reply %d: %w", ref, err)
			return res
		}
		var reply struct {
			Ref    int
			Result int
		}
		if json.Unmarshal(data, &reply) != nil || reply.Ref != ref || reply.Result != ref {
			res.err = fmt.Errorf("request %d: got %s", ref, data)
			return res
		}
		res.maxWait = max(res.maxWait, time.Since(start))
		<-tick.C // pacing
	}
	return res
}

// flooder writes frames as fast as the connection takes them, each write
// with a deadline, while another goroutine reads and discards what the
// server answers (so that it is not dropped as a slow reader).
type flooder struct {
	conn      *hostileConn
	sent      int64 // bytes written
	blocked   int   // writes that hit their deadline
	received  int64 // bytes read
	writeErr  error
	readErr   error
	readerEnd chan struct{}
}

const floodWriteDeadline = 100 * time.Millisecond

func (f *flooder) flood(buf []byte, until time.Time) {
	off := 0
	for time.Now().Before(until) {
		deadline := time.Now().Add(floodWriteDeadline)
		if deadline.After(until) {
			deadline = until
		}
		f.conn.SetWriteDeadline(deadline)
		n, err := f.conn.Write(buf[off:])
		f.sent += int64(n)
		off = (off + n) % len(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			f.blocked++
			continue
		}
		if err != nil {
			f.writeErr = err
			return
		}
	}
}

func (f *flooder) drain() {
	defer close(f.readerEnd)
	f.conn.SetReadDeadline(time.Time{})
	f.received, f.readErr = io.Copy(io.Discard, f.conn.r)
}

// loopbackRate measures how fast buf can be written over loopback to a
// reader that discards it at once: what a flooder would get through
// without back-pressure (bytes per second).
func loopbackRate(t *testing.T, buf []byte) float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const dur = 300 * time.Millisecond
	start := time.Now()
	var sent int
	for time.Since(start) < dur {
		c.SetWriteDeadline(time.Now().Add(dur))
		n, err := c.Write(buf)
		sent += n
		if err != nil {
			break
		}
	}
	rate := float64(sent) / time.Since(start).Seconds()
	c.Close()
	<-done
	return rate
}

// metricValue returns the value of a metric line of /metrics text, or -1.
func metricValue(metrics, name string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// floodCase starts a node, connects a bystander and conns flooders on
// query, and has each flooder write buf over and over for dur.
func floodCase(t *testing.T, conns int, query string, buf []byte, dur time.Duration) {
	p := startProc(t)
	pid := p.cmd.Process.Pid
	if procStatus(pid, "VmRSS") < 0 {
		t.Skip("no /proc/<pid>/status here to read the node's memory")
	}
	free := loopbackRate(t, buf)
	fl := make([]*flooder, conns)
	for i := range fl {
		c, err := hostileDial(p.ws, query)
		if err != nil {
			t.Fatalf("flooder %d: %v", i, err)
		}
		fl[i] = &flooder{conn: c, readerEnd: make(chan struct{})}
	}
	baseline := procStatus(pid, "VmRSS")
	bound := memoryBound(baseline, conns)

	start := time.Now()
	until := start.Add(dur)
	by := make(chan bystanderRun, 1)
	go func() { by <- runBystander(p.ws, until.Add(500*time.Millisecond)) }()
	rss := sampleRSS(pid)
	cpu0, self0 := cpuSeconds(pid), cpuSeconds(os.Getpid())
	var wg sync.WaitGroup
	for _, f := range fl {
		go f.drain()
		wg.Go(func() { f.flood(buf, until) })
	}
	wg.Wait()
	for _, f := range fl {
		f.conn.Close()
		<-f.readerEnd
	}
	b := <-by
	cpuNode, cpuSelf := cpuSeconds(pid)-cpu0, cpuSeconds(os.Getpid())-self0
	peak := rss.end()
	hwm := procStatus(pid, "VmHWM")
	metrics := metricsText(t, p.web)

	var sent, received int64
	var blocked, writeErrs int
	var firstErr error
	for _, f := range fl {
		sent += f.sent
		received += f.received
		blocked += f.blocked
		if f.writeErr != nil {
			writeErrs++
			if firstErr == nil {
				firstErr = f.writeErr
			}
		}
	}
	pauses := metricValue(metrics, "rocket_input_pauses_total")
	paused := metricValue(metrics, "rocket_input_paused_seconds_total")
	t.Logf("%d flooders for %v (race detector: %v): sent %s (%.0f MB/s in all; one unthrottled loopback connection takes %.0f MB/s), received %s; %d writes blocked past %v, %d flooders cut off (%v)",
		conns, dur, raceEnabled(), mib(sent), float64(sent)/dur.Seconds()/1e6, free/1e6, mib(received), blocked, floodWriteDeadline, writeErrs, firstErr)
	t.Logf("node RSS: %s before, peak %s sampled, VmHWM %s; bound %s (%s + %d × 2 × %s + %s)",
		mib(baseline), mib(peak), mib(hwm), mib(bound), mib(baseline), conns, mib(hostileConnBytes), mib(hostileRuntimeBytes))
	t.Logf("input pauses %v, %.2f s paused in all; CPU: node %.2f s, this test process %.2f s; bystander: %d requests, slowest reply %v",
		pauses, paused, cpuNode, cpuSelf, b.sent, b.maxWait.Round(time.Millisecond))

	if max(peak, hwm) > bound {
		t.Errorf("node RSS reached %s, over the bound %s", mib(max(peak, hwm)), mib(bound))
	}
	// Slowed down: the node stopped reading them (their input was over
	// the bound), or their writes waited for TCP (the node read them no
	// faster than it got to them).
	if pauses <= 0 && blocked == 0 {
		t.Errorf("rocket_input_pauses_total = %v after the flood and no write blocked: the flooders were never slowed down", pauses)
	}
	if b.err != nil {
		t.Errorf("bystander: %v", b.err)
	}
	switch {
	case raceEnabled():
		// The race detector slows the node several times, and the rest
		// of the suite runs beside it: the bound is checked in the run
		// without it (.ci/run runs these tests so).
		t.Logf("bystander: slowest reply %v, not bounded under the race detector", b.maxWait)
	case b.maxWait > bystanderBound:
		t.Errorf("bystander: a reply took %v, want at most %v", b.maxWait, bystanderBound)
	}
	if sent < int64(conns)*defMaxInputBytes {
		t.Errorf("the flooders sent only %d bytes: no flood", sent)
	}
}

// TestHostileFloodLargeFrames: connections send 60 KB frames
// {"Echo.echo":"xxx…"} without ref as fast as they can; the rate limiter
// refuses those past its burst (rate_limited, which the flooders read).
// The node's RSS stays under the bound, the flooders are slowed down (the
// node pauses reading them, rocket_input_pauses_total, or their writes
// block), and a bystander gets every reply within 1 s.
func TestHostileFloodLargeFrames(t *testing.T) {
	payload := []byte(`{"Echo.echo":"` + strings.Repeat("x", 60_000-len(`{"Echo.echo":""}`)) + `"}`)
	buf := wsFrame(0x1, payload, true)
	for _, conns := range []int{1, 50} {
		t.Run(fmt.Sprintf("%d connections", conns), func(t *testing.T) {
			floodCase(t, conns, "", buf, 3*time.Second)
		})
	}
}

// TestHostileFloodAcks: connections opened with ?acks=1 send frames of 100
// {"ack":0} as fast as they can.
func TestHostileFloodAcks(t *testing.T) {
	acks := "[" + strings.Repeat(`{"ack":0},`, 99) + `{"ack":0}]`
	var buf []byte
	for range 64 { // 64 frames a write
		buf = append(buf, wsFrame(0x1, []byte(acks), true)...)
	}
	for _, conns := range []int{1, 50} {
		t.Run(fmt.Sprintf("%d connections", conns), func(t *testing.T) {
			floodCase(t, conns, "acks=1", buf, 3*time.Second)
		})
	}
}

// TestHostileFloodSmallFrames: frames of {"Echo.echo":1}, 1,000 a write:
// many messages for few bytes, each refused past the burst with its own
// rate_limited error frame.
func TestHostileFloodSmallFrames(t *testing.T) {
	var buf []byte
	for range 1000 {
		buf = append(buf, wsFrame(0x1, []byte(`{"Echo.echo":1}`), true)...)
	}
	for _, conns := range []int{1, 50} {
		t.Run(fmt.Sprintf("%d connections", conns), func(t *testing.T) {
			floodCase(t, conns, "", buf, 3*time.Second)
		})
	}
}

// cpuSeconds returns the CPU time (user and system) process pid has used,
// or 0 where /proc is not available.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(string(b), ')')
	if err != nil || i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

// malformed starts a node and opens a raw connection to it, and returns
// the node's RSS first.
func malformed(t *testing.T) (*proc, *hostileConn) {
	t.Helper()
	p := startProc(t)
	hc, err := hostileDial(p.ws, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	return p, hc
}

// TestHostileNegativeLength: a frame header whose 64-bit length has its
// top bit set (a negative number to a signed reader) is refused at the
// header: close 1002, then the TCP connection is closed. Ten more such
// connections, each writing 4 MiB after the header, do not make the node's
// RSS grow (nothing of it is buffered).
func TestHostileNegativeLength(t *testing.T) {
	p, hc := malformed(t)
	pid := p.cmd.Process.Pid
	header := func(size uint64) []byte {
		h := []byte{0x81, 0x80 | 127}
		h = binary.BigEndian.AppendUint64(h, size)
		return append(h, 1, 2, 3, 4)
	}
	if err := hc.send(header(1 << 63)); err != nil {
		t.Fatal(err)
	}
	hc.expectClose(t, 1002)

	before := procStatus(pid, "VmRSS")
	junk := make([]byte, 4<<20)
	var wg sync.WaitGroup
	var written atomic.Int64
	for i := range 10 {
		size := uint64(1<<63) | uint64(i)<<40 | 1<<20
		if i == 9 {
			size = 1<<64 - 1
		}
		c, err := hostileDial(p.ws, "")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			// The server closes the connection at the header: the rest
			// of the write fails sooner or later.
			n, _ := c.Write(append(header(size), junk...))
			written.Add(int64(n))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c.r)
		})
	}
	wg.Wait()
	after := procStatus(pid, "VmRSS")
	t.Logf("node RSS %s before the 10 connections, %s after; they wrote %s in all before the server closed them", mib(before), mib(after), mib(written.Load()))
	if before >= 0 && after > before+8<<20 {
		t.Errorf("node RSS grew from %s to %s", mib(before), mib(after))
	}
	echoRaw(t, p.ws)
}

// echoRaw checks that a new connection to addr is served.
func echoRaw(t *testing.T, addr string) {
	t.Helper()
	hc, err := hostileDial(addr, "")
	if err != nil {
		t.Fatalf("a client after the hostile ones: %v", err)
	}
	defer hc.Close()
	expectEcho(t, hc, 1)
}

// expectEcho sends {"ref":ref,"Echo.echo":"ok"} and expects its reply.
func expectEcho(t *testing.T, hc *hostileConn, ref int) {
	t.Helper()
	if err := hc.send(wsFrame(0x1, fmt.Appendf(nil, `{"ref":%d,"Echo.echo":"ok"}`, ref), true)); err != nil {
		t.Fatal(err)
	}
	op, payload, err := hc.readFrame(5 * time.Second)
	want := fmt.Sprintf(`{"ref":%d,"action":"Echo.echo","result":"ok"}`, ref)
	if err != nil || op != 0x1 || string(payload) != want {
		t.Fatalf("echo: opcode %d %s, %v; want %s", op, payload, err, want)
	}
}

// TestHostileUnmaskedFrame: a client frame without a mask (RFC 6455
// section 5.1: the server must close the connection) is closed with 1002.
func TestHostileUnmaskedFrame(t *testing.T) {
	p, hc := malformed(t)
	if err := hc.send(wsFrame(0x1, []byte(`{"ref":1,"Echo.echo":"unmasked"}`), false)); err != nil {
		t.Fatal(err)
	}
	hc.expectClose(t, 1002)
	echoRaw(t, p.ws)
}

// TestHostileEmptyFrame: an empty text message reaches Rocket, which
// answers bad_frame; the connection stays open and serves the next
// request.
func TestHostileEmptyFrame(t *testing.T) {
	_, hc := malformed(t)
	if err := hc.send(wsFrame(0x1, nil, true)); err != nil {
		t.Fatal(err)
	}
	op, payload, err := hc.readFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("after an empty frame: %v", err)
	}
	var e struct {
		Error *struct{ Code, Message string }
	}
	if op != 0x1 || json.Unmarshal(payload, &e) != nil || e.Error == nil || e.Error.Code != "bad_frame" {
		t.Fatalf("after an empty frame: opcode %d %s, want a bad_frame error", op, payload)
	}
	t.Logf("empty frame: %s", payload)
	expectEcho(t, hc, 2)
}

// TestHostileInvalidUTF8: a text message that is not valid UTF-8 is closed
// with 1007 (RFC 6455 section 8.1), before Rocket sees it.
func TestHostileInvalidUTF8(t *testing.T) {
	p, hc := malformed(t)
	if err := hc.send(wsFrame(0x1, []byte("{\"ref\":1,\"Echo.echo\":\"\xff\xfe\"}"), true)); err != nil {
		t.Fatal(err)
	}
	hc.expectClose(t, 1007)
	echoRaw(t, p.ws)
}
