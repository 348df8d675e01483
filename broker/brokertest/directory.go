package brokertest

import (
	"slices"
	"sync"
	"testing"

	"github.com/rocket-go/rocket/broker"
)

// The Directory subtests (broker.Directory): client ids, Connect and
// Lookup, clients going away and resuming, sessions, Forget.

var directoryTests = []subtest{
	{"ClientIDsUnique", testClientIDsUnique},
	{"ConnectLookup", testConnectLookup},
	{"DisconnectKeepsMail", testDisconnectKeepsMail},
	{"ResumeMovesClient", testResumeMovesClient},
	{"ResumeOvertakesDisconnect", testResumeOvertakesDisconnect},
	{"ResumeBadSession", testResumeBadSession},
	{"ResumeUnknownClient", testResumeUnknownClient},
	{"StaleDisconnect", testStaleDisconnect},
	{"Forget", testForget},
}

func testClientIDsUnique(t *testing.T, e *env) {
	e.open(defaultConfig)
	const goroutines, perGoroutine = 8, 100
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				id, err := e.b.NewClientID(e.ctx)
				if err != nil {
					t.Errorf("NewClientID: %v", err)
					return
				}
				ids[g] = append(ids[g], id)
			}
		})
	}
	wg.Wait()
	expectDistinct(t, "client", slices.Concat(ids...), goroutines*perGoroutine)
}

func testConnectLookup(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, _ := e.server()
	c1, _ := e.connect(a)
	c2, _ := e.connect(b)
	e.expectServer(c1, a)
	e.expectServer(c2, b)
	_, err := e.b.Lookup(e.ctx, "no-such-client")
	expectErr(t, "Lookup(unknown)", err, broker.ErrUnknownClient)
}

func testDisconnectKeepsMail(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	_, rb := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.expectServer(c, "")
	e.send(c, "m0", "m1", "m2")
	ra.ExpectQuiet(t, QuietPeriod)
	if ra.Total()+rb.Total() != 0 {
		t.Fatalf("mail of an away client was delivered to a handler")
	}
	// Disconnecting again is harmless and keeps the mail.
	e.disconnect(c, a)
	e.expectServer(c, "")
	expectMsgs(t, "mail", e.resume(c, sess, a), "m0", "m1", "m2")
}

func testResumeMovesClient(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	e.send(c, "before")
	ra.WaitDirect(t, c, 1, WaitTimeout)
	e.disconnect(c, a)
	msgs := seq("away", 10)
	e.send(c, msgs...)
	expectMsgs(t, "mail", e.resume(c, sess, b), msgs...)
	e.expectServer(c, b)
	// The mailbox is empty now.
	expectMsgs(t, "mail on second resume", e.resume(c, sess, b))
	e.send(c, "after0", "after1")
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 2, WaitTimeout), "after0", "after1")
	ra.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "old server", ra.Direct(c), "before")
}

func testResumeOvertakesDisconnect(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	// The client reconnects to b before a noticed the close.
	expectMsgs(t, "mail", e.resume(c, sess, b))
	e.expectServer(c, b)
	e.send(c, "m0", "m1")
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 2, WaitTimeout), "m0", "m1")
	if n := len(ra.Direct(c)); n != 0 { // it is told Replaced (replaced.go)
		t.Fatalf("old server got %d messages, want 0", n)
	}
	// a's late Disconnect must not make the client away.
	e.disconnect(c, a)
	e.expectServer(c, b)
	e.send(c, "m2")
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 3, WaitTimeout), "m0", "m1", "m2")
	// a is told Replaced (a networked broker tells it through its
	// inbox, maybe only now), and gets nothing else.
	ra.WaitReplacements(t, c, 1, WaitTimeout)
	ra.ExpectQuiet(t, QuietPeriod)
}

func testResumeBadSession(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()

	// An away client keeps its mail and stays away.
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.send(c, "m0", "m1")
	_, err := e.b.Resume(e.ctx, c, sess+"-wrong", b, 0)
	expectErr(t, "Resume(wrong session)", err, broker.ErrBadSession)
	_, err = e.b.Resume(e.ctx, c, "", b, 0)
	expectErr(t, "Resume(empty session)", err, broker.ErrBadSession)
	e.expectServer(c, "")
	e.send(c, "m2")
	expectMsgs(t, "mail", e.resume(c, sess, b), "m0", "m1", "m2")

	// A connected client is not moved.
	d, dsess := e.connect(a)
	_, err = e.b.Resume(e.ctx, d, dsess+"-wrong", b, 0)
	expectErr(t, "Resume(wrong session, connected)", err, broker.ErrBadSession)
	e.expectServer(d, a)
	e.send(d, "d0")
	expectMsgs(t, "owner", ra.WaitDirect(t, d, 1, WaitTimeout), "d0")
	rb.ExpectQuiet(t, QuietPeriod)
}

func testResumeUnknownClient(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	_, err := e.b.Resume(e.ctx, "no-such-client", "secret", a, 0)
	expectErr(t, "Resume(unknown)", err, broker.ErrUnknownClient)
}

func testStaleDisconnect(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.send(c, "m0")
	expectMsgs(t, "mail", e.resume(c, sess, b), "m0")
	// Disconnect from the server that lost the client does nothing.
	e.disconnect(c, a)
	e.expectServer(c, b)
	e.send(c, "m1")
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 1, WaitTimeout), "m1")
	ra.ExpectQuiet(t, QuietPeriod)
	if n := ra.Total(); n != 0 {
		t.Fatalf("old server got %d deliveries, want 0", n)
	}
}

func testForget(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()

	c, sess := e.connect(a)
	if err := e.b.Forget(e.ctx, c); err != nil {
		t.Fatalf("Forget(connected): %v", err)
	}
	_, err := e.b.Lookup(e.ctx, c)
	expectErr(t, "Lookup(forgotten)", err, broker.ErrUnknownClient)
	err = e.b.Send(e.ctx, c, []byte("x"))
	expectErr(t, "Send(forgotten)", err, broker.ErrUnknownClient)
	_, err = e.b.Resume(e.ctx, c, sess, a, 0)
	expectErr(t, "Resume(forgotten)", err, broker.ErrUnknownClient)

	d, dsess := e.connect(a)
	e.disconnect(d, a)
	e.send(d, "m0")
	if err := e.b.Forget(e.ctx, d); err != nil {
		t.Fatalf("Forget(away): %v", err)
	}
	_, err = e.b.Resume(e.ctx, d, dsess, a, 0)
	expectErr(t, "Resume(forgotten away)", err, broker.ErrUnknownClient)
	ra.ExpectQuiet(t, QuietPeriod)
	if n := ra.Total(); n != 0 {
		t.Fatalf("got %d deliveries, want 0", n)
	}
}
