package memory

import (
	"context"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Users: Broker.users indexes the clients that Connect recorded with a
// user id, connected or away, under that id. remove (Forget, expiry, a
// replacing Connect, ForgetUser) takes a client out of the index; nothing
// else does, so the clients of a server that unregisters stay listed as
// away.

// record returns the directory record of c, without its session.
func (c *client) record() broker.Client {
	rec := broker.Client{ID: c.id, User: c.user, Acked: c.acked}
	if c.srv != nil {
		rec.Server = c.srv.id
	}
	return rec
}

// indexUser records c under its user, if it has one. b.mu must be held.
func (b *Broker) indexUser(c *client) {
	if c.user == "" {
		return
	}
	if b.users == nil {
		b.users = make(map[string]map[string]*client)
	}
	set := b.users[c.user]
	if set == nil {
		set = make(map[string]*client)
		b.users[c.user] = set
	}
	set[c.id] = c
}

// unindexUser takes c out of its user's clients. b.mu must be held.
func (b *Broker) unindexUser(c *client) {
	if c.user == "" {
		return
	}
	set := b.users[c.user]
	if set[c.id] != c {
		return
	}
	delete(set, c.id)
	if len(set) == 0 {
		delete(b.users, c.user)
	}
}

// userClients returns the live clients of userID, after forgetting those
// whose session has outlived the TTL. b.mu must be held.
func (b *Broker) userClients(userID string) []*client {
	set := b.users[userID]
	out := make([]*client, 0, len(set))
	now := time.Now()
	for _, c := range set {
		if b.expired(c, now) {
			b.expire(c) // deletes c from set, which a range allows
			continue
		}
		out = append(out, c)
	}
	return out
}

// UserClients returns the clients of userID, connected or away, without
// their sessions.
func (b *Broker) UserClients(ctx context.Context, userID string) ([]broker.Client, error) {
	if err := b.enter(ctx, "user clients"); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	cs := b.userClients(userID)
	out := make([]broker.Client, len(cs))
	for i, c := range cs {
		out[i] = c.record()
	}
	return out, nil
}

// directed is a message to hand to a handler once Broker.mu is released.
type directed struct {
	h      broker.Handler
	client string
}

// SendUser calls, from the caller's goroutine and after releasing the
// lock, the Deliver method of the handler of the server holding each
// client of userID but those on from that do not acknowledge, and appends
// a copy of data to the mailbox of each away client of the user (and of
// each client that acknowledges).
func (b *Broker) SendUser(ctx context.Context, from, userID string, data []byte) ([]broker.Client, error) {
	if err := b.fits("send to user "+userID, data); err != nil {
		return nil, err
	}
	if err := b.enter(ctx, "send to user"); err != nil {
		return nil, err
	}
	cs := b.userClients(userID)
	out := make([]broker.Client, len(cs))
	var ds []directed
	var acked []*client
	for i, c := range cs {
		out[i] = c.record()
		switch {
		case c.acked:
			b.keep(c, data)
			acked = append(acked, c)
		case c.srv == nil:
			b.keep(c, data)
		case c.srv.id != from:
			ds = append(ds, directed{h: c.srv.h, client: c.id})
		}
	}
	b.mu.Unlock()
	for _, d := range ds {
		d.h.Deliver(d.client, 0, data)
	}
	for _, c := range acked {
		b.mu.Lock()
		b.deliverAcked(c)
	}
	return out, nil
}

// ForgetUser removes every client of userID with its session and mail,
// then calls, from the caller's goroutine and after releasing the lock,
// the Kick method of the handler of the server that held each connected
// one, if that handler implements broker.Kicker.
func (b *Broker) ForgetUser(ctx context.Context, userID, reason string) ([]broker.Client, error) {
	if err := b.enter(ctx, "forget user"); err != nil {
		return nil, err
	}
	cs := b.userClients(userID)
	out := make([]broker.Client, len(cs))
	type kick struct {
		k      broker.Kicker
		client string
	}
	var kicks []kick
	for i, c := range cs {
		out[i] = c.record()
		if c.srv != nil {
			if k, ok := c.srv.h.(broker.Kicker); ok {
				kicks = append(kicks, kick{k: k, client: c.id})
			}
		}
		b.remove(c)
	}
	b.mu.Unlock()
	for _, k := range kicks {
		k.k.Kick(k.client, reason)
	}
	return out, nil
}
