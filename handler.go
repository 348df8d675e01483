package rocket

import (
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/rocket-go/rocket/internal/protocol"
)

// A Handler runs one action. The value it returns is encoded as JSON and
// sent to the client as the result, when the command asked for a reply. An
// error it returns is sent as an error reply: an *Error as it is, anything
// else as action_failed (and logged).
type Handler interface {
	ServeCommand(c *Context) (any, error)
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(c *Context) (any, error)

// ServeCommand calls f(c).
func (f HandlerFunc) ServeCommand(c *Context) (any, error) { return f(c) }

// Middleware wraps a Handler, for logging, authorization, timeouts and the
// like. Middleware registered with Server.Use wraps every action, the first
// registered outermost.
type Middleware func(Handler) Handler

// Action adapts a typed function to a Handler: the command's arguments are
// decoded from JSON into In (a failure is reported to the client as
// bad_args) and Out is the result.
//
//	srv.Handle("Song.show", rocket.Action(func(c *rocket.Context, in ShowArgs) (Song, error) {
//		return songs.Find(in.ID)
//	}))
func Action[In, Out any](f func(c *Context, in In) (Out, error)) Handler {
	return HandlerFunc(func(c *Context) (any, error) {
		var in In
		if err := c.Bind(&in); err != nil {
			return nil, err
		}
		return f(c, in)
	})
}

// Context is what an action gets for one command: the client that sent it,
// the server, the action's name and its raw arguments. A Context is only
// valid while the action runs.
type Context struct {
	ctx    context.Context
	client *Client
	action string
	args   json.RawMessage
}

// Context returns the context.Context of the command: it is cancelled when
// the client disconnects or the server shuts down.
func (c *Context) Context() context.Context { return c.ctx }

// Client returns the client that sent the command.
func (c *Context) Client() *Client { return c.client }

// Server returns the server running the action.
func (c *Context) Server() *Server { return c.client.srv }

// Action returns the command's name, such as "Chat.say".
func (c *Context) Action() string { return c.action }

// Args returns the raw JSON arguments of the command.
func (c *Context) Args() json.RawMessage { return c.args }

// Bind decodes the arguments into v, by the rules of encoding/json
// (go-json-experiment/json/v1 implements them, in a third of the time and
// with fewer allocations). A failure is returned as an *Error
// with code bad_args that names the problem.
func (c *Context) Bind(v any) error {
	if err := jsonv1.Unmarshal(c.args, v); err != nil {
		return &Error{Code: CodeBadArgs, Message: fmt.Sprintf("%s: %v", c.action, describeJSONError(err))}
	}
	return nil
}

func describeJSONError(err error) string {
	var msg string
	switch e := err.(type) {
	case *jsonv1.UnmarshalTypeError:
		if e.Field != "" {
			msg = fmt.Sprintf("field %q: cannot use a JSON %s as %s", e.Field, e.Value, e.Type)
		} else {
			msg = fmt.Sprintf("cannot use a JSON %s as %s", e.Value, e.Type)
		}
	default:
		msg = err.Error()
	}
	return shorten(msg, maxErrorDetail)
}

// maxErrorDetail bounds the bytes of a decoding error quoted back to the
// client (a 10,000-digit number would otherwise be echoed whole).
const maxErrorDetail = 200

// shorten cuts s to at most n bytes on a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return cutUTF8(s, n) + "…"
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a rune.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Push is a message for a client in the conventional shape
// {"Name": Value}, for example {"Chat.message": {...}}.
type Push struct {
	Name  string
	Value any
}

// MarshalJSON encodes p as a one-key object.
func (p Push) MarshalJSON() ([]byte, error) {
	v, err := marshal(p.Value)
	if err != nil {
		return nil, fmt.Errorf("rocket: encode push %q: %w", p.Name, err)
	}
	return protocol.AppendPush(nil, p.Name, v), nil
}

// encode turns an application message into the bytes sent to clients:
// []byte and json.RawMessage are sent as they are, anything else is
// encoded as JSON.
func encode(msg any) ([]byte, error) {
	switch m := msg.(type) {
	case json.RawMessage:
		return m, nil
	case []byte:
		return m, nil
	case Push:
		// Directly: marshal would validate and compact what
		// MarshalJSON returns, a second pass over the whole message.
		return m.MarshalJSON()
	default:
		b, err := marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("rocket: encode message: %w", err)
		}
		return b, nil
	}
}

// marshalOptions are the rules of encoding/json (go-json-experiment/json/v1
// implements them) except that <, > and & are written as they are, not as
// \u003c, \u003e and \u0026: a message of 4 KB of "<" stays 4 KB on the
// wire and in mailboxes instead of 24 KB. Rocket's messages are data, not
// HTML; the JavaScript client and pages escape what they render.
var marshalOptions = jsonv2.JoinOptions(jsonv1.DefaultOptionsV1(), jsontext.EscapeForHTML(false))

// marshal encodes v as JSON for clients: results, pushes, messages and
// presence data. It costs one allocation more than encoding/json's Marshal
// (inside go-json-experiment, pooling encoders does not save it).
func marshal(v any) ([]byte, error) {
	return jsonv2.Marshal(v, marshalOptions)
}
