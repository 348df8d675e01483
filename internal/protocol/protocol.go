// Package protocol decodes client frames and encodes server frames of
// Rocket's wire protocol v1.
//
// # Client frames
//
// A client frame is one WebSocket text message holding exactly one JSON
// value, optionally surrounded by whitespace:
//
//	frame   = ws ( object / array ) ws          ; anything else: bad_frame
//	array   = "[" object *( "," object ) "]"    ; non-empty, objects only
//	object  = "{" member *( "," member ) "}"    ; at least one command
//	member  = command / ref / ack
//	command = dotted-name ":" value             ; "Controller.action": arguments
//	ref     = %s"ref" ":" ( string / number )   ; at most once per object
//	ack     = %s"ack" ":" seq                   ; at most once per object
//	seq     = "0" / %x31-39 *DIGIT              ; at most 18446744073709551615
//
// Every object member whose name contains a dot is a command; its value, any
// JSON value, is the command's arguments. Commands run in the order written,
// objects of an array in array order, and a name may repeat (each occurrence
// is a command of its own). A command name must be valid per [SplitName].
//
// Member names without a dot are reserved for Rocket. Two are defined in
// v1. "ref" asks for a reply to every command of its object and is echoed
// in those replies. It may stand anywhere in the object, before or after
// the commands, and applies to all of them. "ack" (see [Ack]), at most once
// per object, acknowledges numbered messages: its value is a message
// number ([ParseSeq]), and it is returned as a [Command] named [Ack] in its
// place among the object's commands (it counts as one, and gets no ref).
// An object may carry only an "ack". Any other reserved name is an error.
//
// A frame runs whole or not at all: [Decode] either returns every command of
// the frame or an [*Error] and none.
//
// # Server frames
//
// Server frames are built by the Append functions, each of which appends one
// complete JSON object to a byte slice: the welcome frame ([AppendWelcome]),
// replies to commands with a ref ([AppendResult], [AppendReplyError]),
// errors that no ref can carry ([AppendError], [AppendActionError]) and
// messages pushed by the application ([AppendPush]).
//
// Strings are quoted and escaped as JSON (invalid UTF-8 is replaced by
// U+FFFD). Raw values (ref, result, value) are inserted as given and must be
// valid JSON, which is not checked; an empty raw value is written as null.
// The functions do not allocate when dst has room.
package protocol

// Ack is the name of the reserved key, and of the pseudo-command Decode
// returns for it, by which a client acknowledges the numbered messages it
// received up to a number: {"ack":12}.
const Ack = "ack"

// Error codes of the protocol, as sent in the "code" member of errors.
const (
	// CodeBadFrame: the frame is not valid JSON or not a valid command frame.
	CodeBadFrame = "bad_frame"
	// CodeUnknownAction: the command name is invalid or names no action.
	CodeUnknownAction = "unknown_action"
	// CodeBadArgs: the action rejected its arguments.
	CodeBadArgs = "bad_args"
	// CodeActionFailed: the action ran and returned an error.
	CodeActionFailed = "action_failed"
	// CodeRateLimited: the client sent commands faster than allowed.
	CodeRateLimited = "rate_limited"
	// CodeTooLarge: the frame is too big, too deep or carries too many
	// commands.
	CodeTooLarge = "too_large"
	// CodeUnauthorized: the client may not run the action.
	CodeUnauthorized = "unauthorized"
	// CodeInternal: the server failed; the client is not at fault.
	CodeInternal = "internal_error"
)

// Default limits, used for zero (or negative) fields of [Limits].
const (
	// DefaultMaxDepth is the default Limits.MaxDepth.
	DefaultMaxDepth = 32
	// DefaultMaxCommands is the default Limits.MaxCommands.
	DefaultMaxCommands = 100

	// maxDepthCeiling is the deepest nesting jsontext accepts at all; a
	// larger Limits.MaxDepth is lowered to it.
	maxDepthCeiling = 10000
)

// Limits bound what one frame may hold.
type Limits struct {
	// MaxDepth is the deepest nesting of arrays and objects allowed in a
	// frame, the top-level object or array counting as 1. Zero (or a
	// negative value) means DefaultMaxDepth (32); values above 10000 are
	// lowered to 10000.
	MaxDepth int
	// MaxCommands is the most commands one frame may carry. Zero (or a
	// negative value) means DefaultMaxCommands (100).
	MaxCommands int
}

// normalize returns lim with defaults applied.
func (lim Limits) normalize() Limits {
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	} else if lim.MaxDepth > maxDepthCeiling {
		lim.MaxDepth = maxDepthCeiling
	}
	if lim.MaxCommands <= 0 {
		lim.MaxCommands = DefaultMaxCommands
	}
	return lim
}

// Command is one decoded command.
type Command struct {
	// Name is "Controller.action" as written (with JSON escapes decoded);
	// it is valid per SplitName.
	Name string
	// Args is the raw JSON value of the arguments: a sub-slice of the frame,
	// valid JSON, never empty. It aliases the frame and is valid only as
	// long as the frame's bytes are.
	Args []byte
	// Ref is the raw JSON of the ref of the object that carried the command
	// (a string or number token exactly as written, a sub-slice of the
	// frame), or nil when that object had none.
	Ref []byte
}

// Error is a decoding failure as sent to the client: Code is one of the
// Code* constants and Message a human-readable explanation.
type Error struct {
	Code    string
	Message string
}

// Error returns "code: message".
func (e *Error) Error() string {
	return e.Code + ": " + e.Message
}
