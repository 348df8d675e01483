package transport

// Writing: the output buffer, text framing, batching of the replies to one
// read, flushing to the socket, and pings.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/rocket-go/rocket/internal/nbio"
	"github.com/rocket-go/rocket/internal/nbio/nbhttp/websocket"
)

// maxFlushDelay bounds how long output written while the connection's
// messages are being handled waits for them all to be handled (an action
// that runs long, or a later message that does, must not hold back what was
// written before).
const maxFlushDelay = time.Millisecond

// WriteText writes one text message. It never blocks on the network; it
// returns ErrSlow, taking nothing, when the output the kernel has not taken
// (Buffered) would go over Config.MaxPendingBytes with the message's frame
// (FrameSize), and ErrClosed once the
// connection is closing or closed.
func (c *Conn) WriteText(data []byte) error {
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		return ErrClosed
	}
	if c.wbuf == nil {
		c.wbuf = c.a.getBuf()
	}
	if max := c.a.cfg.MaxPendingBytes; max > 0 && c.overLocked(FrameSize(len(data)), max) {
		c.wmu.Unlock()
		return ErrSlow
	}
	*c.wbuf = appendTextFrame(*c.wbuf, data)
	schedule := false
	switch {
	case c.queued:
		// A flusher will write it.
	case c.batch.Load() > 0:
		// The read's last job will write it, or the timer if that
		// takes long.
		if !c.armed {
			c.armed = true
			if c.timer == nil {
				c.timer = time.AfterFunc(maxFlushDelay, c.flush)
			} else {
				c.timer.Reset(maxFlushDelay)
			}
		}
	default:
		c.queued = true
		schedule = true
	}
	c.wmu.Unlock()
	switch {
	case !schedule:
	case c.nbc != nil:
		c.a.schedule(c)
	default:
		// A blocking write (TLS) must not hold up a flusher: the
		// connection gets a writer goroutine while it has output.
		c.a.writers.Go(c.flush)
	}
	return nil
}

// FrameSize returns the bytes of the frame WriteText writes for a message
// of n bytes: the header (2, 4 or 10 bytes) and the message. It is what
// counts against Config.MaxPendingBytes.
func FrameSize(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n <= 0xffff:
		return 4 + n
	default:
		return 10 + n
	}
}

// appendTextFrame appends data as one unmasked, final text frame.
func appendTextFrame(b, data []byte) []byte {
	const finText = 0x81
	switch n := len(data); {
	case n < 126:
		b = append(b, finText, byte(n))
	case n <= 0xffff:
		b = append(b, finText, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, finText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, data...)
}

// schedule queues c for a flusher; once the acceptor is stopped, it
// flushes c at once.
func (a *Acceptor) schedule(c *Conn) {
	if !a.flushq.push(c) {
		c.flush()
	}
}

// endBatch is the last job of a read: it flushes the replies.
func (c *Conn) endBatch() {
	defer c.nbc.DoneInput(nbio.InputJobOverhead)
	c.release(true)
}

// release ends one read's batch; the last one out flushes the output
// written meanwhile, itself (now) or through a flusher.
func (c *Conn) release(now bool) {
	if c.batch.Add(-1) > 0 {
		return
	}
	c.wmu.Lock()
	flush := !c.queued && c.wbuf != nil && len(*c.wbuf) > 0
	if flush && !now {
		c.queued = true
	}
	c.wmu.Unlock()
	switch {
	case flush && now:
		c.flush()
	case flush:
		c.a.schedule(c)
	}
}

// flush hands the buffered output to the socket in one write.
func (c *Conn) flush() {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	c.wmu.Lock()
	buf := c.wbuf
	c.wbuf = nil
	if buf != nil {
		c.flushing.Store(int64(len(*buf)))
	}
	c.queued = false
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
	c.wmu.Unlock()
	if buf == nil {
		return
	}
	switch {
	case len(*buf) == 0:
	case c.nbc != nil:
		// nbio copies what the kernel does not take at once; on overflow
		// it closes the connection, and OnClose reports ErrSlow.
		_, _ = c.nbc.Write(*buf)
	default:
		c.writeBlocking(*buf)
	}
	c.flushing.Store(0)
	c.a.putBuf(buf)
}

// Buffered returns how many bytes of the output written to c the kernel
// has not taken yet: the frames WriteText has buffered and not handed to
// the socket, and what nbio holds because the socket's buffer was full
// (pings and close frames count there too). It is safe for concurrent use
// and a snapshot: output may leave or be added as soon as it returns.
//
// Until the connection is closed it never misses output written before
// the call: 0 means that all of it has been taken by the kernel (not that
// the peer has read it). While a buffer is being handed to nbio, the part
// nbio keeps of it may be counted twice, so the sum can for that moment
// exceed what is buffered.
//
// For a connection nbio serves in blocking mode (TLS) it is Rocket's buffer
// and the buffer being written, counted whole until its write returns; a
// ping or close frame being written there is not counted. Once the
// connection is closed (by the time Handler.OnClose is called) it returns 0:
// what was left is never sent.
func (c *Conn) Buffered() int {
	c.wmu.Lock()
	if c.ended {
		c.wmu.Unlock()
		return 0
	}
	// Read with wbuf, under wmu: a buffer flush takes is counted in
	// one or the other, and in nbio's count (read after) once flushing
	// is back to 0.
	n := c.pendingLocked()
	c.wmu.Unlock()
	return n
}

// overLocked reports whether a frame of n bytes would take the output not
// taken by the kernel over max. A frame larger than max on its own is taken
// when nothing is pending, so that any message within the other bounds can
// reach a peer that reads.
func (c *Conn) overLocked(n, max int) bool {
	p := c.pendingLocked()
	return p > 0 && p+n > max
}

// pendingLocked is Buffered with c.wmu held (nbio's count is read under
// nbio's own lock, taken after c.wmu: nbio never calls back into the
// transport while it holds it).
func (c *Conn) pendingLocked() int {
	n := int(c.flushing.Load())
	if c.wbuf != nil {
		n += len(*c.wbuf)
	}
	if c.nbc != nil {
		n += c.nbc.Pending()
	}
	return n
}

// writeBlocking writes to a connection nbio serves in blocking mode (TLS),
// bounded in time: a peer that takes nothing for the idle timeout is
// closed as slow.
func (c *Conn) writeBlocking(b []byte) {
	nc := c.ws.UnderlayerConn()
	_ = nc.SetWriteDeadline(time.Now().Add(c.a.blockingWriteTimeout()))
	if _, err := nc.Write(b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = ErrSlow
		}
		c.Abort(err)
	}
}

// blockingWriteTimeout bounds one write to a blocking-mode connection.
func (a *Acceptor) blockingWriteTimeout() time.Duration {
	if a.cfg.IdleTimeout > 0 {
		return a.cfg.IdleTimeout
	}
	return 30 * time.Second
}

// Ping writes a ping frame, unless the connection is closing.
func (c *Conn) Ping() error {
	if c.closing.Load() {
		return ErrClosed
	}
	return c.write(websocket.PingMessage, nil)
}

func (c *Conn) write(mt websocket.MessageType, data []byte) error {
	err := c.ws.WriteMessage(mt, data)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nbio.ErrOverflow):
		return ErrSlow
	case errors.Is(err, net.ErrClosed):
		return ErrClosed
	default:
		return fmt.Errorf("transport: write: %w", err)
	}
}
