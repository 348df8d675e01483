package transport

// The connection: its state, which write.go and close.go share, and its
// address.

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocket-go/rocket/internal/nbio"
	"github.com/rocket-go/rocket/internal/nbio/nbhttp/websocket"
)

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
	ended   bool        // closed: what is left is never sent (Buffered)
	// flushing is the length of the buffer flush took from wbuf, until
	// its write returns (Buffered).
	flushing atomic.Int64
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }
