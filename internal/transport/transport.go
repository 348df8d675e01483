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
// Rocket's output buffer and nbio's are each bounded by
// Config.MaxPendingBytes per connection: past it the write fails with ErrSlow
// (Rocket's) or the connection is closed with ErrSlow (nbio's).
// See docs/benchmarks.md for the measurements behind the choice.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rocket-go/rocket/internal/nbio"
	"github.com/rocket-go/rocket/internal/nbio/logging"
	"github.com/rocket-go/rocket/internal/nbio/nbhttp"
	"github.com/rocket-go/rocket/internal/nbio/nbhttp/websocket"
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

	flushq   flushQueue
	bufs     sync.Pool // *[]byte output buffers
	flushers sync.WaitGroup
	writers  sync.WaitGroup // goroutines writing to blocking-mode connections

	started atomic.Bool
	stopped atomic.Bool
}

// flushQueue holds the connections with output waiting for a flusher, in
// the order they were queued; each connection is in it at most once
// (Conn.queued), so its length is bounded by the number of connections.
type flushQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	q       []*Conn
	head    int
	stopped bool
}

// flushBatch is how many connections a flusher takes from the queue at once.
const flushBatch = 32

// push queues c for a flusher; it reports false once the queue is
// stopped.
func (f *flushQueue) push(c *Conn) bool {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return false
	}
	f.q = append(f.q, c)
	f.mu.Unlock()
	f.cond.Signal()
	return true
}

// take moves up to len(dst) connections into dst, waiting for one; it
// returns 0 once the queue is stopped.
func (f *flushQueue) take(dst []*Conn) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.head == len(f.q) && !f.stopped {
		f.cond.Wait()
	}
	if f.stopped {
		return 0
	}
	n := copy(dst, f.q[f.head:])
	clear(f.q[f.head : f.head+n])
	f.head += n
	switch {
	case f.head == len(f.q):
		f.q, f.head = f.q[:0], 0
	case f.head > len(f.q)/2:
		m := copy(f.q, f.q[f.head:])
		clear(f.q[m:])
		f.q, f.head = f.q[:m], 0
	}
	return n
}

func (f *flushQueue) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.cond.Broadcast()
}

// maxFlushDelay bounds how long output written while the connection's
// messages are being handled waits for them all to be handled (an action
// that runs long, or a later message that does, must not hold back what was
// written before).
const maxFlushDelay = time.Millisecond

// maxPooledBuf is the largest output buffer kept for reuse.
const maxPooledBuf = 64 << 10

var quietNBIO sync.Once

// New returns an Acceptor; call Start before Upgrade.
func New(cfg Config) *Acceptor {
	quietNBIO.Do(func() { logging.SetLevel(logging.LevelError) })
	a := &Acceptor{cfg: cfg}
	a.flushq.cond.L = &a.flushq.mu
	a.bind = sync.NewCond(&a.bindMu)
	if cfg.MaxInputBytes <= 0 {
		cfg.MaxInputBytes = 4 * cfg.MaxMessageBytes
	}
	a.cfg = cfg
	a.engine = nbhttp.NewEngine(nbhttp.Config{
		Name:               "rocket",
		MaxWriteBufferSize: cfg.MaxPendingBytes,
		MaxConnInputBytes:  cfg.MaxInputBytes,
		// One read per ready connection and round of a poller, and a
		// poller per CPU: a connection that always has input (a flood)
		// waits its turn like the others instead of being read until
		// its input bound, so a bystander is read within one round.
		MaxConnReadTimesPerEventLoop: 1,
		NPoller:                      runtime.GOMAXPROCS(0),
		MaxLoad:                      1 << 20,
		ReleaseWebsocketPayload:      false,
	})
	// After nbio has parsed what one read brought (and queued the handling
	// of its messages on the connection's job list), queue a last job that
	// flushes the replies of the whole read at once.
	a.engine.OnData(func(nc *nbio.Conn, data []byte) {
		c := connOfNBIO(nc)
		if c != nil && c.nbc != nc {
			c = nil // not a connection whose output goes to nc
		}
		if c != nil {
			c.batch.Add(1)
		}
		nc.DataHandler()(nc, data)
		if c == nil {
			return
		}
		// The last job counts in the connection's input like the
		// messages, so that a peer trickling bytes cannot queue them
		// without bound either.
		nc.AddInput(nbio.InputJobOverhead)
		if nc.ExecuteLen() == 0 || !nc.Execute(c.endBatchJob) {
			// No message is being handled: nothing to wait for.
			nc.DoneInput(nbio.InputJobOverhead)
			c.release(false)
		}
	})
	if cfg.InputResumed != nil {
		a.engine.OnInputResumed(func(_ *nbio.Conn, paused time.Duration) { cfg.InputResumed(paused) })
	}
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
		c.stopOutput()
		switch {
		case errors.Is(err, nbio.ErrReadTimeout),
			// nbio's blocking mode (TLS) reports the read deadline so.
			errors.Is(err, os.ErrDeadlineExceeded):
			err = ErrIdleTimeout
		case errors.Is(err, nbio.ErrOverflow):
			err = ErrSlow
		}
		c.h.OnClose(err)
	})
	u.OnProtocolError(func(ws *websocket.Conn, err error) {
		// nbio fails the connection with a close frame: what Rocket
		// wrote before goes first, nothing after.
		if c := a.connOf(ws); c != nil {
			c.closing.Store(true)
			c.shut()
		}
	})
	u.SetCloseHandler(func(ws *websocket.Conn, code int, reason string) {
		// Answer the peer's close frame unless we sent ours first; the
		// connection is closed by nbio right after this handler.
		c := a.connOf(ws)
		if c != nil && c.closing.Swap(true) {
			return
		}
		if c != nil {
			c.shut()
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
	for range runtime.GOMAXPROCS(0) {
		a.flushers.Go(a.flusher)
	}
	return nil
}

// flusher writes out the connections queued in flushq until Stop.
func (a *Acceptor) flusher() {
	var batch [flushBatch]*Conn
	for {
		n := a.flushq.take(batch[:])
		if n == 0 {
			return
		}
		for i, c := range batch[:n] {
			c.flush()
			batch[i] = nil
		}
	}
}

// Stop closes every connection and stops the pollers. OnClose is called
// for connections still open.
func (a *Acceptor) Stop() {
	if !a.started.Load() || a.stopped.Swap(true) {
		return
	}
	a.engine.Stop()
	a.flushq.stop()
	a.flushers.Wait()
	a.writers.Wait()
	// Wake callbacks that might still wait for a session.
	a.bindMu.Lock()
	a.bind.Broadcast()
	a.bindMu.Unlock()
}

// connOf returns the Conn bound to ws, waiting for Upgrade to bind it if a
// frame or the close overtook the end of the handshake.
func (a *Acceptor) connOf(ws *websocket.Conn) *Conn {
	if c, ok := ws.SessionWithLock().(*Conn); ok {
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
	c.endBatchJob = c.endBatch
	c.nbc, _ = ws.UnderlayerConn().(*nbio.Conn)
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

// connOfNBIO returns the Conn of an nbio connection, nil while Upgrade has
// not bound it yet.
func connOfNBIO(nc *nbio.Conn) *Conn {
	ws, ok := nc.Session().(*websocket.Conn)
	if !ok {
		return nil
	}
	// With the lock SetSession takes: the poller must see the Conn
	// Upgrade built whole.
	c, _ := ws.SessionWithLock().(*Conn)
	return c
}

// Conn is one WebSocket connection. Its methods are safe for concurrent use.
type Conn struct {
	ws *websocket.Conn
	// nbc is the poller's connection, nil when nbio serves the connection
	// in blocking mode (TLS); output is then written frame by frame.
	nbc        *nbio.Conn
	h          Handler
	a          *Acceptor
	closing    atomic.Bool
	closeTimer atomic.Pointer[*time.Timer]

	// batch counts the reads whose messages are being handled; their
	// last job, endBatchJob (c.endBatch, made once rather than per read),
	// flushes the output.
	batch       atomic.Int32
	endBatchJob func()
	// fmu orders flushes, so that buffers reach the socket in the order
	// they were filled.
	fmu     sync.Mutex
	wmu     sync.Mutex
	wbuf    *[]byte     // framed output not handed to the socket yet
	queued  bool        // in the acceptor's flush queue
	armed   bool        // timer runs to flush within maxFlushDelay
	timer   *time.Timer // created on first use
	wclosed bool        // no more output is taken
}

// WriteText writes one text message. It never blocks on the network; it
// returns ErrSlow when the peer's pending output is over the limit, and
// ErrClosed once the connection is closing or closed.
func (c *Conn) WriteText(data []byte) error {
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		return ErrClosed
	}
	if c.wbuf == nil {
		c.wbuf = c.a.getBuf()
	}
	if max := c.a.cfg.MaxPendingBytes; max > 0 && len(*c.wbuf)+len(data) > max {
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

func (a *Acceptor) getBuf() *[]byte {
	if b, ok := a.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (a *Acceptor) putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	a.bufs.Put(b)
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
	c.a.putBuf(buf)
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

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }
