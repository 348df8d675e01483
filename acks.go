package rocket

import (
	"context"
	"errors"
	"fmt"

	"github.com/rocket-go/rocket/internal/protocol"
	"github.com/rocket-go/rocket/internal/transport"
)

// Acknowledged delivery (docs/protocol.md, "Acknowledged delivery").
//
// A connection opened with ?acks=1 acknowledges its directed messages: the
// broker numbers every message sent to the client (Server.Send,
// Server.SendUser) and keeps it in the client's mailbox until the client
// acknowledges it with {"ack": N}, so that a message on its way when the
// client's server dies is not lost: the client resumes on another server
// with ?ack=<last number received> and gets every later one again. Such
// messages reach the client as {"seq": N, "message": <message>}; their
// numbers, per client, have no gap and only grow, and the server never
// writes a number twice on one connection (messages handed over again by
// the mailbox on resume are dropped if the inbox brings them too).
//
// Messages to such a client always go through the broker, even from its
// own server, so that they are kept. Room messages, replies and
// Client.Send are not numbered or kept.

// Acks reports whether the client acknowledges its directed messages
// (it connected with ?acks=1, or resumed a session opened so).
func (cl *Client) Acks() bool { return cl.acked.Load() }

// deliverNumbered writes the directed message numbered seq for the client
// id to cl, unless this connection has had it already, or queues it while
// cl is being set up. Nothing is kept for a client that is closing: its mailbox in the
// broker holds the message until acknowledged.
func (cl *Client) deliverNumbered(id string, seq uint64, data []byte) {
	s := cl.srv
	buf := s.frameBuf()
	frame := protocol.AppendNumbered(*buf, seq, data)
	cl.mu.Lock()
	if !cl.ready.Load() {
		cl.pending = append(cl.pending, queued{id: id, seq: seq, frame: frame}) // keeps buf
		cl.mu.Unlock()
		return
	}
	if seq <= cl.lastSeq || cl.closing.Load() { // had it, or leaving
		cl.mu.Unlock()
		s.releaseFrameBuf(buf, frame)
		return
	}
	cl.lastSeq = seq
	err := cl.conn.WriteText(frame)
	cl.mu.Unlock()
	s.releaseFrameBuf(buf, frame)
	switch {
	case err == nil:
		s.metrics.messagesSent.Inc()
	case errors.Is(err, transport.ErrSlow):
		cl.slow()
	}
}

// ack handles {"ack": N} from cl: the broker drops the messages numbered
// up to N from the client's mailbox. Acknowledging again what was
// acknowledged does nothing; acknowledging a number never sent, or from a
// connection that does not acknowledge, gets a bad_frame error.
func (cl *Client) ack(arg []byte) {
	s := cl.srv
	seq, _ := protocol.ParseSeq(arg) // Decode checked it
	if !cl.acked.Load() {
		s.metrics.commands.WithLabelValues(protocol.Ack, CodeBadFrame).Inc()
		cl.sendError(CodeBadFrame, `"ack" on a connection without acknowledgements: connect with ?acks=1 to get numbered messages`)
		return
	}
	cl.mu.Lock()
	last, prev := cl.lastSeq, cl.ackedSeq
	if seq > max(last, prev) {
		cl.mu.Unlock()
		s.metrics.commands.WithLabelValues(protocol.Ack, CodeBadFrame).Inc()
		cl.sendError(CodeBadFrame, fmt.Sprintf(`"ack" %d is past the last message sent, %d`, seq, last))
		return
	}
	if seq <= prev {
		cl.mu.Unlock()
		return
	}
	cl.ackedSeq = seq
	cl.mu.Unlock()
	ctx, cancel := context.WithTimeout(cl.ctx, setupTimeout)
	defer cancel()
	if err := s.broker.Ack(ctx, cl.id, seq); err != nil {
		// The messages stay kept (bounded by the mailbox size) and the
		// next ack covers them: nothing for the client to do.
		s.metrics.commands.WithLabelValues(protocol.Ack, CodeInternal).Inc()
		s.reportError(&ErrorEvent{Client: cl, Err: fmt.Errorf("acknowledge messages up to %d of client %s: %w", seq, cl.id, err)})
		return
	}
	s.metrics.commands.WithLabelValues(protocol.Ack, "ok").Inc()
}
