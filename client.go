package rocket

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/transport"
	"golang.org/x/time/rate"
)

// Client is one WebSocket connection to this server, known to the whole
// cluster by its id. Its methods are safe for concurrent use.
//
// A client that disconnects is away: its id and session live on for the
// mailbox TTL, and messages sent to it meanwhile are kept until it resumes,
// possibly on another server, as a new *Client with the same id.
type Client struct {
	srv    *Server
	id     string
	secret string
	userID string
	meta   map[string]any
	slot   *slot // place under the connection caps, released on close (limits.go)
	ctx    context.Context
	cancel context.CancelFunc

	// out owns the connection: its state and every write to it
	// (outbox.go).
	out outbox

	// welcomed is closed when the client's commands may run: its welcome
	// is written, or its setup failed.
	welcomed chan struct{}
	// setupDone is closed when setup is over: the kept mail is handed
	// over, or setup failed.
	setupDone chan struct{}
	// registered is set by setup once the directory knows the client.
	registered atomic.Bool

	// returned is closed when the server a resume took the client from
	// has handed back what it had not written (brokerHandler.Returned);
	// setup waits for it while awaiting is set.
	returned     chan struct{}
	returnedOnce sync.Once
	awaiting     atomic.Bool

	mu       sync.Mutex
	rooms    map[string]struct{}
	presence map[string]*presence // rooms the client is present in (presence.go)
	values   map[string]any

	finishOnce sync.Once

	// Used only by the goroutine running the client's commands.
	limiter *rate.Limiter
	// rateLimited counts the commands refused in a row for the rate
	// limit (Config.MaxRateLimited).
	rateLimited int
}

func newClient(s *Server, userID string) *Client {
	cl := &Client{srv: s, userID: userID, welcomed: make(chan struct{}), setupDone: make(chan struct{}), returned: make(chan struct{})}
	cl.ctx, cl.cancel = context.WithCancel(s.ctx)
	cl.out = outbox{
		count:      outboxCounters{sent: s.metrics.messagesSent, slow: s.metrics.slowClients, dropped: s.metrics.droppedSlow},
		maxPending: s.cfg.MaxPendingBytes,
		maxMail:    s.cfg.MailboxBytes,
		spawn:      s.wg.Go,
		stall:      s.cfg.PongTimeout,
		onSlow: func(id string) {
			s.log.Warn("disconnecting slow client", "client", id, "max_pending_bytes", s.cfg.MaxPendingBytes)
		},
	}
	return cl
}

// ID returns the client's cluster-unique id.
func (cl *Client) ID() string { return cl.id }

// UserID returns the user id the connect hook gave the client, if any
// (see UserClient for what the cluster does with it).
func (cl *Client) UserID() string { return cl.userID }

// Meta returns the metadata the connect hook gave the client, if any.
// Callers must not modify it.
func (cl *Client) Meta() map[string]any { return cl.meta }

// Context returns a context cancelled when the client disconnects.
func (cl *Client) Context() context.Context { return cl.ctx }

// Set stores a value under key for the life of this connection (it does
// not survive a resume).
func (cl *Client) Set(key string, value any) {
	cl.mu.Lock()
	if cl.values == nil {
		cl.values = make(map[string]any)
	}
	cl.values[key] = value
	cl.mu.Unlock()
}

// Get returns the value stored under key, or nil.
func (cl *Client) Get(key string) any {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.values[key]
}

// Send writes msg to this client (see Server.Send for how msg is
// encoded). It returns ErrUnknownClient once the client has disconnected;
// use Server.Send with the client's id to reach it wherever it is. What
// Client.Send writes is never numbered or kept for a resume, even for a
// client that acknowledges: Server.Send is for messages that must arrive.
func (cl *Client) Send(msg any) error {
	data, err := encode(msg)
	if err != nil {
		return err
	}
	return cl.out.send(data)
}

// Close disconnects the client with close code 1000 and reason.
func (cl *Client) Close(reason string) {
	cl.closeWith(transport.CloseNormal, reason)
}

// closeWith starts closing the connection with a close code.
func (cl *Client) closeWith(code int, reason string) {
	cl.out.close(code, reason)
}

// leaving reports whether the client's connection is closing or closed.
func (cl *Client) leaving() bool { return cl.out.leaving() }

// transportHandler is what the transport calls back for one connection:
// the client's onMessage and onClose, kept off Client's exported methods so
// that no other caller can inject frames or run a close.
type transportHandler struct{ cl *Client }

func (h transportHandler) OnMessage(text bool, data []byte) { h.cl.onMessage(text, data) }
func (h transportHandler) OnClose(err error)                { h.cl.onClose(err) }

// onMessage runs the frame's commands (the transport's OnMessage).
func (cl *Client) onMessage(text bool, data []byte) {
	<-cl.welcomed
	if cl.leaving() || !cl.registered.Load() {
		return
	}
	cl.srv.dispatch(cl, text, data)
}

// onClose makes the client leave once its connection is closed (the
// transport's OnClose).
func (cl *Client) onClose(err error) {
	s := cl.srv
	s.conns.Add(-1)
	reason := "closed by client"
	slow := false
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrIdleTimeout):
		reason = "idle timeout"
	case errors.Is(err, transport.ErrSlow):
		// The transport's output buffer overflowed while flushing.
		reason, slow = slowReason, true
	default:
		reason = "connection lost: " + err.Error()
	}
	cl.out.closed(reason, slow)
	select {
	case <-cl.setupDone:
		cl.slot.release()
		cl.finish(reason)
	default:
		// Still being set up: finish once setup is over, off the
		// transport's goroutine. The connection keeps its place under
		// the caps until then, so that setups outliving their sockets
		// (a client resuming in a loop) stay bounded by them.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cl.finish(reason)
			cl.slot.release()
		}()
	}
}

// finish makes the client leave: its rooms, then the directory (it becomes
// away), then this server. Messages that reached it while it was leaving
// are sent on through the broker (to its mailbox). finish waits for the
// client's setup to end, runs once, and makes other callers wait for it
// to complete.
func (cl *Client) finish(reason string) {
	<-cl.setupDone
	cl.finishOnce.Do(func() { cl.doFinish(reason) })
}

func (cl *Client) doFinish(reason string) {
	s := cl.srv
	cl.out.closed(reason, false)
	cl.cancel()
	cl.mu.Lock()
	rooms := make([]string, 0, len(cl.rooms))
	for r := range cl.rooms {
		rooms = append(rooms, r)
	}
	cl.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), setupTimeout)
	defer cancel()
	for _, r := range rooms {
		if err := s.leave(ctx, cl, r); err != nil {
			s.reportError(&ErrorEvent{Client: cl, Err: err})
		}
	}
	// A registered client's leftovers go back to the head of its mailbox
	// as it goes away, ahead of anything sent to it since (or on to the
	// server it moved to). Those delivered for another id (a resume that
	// failed), all of them for a client never recorded in the directory,
	// and what reached it meanwhile are sent on, as any message sent to it
	// now would be.
	registered := cl.registered.Load()
	reason, leftovers := cl.out.finish(reason)
	var own [][]byte
	var others []queued
	for _, q := range leftovers {
		if registered && q.id == cl.id {
			own = append(own, q.frame)
		} else {
			others = append(others, q)
		}
	}
	if registered {
		if err := s.broker.DisconnectWith(ctx, cl.id, s.id, own); err != nil {
			s.reportError(&ErrorEvent{Client: cl, Err: err})
		}
	}
	others = append(others, cl.out.drain()...)
	s.removeLocal(cl)
	for _, q := range others {
		if err := s.broker.Send(ctx, q.id, q.frame); err != nil && !errors.Is(err, broker.ErrUnknownClient) {
			s.reportError(&ErrorEvent{Client: cl, Err: err})
		}
	}
	if !registered {
		return
	}
	s.log.Debug("client left", "client", cl.id, "reason", reason)
	if s.onDisconnect != nil {
		s.onDisconnect(&DisconnectEvent{Client: cl, Reason: reason})
	}
}
