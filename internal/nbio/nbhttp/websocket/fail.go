// Rocket's addition to its copy of nbio, under the same MIT license
// (internal/nbio/LICENSE).

package websocket

import (
	"errors"
	"time"
)

// Errors of peers that break RFC 6455, added to upstream's in error.go.
var (
	// ErrUnmaskedFrame is a client frame without a mask (RFC 6455 section
	// 5.1: the server must close the connection).
	ErrUnmaskedFrame = errors.New("websocket: unmasked client frame")
	// ErrInvalidFrameLength is a 64-bit payload length with the most
	// significant bit set (RFC 6455 section 5.2).
	ErrInvalidFrameLength = errors.New("websocket: invalid frame length")
)

// DefaultFailTimeout is how long a failed connection waits for the peer to
// close the TCP connection after the server's close frame.
const DefaultFailTimeout = time.Second

// closeCodeOf is the close code that fails a connection for err (RFC 6455
// section 7.4.1).
func closeCodeOf(err error) int {
	switch {
	case errors.Is(err, ErrMessageTooLarge):
		return 1009
	case errors.Is(err, ErrInvalidUtf8):
		return 1007
	default:
		return 1002
	}
}

// fail fails the connection for err (RFC 6455 section 7.1.7): the
// protocol-error handler runs (so that the application stops writing), a
// close frame with the code err calls for is written, and the rest of
// what the peer sent is discarded; the socket is closed when the peer
// sends anything more (its close frame, typically) or closes, or after
// FailTimeout, whichever comes first. Closing at once would make the
// kernel answer the peer's unread data with a reset, which can destroy
// the close frame before the peer reads it.
//
//go:norace
func (c *Conn) fail(err error) {
	if c.failed.Swap(true) {
		return
	}
	c.SetCloseError(err)
	if c.protocolErrorHandler != nil {
		c.protocolErrorHandler(c, err)
	}
	reason := err.Error()
	if len(reason) > maxControlFramePayloadSize-2 {
		reason = reason[:maxControlFramePayloadSize-2]
	}
	c.mux.Lock()
	sent := c.closeSent
	c.mux.Unlock()
	if !sent {
		// (A close frame already written, the application's or the
		// answer to the peer's, is not followed by another.)
		if werr := c.WriteClose(closeCodeOf(err), reason); werr != nil {
			_ = c.Close()
			return
		}
	}
	d := c.FailTimeout
	if d <= 0 {
		d = DefaultFailTimeout
	}
	// Under mux, so that a keep-alive refresh (refreshDeadline) never
	// pushes this deadline back.
	c.mux.Lock()
	_ = c.SetReadDeadline(time.Now().Add(d))
	c.mux.Unlock()
}

// refreshDeadline pushes the read deadline back by KeepaliveTime after a
// frame from the peer, unless the connection is failed.
//
//go:norace
func (c *Conn) refreshDeadline() {
	c.mux.Lock()
	if !c.failed.Load() {
		_ = c.SetReadDeadline(time.Now().Add(c.KeepaliveTime))
	}
	c.mux.Unlock()
}

// closeWritten reports whether a close frame was written: input after it,
// on a failed connection, is the peer's answer (Parse).
//
//go:norace
func (c *Conn) closeWritten() bool {
	c.mux.Lock()
	defer c.mux.Unlock()
	return c.closeSent
}

// failClosed fails the connection for err in answer to the peer's close
// frame: the peer sends nothing after it, so the socket is closed right
// after the server's close frame.
//
//go:norace
func (c *Conn) failClosed(err error) {
	c.fail(err)
	_ = c.Close()
}

// Failed reports whether the connection was failed for a protocol error:
// its close frame is written and nothing more may be.
//
//go:norace
func (c *Conn) Failed() bool { return c.failed.Load() }

// OnProtocolError sets the handler called when a connection is failed for
// a protocol error, before the close frame is written: after it returns,
// nothing more may be written to the connection but that frame.
//
//go:norace
func (u *Upgrader) OnProtocolError(h func(c *Conn, err error)) {
	u.protocolErrorHandler = h
}
