package rocket

import "net/http"

// ConnectEvent describes a WebSocket connection about to be accepted. The
// connect hook runs before the HTTP upgrade, on the goroutine serving the
// request.
type ConnectEvent struct {
	// Request is the HTTP upgrade request (headers, cookies, query).
	Request *http.Request
}

// ConnectReply is what the connect hook returns for an accepted connection.
type ConnectReply struct {
	// UserID identifies the user behind the connection, if the application
	// knows it; actions read it with Client.UserID. The cluster indexes
	// clients by user (Server.UserClients, SendUser, DisconnectUser), and a
	// session resumes only on a connection of the same user.
	UserID string
	// Meta is what else the application knows of the connection's user
	// (a name, roles, the claims of a token); actions read it with
	// Client.Meta. Rocket neither copies nor changes it.
	Meta map[string]any
}

// DisconnectEvent describes a client that left. The disconnect hook runs
// once per client, after the client has left its rooms and the directory
// has marked it away, on a goroutine of the server.
type DisconnectEvent struct {
	// Client is the client that left. Sending to it fails; Server.Send to
	// its id puts the message in its mailbox until it resumes.
	Client *Client
	// Reason says why, such as "closed by client", "slow client",
	// "server shutting down", "idle timeout", or the reason given to
	// Server.DisconnectUser (the client's session is then forgotten:
	// Server.Send to its id fails with ErrUnknownClient).
	Reason string
}

// ErrorEvent describes an error the server handled on its own: an action
// that failed with an error that is not an *Error, a panic in an action, or
// a broker failure. The error hook runs on the goroutine where the error
// happened; it must not block.
type ErrorEvent struct {
	// Client is the client concerned, if any.
	Client *Client
	// Action is the action concerned, if any.
	Action string
	// Err is the error; for a panic, an error describing the panic value.
	Err error
	// Stack is the goroutine's stack for a panic, nil otherwise.
	Stack []byte
}

// OnConnect sets the connect hook, which can inspect the upgrade request
// and refuse the connection by returning an error: an *Error with code
// unauthorized refuses with HTTP 401, any other error with HTTP 403, the
// error's message as the body. It must be set before Start.
func (s *Server) OnConnect(f func(e *ConnectEvent) (ConnectReply, error)) {
	s.mustNotBeStarted("OnConnect")
	s.onConnect = f
}

// OnDisconnect sets the disconnect hook. It must be set before Start.
func (s *Server) OnDisconnect(f func(e *DisconnectEvent)) {
	s.mustNotBeStarted("OnDisconnect")
	s.onDisconnect = f
}

// OnError sets the error hook. Errors are logged whether or not a hook is
// set. It must be set before Start.
func (s *Server) OnError(f func(e *ErrorEvent)) {
	s.mustNotBeStarted("OnError")
	s.onError = f
}
