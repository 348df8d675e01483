package transport

// Closing: the closing handshake, the close reason, aborting, and the end
// of a connection's output.

import (
	"errors"
	"os"
	"time"
	"unicode/utf8"

	"github.com/rocket-go/rocket/internal/nbio"
)

// Close starts the closing handshake with code and reason: it sends a
// close frame and closes the socket when the peer answers or after the
// close timeout. A second call does nothing.
func (c *Conn) Close(code int, reason string) {
	if c.closing.Swap(true) {
		return
	}
	reason = CloseReason(reason)
	// No more output from now on; what was taken goes before the close
	// frame.
	c.stopOutput()
	closeFrame := func() {
		c.flush()
		if err := c.ws.WriteClose(code, reason); err != nil {
			_ = c.ws.Close()
			return
		}
		t := time.AfterFunc(c.a.cfg.CloseTimeout, func() { _ = c.ws.Close() })
		c.closeTimer.Store(&t)
	}
	if c.nbc == nil {
		// Writing out the output may block (TLS): not on the caller.
		c.a.writers.Go(closeFrame)
		return
	}
	closeFrame()
}

// MaxCloseReason is the most bytes of a close reason, the one bound Rocket
// applies to every close reason it sends: a close frame's
// payload is at most 125 bytes, two of them the code.
const MaxCloseReason = 123

// CloseReason cuts reason to fit a close frame, on a rune boundary (the
// reason must be valid UTF-8).
func CloseReason(reason string) string {
	if len(reason) <= MaxCloseReason {
		return reason
	}
	n := MaxCloseReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// Abort closes the socket at once, without a closing handshake (for peers
// that cannot take more output).
func (c *Conn) Abort(err error) {
	c.closing.Store(true)
	c.stopOutput()
	c.ws.CloseWithError(err)
}

// shut stops taking output and writes out what was taken, ahead of a close
// frame.
func (c *Conn) shut() {
	c.stopOutput()
	c.flush()
}

// stopOutput makes later writes fail with ErrClosed.
func (c *Conn) stopOutput() {
	c.wmu.Lock()
	c.wclosed = true
	c.wmu.Unlock()
}

// end makes later writes fail with ErrClosed and Buffered report 0, once
// the connection is closed.
func (c *Conn) end() {
	c.wmu.Lock()
	c.wclosed = true
	c.ended = true
	c.wmu.Unlock()
}

// onClose ends the connection once nbio has closed it: the close timer is
// stopped, output refused, and the Handler told why.
func (c *Conn) onClose(err error) {
	if c.closeTimer.Load() != nil {
		(*c.closeTimer.Load()).Stop()
	}
	c.end()
	switch {
	case errors.Is(err, nbio.ErrReadTimeout),
		// nbio's blocking mode (TLS) reports the read deadline so.
		errors.Is(err, os.ErrDeadlineExceeded):
		err = ErrIdleTimeout
	case errors.Is(err, nbio.ErrOverflow):
		err = ErrSlow
	}
	c.h.OnClose(err)
}
