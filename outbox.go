package rocket

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/protocol"
	"github.com/rocket-go/rocket/internal/transport"
)

// conn is a client's connection as the outbox sees it: internal/transport's
// *Conn for WebSocket, a fake in tests. Its methods are safe for concurrent
// use and never block.
type conn interface {
	// WriteText queues one text message for the peer. It fails with
	// transport.ErrSlow when the output not yet taken by the peer would go
	// over its bound, and with transport.ErrClosed once the connection
	// is closing.
	WriteText(data []byte) error
	// Buffered returns the bytes written and not yet taken by the peer's
	// socket.
	Buffered() int
	// Ping writes a ping frame.
	Ping() error
	// Close starts the closing handshake with code and reason; what was
	// written before goes first. Later writes fail with ErrClosed.
	Close(code int, reason string)
	// Abort closes the connection at once, for a peer that cannot take
	// more output.
	Abort(err error)
}

// connState is the state of one client's connection. Its outbox owns it;
// every transition is made under outbox.mu by one of the outbox's methods:
//
//		setup ──handOver──▶ handover ──mail and queue written──▶ ready
//		  │                    │                                   │
//		  └────────────────────┴── close, kick, slow, lost ────────┴──▶ closing ──finish──▶ finished
//
//	  - setup: the connection is upgraded and the client's identity is being
//	    set up (new, or resumed from its session). Nothing is written: output
//	    is queued, up to Config.MaxPendingBytes. Commands wait.
//	  - handover: the welcome is written and the mail kept for the client is
//	    handed to the transport as the client reads it (never more than
//	    Config.MaxPendingBytes buffered at a time); commands run, and their
//	    replies and anything else are queued behind the mail.
//	  - ready: output goes straight to the transport.
//	  - closing: the connection is closing (closed by the server, kicked,
//	    slow, or lost). Nothing more is written and no command runs; a
//	    directed message that reaches the client is kept in the leftovers,
//	    for its mailbox.
//	  - finished: the client is leaving this server; its leftovers were
//	    taken. A directed message that reaches it is kept aside until the
//	    leftovers are back in the broker (drain), and refused after that:
//	    its sender sends it on through the broker.
//
// Outcomes are counted once each, where they happen: a frame handed to the
// transport (rocket_messages_sent_total), a slow disconnect when it is the
// first reason the client leaves (rocket_slow_client_disconnects_total),
// a frame dropped for the pending-output bound
// (rocket_messages_dropped_total{reason="slow_client"}; directed messages
// are kept in the leftovers instead, and numbered ones stay in the broker).
type connState uint32

const (
	connSetup connState = iota
	connHandover
	connReady
	connClosing
	connFinished
)

var connStateNames = [...]string{"setup", "handover", "ready", "closing", "finished"}

func (s connState) String() string { return connStateNames[s] }

// slowReason is the reason a client disconnected for not reading its
// output leaves with.
const slowReason = "slow client"

// queued is a frame written while the client is not ready. For a directed
// message, id is the client id it was delivered for (a resume that fails
// gives the connection another id) and seq its number (acks.go), 0 when not
// numbered; id is empty for other frames.
type queued struct {
	id    string
	seq   uint64
	frame []byte
}

// keep reports whether q is a directed message the broker no longer holds,
// to be kept for the client's mailbox when it cannot be written.
func (q queued) keep() bool { return q.id != "" && q.seq == 0 }

// outboxCounters are the metrics an outbox counts its outcomes in.
type outboxCounters struct {
	sent, slow, dropped prometheus.Counter
}

// outbox owns everything about writing to one client's connection: its
// state (connState), the output queued before it is ready, the hand-over
// of its kept mail, numbering and de-duplication for acknowledged delivery,
// the leftovers at close, and the counting of each outcome. Every write to
// the connection goes through it. Its methods are safe for concurrent use.
type outbox struct {
	conn       conn
	count      outboxCounters
	maxPending int             // Config.MaxPendingBytes
	maxMail    int             // Config.MailboxBytes: bound on the directed messages queued
	stall      time.Duration   // how long a hand-over waits for a client that reads nothing
	onSlow     func(id string) // called once, with o.mu held, when the client is found slow (it logs)
	spawn      func(func())    // runs a hand-over of the server's (nil: go)

	st atomic.Uint32 // connState, written under mu, read without it

	mu           sync.Mutex
	pending      []queued // output queued before ready
	pendingBytes int      // of the frames queued that are not directed messages
	pendingMail  int      // of the directed messages queued
	id           string   // the client id, once handed over
	leftovers    []queued // directed messages not written, for the mailbox of their client id
	late         []queued // directed messages that arrived once finished, until drained
	drained      bool     // late was taken: deliveries are refused
	reason       string   // the first reason the client leaves for
	kicked       bool     // the session is forgotten: leftovers are dropped
	lastSeq      uint64   // highest number taken to write (de-duplication)
	sentSeq      uint64   // highest number handed to the transport
	ackedSeq     uint64   // highest number the client acknowledged

	// acked says whether the client acknowledges its directed messages;
	// set during setup only.
	acked atomic.Bool
}

// state returns the connection's state.
func (o *outbox) state() connState { return connState(o.st.Load()) }

// leaving reports whether the connection is closing or finished.
func (o *outbox) leaving() bool { return o.state() >= connClosing }

func (o *outbox) setStateLocked(s connState) { o.st.Store(uint32(s)) }

// send writes a frame that is not a directed message: a reply, an error,
// a push, a room message, Client.Send. It returns ErrUnknownClient once
// the connection is closing, and ErrSlowClient when the client is
// disconnected for being slow.
func (o *outbox) send(frame []byte) error {
	return o.put(queued{frame: frame})
}

// deliver writes a directed message for the client id that is not
// numbered. It reports false once the client has finished, so that the
// caller sends the message on through the broker; a message that cannot be
// written before that is kept in the leftovers.
func (o *outbox) deliver(id string, frame []byte) bool {
	return o.put(queued{id: id, frame: frame}) != errFinished
}

// deliverNumbered writes the directed message numbered seq for the client
// id, framed, unless this connection has had it already. Nothing is kept
// for a client that is closing: its mailbox in the broker holds the
// message until acknowledged.
func (o *outbox) deliverNumbered(id string, seq uint64, frame []byte) {
	_ = o.put(queued{id: id, seq: seq, frame: frame})
}

// errFinished is put's answer to a directed message once the client has
// finished.
var errFinished = errors.New("rocket: client finished")

// put is send, deliver and deliverNumbered.
func (o *outbox) put(q queued) error {
	o.mu.Lock()
	switch o.state() {
	case connSetup, connHandover:
		q.frame = slices.Clone(q.frame)
		o.pending = append(o.pending, q)
		if q.keep() {
			o.pendingMail += len(q.frame)
		} else {
			o.pendingBytes += len(q.frame)
		}
		if (o.maxPending <= 0 || o.pendingBytes <= o.maxPending) && (o.maxMail <= 0 || o.pendingMail <= o.maxMail) {
			o.mu.Unlock()
			return nil
		}
		// More queued than a connection may have pending: the client
		// is not taking its output (or its hand-over is that long).
		o.slowLocked()
		o.mu.Unlock()
		o.conn.Abort(ErrSlowClient)
		return ErrSlowClient
	case connReady:
		if q.seq != 0 {
			if q.seq <= o.lastSeq {
				o.mu.Unlock()
				return nil // had it
			}
			o.lastSeq = q.seq
		}
		err := o.writeLocked(q, q.keep() && o.maxMail > 0)
		if errors.Is(err, errBacklog) {
			// A directed message the transport cannot take now: it and
			// what follows are handed over as the client reads them, as
			// a resume's mail is (a burst of them, e.g. what a
			// connection replaced on another node sends on).
			q.frame = slices.Clone(q.frame)
			o.setStateLocked(connHandover)
			o.pending, o.pendingMail = append(o.pending, q), len(q.frame)
			o.mu.Unlock()
			o.run(func() { o.pump(nil) })
			return nil
		}
		if err != nil {
			q.frame = slices.Clone(q.frame) // the caller's buffer
			o.dropQueueLocked([]queued{q}, errors.Is(err, ErrSlowClient), false)
		}
		o.mu.Unlock()
		if errors.Is(err, ErrSlowClient) {
			o.conn.Abort(ErrSlowClient)
		}
		return err
	case connClosing:
		if q.keep() {
			q.frame = slices.Clone(q.frame)
			o.leftovers = append(o.leftovers, q)
		}
		o.mu.Unlock()
		return ErrUnknownClient
	default: // finished
		if q.keep() && !o.drained {
			// Its client is leaving this server: kept until the
			// leftovers are back in the broker (drain).
			q.frame = slices.Clone(q.frame)
			o.late = append(o.late, q)
			o.mu.Unlock()
			return ErrUnknownClient
		}
		o.mu.Unlock()
		if q.id != "" {
			return errFinished
		}
		return ErrUnknownClient
	}
}

// errBacklog is writeLocked's answer, when asked, for a frame the
// transport has no room for now.
var errBacklog = errors.New("rocket: output backlog")

// writeLocked hands q's frame to the transport, with o.mu held. When the
// transport refuses it, the connection starts closing and the error
// returned is ErrUnknownClient (closed) or ErrSlowClient (slow: the caller
// aborts the connection once o.mu is released); the caller keeps or drops
// q (dropQueueLocked). With backlog, a frame refused for want of room is
// left to the caller (errBacklog) and the connection stays as it is.
func (o *outbox) writeLocked(q queued, backlog bool) error {
	err := o.conn.WriteText(q.frame)
	if err == nil {
		o.count.sent.Inc()
		o.sentSeq = max(o.sentSeq, q.seq)
		return nil
	}
	slow := errors.Is(err, transport.ErrSlow)
	if slow && backlog {
		return errBacklog
	}
	o.closingLocked(slow)
	switch {
	case slow:
		o.markSlowLocked()
		return ErrSlowClient
	case errors.Is(err, transport.ErrClosed):
		return ErrUnknownClient
	default:
		return err
	}
}

// closingLocked moves a connection that is not leaving yet to closing:
// the directed messages queued are kept in the leftovers, the other frames
// dropped (counted when slow: the client is disconnected for not taking
// its output, and the queue is part of what went over the bound).
func (o *outbox) closingLocked(slow bool) {
	if o.state() >= connClosing {
		return
	}
	o.setStateLocked(connClosing)
	o.dropQueueLocked(o.pending, slow, false)
	o.pending, o.pendingBytes, o.pendingMail = nil, 0, 0
}

// dropQueueLocked keeps the directed messages of frames the connection
// will not write, for the mailbox, and drops the rest: counted when slow,
// except numbered messages, which the broker keeps. Frames are kept after
// the leftovers there are, or before them when first (what a hand-over
// had not written yet is older than what reached the client since).
func (o *outbox) dropQueueLocked(frames []queued, slow, first bool) {
	var kept []queued
	for _, q := range frames {
		switch {
		case q.keep():
			kept = append(kept, q)
		case slow && q.seq == 0:
			o.count.dropped.Inc()
		}
	}
	if first {
		o.leftovers = append(kept, o.leftovers...)
	} else {
		o.leftovers = append(o.leftovers, kept...)
	}
}

// slowLocked disconnects the client for being slow: it starts closing,
// dropping its queue. The caller aborts the connection once o.mu is
// released.
func (o *outbox) slowLocked() {
	o.closingLocked(true)
	o.markSlowLocked()
}

// markSlowLocked records that the client leaves for being slow, if that
// is the first reason it leaves for: only then is it counted and logged.
func (o *outbox) markSlowLocked() {
	if o.reason != "" {
		return
	}
	o.reason = slowReason
	o.count.slow.Inc()
	if o.onSlow != nil {
		o.onSlow(o.id)
	}
}

// slow disconnects the client for being slow (a ping found its output
// over the bound).
func (o *outbox) slow() {
	o.mu.Lock()
	o.slowLocked()
	o.mu.Unlock()
	o.conn.Abort(ErrSlowClient)
}

// handOver writes the welcome, then the mail kept for the client, then
// whatever was queued meanwhile, in that order, and then lets writes go
// straight through (ready). id is the client id the connection ended up
// with. For a client that acknowledges, the mail is numbered, and a
// numbered message queued meanwhile that the mail held already is dropped.
// Directed messages queued for another client id (the one of a resume that
// failed) are not written: handOver returns those that are not numbered,
// for the caller to send on (the numbered ones are kept by the broker).
//
// Mail is handed over as the client reads it: handOver writes while the
// transport holds less than Config.MaxPendingBytes, and waits for the
// client to read otherwise. When the connection fails meanwhile (it is
// slow, or closed: by its peer, or by a newer connection resuming the same
// session), the directed messages not yet handed to the transport are kept
// in the leftovers, and numbered ones stay in the broker until
// acknowledged.
func (o *outbox) handOver(id string, welcome []byte, mail []broker.Mail) (misrouted []queued) {
	o.mu.Lock()
	frames := make([]queued, 0, 1+len(mail))
	frames = append(frames, queued{frame: welcome})
	for _, m := range mail {
		if !o.acked.Load() {
			frames = append(frames, queued{id: id, frame: m.Data})
			continue
		}
		frames = append(frames, queued{id: id, seq: m.Seq, frame: protocol.AppendNumbered(nil, m.Seq, m.Data)})
		o.lastSeq = max(o.lastSeq, m.Seq)
	}
	if o.state() != connSetup {
		// Closed during setup.
		o.dropQueueLocked(frames[1:], false, true)
		o.mu.Unlock()
		return nil
	}
	o.setStateLocked(connHandover)
	o.id = id
	o.mu.Unlock()
	return o.pump(frames)
}

// run runs f on a goroutine of the server's (spawn), or its own.
func (o *outbox) run(f func()) {
	if o.spawn != nil {
		o.spawn(f)
		return
	}
	go f()
}

// pump writes frames, then what was queued meanwhile, in turn, as the
// client reads them (waitRoom), until nothing is queued, when the
// connection is ready again, or until it leaves; the state is handover
// meanwhile. It returns the directed messages queued for another client
// id than the outbox's (see handOver).
func (o *outbox) pump(frames []queued) (misrouted []queued) {
	for {
		for i := 0; i < len(frames); {
			q := frames[i]
			if !o.waitRoom(transport.FrameSize(len(q.frame))) {
				o.mu.Lock()
				o.dropQueueLocked(frames[i:], o.reason == slowReason, true)
				o.mu.Unlock()
				return misrouted
			}
			o.mu.Lock()
			if o.state() != connHandover {
				o.dropQueueLocked(frames[i:], o.reason == slowReason, true)
				o.mu.Unlock()
				return misrouted
			}
			err := o.writeLocked(q, q.keep() && o.maxMail > 0)
			if errors.Is(err, errBacklog) {
				// Output that does not go through the outbox (a
				// ping) took the room: wait again.
				o.mu.Unlock()
				continue
			}
			if err != nil {
				o.dropQueueLocked(frames[i:], errors.Is(err, ErrSlowClient), true)
				o.mu.Unlock()
				if errors.Is(err, ErrSlowClient) {
					o.conn.Abort(ErrSlowClient)
				}
				return misrouted
			}
			o.mu.Unlock()
			i++
		}
		o.mu.Lock()
		if o.state() != connHandover {
			o.mu.Unlock()
			return misrouted
		}
		if len(o.pending) == 0 {
			o.setStateLocked(connReady)
			o.mu.Unlock()
			return misrouted
		}
		frames = frames[:0]
		for _, q := range o.pending {
			switch {
			case q.id != "" && q.id != o.id:
				if q.seq == 0 {
					misrouted = append(misrouted, q)
				}
			case q.seq != 0 && q.seq <= o.lastSeq:
				// The mail held it already.
			default:
				if q.seq != 0 {
					o.lastSeq = q.seq
				}
				frames = append(frames, q)
			}
		}
		o.pending, o.pendingBytes, o.pendingMail = nil, 0, 0
		o.mu.Unlock()
	}
}

// waitRoom waits until the transport can take a frame of n bytes (header
// included) without going over Config.MaxPendingBytes (or holds nothing: a
// frame larger than the bound then fails on its own). It reports false when the connection
// starts closing meanwhile, or when the client read nothing for the stall
// time: it is then disconnected as slow.
func (o *outbox) waitRoom(n int) bool {
	if o.maxPending <= 0 {
		return !o.leaving()
	}
	buffered := o.conn.Buffered()
	if buffered == 0 || buffered+n <= o.maxPending {
		return !o.leaving()
	}
	// Wait until half of the bound is free, so that the next frames go
	// out in a run.
	room := min(o.maxPending/2, o.maxPending-n)
	pause := time.Millisecond
	progress := time.Now()
	for {
		if o.leaving() {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
		b := o.conn.Buffered()
		if b == 0 || b+n <= room {
			return !o.leaving()
		}
		if b < buffered {
			buffered, progress = b, time.Now()
			pause = time.Millisecond
			continue
		}
		if o.stall > 0 && time.Since(progress) > o.stall {
			o.slow()
			return false
		}
	}
}

// close starts closing the connection with a close code and reason (the
// client's reason for leaving, unless it has one already).
func (o *outbox) close(code int, reason string) {
	o.mu.Lock()
	if o.reason == "" {
		o.reason = reason
	}
	o.closingLocked(false)
	o.mu.Unlock()
	o.conn.Close(code, reason)
}

// kick closes the connection of a client whose session the broker forgot:
// what reaches it while it closes is dropped, not kept.
func (o *outbox) kick(code int, reason string) {
	o.mu.Lock()
	o.kicked = true
	o.mu.Unlock()
	o.close(code, reason)
}

// closed records that the transport closed the connection, for reason
// unless the client has a reason to leave already; slow says the transport
// found the client slow.
func (o *outbox) closed(reason string, slow bool) {
	o.mu.Lock()
	o.closingLocked(slow)
	if slow {
		o.markSlowLocked()
	}
	if o.reason == "" {
		o.reason = reason
	}
	o.mu.Unlock()
}

// finish ends the connection's life on this server: it returns the
// reason the client left for and the directed messages kept for the
// mailbox of the client id each was delivered for (none for a kicked
// client); later deliveries are refused.
func (o *outbox) finish(reason string) (string, []queued) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closingLocked(false)
	o.setStateLocked(connFinished)
	if o.reason == "" {
		o.reason = reason
	}
	leftovers := o.leftovers
	o.leftovers = nil
	if o.kicked {
		leftovers = nil // its session is forgotten: no mailbox to keep them
	}
	return o.reason, leftovers
}

// drain takes the directed messages that arrived since finish (none for a
// kicked client); from then on deliveries are refused, and their senders
// send them on through the broker.
func (o *outbox) drain() []queued {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.drained = true
	late := o.late
	o.late = nil
	if o.kicked {
		return nil
	}
	return late
}

// ping writes a ping frame to a connection that is welcomed and not
// leaving.
func (o *outbox) ping() {
	if s := o.state(); s != connHandover && s != connReady {
		return
	}
	if err := o.conn.Ping(); errors.Is(err, transport.ErrSlow) {
		o.slow()
	}
}

// acks reports whether the client acknowledges its directed messages.
func (o *outbox) acks() bool { return o.acked.Load() }

// setAcks sets whether the client acknowledges, and the number of the last
// message it received (when it resumes).
func (o *outbox) setAcks(acked bool, last uint64) {
	o.mu.Lock()
	o.acked.Store(acked)
	o.ackedSeq, o.lastSeq, o.sentSeq = last, last, last
	o.mu.Unlock()
}

// acknowledge records that the client acknowledged the messages numbered
// up to seq. It reports whether that acknowledges anything new, and
// whether seq is past the last number handed to the transport (last),
// which is an error: during a hand-over, the mail's later numbers are not
// written yet.
func (o *outbox) acknowledge(seq uint64) (fresh, past bool, last uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	last = o.sentSeq
	switch {
	case seq > max(o.sentSeq, o.ackedSeq):
		return false, true, last
	case seq <= o.ackedSeq:
		return false, false, last
	}
	o.ackedSeq = seq
	return true, false, last
}
