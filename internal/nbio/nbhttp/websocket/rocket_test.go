// Tests of Rocket's patches to its copy of nbio (see internal/nbio/README.md):
// each case fails on upstream v1.6.12. A raw TCP client speaks to a server
// upgraded the way Rocket does (UpgradeAndTransferConnToPoller), so that
// frames upstream's parser mishandles can be sent as they are.

package websocket

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rocket-go/rocket/internal/nbio/nbhttp"
)

// echoServer serves WebSocket connections that echo every message, on
// nbio's poller; it returns the address.
func echoServer(t *testing.T, limit int) string {
	t.Helper()
	engine := nbhttp.NewEngine(nbhttp.Config{Name: "test"})
	if err := engine.Start(); err != nil {
		t.Fatal(err)
	}
	u := NewUpgrader()
	u.Engine = engine
	u.MessageLengthLimit = limit
	u.FailTimeout = 500 * time.Millisecond
	u.CheckOrigin = func(*http.Request) bool { return true }
	u.OnMessage(func(c *Conn, mt MessageType, data []byte) {
		_ = c.WriteMessage(mt, data)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = u.UpgradeAndTransferConnToPoller(w, r, nil)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		engine.Stop()
	})
	return ln.Addr().String()
}

type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return &rawConn{t: t, nc: nc, br: br}
}

// frame builds a client frame; mask nil sends it unmasked.
func frame(fin bool, opcode byte, payload []byte, mask []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var maskBit byte
	if mask != nil {
		maskBit = 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, maskBit|byte(n))
	case n <= 0xffff:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask == nil {
		return append(b, payload...)
	}
	b = append(b, mask...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

var testMask = []byte{1, 2, 3, 4}

func (c *rawConn) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one server frame.
func (c *rawConn) read() (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0f, payload, err
}

// expectClose reads frames until a close frame and checks its code, then
// that the server closes the TCP connection.
func (c *rawConn) expectClose(code int) {
	c.t.Helper()
	for {
		op, p, err := c.read()
		if err != nil {
			c.t.Fatalf("want close %d, got %v", code, err)
		}
		if op != 8 {
			continue
		}
		if len(p) < 2 || int(binary.BigEndian.Uint16(p)) != code {
			c.t.Fatalf("close frame %q, want code %d", p, code)
		}
		break
	}
	// The peer may still send (our close reply); the server then closes.
	c.send(frame(true, 8, []byte{0x03, 0xe8}, testMask))
	if _, _, err := c.read(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestPatchEmptyMessageDelivered(t *testing.T) {
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 1, nil, testMask))
	c.send(frame(false, 1, nil, testMask))
	c.send(frame(true, 0, nil, testMask))
	for range 2 {
		op, p, err := c.read()
		if err != nil || op != 1 || len(p) != 0 {
			t.Fatalf("echo of empty message: opcode %d, %q, %v", op, p, err)
		}
	}
}

func TestPatchUnmaskedFrameClosed(t *testing.T) {
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 1, []byte("hello"), nil))
	c.expectClose(1002)
}

func TestPatchNegativeLengthClosed(t *testing.T) {
	c := dialRaw(t, echoServer(t, 1<<10))
	h := []byte{0x81, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, 1<<63|5)
	c.send(append(h, testMask...))
	c.expectClose(1002)
}

func TestPatchHugeLengthClosed(t *testing.T) {
	// A length near the top of the positive range must not overflow the
	// limit check.
	c := dialRaw(t, echoServer(t, 1<<10))
	h := []byte{0x81, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, 1<<63-1)
	c.send(append(h, testMask...))
	c.expectClose(1009)
}

func TestPatchInvalidUTF8Closed1007(t *testing.T) {
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 1, []byte{'a', 0xff, 'b'}, testMask))
	c.expectClose(1007)
}

func TestPatchLongControlFrameClosed1002(t *testing.T) {
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 9, bytes.Repeat([]byte("x"), 126), testMask))
	c.expectClose(1002)
}

func TestPatchProtocolViolationsGetCloseFrame(t *testing.T) {
	addr := echoServer(t, 1<<10)
	for name, f := range map[string][]byte{
		"reserved bit":          {0x81 | 0x20, 0x80, 1, 2, 3, 4},
		"reserved opcode":       frame(true, 3, nil, testMask),
		"continuation, nothing": frame(true, 0, []byte("x"), testMask),
		"fragmented ping":       frame(false, 9, nil, testMask),
		"one-byte close":        frame(true, 8, []byte{3}, testMask),
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			c := dialRaw(t, addr)
			c.send(f)
			c.expectClose(1002)
		})
	}
}

func TestPatchFailedConnectionClosedAfterTimeout(t *testing.T) {
	// A peer that never closes after the server's close frame is cut off
	// after FailTimeout (500 ms here), not at the keep-alive timeout.
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 1, []byte("x"), nil))
	start := time.Now()
	op, _, err := c.read()
	if err != nil || op != 8 {
		t.Fatalf("want a close frame, got opcode %d, %v", op, err)
	}
	c.send(frame(true, 1, []byte("ignored"), testMask))
	if _, _, err := c.read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestPatchBadCloseFrameAnsweredAndClosed(t *testing.T) {
	// A close frame with an invalid code is answered with 1002, and the
	// server then closes the TCP connection at once: the closing
	// handshake is over.
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 8, []byte{0x03, 0xe7}, testMask)) // code 999
	start := time.Now()
	c.expectFailClosed(start)
}

func TestPatchCloseCode1015Refused(t *testing.T) {
	// 1015 is never sent in a close frame (RFC 6455 section 7.4.1).
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 8, []byte{0x03, 0xf7}, testMask))
	c.expectFailClosed(time.Now())
}

// expectFailClosed checks for close 1002 and the TCP close right after.
func (c *rawConn) expectFailClosed(start time.Time) {
	t := c.t
	t.Helper()
	op, p, err := c.read()
	if err != nil || op != 8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
		t.Fatalf("want close 1002, got opcode %d %q, %v", op, p, err)
	}
	if _, _, err := c.read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("TCP closed after %v, want at once (FailTimeout is 500 ms)", d)
	}
}

func TestPatchLongCloseFrameAnsweredAndClosed(t *testing.T) {
	// A close frame over 125 bytes: 1002, then the TCP connection closed
	// at once.
	c := dialRaw(t, echoServer(t, 1<<10))
	c.send(frame(true, 8, append([]byte{0x03, 0xe8}, bytes.Repeat([]byte("r"), 124)...), testMask))
	start := time.Now()
	op, p, err := c.read()
	if err != nil || op != 8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
		t.Fatalf("want close 1002, got opcode %d %q, %v", op, p, err)
	}
	if _, _, err := c.read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("TCP closed after %v, want at once (FailTimeout is 500 ms)", d)
	}
}
