package brokertest

import (
	"slices"
	"testing"
	"time"
)

// The Replacer subtests: a Resume that takes a client from another server
// tells that server (broker.Replacer), after the messages on their way
// to it, and tells no one otherwise.

// Replaced records that clientID resumed on another server (Recorder is a
// broker.Replacer), with the number of messages recorded for the client
// so far.
func (r *Recorder) Replaced(clientID string) {
	r.mu.Lock()
	if r.replaced == nil {
		r.replaced = make(map[string][]int)
	}
	r.replaced[clientID] = append(r.replaced[clientID], len(r.direct[clientID]))
	r.recordedLocked()
	r.mu.Unlock()
}

// Replacements returns, for each Replaced call recorded so far for
// clientID, oldest first, the number of messages recorded for the client
// before it.
func (r *Recorder) Replacements(clientID string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.replaced[clientID]...)
}

// WaitReplacements waits until at least n Replaced calls have been
// recorded for clientID and returns them (see Replacements). If timeout
// passes first it fails the test with t.Fatalf, so it must be called from
// the test's goroutine.
func (r *Recorder) WaitReplacements(t testing.TB, clientID string, n int, timeout time.Duration) []int {
	t.Helper()
	var got []int
	if !r.Wait(timeout, func() bool { got = r.Replacements(clientID); return len(got) >= n }) {
		t.Fatalf("client %q: got %d Replaced calls after %v, want %d", clientID, len(got), timeout, n)
	}
	return got
}

// settle waits until what the broker had sent on its way to serverID, whose
// Handler is r, before settle was called has reached r: it sends a marker
// to a fresh client of serverID and waits for it. A broker hands a server
// what is for it in order (a networked one through the server's inbox).
func (e *env) settle(serverID string, r *Recorder) {
	e.t.Helper()
	c, _ := e.connect(serverID)
	e.send(c, "marker")
	r.WaitDirect(e.t, c, 1, WaitTimeout)
}

// expectReplacements fails unless the Replaced calls recorded by r for
// clientID are want (the messages recorded before each).
func expectReplacements(t *testing.T, what string, r *Recorder, clientID string, want ...int) {
	t.Helper()
	if got := r.Replacements(clientID); !slices.Equal(got, want) {
		t.Fatalf("%s: Replaced calls for %s after %v messages, want after %v", what, clientID, got, want)
	}
}

// testReplacedOnResume: a client connected on a resumes on b (a reconnect
// that overtook the close): a's Handler gets Replaced once, b's none.
// A Handler that is not a Replacer is not called.
func testReplacedOnResume(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	e.resume(c, sess, b)
	ra.WaitReplacements(t, c, 1, WaitTimeout)
	e.settle(a, ra)
	e.settle(b, rb)
	expectReplacements(t, "old server", ra, c, 0)
	expectReplacements(t, "new server", rb, c)

	// From a server whose Handler is not a Replacer.
	nop := funcHandler{deliver: func(string, []byte) {}, deliverRoom: func(string, []byte) {}}
	x, err := e.b.RegisterServer(e.ctx, nop)
	if err != nil {
		t.Fatal(err)
	}
	d, dsess := e.connect(x)
	e.resume(d, dsess, b)
	e.expectServer(d, b)
	e.settle(b, rb)
	expectReplacements(t, "new server", rb, d)
}

// testReplacedAfterMessages: the messages sent to the client before the
// Resume reach its old server before Replaced; those sent after go to the
// new server.
func testReplacedAfterMessages(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	msgs := seq("m", 20)
	e.send(c, msgs...)
	e.resume(c, sess, b)
	e.send(c, "after")
	if got := ra.WaitReplacements(t, c, 1, WaitTimeout); got[0] != len(msgs) {
		t.Fatalf("Replaced after %d messages, want after the %d sent before the Resume", got[0], len(msgs))
	}
	expectMsgs(t, "old server", ra.Direct(c), msgs...)
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 1, WaitTimeout), "after")
	e.settle(a, ra)
	expectReplacements(t, "old server", ra, c, len(msgs))
}

// testReplacedSameServer: a Resume on the server the directory names
// (a reconnect to the same server) tells no one.
func testReplacedSameServer(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	c, sess := e.connect(a)
	e.resume(c, sess, a)
	e.send(c, "after") // behind any Replaced on its way
	expectMsgs(t, "server", ra.WaitDirect(t, c, 1, WaitTimeout), "after")
	expectReplacements(t, "server", ra, c)
}

// testReplacedAway: a Resume of an away client tells no one, not even the
// server it left.
func testReplacedAway(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.resume(c, sess, b)
	e.expectServer(c, b)
	e.settle(a, ra)
	e.settle(b, rb)
	expectReplacements(t, "server left", ra, c)
	expectReplacements(t, "new server", rb, c)
}

// testReplacedAcked: for a client that acknowledges, as for any: its old
// server gets Replaced once, after the numbered messages sent before the
// Resume; the new server none.
func testReplacedAcked(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connectAcked(a, "")
	e.sendNumbered(c, 1, 5)
	expectMail(t, "Resume", e.resumeAcked(c, sess, b, 2), 3, 4, 5)
	if got := ra.WaitReplacements(t, c, 1, WaitTimeout); got[0] != 5 {
		t.Fatalf("Replaced after %d messages, want after the 5 sent before the Resume", got[0])
	}
	expectDelivered(t, ra, c, 5)
	e.sendNumbered(c, 6, 6)
	if got, s := rb.WaitDirect(t, c, 1, WaitTimeout), rb.Seqs(c); string(got[0]) != "msg6" || s[0] != 6 {
		t.Fatalf("new server got %q numbered %v, want msg6 numbered 6", got, s)
	}
	e.settle(a, ra)
	e.settle(b, rb)
	expectReplacements(t, "old server", ra, c, 5)
	expectReplacements(t, "new server", rb, c)
}

// testReplacedDuringDelivery: a client that acknowledges resumes elsewhere
// while messages sent from another goroutine are being handed to its
// server, slowly: the old server gets Replaced once, after every message
// it got for the client.
func testReplacedDuringDelivery(t *testing.T, e *env) {
	const n = 200
	e.open(Config{MailboxSize: n, MailboxTTL: time.Minute})
	ra := new(slowRecorder)
	a, err := e.b.RegisterServer(e.ctx, ra)
	if err != nil {
		t.Fatal(err)
	}
	b, rb := e.server()
	c, sess := e.connectAcked(a, "")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range n {
			if err := e.b.Send(e.ctx, c, []byte("m")); err != nil {
				t.Errorf("Send: %v", err)
				return
			}
		}
	}()
	ra.WaitDirect(t, c, 1, WaitTimeout) // deliveries under way
	e.resumeAcked(c, sess, b, 0)
	<-sent
	ra.WaitReplacements(t, c, 1, WaitTimeout)
	e.settle(a, &ra.Recorder)
	e.settle(b, rb)
	expectReplacements(t, "old server", &ra.Recorder, c, len(ra.Direct(c)))
	expectReplacements(t, "new server", rb, c)
}

// replacedTests are the Replacer subtests, for Run.
var replacedTests = []struct {
	name string
	fn   func(*testing.T, *env)
}{
	{"ReplacedOnResume", testReplacedOnResume},
	{"ReplacedAfterMessages", testReplacedAfterMessages},
	{"ReplacedSameServer", testReplacedSameServer},
	{"ReplacedAway", testReplacedAway},
	{"ReplacedAcked", testReplacedAcked},
	{"ReplacedDuringDelivery", testReplacedDuringDelivery},
}
