// Package transport is Rocket's seam over the WebSocket library.
//
// Rocket needs little from a WebSocket implementation: upgrade an HTTP
// request, be told of each text or binary message and of the close, write a
// text frame without blocking, ping, and close with a code. This package
// offers exactly that, so that the library behind it can be replaced without
// touching the rest of Rocket.
//
// The implementation uses github.com/rocket-go/rocket/internal/nbio: after the HTTP upgrade
// the connection is handed to nbio's epoll poller, so an idle connection
// holds no goroutine and no read buffer. Messages of one connection are
// delivered one at a time, in order, on a goroutine of nbio's pool.
//
// Writes never block and are coalesced: WriteText frames the message into
// the connection's output buffer, and the buffer is handed to the socket in
// one write(2) by whoever flushes it next: the goroutine that ran the
// connection's messages, once every message of one read has been handled (so
// the replies to a batch of requests leave together), or otherwise one of
// the acceptor's flushers (so that messages pushed to a connection in a burst
// leave together). What the kernel cannot take at once is buffered by nbio.
// The output waiting in the two together (Conn.Buffered) is bounded by
// Config.MaxPendingBytes per connection: a WriteText that would take it past
// the bound fails with ErrSlow, and the frame is not taken (a frame larger
// than the bound on its own is taken when nothing is pending, so that any
// message reaches a peer that reads). nbio's own bound, twice that, is a
// backstop (pings and close frames do not go through WriteText): past it
// nbio closes the connection and OnClose gets ErrSlow.
// See docs/benchmarks.md for the measurements behind the choice.
package transport

import (
	"errors"
	"net/http"
	"time"
)

// ErrSlow is returned by Conn.WriteText when the peer does not read fast
// enough and the connection's pending output would exceed its bound.
var ErrSlow = errors.New("transport: peer too slow, pending output over limit")

// ErrIdleTimeout is given to Handler.OnClose when nothing arrived from the
// peer within Config.IdleTimeout.
var ErrIdleTimeout = errors.New("transport: idle timeout, nothing received from peer")

// ErrClosed is returned by writes on a closed connection.
var ErrClosed = errors.New("transport: connection closed")

// Close codes used by Rocket (RFC 6455 section 7.4 and the private range).
const (
	CloseNormal    = 1000
	CloseGoingAway = 1001
	CloseProtocol  = 1002
	ClosePolicy    = 1008
	CloseTooBig    = 1009
	CloseInternal  = 1011
)

// Handler receives the events of one connection. Calls for one connection
// never overlap and come in the order the frames arrived.
type Handler interface {
	// OnMessage is called with each data message. data is only valid
	// during the call.
	OnMessage(text bool, data []byte)
	// OnClose is called once when the connection is closed, for whatever
	// reason; err says why (nil for a clean close by the peer).
	OnClose(err error)
}

// Config configures an Acceptor.
type Config struct {
	// MaxMessageBytes is the largest message read; larger ones close the
	// connection with code 1009.
	MaxMessageBytes int
	// MaxPendingBytes bounds the output buffered for one connection when
	// the kernel's socket buffer is full.
	MaxPendingBytes int
	// MaxInputBytes bounds the bytes read from one connection and not yet
	// handled (the messages queued for the Handler, each counted with 64
	// bytes of overhead): past it the connection is not read until half of
	// it is handled, so that TCP slows the sender down. A frame still
	// being received is bounded apart, by MaxMessageBytes. Zero means
	// 4×MaxMessageBytes.
	MaxInputBytes int
	// IdleTimeout closes a connection from which nothing (not even a pong)
	// has arrived for this long.
	IdleTimeout time.Duration
	// CloseTimeout is how long a connection closed by the server waits for
	// the peer's close frame before the socket is closed anyway.
	CloseTimeout time.Duration
	// CheckOrigin reports whether the request's origin is allowed.
	CheckOrigin func(r *http.Request) bool
	// InputResumed, if set, is called when a connection is read again
	// after its input was over MaxInputBytes, with how long it was not
	// read.
	InputResumed func(paused time.Duration)
}
