package rocket

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/protocol"
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
	conn   *transport.Conn
	slot   *slot // place under the connection caps, released on close (limits.go)
	ctx    context.Context
	cancel context.CancelFunc

	// readyCh is closed when setup is over (welcomed, or failed).
	readyCh chan struct{}
	// ready is set once the welcome and the kept mail have been written;
	// writes before that are queued in pending.
	ready atomic.Bool
	// closing is set when the client starts leaving; directed messages
	// for it are then kept in leftovers and sent on through the broker.
	closing atomic.Bool
	// registered is set by setup once the directory knows the client.
	registered atomic.Bool
	// kicked is set when DisconnectUser closes the client (users.go): the
	// directory has forgotten it, so what reaches it while it closes is
	// dropped, not mailed.
	kicked atomic.Bool
	// acked is set when the client acknowledges its directed messages
	// (acks.go): by setup, to what the connection asked, then to what
	// its session records.
	acked atomic.Bool

	mu        sync.Mutex
	pending   []queued
	leftovers [][]byte
	drained   bool
	rooms     map[string]struct{}
	presence  map[string]*presence // rooms the client is present in (presence.go)
	values    map[string]any
	reason    string
	lastSeq   uint64 // number of the last numbered message written (acks.go)
	ackedSeq  uint64 // highest number the client acknowledged

	finishOnce sync.Once

	// Used only by the goroutine running the client's commands.
	limiter *rate.Limiter
	// rateLimited counts the commands refused in a row for the rate
	// limit (Config.MaxRateLimited).
	rateLimited int
}

func newClient(s *Server, userID string) *Client {
	cl := &Client{srv: s, userID: userID, readyCh: make(chan struct{})}
	cl.ctx, cl.cancel = context.WithCancel(s.ctx)
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
	if cl.closing.Load() {
		return ErrUnknownClient
	}
	return cl.write(data)
}

// Close disconnects the client with close code 1000 and reason.
func (cl *Client) Close(reason string) {
	cl.closeWith(transport.CloseNormal, reason)
}

// queued is a frame written before the client was welcomed. For a
// directed message, id is the client id it was delivered for (a resume
// that fails gives the connection another id) and seq its number
// (acks.go), 0 when not numbered; id is empty for other frames.
type queued struct {
	id    string
	seq   uint64
	frame []byte
}

// write sends data to the connection, or queues it while the client is
// not yet welcomed.
func (cl *Client) write(data []byte) error {
	return cl.writeFor("", data)
}

// writeFor is write for a directed message to the client id (see queued).
func (cl *Client) writeFor(id string, data []byte) error {
	if !cl.ready.Load() {
		cl.mu.Lock()
		if !cl.ready.Load() {
			cl.pending = append(cl.pending, queued{id: id, frame: slices.Clone(data)})
			cl.mu.Unlock()
			return nil
		}
		cl.mu.Unlock()
	}
	err := cl.conn.WriteText(data)
	switch {
	case err == nil:
		cl.srv.metrics.messagesSent.Inc()
		return nil
	case errors.Is(err, transport.ErrSlow):
		cl.slow()
		return ErrSlowClient
	case errors.Is(err, transport.ErrClosed):
		return ErrUnknownClient
	default:
		return err
	}
}

// deliver writes a directed message for the client id. It reports false
// when the client has left and its leftovers were already handed back, so
// that the caller sends the message on through the broker.
func (cl *Client) deliver(id string, data []byte) bool {
	if !cl.closing.Load() {
		err := cl.writeFor(id, data)
		if err == nil || !(errors.Is(err, ErrUnknownClient) || errors.Is(err, ErrSlowClient)) {
			return true
		}
		// The connection is gone or going: keep the message for the
		// client's mailbox.
		cl.closing.Store(true)
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.drained {
		return false
	}
	cl.leftovers = append(cl.leftovers, slices.Clone(data))
	return true
}

// readyFrame is a frame becomeReady writes; keep says whether it is a
// directed message the broker no longer holds (not numbered), to be kept
// for the client's mailbox if it cannot be handed to the transport.
type readyFrame struct {
	frame []byte
	keep  bool
}

// becomeReady writes the welcome, the kept mail and whatever was queued
// meanwhile, in that order, and then lets writes go straight through. For
// a client that acknowledges, the mail is numbered, and a numbered message
// queued meanwhile that the mail held already is dropped. Directed
// messages queued for another client id (the one of a resume that failed)
// are not written: it returns those that are not numbered, for the caller
// to send on (the numbered ones are kept by the broker).
//
// When the connection fails meanwhile (it is slow, or closed: by its peer,
// or by a newer connection resuming the same session), the directed
// messages not yet handed to the transport are kept in leftovers, which
// finish sends back to the client's mailbox for its next resume; numbered
// ones stay in the broker until acknowledged.
func (cl *Client) becomeReady(welcome []byte, mail []broker.Mail) (misrouted []queued) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	frames := make([]readyFrame, 0, 1+len(mail)+len(cl.pending))
	frames = append(frames, readyFrame{frame: welcome})
	for _, m := range mail {
		if !cl.acked.Load() {
			frames = append(frames, readyFrame{frame: m.Data, keep: true})
			continue
		}
		frames = append(frames, readyFrame{frame: protocol.AppendNumbered(nil, m.Seq, m.Data)})
		cl.lastSeq = max(cl.lastSeq, m.Seq)
	}
	for _, q := range cl.pending {
		if q.id != "" && q.id != cl.id {
			if q.seq == 0 {
				misrouted = append(misrouted, q)
			}
			continue
		}
		if q.seq != 0 {
			if q.seq <= cl.lastSeq {
				continue
			}
			cl.lastSeq = q.seq
		}
		frames = append(frames, readyFrame{frame: q.frame, keep: q.id != "" && q.seq == 0})
	}
	cl.pending = nil
	for i, f := range frames {
		err := cl.conn.WriteText(f.frame)
		if err == nil {
			continue
		}
		if errors.Is(err, transport.ErrSlow) {
			// Counted here, once: the close that follows reports
			// ErrSlow again, and onClose sees the reason set.
			cl.markSlowLocked()
			cl.conn.Abort(err)
		}
		cl.closing.Store(true)
		for _, rest := range frames[i:] {
			if rest.keep {
				cl.leftovers = append(cl.leftovers, slices.Clone(rest.frame))
			}
		}
		break
	}
	cl.ready.Store(true)
	return misrouted
}

// slow disconnects a client whose pending output is over the limit.
func (cl *Client) slow() {
	cl.noteSlow()
	cl.closing.Store(true)
	cl.conn.Abort(ErrSlowClient)
}

// noteSlow records, once, that the client is disconnected for being slow.
func (cl *Client) noteSlow() {
	cl.mu.Lock()
	cl.markSlowLocked()
	cl.mu.Unlock()
}

// markSlowLocked is noteSlow with cl.mu held: the first reason given for
// the client's leaving wins, and a slow disconnect is counted and logged
// only when it is that first reason.
func (cl *Client) markSlowLocked() {
	if cl.reason != "" {
		return
	}
	cl.reason = "slow client"
	cl.srv.metrics.slowClients.Inc()
	cl.srv.log.Warn("disconnecting slow client", "client", cl.id, "max_pending_bytes", cl.srv.cfg.MaxPendingBytes)
}

// closeWith starts closing the connection with a close code.
func (cl *Client) closeWith(code int, reason string) {
	cl.mu.Lock()
	if cl.reason == "" {
		cl.reason = reason
	}
	cl.mu.Unlock()
	if cl.conn != nil {
		cl.conn.Close(code, reason)
	}
}

// transportHandler is what the transport calls back for one connection:
// the client's onMessage and onClose, kept off Client's exported methods so
// that no other caller can inject frames or run a close.
type transportHandler struct{ cl *Client }

func (h transportHandler) OnMessage(text bool, data []byte) { h.cl.onMessage(text, data) }
func (h transportHandler) OnClose(err error)                { h.cl.onClose(err) }

// onMessage runs the frame's commands (the transport's OnMessage).
func (cl *Client) onMessage(text bool, data []byte) {
	<-cl.readyCh
	if cl.closing.Load() || !cl.registered.Load() {
		return
	}
	cl.srv.dispatch(cl, text, data)
}

// onClose makes the client leave once its connection is closed (the
// transport's OnClose).
func (cl *Client) onClose(err error) {
	s := cl.srv
	s.conns.Add(-1)
	cl.slot.release()
	reason := "closed by client"
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrIdleTimeout):
		reason = "idle timeout"
	case errors.Is(err, transport.ErrSlow):
		// The transport's output buffer overflowed while flushing.
		cl.noteSlow()
		reason = "slow client"
	default:
		reason = "connection lost: " + err.Error()
	}
	select {
	case <-cl.readyCh:
		cl.finish(reason)
	default:
		// Still being set up: finish once setup is over, off the
		// transport's goroutine.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cl.finish(reason)
		}()
	}
}

// finish makes the client leave: its rooms, then the directory (it becomes
// away), then this server. Messages that reached it while it was leaving
// are sent on through the broker (to its mailbox). finish waits for the
// client's setup to end, runs once, and makes other callers wait for it
// to complete.
func (cl *Client) finish(reason string) {
	<-cl.readyCh
	cl.finishOnce.Do(func() { cl.doFinish(reason) })
}

func (cl *Client) doFinish(reason string) {
	s := cl.srv
	cl.closing.Store(true)
	cl.cancel()
	cl.mu.Lock()
	if cl.reason == "" {
		cl.reason = reason
	}
	reason = cl.reason
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
	if !cl.registered.Load() {
		return
	}
	if err := s.broker.Disconnect(ctx, cl.id, s.id); err != nil {
		s.reportError(&ErrorEvent{Client: cl, Err: err})
	}
	cl.mu.Lock()
	cl.drained = true
	leftovers := cl.leftovers
	cl.leftovers = nil
	cl.mu.Unlock()
	s.removeLocal(cl)
	if cl.kicked.Load() {
		leftovers = nil // its session is forgotten: no mailbox to keep them
	}
	for _, data := range leftovers {
		if err := s.broker.Send(ctx, cl.id, data); err != nil {
			s.reportError(&ErrorEvent{Client: cl, Err: err})
		}
	}
	s.log.Debug("client left", "client", cl.id, "reason", reason)
	if s.onDisconnect != nil {
		s.onDisconnect(&DisconnectEvent{Client: cl, Reason: reason})
	}
}
