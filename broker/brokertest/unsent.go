package brokertest

import (
	"testing"
	"time"
)

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

// Returned records that the server clientID was taken from handed back
// what it had not written (Recorder is a broker.Returner).
func (r *Recorder) Returned(clientID string) {
	r.mu.Lock()
	if r.returned == nil {
		r.returned = make(map[string]int)
	}
	r.returned[clientID]++
	r.recordedLocked()
	r.mu.Unlock()
}

// Returns returns how many Returned calls were recorded for clientID.
func (r *Recorder) Returns(clientID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.returned[clientID]
}

// WaitReturns waits until at least n Returned calls were recorded for
// clientID; if timeout passes first it fails the test (call it from the
// test's goroutine).
func (r *Recorder) WaitReturns(t testing.TB, clientID string, n int, timeout time.Duration) {
	t.Helper()
	if !r.Wait(timeout, func() bool { return r.Returns(clientID) >= n }) {
		t.Fatalf("client %q: %d Returned calls after %v, want %d", clientID, r.Returns(clientID), timeout, n)
	}
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
// there; Resume names the server it was taken from, and the unsent
// messages go to the head of the client's mailbox, where the new server,
// told (Returned), finds them with a Resume of its own, ahead of what was
// there; what was sent to the client meanwhile went to the new server.
func testDisconnectWithMoved(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	r, err := e.b.Resume(e.ctx, c, sess, b, 0)
	if err != nil || len(r.Mail) != 0 || r.From != a {
		t.Fatalf("Resume on b of a client on a: %+v, %v; want no mail, From %s", r, err, a)
	}
	e.send(c, "m1")
	e.disconnectWith(c, a, "u1", "u2")
	e.expectServer(c, b)
	rb.WaitReturns(t, c, 1, WaitTimeout)
	expectMsgs(t, "delivered to the new server", rb.WaitDirect(t, c, 1, WaitTimeout), "m1")
	// Nothing to hand back: told all the same.
	e.disconnectWith(c, a)
	rb.WaitReturns(t, c, 2, WaitTimeout)
	r, err = e.b.Resume(e.ctx, c, sess, b, 0)
	if err != nil || r.From != "" {
		t.Fatalf("Resume on b of a client on b: %+v, %v; want From empty", r, err)
	}
	var mail [][]byte
	for _, m := range r.Mail {
		mail = append(mail, m.Data)
	}
	expectMsgs(t, "handed back", mail, "u1", "u2")
	e.disconnect(c, b)
	if r := e.resume(c, sess, a); len(r) != 0 {
		t.Fatalf("mail %q after the hand-back was taken", r)
	}
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
