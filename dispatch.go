package rocket

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/rocket-go/rocket/internal/protocol"
	"github.com/rocket-go/rocket/internal/transport"
	"golang.org/x/time/rate"
)

// dispatch runs the commands of one frame from cl, in order, and sends the
// replies. It runs on the goroutine the transport gives the client's
// messages, one frame at a time.
func (s *Server) dispatch(cl *Client, text bool, data []byte) {
	if !text {
		cl.sendError(CodeBadFrame, "binary frames are not supported: send JSON in text frames")
		return
	}
	if len(data) > s.cfg.MaxFrameBytes {
		cl.sendError(CodeTooLarge, fmt.Sprintf("frame of %d bytes is over the limit of %d bytes", len(data), s.cfg.MaxFrameBytes))
		return
	}
	buf, _ := s.cmdBufs.Get().(*[]protocol.Command)
	if buf == nil {
		buf = new([]protocol.Command)
	}
	cmds, err := protocol.Decode(data, s.limits, (*buf)[:0])
	defer func() {
		clear(cmds) // they alias the frame
		*buf = cmds[:0]
		s.cmdBufs.Put(buf)
	}()
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			cl.sendError(pe.Code, pe.Message)
		} else {
			cl.sendError(CodeBadFrame, err.Error())
		}
		return
	}
	for i := range cmds {
		s.runCommand(cl, &cmds[i])
		if cl.leaving() {
			return
		}
	}
}

// runCommand runs one command and sends its reply (when it carried a ref)
// or its error (always).
func (s *Server) runCommand(cl *Client, cmd *protocol.Command) {
	if cmd.Name == protocol.Ack {
		cl.ack(cmd.Args)
		return
	}
	if s.cfg.CommandRate > 0 {
		if cl.limiter == nil {
			cl.limiter = rate.NewLimiter(rate.Limit(s.cfg.CommandRate), s.cfg.CommandBurst)
		}
		if !cl.limiter.Allow() {
			cl.reply(cmd, nil, &Error{Code: CodeRateLimited, Message: fmt.Sprintf("more than %g commands per second", s.cfg.CommandRate)})
			action := cmd.Name
			if s.chain[action] == nil {
				action = "unknown"
			}
			s.metrics.commands.WithLabelValues(action, CodeRateLimited).Inc()
			cl.rateLimited++
			if max := s.cfg.MaxRateLimited; max > 0 && cl.rateLimited >= max {
				s.metrics.rateLimitDisconnects.Inc()
				s.log.Warn("disconnecting client over its rate limit", "client", cl.id, "refused_in_a_row", cl.rateLimited)
				cl.closeWith(transport.ClosePolicy, "rate limit exceeded")
			}
			return
		}
		cl.rateLimited = 0
	}
	h := s.chain[cmd.Name]
	if h == nil {
		cl.reply(cmd, nil, &Error{Code: CodeUnknownAction, Message: fmt.Sprintf("no action %q", cmd.Name)})
		s.metrics.commands.WithLabelValues("unknown", CodeUnknownAction).Inc()
		return
	}
	start := time.Now()
	result, err := s.run(cl, h, cmd)
	s.metrics.commandDuration.WithLabelValues(cmd.Name).Observe(time.Since(start).Seconds())
	outcome := cl.reply(cmd, result, err)
	s.metrics.commands.WithLabelValues(cmd.Name, outcome).Inc()
}

// run calls the handler, turning a panic into an action_failed error.
func (s *Server) run(cl *Client, h Handler, cmd *protocol.Command) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.metrics.panics.Inc()
			s.reportError(&ErrorEvent{Client: cl, Action: cmd.Name, Err: fmt.Errorf("panic: %v", p), Stack: debug.Stack()})
			result, err = nil, &Error{Code: CodeActionFailed, Message: cmd.Name + " failed"}
		}
	}()
	c := &Context{ctx: cl.ctx, client: cl, action: cmd.Name, args: cmd.Args}
	return h.ServeCommand(c)
}

// reply sends the outcome of a command: a result or error reply when the
// command carried a ref, an error frame naming the action when it did not
// and failed, nothing when it did not and succeeded. It returns the outcome:
// "ok" or the error code.
func (cl *Client) reply(cmd *protocol.Command, result any, err error) string {
	s := cl.srv
	if err == nil {
		if cmd.Ref == nil {
			return "ok"
		}
		b, merr := marshal(result)
		if merr == nil {
			buf := s.frameBuf()
			frame := protocol.AppendResult(*buf, cmd.Ref, cmd.Name, b)
			_ = cl.out.send(frame)
			s.releaseFrameBuf(buf, frame)
			return "ok"
		}
		err = fmt.Errorf("encode result: %w", merr)
	}
	var re *Error
	switch {
	case errors.As(err, &re):
	case errors.Is(err, ErrUnavailable):
		s.reportError(&ErrorEvent{Client: cl, Action: cmd.Name, Err: err})
		re = &Error{Code: CodeInternal, Message: cmd.Name + " could not be completed: the cluster is unavailable, try again"}
	default:
		s.reportError(&ErrorEvent{Client: cl, Action: cmd.Name, Err: err})
		re = &Error{Code: CodeActionFailed, Message: cmd.Name + " failed"}
	}
	if cmd.Ref != nil {
		_ = cl.out.send(protocol.AppendReplyError(nil, cmd.Ref, cmd.Name, re.Code, re.Message))
	} else {
		_ = cl.out.send(protocol.AppendActionError(nil, cmd.Name, re.Code, re.Message))
	}
	return re.Code
}

// maxPooledFrame is the capacity above which a frame buffer is left to the
// garbage collector rather than pooled.
const maxPooledFrame = 64 << 10

// frameBuf returns an empty buffer to build a frame in. The transport
// copies what it writes, so the buffer may go back (releaseFrameBuf) once
// the frame is written.
func (s *Server) frameBuf() *[]byte {
	if b, ok := s.frameBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 256)
	return &b
}

// releaseFrameBuf returns buf, which now holds frame, to the pool.
func (s *Server) releaseFrameBuf(buf *[]byte, frame []byte) {
	if cap(frame) > maxPooledFrame {
		return
	}
	*buf = frame[:0]
	s.frameBufs.Put(buf)
}

// sendError sends a frame-level error.
func (cl *Client) sendError(code, message string) {
	_ = cl.out.send(protocol.AppendError(nil, code, message))
}
