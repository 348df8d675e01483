package transport

// Accepting connections: the Acceptor and its nbio engine, the upgrade, the
// flushers and their queue, and the pool of output buffers.

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocket-go/rocket/internal/nbio"
	"github.com/rocket-go/rocket/internal/nbio/logging"
	"github.com/rocket-go/rocket/internal/nbio/nbhttp"
	"github.com/rocket-go/rocket/internal/nbio/nbhttp/websocket"
)

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
		Name: "rocket",
		// nbio's bound is a backstop, twice Rocket's: WriteText holds
		// the output the kernel has not taken (Rocket's and nbio's
		// together) to MaxPendingBytes, but takes one frame larger than
		// that when nothing is pending, and pings and close frames go
		// to nbio directly.
		MaxWriteBufferSize: 2 * cfg.MaxPendingBytes,
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
		if c := a.connOf(ws); c != nil {
			c.onClose(err)
		}
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

// maxPooledBuf is the largest output buffer kept for reuse.
const maxPooledBuf = 64 << 10

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
