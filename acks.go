package rocket

import (
	"context"
	"fmt"

	"github.com/rocket-go/rocket/internal/protocol"
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
func (cl *Client) Acks() bool { return cl.out.acks() }

// deliverNumbered writes the directed message numbered seq for the client
// id to cl (see outbox.deliverNumbered).
func (cl *Client) deliverNumbered(id string, seq uint64, data []byte) {
	s := cl.srv
	buf := s.frameBuf()
	frame := protocol.AppendNumbered(*buf, seq, data)
	cl.out.deliverNumbered(id, seq, frame)
	s.releaseFrameBuf(buf, frame)
}

// ack handles {"ack": N} from cl: the broker drops the messages numbered
// up to N from the client's mailbox. Acknowledging again what was
// acknowledged does nothing; acknowledging a number never sent, or from a
// connection that does not acknowledge, gets a bad_frame error.
func (cl *Client) ack(arg []byte) {
	s := cl.srv
	seq, _ := protocol.ParseSeq(arg) // Decode checked it
	if !cl.out.acks() {
		s.metrics.commands.WithLabelValues(protocol.Ack, CodeBadFrame).Inc()
		cl.sendError(CodeBadFrame, `"ack" on a connection without acknowledgements: connect with ?acks=1 to get numbered messages`)
		return
	}
	fresh, past, last := cl.out.acknowledge(seq)
	if past {
		s.metrics.commands.WithLabelValues(protocol.Ack, CodeBadFrame).Inc()
		cl.sendError(CodeBadFrame, fmt.Sprintf(`"ack" %d is past the last message sent, %d`, seq, last))
		return
	}
	if !fresh {
		return
	}
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
