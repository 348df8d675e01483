package brokertest

import "testing"

// The DisconnectWith subtests: messages a server took for a client and
// could not write go back to the head of its mailbox as it goes away, or on
// to the server it moved to.

var unsentTests = []struct {
	name string
	fn   func(*testing.T, *env)
}{
	{"DisconnectWithPutsFirst", testDisconnectWithPutsFirst},
	{"DisconnectWithAway", testDisconnectWithAway},
	{"DisconnectWithMoved", testDisconnectWithMoved},
	{"DisconnectWithBound", testDisconnectWithBound},
	{"DisconnectWithAckedOrUnknown", testDisconnectWithAckedOrUnknown},
}

func (e *env) disconnectWith(clientID, serverID string, unsent ...string) {
	e.t.Helper()
	var u [][]byte
	for _, m := range unsent {
		u = append(u, []byte(m))
	}
	if err := e.b.DisconnectWith(e.ctx, clientID, serverID, u); err != nil {
		e.t.Fatalf("DisconnectWith(%s, %s, %q): %v", clientID, serverID, unsent, err)
	}
}

// testDisconnectWithPutsFirst: the client goes away with its unsent
// messages at the head of its mailbox, and what is sent to it afterwards
// comes after them.
func testDisconnectWithPutsFirst(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, _ := e.server()
	c, sess := e.connect(a)
	e.disconnectWith(c, a, "u1", "u2")
	e.expectServer(c, "")
	e.send(c, "m1")
	expectMsgs(t, "resumed mail", e.resume(c, sess, b), "u1", "u2", "m1")
}

// testDisconnectWithAway: a client away already (its server corrected the
// directory first) gets the unsent messages ahead of its mail all the same.
func testDisconnectWithAway(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.send(c, "m1")
	e.disconnectWith(c, a, "u1")
	expectMsgs(t, "resumed mail", e.resume(c, sess, a), "u1", "m1")
}

// testDisconnectWithMoved: a client that resumed on another server stays
// there and gets the unsent messages through that server's Handler, after
// what was on its way to it.
func testDisconnectWithMoved(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	if mail := e.resume(c, sess, b); len(mail) != 0 {
		t.Fatalf("mail %q, want none", mail)
	}
	e.send(c, "m1")
	e.disconnectWith(c, a, "u1", "u2")
	e.expectServer(c, b)
	rb.WaitDirect(t, c, 3, WaitTimeout)
	expectMsgs(t, "delivered to the new server", rb.Direct(c), "m1", "u1", "u2")
}

// testDisconnectWithBound: the unsent messages count against the mailbox
// bound; the oldest, theirs first, are dropped and counted.
func testDisconnectWithBound(t *testing.T, e *env) {
	e.open(Config{MailboxSize: 3, MailboxTTL: defaultConfig.MailboxTTL})
	a, _ := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.send(c, "m1", "m2")
	before := e.stats().MailDropped
	e.disconnectWith(c, a, "u1", "u2")
	if got := e.stats().MailDropped - before; got != 1 {
		t.Fatalf("MailDropped grew by %d, want 1", got)
	}
	expectMsgs(t, "resumed mail", e.resume(c, sess, a), "u2", "m1", "m2")
}

// testDisconnectWithAckedOrUnknown: an acknowledging client's mailbox keeps
// what it was sent, so unsent messages are dropped for it (it still goes
// away); for an unknown client they are dropped and nothing fails.
func testDisconnectWithAckedOrUnknown(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connectAcked(a, "")
	e.send(c, "msg1")
	e.disconnectWith(c, a, "u1")
	e.expectServer(c, "")
	expectMail(t, "resumed mail", e.resumeAcked(c, sess, a, 0), 1)
	if err := e.b.DisconnectWith(e.ctx, "nobody", a, [][]byte{[]byte("x")}); err != nil {
		t.Fatalf("DisconnectWith of an unknown client: %v", err)
	}
}
