package memory

import (
	"context"

	"github.com/rocket-go/rocket/broker"
)

// Acknowledged delivery: the messages of a client that acknowledges stay in
// its mailbox, numbered, until Ack (or Resume) drops them. While the client
// is connected they are also queued in its outbox, and reach the Handler in
// order through deliverAcked: the Send that finds no delivery under way for
// the client hands over the outbox, the lock released around each batch,
// while concurrent Sends to the client only add to it. So a Handler sees
// the client's messages in the order of their numbers, whatever the
// senders' goroutines, and the mailbox bound, which drops the oldest kept
// messages, never keeps one from a connected client.

// deliverAcked hands the messages of the acknowledging client c not yet
// handed over to the Handler of the server holding it, unless another
// goroutine is doing so already. A Resume that moves c meanwhile leaves
// the Replacer of the server it left in c.replaced: deliverAcked calls it
// after the batch under way, which went to that server. b.mu must be
// held; deliverAcked unlocks it.
func (b *Broker) deliverAcked(c *client) {
	if c.delivering {
		b.mu.Unlock()
		return
	}
	c.delivering = true
	var spare []broker.Mail
	for {
		if rs := c.replaced; len(rs) > 0 {
			c.replaced = nil
			b.mu.Unlock()
			for _, r := range rs {
				r.Replaced(c.id)
			}
			b.mu.Lock()
			continue
		}
		if b.closed || c.srv == nil || b.clients[c.id] != c || len(c.outbox) == 0 {
			break
		}
		batch := c.outbox
		c.outbox = spare[:0]
		h := c.srv.h
		b.mu.Unlock()
		for _, m := range batch {
			h.Deliver(c.id, m.Seq, m.Data)
		}
		clear(batch)
		spare = batch
		b.mu.Lock()
	}
	c.delivering = false
	b.mu.Unlock()
}

// Ack drops the messages of the client numbered up to seq from its
// mailbox.
func (b *Broker) Ack(ctx context.Context, clientID string, seq uint64) error {
	if err := b.enter(ctx, "ack"); err != nil {
		return err
	}
	defer b.mu.Unlock()
	if c := b.lookup(clientID); c != nil && c.acked {
		c.mail.ack(seq)
	}
	return nil
}
