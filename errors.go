package rocket

import (
	"errors"
	"fmt"
	"github.com/rocket-go/rocket/internal/protocol"
)

// Error codes sent to clients in error frames and error replies. The wire
// protocol (docs/protocol.md) lists when each is used; the strings are
// defined once, in the package that writes the frames.
const (
	// CodeBadFrame ("bad_frame"): the frame is not valid JSON or not a valid command frame.
	CodeBadFrame = protocol.CodeBadFrame
	// CodeUnknownAction ("unknown_action"): no action is registered under the command's name.
	CodeUnknownAction = protocol.CodeUnknownAction
	// CodeBadArgs ("bad_args"): the arguments do not fit the action.
	CodeBadArgs = protocol.CodeBadArgs
	// CodeActionFailed ("action_failed"): the action returned an error or panicked.
	CodeActionFailed = protocol.CodeActionFailed
	// CodeRateLimited ("rate_limited"): the client sent more commands than its rate allows.
	CodeRateLimited = protocol.CodeRateLimited
	// CodeTooLarge ("too_large"): the frame is over a size, depth or command-count limit.
	CodeTooLarge = protocol.CodeTooLarge
	// CodeUnauthorized ("unauthorized"): the client may not do this.
	CodeUnauthorized = protocol.CodeUnauthorized
	// CodeInternal ("internal_error"): Rocket itself failed, for example the broker is down
	// (an action returned an error wrapping ErrUnavailable).
	CodeInternal = protocol.CodeInternal
)

// Error is an error that reaches the client as it is: an action that
// returns an *Error (or an error wrapping one) sends its Code and Message to
// the client. Any other error an action returns is logged and reaches the
// client as action_failed with no detail.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errors returned by Server methods; test with errors.Is.
var (
	// ErrUnknownClient: the client is not connected here (for local-only
	// operations) or anywhere in the cluster (for Send).
	ErrUnknownClient = errors.New("rocket: unknown client")
	// ErrServerClosed: the server is shut down, or not started.
	ErrServerClosed = errors.New("rocket: server closed")
	// ErrSlowClient: the client's outgoing buffer is full; it is being
	// disconnected.
	ErrSlowClient = errors.New("rocket: client too slow")
	// ErrUnavailable: the broker failed (for example Redis is down), so an
	// operation that needs the cluster could not be done. Errors wrapping
	// it reach clients as internal_error.
	ErrUnavailable = errors.New("rocket: cluster unavailable")
)

// tooLarge returns the error of a directed message of n bytes refused
// because it is larger than the mailbox bound (bound, or the broker's when
// negative; cause is the broker's error, if any): it wraps a too_large
// *Error, which an action may return to its client as it is.
func tooLarge(op string, n, bound int, cause error) error {
	e := &Error{Code: CodeTooLarge, Message: fmt.Sprintf("message of %d bytes is over the mailbox limit", n)}
	if bound >= 0 {
		e.Message = fmt.Sprintf("message of %d bytes is over the mailbox limit of %d bytes", n, bound)
	}
	if cause != nil {
		return fmt.Errorf("rocket: %s: %w: %w", op, e, cause)
	}
	return fmt.Errorf("rocket: %s: %w", op, e)
}
