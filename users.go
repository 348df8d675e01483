package rocket

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/transport"
)

// CloseUserDisconnected is the WebSocket close code of the connections
// that Server.DisconnectUser closes (a code of the private range). Their
// sessions are forgotten: a client that reconnects with its session token
// gets a new session (and must pass the connect hook again). rocket.js does
// not reconnect after it.
const CloseUserDisconnected = 4001

// defaultDisconnectReason is the close reason of DisconnectUser when none
// is given.
const defaultDisconnectReason = "user disconnected"

// errNoUser is returned by the user methods for an empty user id.
var errNoUser = errors.New("rocket: empty user id")

// UserClient is a client of a user, as Server.UserClients lists it.
//
// # Users
//
// A user is whoever the connect hook names in ConnectReply.UserID (read
// with Client.UserID); a user may hold several clients (tabs, devices) on
// several servers. The broker indexes each client under its user from its
// first connection until its session ends (it is forgotten, or it stays
// away longer than the mailbox TTL), so a user's clients are found from
// any server: Server.UserClients lists them, Server.SendUser sends to all
// of them, Server.DisconnectUser ends all of them.
//
// A session belongs to its user: a connection may resume it only if the
// connect hook gives it the same user id (otherwise it gets a new client,
// as with an expired session).
type UserClient struct {
	// Client is the client's id.
	Client string `json:"client"`
	// Server is the id of the server holding the client's connection;
	// empty while the client is away (its connection closed, its session
	// resumable for the mailbox TTL).
	Server string `json:"server,omitempty"`
}

// UserClients returns the clients of the user userID on every server of
// the cluster, connected or away (see UserClient), ordered by client id.
// A user without clients gives an empty slice. It returns an error
// wrapping ErrUnavailable when the broker fails.
func (s *Server) UserClients(ctx context.Context, userID string) ([]UserClient, error) {
	if st := s.state.Load(); st == stateNew || st == stateStopped {
		return nil, ErrServerClosed
	}
	if userID == "" {
		return nil, errNoUser
	}
	cs, err := s.broker.UserClients(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("rocket: clients of user %q: %w: %w", userID, ErrUnavailable, err)
	}
	out := make([]UserClient, len(cs))
	for i, c := range cs {
		out[i] = UserClient{Client: c.ID, Server: c.Server}
	}
	slices.SortFunc(out, func(a, b UserClient) int { return compareIDs(a.Client, b.Client) })
	return out, nil
}

// compareIDs orders ids shorter first, then as strings: as numbers when
// they are decimal, and so the "<epoch>-<n>" ids of the brokers by n
// within an epoch.
func compareIDs(a, b string) int {
	if c := cmp.Compare(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// SendUser sends msg, encoded as for Send, to every client of the user
// userID on every server of the cluster, and returns how many clients it
// reached: clients whose server took the message, and away clients, whose
// mailbox keeps it until they resume (as Send does). A user without
// clients gives 0 and a nil error: the message is not kept for clients the
// user opens later.
//
// The message reaches each client in order with the other directed
// messages sent to it from the same goroutine (Send, SendUser). The user
// id must not be empty: clients without a user belong to none. An error
// wrapping ErrUnavailable means the broker failed; the message then
// reached at most the clients counted.
func (s *Server) SendUser(ctx context.Context, userID string, msg any) (int, error) {
	if st := s.state.Load(); st == stateNew || st == stateStopped {
		return 0, ErrServerClosed
	}
	if userID == "" {
		return 0, errNoUser
	}
	data, err := encode(msg)
	if err != nil {
		return 0, err
	}
	if len(data) > s.cfg.MailboxBytes {
		return 0, tooLarge(fmt.Sprintf("send to user %q", userID), len(data), s.cfg.MailboxBytes, broker.ErrTooLarge)
	}
	// The broker delivers to the clients of other servers and to
	// mailboxes; this server writes to its own clients, as Send does, so
	// that the order with Send holds.
	cs, err := s.broker.SendUser(ctx, s.id, userID, data)
	if errors.Is(err, broker.ErrTooLarge) {
		return 0, tooLarge(fmt.Sprintf("send to user %q", userID), len(data), -1, err)
	}
	if err != nil {
		return 0, fmt.Errorf("rocket: send to user %q: %w: %w", userID, ErrUnavailable, err)
	}
	n := len(cs)
	var errs []error
	for _, c := range cs {
		if c.Server != s.id || c.Acked { // the broker delivered it
			continue
		}
		if err := s.sendData(ctx, c.ID, data); err != nil {
			n--
			if !errors.Is(err, ErrUnknownClient) { // gone meanwhile
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

// DisconnectUser ends every session of the user userID on every server of
// the cluster ("sign out everywhere") and returns how many it ended,
// connected or away.
//
// The broker forgets the user's clients at once, with their sessions and
// mailboxes: none of them can resume, what was kept for the away ones is
// dropped, and Send to their ids fails with ErrUnknownClient. Then the
// server holding each connected client closes it with close code
// CloseUserDisconnected and reason (truncated to 120 bytes; empty means
// "user disconnected"), after the messages already sent to it; the
// disconnect hook runs for it with that reason, and it leaves its rooms
// and presence as on any disconnect. The connections of this server are
// closed before DisconnectUser returns; those of other servers a moment
// later (with the Redis broker, when their server reads its inbox).
//
// A connection that the user opens while DisconnectUser runs may survive
// it, and nothing stops the user from connecting again afterwards: refuse
// the user in the connect hook first (revoke its tokens) to keep it out.
// An error wrapping ErrUnavailable means the broker failed and nothing was
// done.
func (s *Server) DisconnectUser(ctx context.Context, userID, reason string) (int, error) {
	if st := s.state.Load(); st == stateNew || st == stateStopped {
		return 0, ErrServerClosed
	}
	if userID == "" {
		return 0, errNoUser
	}
	reason = closeReason(reason)
	cs, err := s.broker.ForgetUser(ctx, userID, reason)
	if err != nil {
		return 0, fmt.Errorf("rocket: disconnect user %q: %w: %w", userID, ErrUnavailable, err)
	}
	// Close the local connections now rather than when the broker's kick
	// comes round (which then finds them closing or gone).
	for _, c := range cs {
		if c.Server == s.id {
			s.kick(c.ID, reason)
		}
	}
	s.log.Debug("user disconnected", "user", userID, "clients", len(cs), "reason", reason)
	return len(cs), nil
}

// closeReason returns reason, or the default one, as valid UTF-8 of at
// most transport.MaxCloseReason bytes (the cut the close frame gets), so
// that the reason the broker carries to other servers is the one sent.
func closeReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "")
	if reason == "" {
		return defaultDisconnectReason
	}
	return transport.CloseReason(reason)
}

// Kick closes a local client that the broker forgot (DisconnectUser on
// any server).
func (h brokerHandler) Kick(clientID, reason string) {
	h.s.kick(clientID, reason)
}

// kick closes the local client clientID, whose session the broker has
// forgotten, with CloseUserDisconnected. The client stops running
// commands at once; its finish then runs as on any close, but drops what
// reached it meanwhile instead of mailing it. A client that is not here
// is ignored.
func (s *Server) kick(clientID, reason string) {
	cl := s.Client(clientID)
	if cl == nil {
		return
	}
	cl.out.kick(CloseUserDisconnected, reason)
}

// sessionKey is what the broker records as the session of a client of
// userID whose secret is secret: the secret bound to the user, so that a
// connection the connect hook gives another user cannot resume the
// session. Secrets never hold a colon (see validSecret), so the key of a
// client without a user, the secret itself, matches no other.
func sessionKey(secret, userID string) string {
	if userID == "" {
		return secret
	}
	return secret + ":" + userID
}

// validSecret reports whether secret looks like one newSecret makes
// (unpadded base64url), which a token must hold to be resumed.
func validSecret(secret string) bool {
	if secret == "" {
		return false
	}
	for i := 0; i < len(secret); i++ {
		c := secret[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
