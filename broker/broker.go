// Package broker defines how Rocket servers share state and deliver
// messages to each other: identities, the cluster-wide client directory,
// per-server inboxes, room fan-out, mailboxes for away clients and server
// liveness.
//
// The package imports nothing of Rocket. Implementations live in their own
// packages (broker/memory for one process, broker/redis for a cluster) and
// all pass the conformance suite in broker/brokertest, which is organised
// by the same roles.
//
// # Roles
//
// Broker is composed of small interfaces, one per role, each documenting
// the contract it carries:
//
//   - Servers: servers registering, their inboxes (Handler) and liveness.
//   - Directory: client ids, the cluster-wide directory of clients and
//     their sessions (connected, away, resumed, forgotten).
//   - Delivery: directed messages, the mailboxes that keep them and their
//     acknowledgement by the clients that acknowledge.
//   - Rooms: room subscriptions and fan-out.
//   - Presences: the presence entries of clients in rooms (Member).
//   - Users: the clients of a user, listed, sent to or forgotten at once.
//
// Broker adds Stats and Close, and states the contract that holds for
// every method of every role (concurrency, contexts, unknown servers).
//
// # Contract for servers
//
// A server records a client locally before it calls Connect or Resume, and
// calls Disconnect before it forgets the client locally. When its Handler is
// given a message for a client it no longer holds, it calls Send again: the
// directory no longer names it, so the message goes where the client is now
// (another server or the mailbox).
package broker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"time"
)

// Errors returned by brokers. Implementations wrap them with context;
// callers test with errors.Is.
var (
	// ErrUnknownClient means the client is neither connected nor away: it
	// never existed, or its session expired.
	ErrUnknownClient = errors.New("broker: unknown client")
	// ErrBadSession means the session secret given to Resume does not match
	// the one recorded by Connect.
	ErrBadSession = errors.New("broker: bad session")
	// ErrUnknownServer means the server id is not registered (any more).
	ErrUnknownServer = errors.New("broker: unknown server")
	// ErrClosed means the broker has been closed.
	ErrClosed = errors.New("broker: closed")
	// ErrTooLarge means a message given to Send or SendUser is larger
	// than the bound on the bytes of a mailbox: it could never be kept,
	// so it is refused whatever the client's state.
	ErrTooLarge = errors.New("broker: message larger than the mailbox bound")
	// ErrOutOfMemory means the broker's store refused a write because it
	// is out of memory (Redis at maxmemory): nothing new can be recorded
	// until memory frees, while what is recorded can still be read.
	ErrOutOfMemory = errors.New("broker: store out of memory")
)

// Checker is implemented by brokers that can tell whether a server using
// them can accept new clients now (Rocket's Server.Ready calls it, and
// falls back to a Stats round trip for brokers without it). Ready returns
// nil or why not, wrapping ErrOutOfMemory when that is the reason.
type Checker interface {
	Ready(ctx context.Context) error
}

// Mailbox defaults of every broker (their Config types and rocket.Config
// refer to these).
const (
	// DefaultMailboxSize is the default bound on the number of messages
	// kept in one client's mailbox.
	DefaultMailboxSize = 128
	// DefaultMailboxBytes is the default bound on the bytes of the
	// messages kept in one client's mailbox (the sum of their data).
	DefaultMailboxBytes = 1 << 20
	// DefaultMailboxTTL is how long an away client's session and mailbox
	// are kept by default.
	DefaultMailboxTTL = 2 * time.Minute
)

// Handler receives what a broker delivers to one registered server.
//
// Methods may be called from any goroutine, concurrently: synchronously from
// the sender's goroutine by the memory broker, from a reader goroutine by
// networked brokers. They must not block for long and must not call back into
// the broker while holding locks that the broker's callers hold. The data
// slice belongs to the callee only for the duration of the call unless the
// implementation documents otherwise; callees that keep it must copy it.
type Handler interface {
	// Deliver is called with a message for a client that the directory
	// places on this server. seq is the message's number when the client
	// acknowledges (Client.Acked), 0 otherwise.
	Deliver(clientID string, seq uint64, data []byte)
	// DeliverRoom is called with a message published to a room this server
	// subscribed to.
	DeliverRoom(room string, data []byte)
}

// Replacer is implemented by a Handler whose server wants to know when a
// client that the directory placed on it resumed its session on another
// server (two browser tabs restoring one stored session, or a reconnect
// that overtook the close): Resume calls Replaced on the Handler of the
// server the directory named until then.
//
// Replaced is called like Deliver (from any goroutine, without the
// broker's locks held; it must not block for long) and after the
// messages that were on their way to the client on this server before
// Resume ran (with the Redis broker, it travels through the server's
// inbox). The directory no longer places the client on this server: the
// server closes its connection for the client, if it still has one, and
// the Disconnect that follows does nothing (the client moved). The
// client may have come back since (a later Resume on this server): a
// server that finds the directory places it on itself again (Lookup)
// keeps its connection. A Replaced for a client the server no longer
// holds is ignored.
//
// A Handler that does not implement Replacer is not told: its connection
// stays open until it closes by itself.
type Replacer interface {
	// Replaced is called on the server that held clientID when Resume
	// moved the client to another server, after the messages already on
	// their way to the client on this server.
	Replaced(clientID string)
}

// Returner is implemented by a Handler whose server wants to know when the
// server a client was taken from (Resumed.From) has handed back what it had
// not written for the client (DisconnectWith): those messages are then at
// the head of the client's mailbox, where a Resume on the server holding
// the client finds them (and moves nothing), ahead of the mail that was
// there. Returned is called like Deliver, after what was on its way to the
// client, also when there was nothing to hand back.
type Returner interface {
	Returned(clientID string)
}

// Client is a directory record.
type Client struct {
	// ID is the cluster-unique client id.
	ID string
	// Server is the id of the server holding the client; empty when the
	// client is away.
	Server string
	// Session is the secret that allows the client to resume. Lookup
	// returns it empty.
	Session string
	// User is the id of the user the client belongs to; empty for none.
	// Connect records it and it stays with the client (Resume keeps it):
	// a server that lets another user resume the session must check
	// that itself. UserClients lists the clients of a user.
	User string
	// Acked means the client acknowledges the directed messages it
	// receives (see Delivery). Connect records it and
	// it stays with the client.
	Acked bool
}

// Mail is a directed message kept for a client.
type Mail struct {
	// Seq is the message's number among those sent to the client, from
	// 1, when the client acknowledges (Client.Acked); 0 otherwise.
	Seq uint64
	// Data is the message.
	Data []byte
}

// Resumed is what Resume returns.
type Resumed struct {
	// Mail holds the messages kept for the client, oldest first.
	Mail []Mail
	// Acked reports whether the client acknowledges (Client.Acked, as
	// recorded by Connect).
	Acked bool
	// Seq is, when Acked, the number of the last message sent to the
	// client so far (0 for none).
	Seq uint64
	// From is the server the client was taken from when the directory
	// placed it on another server that is told (its Handler is a
	// Replacer): that server hands back what it had not written with
	// DisconnectWith, and the resuming server is told when it has (see
	// Returner). Empty when the client was away or on serverID already.
	From string
}

// Stats are counters a broker keeps since it was created.
type Stats struct {
	// MailDropped counts messages dropped from mailboxes because they
	// overflowed the length bound or the bytes bound.
	MailDropped uint64
	// MailExpired counts messages dropped from mailboxes because they (or
	// their client's session) outlived the TTL.
	MailExpired uint64
	// OutOfMemory counts the calls of this broker (methods and its own
	// goroutines: heartbeats, reaper...) that its store refused for want
	// of memory; unlike the mailbox counters it is this broker's own, not
	// shared by the cluster.
	OutOfMemory uint64
}

// Servers is the role of the servers of a cluster: registering them,
// their inboxes and their liveness.
//
// A server registers with RegisterServer and gets a cluster-unique id and an
// inbox; the broker calls the server's Handler with what arrives there until
// the server unregisters or the broker is closed.
//
// A delivery that had already started when UnregisterServer or Close was
// called may still reach the Handler after they return; handlers must
// tolerate it (Rocket's do).
type Servers interface {
	// RegisterServer allocates a cluster-unique server id, creates the
	// server's inbox, keeps the server alive (heartbeat) and calls h with
	// what arrives for it until UnregisterServer or Close.
	RegisterServer(ctx context.Context, h Handler) (serverID string, err error)

	// UnregisterServer stops deliveries to the server, marks every client
	// it held as away (their sessions and mailboxes live on), drops its room
	// subscriptions, removes its presence entries (publishing their leave
	// messages) and removes its inbox.
	UnregisterServer(ctx context.Context, serverID string) error
}

// Directory is the role of client identity, the cluster-wide directory of
// clients and their sessions.
//
// A client is recorded in the directory with Connect when its WebSocket opens
// and becomes away with Disconnect when it closes. An away client keeps its
// session for the mailbox TTL: messages sent to it meanwhile are appended to
// its mailbox (bounded in length, bytes and age) and handed over, in order, by Resume
// when it comes back on any server. A client that stays away longer than the
// TTL is forgotten and its mail dropped and counted. A client may also
// resume while still recorded on another server (a reconnect that overtook
// the close, or two tabs restoring one session): it moves, and that
// server is told if its Handler implements Replacer.
//
// Disconnect and Forget of an unknown client do nothing and return nil.
// Connect of an id already in the directory replaces the record and drops
// its mail.
type Directory interface {
	// NewClientID allocates a cluster-unique client id: an opaque string
	// without spaces or '#' that is never issued again, not even after
	// the broker (or its store) restarts without its data.
	NewClientID(ctx context.Context) (string, error)

	// Connect records c (ID, Server and Session set) in the directory.
	Connect(ctx context.Context, c Client) error

	// Resume moves an existing client to serverID after checking its
	// session secret, and returns the mail kept for it, oldest first. The
	// client may be away or still recorded on another server (a
	// reconnect that overtook the close); either way it belongs to
	// serverID afterwards, and messages sent to it from then on go to
	// serverID's Handler. It returns ErrUnknownClient when the client is
	// gone and ErrBadSession when the secret does not match.
	//
	// When the directory named another registered server, the broker
	// calls that server's Handler's Replaced, if the Handler implements
	// Replacer, after the messages already on their way to the client
	// there. Resuming on the server the directory names, or resuming an
	// away client, calls nothing.
	//
	// For a client that does not acknowledge, the mail is removed from
	// the mailbox and ack is ignored. For one that does, ack is the
	// number of the last message the client received (an ack above the
	// last number sent counts as that number): Resume drops the messages
	// up to ack, as Ack does, and returns those after it, which stay in
	// the mailbox until acknowledged.
	Resume(ctx context.Context, clientID, session, serverID string, ack uint64) (Resumed, error)

	// Disconnect marks the client away if the directory still places it on
	// serverID; if it has moved to another server already, Disconnect does
	// nothing. The client's session and mailbox then live for the mailbox
	// TTL.
	Disconnect(ctx context.Context, clientID, serverID string) error

	// DisconnectWith is Disconnect for a server that took messages for the
	// client and did not write them (its connection closed first): unsent,
	// oldest first. In the same step as the client goes away, they are
	// put back at the head of its mailbox, ahead of what was sent to it
	// since, within the mailbox bounds (what they push out is counted in
	// MailDropped); a client away already gets them at the head of its
	// mailbox all the same. When the directory places the client on
	// another server, the record is left alone, and the messages are put
	// at the head of its mailbox and that server's Handler is told
	// (Returned) if it is a Returner, also when there are none; otherwise
	// they are delivered there, after what is on its way to it, as Send
	// would. For an unknown
	// client, or one that acknowledges (its mailbox keeps what it was
	// sent), they are dropped. DisconnectWith with no messages is
	// Disconnect.
	DisconnectWith(ctx context.Context, clientID, serverID string, unsent [][]byte) error

	// Forget removes a client from the directory with its session and mail.
	Forget(ctx context.Context, clientID string) error

	// Lookup returns the directory record of a client (without its
	// session), or ErrUnknownClient.
	Lookup(ctx context.Context, clientID string) (Client, error)
}

// Delivery is the role of directed messages: delivering a message to one
// client wherever it is, the mailboxes that keep messages for it, and
// their acknowledgement.
//
// Send delivers a message to a client wherever it is: into the inbox of the
// server that holds it, or into its mailbox when it is away.
//
// A client recorded with Client.Acked acknowledges what it receives, and
// then no directed message accepted for it is lost when a server dies. The
// broker numbers the messages sent to such a client (Mail.Seq: 1, 2, ...
// with no gap, per client) and keeps each in the client's mailbox, whether
// the client is connected or away, until the client acknowledges it (Ack,
// or the ack given to Resume) or the mailbox bounds push it out. Deliver
// gets the number with the message, and the messages of one acknowledging
// client reach the Handler in the order of their numbers. When the
// server holding the client dies with messages on their way, the client
// resumes elsewhere with the number of the last message it received and
// gets every later one again from its mailbox. A message already in a
// server's inbox when its client moved is not sent on (the mailbox has
// it). Clients that do not acknowledge get Seq 0, and their messages are
// kept only while they are away.
type Delivery interface {
	// Send delivers data to a client: to the Handler of the server holding
	// it, or to its mailbox when it is away (and to its mailbox as well
	// when it acknowledges). It returns ErrUnknownClient when the client
	// is unknown, and ErrTooLarge, for any client, when data is larger
	// than the mailbox bytes bound. A nil error means the message was
	// accepted: delivered to the server or kept in the mailbox.
	Send(ctx context.Context, clientID string, data []byte) error

	// Ack drops from the mailbox of an acknowledging client the messages
	// numbered up to seq. Acknowledging what is already dropped, an
	// unknown client or a client that does not acknowledge does nothing
	// and returns nil.
	Ack(ctx context.Context, clientID string, seq uint64) error
}

// Rooms is the role of room fan-out: Publish delivers a message to every
// server subscribed to a room. A server's subscriptions are its own and
// go when it unregisters.
type Rooms interface {
	// Subscribe makes the server receive messages published to room.
	// Subscribing twice is the same as once.
	Subscribe(ctx context.Context, serverID, room string) error

	// Unsubscribe stops the server receiving messages published to room.
	Unsubscribe(ctx context.Context, serverID, room string) error

	// Publish delivers data to every server subscribed to room except
	// from, the publishing server, which delivers to its own members itself
	// (so that they are served even when the broker is down); an empty from
	// skips no server. Messages published by one goroutine reach each server
	// in the order published. Room messages are not kept for servers that
	// are down or not subscribed.
	Publish(ctx context.Context, from, room string, data []byte) error
}

// Presences is the role of presence: its entries (PresenceAdd,
// PresenceRemove, Presence) list the clients present in a room across the
// cluster; an entry lives as long as the server that added it, and the
// broker publishes its leave message when it removes the entry of a
// server that unregistered or died (see Member).
type Presences interface {
	// PresenceAdd records m as present in room, replacing the entry of
	// the same client in that room, if there is one, whatever its server
	// (the client reconnected to m.ServerID). m.ServerID must be
	// registered. The entry lives until PresenceRemove, until an entry of
	// the same client replaces it, or until its server unregisters or is
	// found dead: the broker then removes it and publishes its
	// LeaveMessage to the room (see Member).
	PresenceAdd(ctx context.Context, room string, m Member) error

	// PresenceRemove removes the entry of clientID in room if it belongs
	// to serverID, and reports whether it did. An entry that another
	// server has added since (the client reconnected there) is left
	// alone, as Disconnect leaves a client that moved. Removing an entry
	// that does not exist does nothing and reports false. PresenceRemove
	// publishes nothing.
	PresenceRemove(ctx context.Context, room, clientID, serverID string) (removed bool, err error)

	// Presence returns the entries of room, on every server, in no
	// particular order and without their LeaveMessage. A room without
	// entries gives an empty slice and a nil error.
	Presence(ctx context.Context, room string) ([]Member, error)
}

// Users is the role of users, which group clients: Connect records the
// user id a client belongs to (Client.User), and the broker indexes the
// clients of each user, connected or away, until they are forgotten
// (Forget, ForgetUser, or the end of the mailbox TTL). Nothing of a user
// belongs to a server: when a server unregisters or dies its clients go
// away and stay listed, resumable, like any away client. ForgetUser ends
// every session of a user at once and asks the server holding each
// connected one to close its connection, through the server's Handler if
// it implements Kicker (see Kicker).
type Users interface {
	// UserClients returns the clients of userID, connected (Server set)
	// or away (Server empty), in no particular order and without their
	// Session. A user without clients gives an empty slice and a nil
	// error.
	UserClients(ctx context.Context, userID string) ([]Client, error)

	// SendUser delivers data, as Send does, to every client of userID,
	// connected or away (into its mailbox), except the clients that the
	// directory places on server from and that do not acknowledge, which
	// the caller delivers to itself (as with Publish; an empty from skips
	// no client; acknowledging clients get numbered messages through the
	// Handler wherever they are). It
	// returns every client of the user, those on from included, with the
	// Server that holds it (empty: the message went to its mailbox). A
	// user without clients gives an empty slice and a nil error. Data
	// larger than the mailbox bytes bound is refused with ErrTooLarge.
	SendUser(ctx context.Context, from, userID string, data []byte) ([]Client, error)

	// ForgetUser forgets every client of userID at once, as Forget does
	// (directory record, session and mail), so that none of them can
	// resume, and asks the server holding each connected one to close
	// it: the broker calls that server's Handler's Kick method with the
	// client id and reason, if the Handler implements Kicker, after the
	// messages already on their way to the client. It returns the
	// clients forgotten, with the Server each was on (empty: away).
	ForgetUser(ctx context.Context, userID, reason string) ([]Client, error)
}

// Broker is what Rocket servers need from the engine that connects them:
// every role (Servers, Directory, Delivery, Rooms, Presences, Users), and
// Stats and Close. What follows holds for every method of every role.
//
// Every method is safe for concurrent use. Every method that may block takes
// a context; when the context ends first the method returns an error that
// wraps the context's error.
//
// Methods that take a server id (Connect through the Client's Server field,
// Resume, Subscribe, Unsubscribe, PresenceAdd through the Member's ServerID,
// UnregisterServer) return an error wrapping ErrUnknownServer when that
// server is not registered.
type Broker interface {
	Servers
	Directory
	Delivery
	Rooms
	Presences
	Users

	// Stats returns the broker's counters.
	Stats(ctx context.Context) (Stats, error)

	// Close stops every goroutine the broker started and releases its
	// resources. Calls after Close return ErrClosed. Close is idempotent.
	Close() error
}

// epochEncoding writes epochs in lower-case base32 (digits and a-v).
var epochEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewEpoch returns 8 random characters (40 bits; digits and lower-case
// letters) for brokers to put in front of the client ids they count, so
// that ids counted again from 1 (a process restarted, a Redis that lost
// its data) never name a client of before. Client ids are opaque strings
// without spaces or '#' (the Redis broker's entries rely on that).
func NewEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return epochEncoding.EncodeToString(b[:])
}
