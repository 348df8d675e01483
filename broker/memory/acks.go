package memory

import (
	"context"

	"github.com/rocket-go/rocket/broker"
)

// Acknowledged delivery: the messages of a client that acknowledges stay in
// its mailbox, numbered, until Ack (or Resume) drops them. They reach the
// Handler in order through deliverAcked: the Send that finds no delivery
// under way for the client hands over every message not handed yet, the
// lock released around each batch, while concurrent Sends to the client
// only add to the mailbox. So a Handler sees the client's messages in the
// order of their numbers, whatever the senders' goroutines.

// deliverAcked hands the messages of the acknowledging client c not yet
// handed over to the Handler of the server holding it, unless another
// goroutine is doing so already. b.mu must be held; deliverAcked unlocks
// it.
func (b *Broker) deliverAcked(c *client) {
	if c.delivering {
		b.mu.Unlock()
		return
	}
	c.delivering = true
	var batch []broker.Mail
	for !b.closed && c.srv != nil && b.clients[c.id] == c {
		batch = c.mail.after(c.handed, batch[:0])
		if len(batch) == 0 {
			break
		}
		c.handed = batch[len(batch)-1].Seq
		h := c.srv.h
		b.mu.Unlock()
		for _, m := range batch {
			h.Deliver(c.id, m.Seq, m.Data)
		}
		clear(batch)
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
