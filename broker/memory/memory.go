// Package memory implements broker.Broker inside one process.
//
// It is Rocket's embedded default: a single server uses it without any
// external service, and several servers of one process can share one Broker,
// which is how multi-node setups are tested without Redis. Everything is
// keyed by server id, exactly as with a networked broker.
//
// Server ids are a decimal counter ("1", "2", ...). Client ids are a
// counter too, after an epoch drawn when the Broker is created
// ("k8zt0wq3-1", "k8zt0wq3-2", ...; see broker.NewEpoch), so that a
// process that restarts never gives a client the id of one from before.
//
// Handlers are called synchronously from the goroutine that calls Send,
// SendUser or Publish (or UnregisterServer, for the leave messages of its
// presence entries, ForgetUser, for its kicks, or Resume, for Replaced),
// never while the broker holds its lock, so a Handler may call back into
// the broker. A delivery that was already under way when UnregisterServer
// or Close is called may still reach the Handler after that call returns.
//
// Presence entries live in the Broker; UnregisterServer removes those of the
// server and delivers their leave messages (a server of one process never
// dies without unregistering, unless the process dies with every server).
//
// Mail kept for an away client is copied, so callers may reuse their buffers.
// Sessions of away clients expire MailboxTTL after the client went away; they
// are expired lazily when touched and by a sweeper goroutine that New starts
// and Close stops.
package memory

import (
	"bytes"
	"container/list"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Defaults used for zero Config fields.
const (
	// DefaultMailboxSize is the number of messages kept per away client
	// when Config.MailboxSize is zero.
	DefaultMailboxSize = broker.DefaultMailboxSize
	// DefaultMailboxBytes is the bound on the bytes kept per client when
	// Config.MailboxBytes is zero.
	DefaultMailboxBytes = broker.DefaultMailboxBytes
	// DefaultMailboxTTL is how long an away client is kept when
	// Config.MailboxTTL is zero.
	DefaultMailboxTTL = broker.DefaultMailboxTTL

	minSweepInterval = 10 * time.Millisecond
	maxSweepInterval = 30 * time.Second
)

// Config sets the limits of a Broker. The zero value is usable.
type Config struct {
	// MailboxSize is the number of messages kept per away client; when a
	// mailbox is full the oldest message is dropped. Zero (or negative)
	// means DefaultMailboxSize.
	MailboxSize int
	// MailboxBytes bounds the bytes of the messages kept per client (the
	// sum of their data): the oldest are dropped, as for MailboxSize, and
	// Send and SendUser refuse a message larger than the bound with an
	// error wrapping broker.ErrTooLarge. Zero (or negative) means
	// DefaultMailboxBytes.
	MailboxBytes int
	// MailboxTTL is how long an away client's session and mail are kept
	// after it went away. Zero (or negative) means DefaultMailboxTTL.
	MailboxTTL time.Duration
	// SweepInterval is how often expired sessions are swept. Zero (or
	// negative) means MailboxTTL/4 clamped to [10ms, 30s].
	SweepInterval time.Duration
}

// withDefaults returns cfg with its zero fields filled in.
func (cfg Config) withDefaults() Config {
	if cfg.MailboxSize <= 0 {
		cfg.MailboxSize = DefaultMailboxSize
	}
	if cfg.MailboxBytes <= 0 {
		cfg.MailboxBytes = DefaultMailboxBytes
	}
	if cfg.MailboxTTL <= 0 {
		cfg.MailboxTTL = DefaultMailboxTTL
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = min(max(cfg.MailboxTTL/4, minSweepInterval), maxSweepInterval)
	}
	return cfg
}

// Broker is an in-process broker.Broker. Create it with New and release it
// with Close. All methods are safe for concurrent use.
type Broker struct {
	cfg Config

	mu         sync.Mutex
	closed     bool
	nextServer uint64
	nextClient uint64
	epoch      string // before the client ids (broker.NewEpoch)
	servers    map[string]*server
	clients    map[string]*client
	rooms      map[string]*room
	away       list.List // of *client, oldest departure first
	presence   presenceTable
	users      map[string]map[string]*client // user id -> its clients (users.go)
	stats      broker.Stats

	stop      chan struct{} // closed by the first Close
	done      chan struct{} // closed when the sweeper has returned
	closeOnce sync.Once
}

var _ broker.Broker = (*Broker)(nil)

// server is a registered server.
type server struct {
	id      string
	h       broker.Handler
	clients map[string]*client
	rooms   map[string]struct{}
}

// client is a directory record.
type client struct {
	id      string
	session string
	user    string  // empty for none
	srv     *server // nil when away

	// Valid while away.
	awayAt   time.Time
	awayElem *list.Element

	// mail holds the messages kept for the client: while it is away, and
	// until acknowledged when acked.
	mail mailbox

	// For clients that acknowledge (acks.go).
	acked      bool
	seq        uint64        // number of the last message sent to the client
	outbox     []broker.Mail // numbered for the connected client, not yet handed over
	delivering bool          // a goroutine is handing the client's messages over
	// replaced holds the Replacers of the servers the client left while
	// a delivery was under way, for the delivering goroutine to call.
	replaced []broker.Replacer
}

// room is the set of servers subscribed to a room.
type room struct {
	subs map[string]*server
	// handlers holds the handlers of subs. It is rebuilt, never modified in
	// place, so Publish can use it after releasing the lock.
	handlers []*server
}

// mailbox is a bounded FIFO of messages: a ring of n messages from head
// in buf, which grows (up to the length bound) when it is full. bytes is
// the sum of the messages' data.
type mailbox struct {
	buf   []broker.Mail
	head  int
	n     int
	bytes int
}

// push appends m, dropping the oldest messages while size messages are
// kept already or the bytes would exceed maxBytes (m is always kept: Send
// refuses a message over maxBytes). It returns how many it dropped.
func (mb *mailbox) push(m broker.Mail, size, maxBytes int) (dropped int) {
	for mb.n > 0 && (mb.n >= size || mb.bytes+len(m.Data) > maxBytes) {
		mb.dropOldest()
		dropped++
	}
	if mb.n == len(mb.buf) {
		grown := mb.slice(make([]broker.Mail, 0, min(size, max(4, 2*mb.n))))
		mb.buf, mb.head = grown[:cap(grown)], 0
	}
	mb.buf[(mb.head+mb.n)%len(mb.buf)] = m
	mb.n++
	mb.bytes += len(m.Data)
	return dropped
}

// dropOldest removes the oldest message; the mailbox must not be empty.
func (mb *mailbox) dropOldest() {
	mb.bytes -= len(mb.buf[mb.head].Data)
	mb.buf[mb.head] = broker.Mail{}
	mb.head = (mb.head + 1) % len(mb.buf)
	mb.n--
}

// at returns the i-th oldest message.
func (mb *mailbox) at(i int) broker.Mail {
	return mb.buf[(mb.head+i)%len(mb.buf)]
}

// slice appends the messages, oldest first, to dst.
func (mb *mailbox) slice(dst []broker.Mail) []broker.Mail {
	for i := range mb.n {
		dst = append(dst, mb.at(i))
	}
	return dst
}

// drain returns the messages, oldest first, and empties the mailbox.
func (mb *mailbox) drain() []broker.Mail {
	var out []broker.Mail
	if mb.n > 0 {
		out = mb.slice(make([]broker.Mail, 0, mb.n))
	}
	*mb = mailbox{}
	return out
}

// ack drops the oldest messages while their Seq is at most seq.
func (mb *mailbox) ack(seq uint64) {
	for mb.n > 0 && mb.at(0).Seq <= seq {
		mb.dropOldest()
	}
	if mb.n == 0 {
		*mb = mailbox{}
	}
}

// New returns an empty Broker with the limits of cfg and starts its sweeper.
func New(cfg Config) *Broker {
	b := &Broker{
		epoch:   broker.NewEpoch(),
		cfg:     cfg.withDefaults(),
		servers: make(map[string]*server),
		clients: make(map[string]*client),
		rooms:   make(map[string]*room),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go b.sweep()
	return b
}

// sweep expires away clients every SweepInterval until Close.
func (b *Broker) sweep() {
	defer close(b.done)
	t := time.NewTicker(b.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.mu.Lock()
			if !b.closed {
				b.expireBefore(now)
			}
			b.mu.Unlock()
		}
	}
}

// expireBefore forgets every away client whose session has expired at now.
// b.mu must be held.
func (b *Broker) expireBefore(now time.Time) {
	for e := b.away.Front(); e != nil; e = b.away.Front() {
		c := e.Value.(*client)
		if !b.expired(c, now) {
			return // the list is ordered by departure
		}
		b.expire(c)
	}
}

// expired reports whether the away client c has outlived the TTL at now.
func (b *Broker) expired(c *client, now time.Time) bool {
	return c.srv == nil && now.Sub(c.awayAt) >= b.cfg.MailboxTTL
}

// expire forgets the away client c and counts its mail as expired.
// b.mu must be held.
func (b *Broker) expire(c *client) {
	b.stats.MailExpired += uint64(c.mail.n)
	b.remove(c)
}

// remove deletes c from the directory with its session and mail.
// b.mu must be held.
func (b *Broker) remove(c *client) {
	if c.srv != nil {
		delete(c.srv.clients, c.id)
		c.srv = nil
	}
	if c.awayElem != nil {
		b.away.Remove(c.awayElem)
		c.awayElem = nil
	}
	c.mail = mailbox{}
	c.outbox = nil
	delete(b.clients, c.id)
	b.unindexUser(c)
}

// goAway marks c, held by a server until now, as away from now on.
// b.mu must be held.
func (b *Broker) goAway(c *client, now time.Time) {
	c.srv = nil
	c.outbox = nil // kept in the mailbox
	c.awayAt = now
	c.awayElem = b.away.PushBack(c)
}

// lookup returns the live record of clientID, expiring it first if its
// session has outlived the TTL, or nil. b.mu must be held.
func (b *Broker) lookup(clientID string) *client {
	c := b.clients[clientID]
	if c == nil {
		return nil
	}
	if c.srv == nil && b.expired(c, time.Now()) {
		b.expire(c)
		return nil
	}
	return c
}

// enter checks ctx and locks b. On success the caller must unlock b.mu.
func (b *Broker) enter(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("memory: %s: %w", op, broker.ErrClosed)
	}
	return nil
}

func unknownServer(op, id string) error {
	return fmt.Errorf("memory: %s: server %q: %w", op, id, broker.ErrUnknownServer)
}

func unknownClient(op, id string) error {
	return fmt.Errorf("memory: %s: client %q: %w", op, id, broker.ErrUnknownClient)
}

// RegisterServer allocates the next server id and records h as the server's
// handler until UnregisterServer or Close.
func (b *Broker) RegisterServer(ctx context.Context, h broker.Handler) (string, error) {
	if h == nil {
		return "", errors.New("memory: register server: nil handler")
	}
	if err := b.enter(ctx, "register server"); err != nil {
		return "", err
	}
	defer b.mu.Unlock()
	b.nextServer++
	id := strconv.FormatUint(b.nextServer, 10)
	b.servers[id] = &server{
		id:      id,
		h:       h,
		clients: make(map[string]*client),
		rooms:   make(map[string]struct{}),
	}
	return id, nil
}

// UnregisterServer stops deliveries to the server, marks its clients away,
// drops its room subscriptions and removes its presence entries, handing
// their leave messages to the handlers of the servers subscribed to their
// rooms (from the caller's goroutine, after releasing the lock). It returns
// ErrUnknownServer if the server is not registered.
func (b *Broker) UnregisterServer(ctx context.Context, serverID string) error {
	if err := b.enter(ctx, "unregister server"); err != nil {
		return err
	}
	s := b.servers[serverID]
	if s == nil {
		b.mu.Unlock()
		return unknownServer("unregister server", serverID)
	}
	now := time.Now()
	for _, c := range s.clients {
		b.goAway(c, now)
	}
	for name := range s.rooms {
		b.unsubscribe(s, name)
	}
	delete(b.servers, serverID)
	leaves := b.dropServerPresence(serverID)
	b.mu.Unlock()
	deliverRooms(leaves)
	return nil
}

// NewClientID allocates the next client id.
func (b *Broker) NewClientID(ctx context.Context) (string, error) {
	if err := b.enter(ctx, "new client id"); err != nil {
		return "", err
	}
	defer b.mu.Unlock()
	b.nextClient++
	return b.epoch + "-" + strconv.FormatUint(b.nextClient, 10), nil
}

// Connect records c on server c.Server, which must be registered. A record
// already present under c.ID is replaced, its mail dropped.
func (b *Broker) Connect(ctx context.Context, c broker.Client) error {
	if c.ID == "" {
		return errors.New("memory: connect: empty client id")
	}
	if err := b.enter(ctx, "connect"); err != nil {
		return err
	}
	defer b.mu.Unlock()
	s := b.servers[c.Server]
	if s == nil {
		return unknownServer("connect", c.Server)
	}
	if old := b.clients[c.ID]; old != nil {
		b.remove(old)
	}
	rec := &client{id: c.ID, session: c.Session, user: c.User, srv: s, acked: c.Acked}
	b.clients[c.ID] = rec
	s.clients[c.ID] = rec
	b.indexUser(rec)
	return nil
}

// Resume moves the client to serverID, which must be registered, if session
// matches, and returns its mail oldest first. When another server held the
// client, Resume then calls that server's Handler's Replaced, if it is a
// broker.Replacer, from the caller's goroutine and after releasing the
// lock; for a client that acknowledges, while a delivery to that server is
// under way on another goroutine, that goroutine calls it after the
// delivery (see deliverAcked).
func (b *Broker) Resume(ctx context.Context, clientID, session, serverID string, ack uint64) (broker.Resumed, error) {
	if err := b.enter(ctx, "resume"); err != nil {
		return broker.Resumed{}, err
	}
	r, replaced, err := b.resume(clientID, session, serverID, ack)
	b.mu.Unlock()
	if replaced != nil {
		replaced.Replaced(clientID)
	}
	return r, err
}

// resume is Resume under b.mu. It returns the Replacer to call, if any,
// once b.mu is released.
func (b *Broker) resume(clientID, session, serverID string, ack uint64) (_ broker.Resumed, replaced broker.Replacer, _ error) {
	s := b.servers[serverID]
	if s == nil {
		return broker.Resumed{}, nil, unknownServer("resume", serverID)
	}
	c := b.lookup(clientID)
	if c == nil {
		return broker.Resumed{}, nil, unknownClient("resume", clientID)
	}
	if subtle.ConstantTimeCompare([]byte(c.session), []byte(session)) != 1 {
		return broker.Resumed{}, nil, fmt.Errorf("memory: resume: client %q: %w", clientID, broker.ErrBadSession)
	}
	from := ""
	if c.srv != nil {
		delete(c.srv.clients, c.id)
		if r, ok := c.srv.h.(broker.Replacer); ok && c.srv != s {
			from = c.srv.id
			if c.delivering {
				c.replaced = append(c.replaced, r)
			} else {
				replaced = r
			}
		}
	}
	if c.awayElem != nil {
		b.away.Remove(c.awayElem)
		c.awayElem = nil
	}
	c.srv = s
	c.awayAt = time.Time{}
	s.clients[c.id] = c
	if !c.acked {
		return broker.Resumed{Mail: c.mail.drain(), From: from}, replaced, nil
	}
	c.mail.ack(ack) // what is left is numbered above ack
	// What was numbered so far is handed over here, from the mailbox: a
	// delivery to the old server still under way finds the client gone
	// and drops it.
	c.outbox = nil
	return broker.Resumed{Mail: c.mail.slice(nil), Acked: true, Seq: c.seq, From: from}, replaced, nil
}

// Disconnect marks the client away if it is held by serverID; otherwise,
// including when the client is unknown, it does nothing.
func (b *Broker) Disconnect(ctx context.Context, clientID, serverID string) error {
	if err := b.enter(ctx, "disconnect"); err != nil {
		return err
	}
	defer b.mu.Unlock()
	c := b.clients[clientID]
	if c == nil || c.srv == nil || c.srv.id != serverID {
		return nil
	}
	delete(c.srv.clients, c.id)
	b.goAway(c, time.Now())
	return nil
}

// DisconnectWith is Disconnect for a server that took the messages unsent
// for the client and did not write them: they go back to the head of its
// mailbox, ahead of what was sent to it since, in the same step as it
// goes away (or to the server the client moved to).
func (b *Broker) DisconnectWith(ctx context.Context, clientID, serverID string, unsent [][]byte) error {
	if err := b.enter(ctx, "disconnect"); err != nil {
		return err
	}
	c := b.lookup(clientID)
	if c != nil && c.acked {
		unsent = nil // its mailbox has them
	}
	switch {
	case c == nil:
	case c.srv != nil && c.srv.id != serverID:
		// Moved: the new server takes them from the head of the mailbox
		// when told, or gets them, after what it has.
		h := c.srv.h
		if r, ok := h.(broker.Returner); ok {
			b.putFirst(c, unsent)
			b.mu.Unlock()
			r.Returned(clientID)
			return nil
		}
		b.mu.Unlock()
		for _, d := range unsent {
			h.Deliver(clientID, 0, d)
		}
		return nil
	default:
		if c.srv != nil {
			delete(c.srv.clients, c.id)
			b.goAway(c, time.Now())
		}
		b.putFirst(c, unsent)
	}
	b.mu.Unlock()
	return nil
}

// putFirst puts copies of unsent at the head of c's mailbox, oldest first,
// within its bounds (the oldest dropped first). b.mu must be held.
func (b *Broker) putFirst(c *client, unsent [][]byte) {
	if len(unsent) == 0 {
		return
	}
	kept := c.mail.drain()
	for _, d := range unsent {
		if len(d) > b.cfg.MailboxBytes {
			b.stats.MailDropped++
			continue
		}
		b.stats.MailDropped += uint64(c.mail.push(broker.Mail{Data: bytes.Clone(d)}, b.cfg.MailboxSize, b.cfg.MailboxBytes))
	}
	for _, m := range kept {
		b.stats.MailDropped += uint64(c.mail.push(m, b.cfg.MailboxSize, b.cfg.MailboxBytes))
	}
}

// Forget removes the client with its session and mail. Forgetting an
// unknown client does nothing.
func (b *Broker) Forget(ctx context.Context, clientID string) error {
	if err := b.enter(ctx, "forget"); err != nil {
		return err
	}
	defer b.mu.Unlock()
	if c := b.clients[clientID]; c != nil {
		b.remove(c)
	}
	return nil
}

// Lookup returns the client's record without its session, or
// ErrUnknownClient.
func (b *Broker) Lookup(ctx context.Context, clientID string) (broker.Client, error) {
	if err := b.enter(ctx, "lookup"); err != nil {
		return broker.Client{}, err
	}
	defer b.mu.Unlock()
	c := b.lookup(clientID)
	if c == nil {
		return broker.Client{}, unknownClient("lookup", clientID)
	}
	return c.record(), nil
}

// Send calls the Deliver method of the handler of the server holding the
// client, from the caller's goroutine, or appends a copy of data to the
// client's mailbox when it is away. For a client that acknowledges, a copy
// is kept in its mailbox in any case, and the message may be handed over
// by a concurrent Send to the same client (see deliverAcked).
func (b *Broker) Send(ctx context.Context, clientID string, data []byte) error {
	if err := b.fits("send to "+clientID, data); err != nil {
		return err
	}
	if err := b.enter(ctx, "send"); err != nil {
		return err
	}
	c := b.lookup(clientID)
	if c == nil {
		b.mu.Unlock()
		return unknownClient("send", clientID)
	}
	if c.acked {
		b.keep(c, data)
		b.deliverAcked(c) // unlocks b.mu
		return nil
	}
	if c.srv != nil {
		h := c.srv.h
		b.mu.Unlock()
		h.Deliver(clientID, 0, data)
		return nil
	}
	b.keep(c, data)
	b.mu.Unlock()
	return nil
}

// keep appends a copy of data to c's mailbox, numbered when c
// acknowledges. b.mu must be held.
func (b *Broker) keep(c *client, data []byte) {
	m := broker.Mail{Data: make([]byte, len(data))}
	copy(m.Data, data)
	if c.acked {
		c.seq++
		m.Seq = c.seq
		if c.srv != nil {
			// Handed over whatever the mailbox bound drops meanwhile,
			// as a networked broker's inbox would.
			c.outbox = append(c.outbox, m)
		}
	}
	b.stats.MailDropped += uint64(c.mail.push(m, b.cfg.MailboxSize, b.cfg.MailboxBytes))
}

// Subscribe makes the server, which must be registered, receive what is
// published to room.
func (b *Broker) Subscribe(ctx context.Context, serverID, name string) error {
	if err := b.enter(ctx, "subscribe"); err != nil {
		return err
	}
	defer b.mu.Unlock()
	s := b.servers[serverID]
	if s == nil {
		return unknownServer("subscribe", serverID)
	}
	if _, ok := s.rooms[name]; ok {
		return nil
	}
	s.rooms[name] = struct{}{}
	r := b.rooms[name]
	if r == nil {
		r = &room{subs: make(map[string]*server)}
		b.rooms[name] = r
	}
	r.subs[serverID] = s
	r.rebuild()
	return nil
}

// Unsubscribe stops the server, which must be registered, receiving what is
// published to room.
func (b *Broker) Unsubscribe(ctx context.Context, serverID, name string) error {
	if err := b.enter(ctx, "unsubscribe"); err != nil {
		return err
	}
	defer b.mu.Unlock()
	s := b.servers[serverID]
	if s == nil {
		return unknownServer("unsubscribe", serverID)
	}
	b.unsubscribe(s, name)
	return nil
}

// unsubscribe removes s from room name. b.mu must be held.
func (b *Broker) unsubscribe(s *server, name string) {
	if _, ok := s.rooms[name]; !ok {
		return
	}
	delete(s.rooms, name)
	r := b.rooms[name]
	delete(r.subs, s.id)
	if len(r.subs) == 0 {
		delete(b.rooms, name)
		return
	}
	r.rebuild()
}

// rebuild replaces r.handlers with a fresh slice of the subscribers'
// handlers.
func (r *room) rebuild() {
	hs := make([]*server, 0, len(r.subs))
	for _, s := range r.subs {
		hs = append(hs, s)
	}
	r.handlers = hs
}

// Publish calls the DeliverRoom method of the handler of every server
// subscribed to room but from, from the caller's goroutine.
func (b *Broker) Publish(ctx context.Context, from, name string, data []byte) error {
	if err := b.enter(ctx, "publish"); err != nil {
		return err
	}
	var hs []*server
	if r := b.rooms[name]; r != nil {
		hs = r.handlers
	}
	b.mu.Unlock()
	for _, s := range hs {
		if s.id != from {
			s.h.DeliverRoom(name, data)
		}
	}
	return nil
}

// Stats returns the broker's counters.
func (b *Broker) Stats(ctx context.Context) (broker.Stats, error) {
	if err := b.enter(ctx, "stats"); err != nil {
		return broker.Stats{}, err
	}
	defer b.mu.Unlock()
	return b.stats, nil
}

// Close forgets every server, client and room, stops the sweeper and waits
// for it to return. Later calls of other methods return ErrClosed; Close
// itself may be called again and returns nil.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.servers = nil
		b.clients = nil
		b.rooms = nil
		b.presence = presenceTable{}
		b.users = nil
		b.away.Init()
		b.mu.Unlock()
		close(b.stop)
	})
	<-b.done
	return nil
}

// fits returns an error wrapping broker.ErrTooLarge when data is larger
// than the mailbox bytes bound.
func (b *Broker) fits(op string, data []byte) error {
	if len(data) > b.cfg.MailboxBytes {
		return fmt.Errorf("memory: %s: %d bytes, over the mailbox bound of %d: %w",
			op, len(data), b.cfg.MailboxBytes, broker.ErrTooLarge)
	}
	return nil
}
