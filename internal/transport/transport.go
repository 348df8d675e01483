// Package transport is Rocket's seam over the WebSocket library.
//
// Rocket needs little from a WebSocket implementation: upgrade an HTTP
// request, be told of each text or binary message and of the close, write a
// text frame without blocking, ping, and close with a code. This package
// offers exactly that, so that the library behind it can be replaced without
// touching the rest of Rocket.
//
// The implementation uses github.com/lesismal/nbio: after the HTTP upgrade
// the connection is handed to nbio's epoll poller, so an idle connection
// holds no goroutine and no read buffer. Messages of one connection are
// delivered one at a time, in order, on a goroutine of nbio's pool. Writes
// never block: what the kernel cannot take at once is buffered by nbio, up
// to Config.MaxPendingBytes per connection, past which the write fails with
// ErrSlow. See docs/benchmarks.md for the measurements behind the choice.
package transport

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
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
	// IdleTimeout closes a connection from which nothing (not even a pong)
	// has arrived for this long.
	IdleTimeout time.Duration
	// CloseTimeout is how long a connection closed by the server waits for
	// the peer's close frame before the socket is closed anyway.
	CloseTimeout time.Duration
	// CheckOrigin reports whether the request's origin is allowed.
	CheckOrigin func(r *http.Request) bool
}

// Acceptor upgrades HTTP requests to WebSocket connections served by one
// nbio engine. It is safe for concurrent use.
type Acceptor struct {
	cfg      Config
	engine   *nbhttp.Engine
	upgrader *websocket.Upgrader

	// bindMu and bind let the message and close callbacks wait for the
	// session of a connection that is still being set up by Upgrade.
	bindMu sync.Mutex
	bind   *sync.Cond

	started atomic.Bool
	stopped atomic.Bool
}

var quietNBIO sync.Once

// New returns an Acceptor; call Start before Upgrade.
func New(cfg Config) *Acceptor {
	quietNBIO.Do(func() { logging.SetLevel(logging.LevelError) })
	a := &Acceptor{cfg: cfg}
	a.bind = sync.NewCond(&a.bindMu)
	a.engine = nbhttp.NewEngine(nbhttp.Config{
		Name:                    "rocket",
		MaxWriteBufferSize:      cfg.MaxPendingBytes,
		MaxLoad:                 1 << 20,
		ReleaseWebsocketPayload: false,
	})
	u := websocket.NewUpgrader()
	u.Engine = a.engine
	u.KeepaliveTime = cfg.IdleTimeout
	u.MessageLengthLimit = cfg.MaxMessageBytes
	u.CheckOrigin = cfg.CheckOrigin
	if u.CheckOrigin == nil {
		u.CheckOrigin = func(*http.Request) bool { return true }
	}
	u.OnMessage(func(ws *websocket.Conn, mt websocket.MessageType, data []byte) {
		c := a.connOf(ws)
		if c == nil {
			return
		}
		c.h.OnMessage(mt == websocket.TextMessage, data)
	})
	u.OnClose(func(ws *websocket.Conn, err error) {
		c := a.connOf(ws)
		if c == nil {
			return
		}
		if c.closeTimer.Load() != nil {
			(*c.closeTimer.Load()).Stop()
		}
		if errors.Is(err, nbio.ErrReadTimeout) {
			err = ErrIdleTimeout
		}
		c.h.OnClose(err)
	})
	u.SetCloseHandler(func(ws *websocket.Conn, code int, reason string) {
		// Answer the peer's close frame unless we sent ours first; the
		// connection is closed by nbio right after this handler.
		c := a.connOf(ws)
		if c != nil && c.closing.Swap(true) {
			return
		}
		if code == 1005 {
			_ = ws.WriteMessage(websocket.CloseMessage, nil)
			return
		}
		_ = ws.WriteClose(code, "")
	})
	a.upgrader = u
	return a
}

// Start starts the engine's pollers.
func (a *Acceptor) Start() error {
	if err := a.engine.Start(); err != nil {
		return fmt.Errorf("transport: start nbio engine: %w", err)
	}
	a.started.Store(true)
	return nil
}

// Stop closes every connection and stops the pollers. OnClose is called
// for connections still open.
func (a *Acceptor) Stop() {
	if !a.started.Load() || a.stopped.Swap(true) {
		return
	}
	a.engine.Stop()
	// Wake callbacks that might still wait for a session.
	a.bindMu.Lock()
	a.bind.Broadcast()
	a.bindMu.Unlock()
}

// connOf returns the Conn bound to ws, waiting for Upgrade to bind it if a
// frame or the close overtook the end of the handshake.
func (a *Acceptor) connOf(ws *websocket.Conn) *Conn {
	if c, ok := ws.Session().(*Conn); ok {
		return c
	}
	a.bindMu.Lock()
	defer a.bindMu.Unlock()
	for {
		if c, ok := ws.Session().(*Conn); ok {
			return c
		}
		if a.stopped.Load() {
			return nil
		}
		a.bind.Wait()
	}
}

// Upgrade upgrades the request and binds h to the new connection. On
// failure the HTTP response has been written.
func (a *Acceptor) Upgrade(w http.ResponseWriter, r *http.Request, h Handler) (*Conn, error) {
	if !a.started.Load() || a.stopped.Load() {
		http.Error(w, "server not accepting connections", http.StatusServiceUnavailable)
		return nil, errors.New("transport: acceptor not running")
	}
	ws, err := a.upgrader.UpgradeAndTransferConnToPoller(w, r, nil)
	if err != nil {
		return nil, fmt.Errorf("transport: upgrade: %w", err)
	}
	c := &Conn{ws: ws, h: h, a: a}
	a.bindMu.Lock()
	ws.SetSession(c)
	a.bind.Broadcast()
	a.bindMu.Unlock()
	// nbio pushes the read deadline back after every frame received, but
	// sets the first one on the socket it gave to the poller; set it on
	// the poller's connection, so that a peer that never sends anything
	// (not even a pong) is closed too.
	if a.cfg.IdleTimeout > 0 {
		if err := ws.SetReadDeadline(time.Now().Add(a.cfg.IdleTimeout)); err != nil {
			ws.CloseWithError(err)
			return nil, fmt.Errorf("transport: set read deadline: %w", err)
		}
	}
	return c, nil
}

// Conn is one WebSocket connection. Its methods are safe for concurrent use.
type Conn struct {
	ws         *websocket.Conn
	h          Handler
	a          *Acceptor
	closing    atomic.Bool
	closeTimer atomic.Pointer[*time.Timer]
}

// WriteText writes one text message. It never blocks on the network; it
// returns ErrSlow when the peer's pending output is over the limit, and
// ErrClosed after the connection closed.
func (c *Conn) WriteText(data []byte) error {
	return c.write(websocket.TextMessage, data)
}

// Ping writes a ping frame.
func (c *Conn) Ping() error {
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

// Close starts the closing handshake with code and reason: it sends a
// close frame and closes the socket when the peer answers or after the
// close timeout. A second call does nothing.
func (c *Conn) Close(code int, reason string) {
	if c.closing.Swap(true) {
		return
	}
	if len(reason) > 120 {
		reason = reason[:120]
	}
	if err := c.ws.WriteClose(code, reason); err != nil {
		_ = c.ws.Close()
		return
	}
	t := time.AfterFunc(c.a.cfg.CloseTimeout, func() { _ = c.ws.Close() })
	c.closeTimer.Store(&t)
}

// Abort closes the socket at once, without a closing handshake (for peers
// that cannot take more output).
func (c *Conn) Abort(err error) {
	c.closing.Store(true)
	c.ws.CloseWithError(err)
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }
