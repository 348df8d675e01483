package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// Conn is one client WebSocket connection, kept lean for holding many: a
// socket, a small read buffer and the welcome's ids. It starts no goroutine;
// ReadLoop runs on its caller's. Send is safe for concurrent use; reading
// (Next, Call, ReadLoop) belongs to one goroutine at a time.
type Conn struct {
	nc  net.Conn
	r   *bufio.Reader
	hdr [ws.MaxHeaderSize]byte
	msg []byte // the message being read, reused

	wmu  sync.Mutex
	wbuf []byte // the frame being written, reused
	out  []byte // frames queued by Queue for the next Flush

	ID      string // the client id given by the welcome
	Server  string // the id of the node holding the connection
	Session string
}

// maxMessage bounds what the tool accepts from the server in one message.
const maxMessage = 16 << 20

// dialer opens connections, spreading their source addresses over
// 127.0.0.2 upward (one source address gives only ~28,000 ports).
type dialer struct {
	sources int           // number of source addresses; 0 lets the kernel choose
	readBuf int           // read buffer per connection
	timeout time.Duration // bound on connect + upgrade + welcome
}

// source returns the source address of connection i, or nil.
func (d dialer) source(i int) net.Addr {
	if d.sources <= 0 {
		return nil // an untyped nil: net.Dialer must not see a nil *TCPAddr
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%d.sources))}
}

// Dial opens connection i to url and reads its welcome frame.
func (d dialer) Dial(url string, i int) (*Conn, error) {
	nd := net.Dialer{LocalAddr: d.source(i)}
	wd := ws.Dialer{
		Timeout: d.timeout,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nd.DialContext(ctx, network, addr)
		},
	}
	// A context that is never done: gobwas then bounds the handshake with
	// Timeout alone and starts no watcher goroutine per dial.
	nc, br, _, err := wd.Dial(context.Background(), url)
	if err != nil {
		if errors.Is(err, syscall.EMFILE) {
			err = fmt.Errorf("%w (this process may not open more files: lower -per-process)", err)
		}
		return nil, err
	}
	src := io.Reader(nc)
	if br != nil {
		// The server's first bytes came with the handshake's response.
		src = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), nc)
	}
	c := &Conn{nc: nc, r: bufio.NewReaderSize(src, d.readBuf)}
	_ = nc.SetReadDeadline(time.Now().Add(d.timeout))
	msg, err := c.Next()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("waiting for the welcome: %w", err)
	}
	w, err := parseWelcome(msg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetReadDeadline(time.Time{})
	c.ID, c.Server, c.Session = w.Client, w.Server, w.Session
	c.msg = nil // do not keep the welcome's buffer on idle connections
	return c, nil
}

// Send writes one text message.
func (c *Conn) Send(payload []byte) error {
	return c.write(ws.OpText, payload)
}

// Queue frames a text message to be written by the next Flush, so that
// several messages leave in one write.
func (c *Conn) Queue(payload []byte) {
	c.wmu.Lock()
	c.out = appendFrame(c.out, ws.OpText, payload)
	c.wmu.Unlock()
}

// Flush writes the messages queued by Queue.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if cap(c.out) > 64<<10 {
		c.out = nil
	}
	return err
}

// write writes one masked frame (a client's frames must be masked).
func (c *Conn) write(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := appendFrame(c.wbuf[:0], op, payload)
	_, err := c.nc.Write(b)
	if cap(b) <= 64<<10 {
		c.wbuf = b
	}
	return err
}

// appendFrame appends one masked frame (a client's frames must be masked).
func appendFrame(b []byte, op ws.OpCode, payload []byte) []byte {
	b = append(b, 0x80|byte(op)) // FIN + opcode
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	ws.Cipher(b[start:], mask, 0)
	return b
}

// Next reads the next text or binary message, answering pings on the way.
// The message is valid until the next call.
func (c *Conn) Next() ([]byte, error) {
	msg := c.msg[:0]
	fragmented := false
	for {
		h, err := ws.ReadHeaderBuffer(c.r, c.hdr[:2:cap(c.hdr)])
		if err != nil {
			return nil, err
		}
		if h.OpCode.IsControl() {
			if err := c.control(h); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && !fragmented,
			h.OpCode != ws.OpContinuation && fragmented:
			return nil, errors.New("websocket: bad fragmentation")
		case int64(len(msg))+h.Length > maxMessage:
			return nil, fmt.Errorf("websocket: message over %d bytes", maxMessage)
		}
		start := len(msg)
		n := int(h.Length)
		if cap(msg)-start < n {
			grown := make([]byte, start, start+n)
			copy(grown, msg)
			msg = grown
		}
		msg = msg[:start+n]
		if _, err := io.ReadFull(c.r, msg[start:]); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(msg[start:], h.Mask, 0)
		}
		if h.Fin {
			if cap(msg) <= 64<<10 {
				c.msg = msg
			}
			return msg, nil
		}
		fragmented = true
	}
}

// errClosed is returned when the server closed the connection with a close
// frame.
type errClosed struct {
	code   ws.StatusCode
	reason string
}

func (e errClosed) Error() string {
	return fmt.Sprintf("closed by the server: %d %s", e.code, e.reason)
}

// control handles a control frame: pong to a ping, close to a close.
func (c *Conn) control(h ws.Header) error {
	if h.Length > 125 {
		return errors.New("websocket: control frame over 125 bytes")
	}
	var buf [125]byte
	p := buf[:h.Length]
	if _, err := io.ReadFull(c.r, p); err != nil {
		return err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	switch h.OpCode {
	case ws.OpPing:
		return c.write(ws.OpPong, p)
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		_ = c.write(ws.OpClose, p[:min(len(p), 2)])
		return errClosed{code, reason}
	}
	return nil
}

// readInBackground runs c.ReadLoop(handle) on a goroutine of its own, which
// ends with the connection; a connection that ends before closing is set
// (the run closing its connections) counts as a "disconnected" error.
func readInBackground(c *Conn, handle func(msg []byte), closing *atomic.Bool, errs *tally) {
	go func() {
		err := c.ReadLoop(handle)
		if !closing.Load() {
			errs.add("disconnected", 1, err.Error())
		}
	}()
}

// ReadLoop hands every message to handle until the connection fails or is
// closed, and returns why. Whenever the messages received so far have all
// been handled, it writes what handle queued with Queue.
func (c *Conn) ReadLoop(handle func(msg []byte)) error {
	for {
		msg, err := c.Next()
		if err != nil {
			return err
		}
		handle(msg)
		if c.r.Buffered() == 0 {
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
}

// Call sends frame and reads until the reply carrying ref, which it returns
// (a server error as a *serverError). Frames other than the reply are
// skipped. It is for setup, before ReadLoop runs.
func (c *Conn) Call(frame []byte, ref int64, timeout time.Duration) error {
	if err := c.Send(frame); err != nil {
		return err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		msg, err := c.Next()
		if err != nil {
			return err
		}
		f := inspect(msg)
		switch {
		case f.kind == kindReply && f.ref == ref && f.code != "":
			return &serverError{code: f.code, msg: string(msg)}
		case f.kind == kindReply && f.ref == ref:
			return nil
		case f.kind == kindError:
			return &serverError{code: f.code, msg: string(msg)}
		}
	}
}

// serverError is an error answered by the server.
type serverError struct{ code, msg string }

func (e *serverError) Error() string { return e.code + ": " + e.msg }

// Close sends a normal close frame and closes the socket without waiting.
func (c *Conn) Close() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.write(ws.OpClose, []byte{0x03, 0xe8}) // 1000
	c.nc.Close()
}
