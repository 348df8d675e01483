package brokertest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// The user subtests: Client.User, UserClients, SendUser, ForgetUser and
// the kicks it hands to Kicker handlers.

var usersTests = []subtest{
	{"UserClients", testUserClients},
	{"UserUnregister", testUserUnregister},
	{"UserTTL", testUserTTL},
	{"SendUser", testSendUser},
	{"ForgetUser", testForgetUser},
}

// Kick is a kick recorded by a Recorder.
type Kick struct {
	// Reason is the reason given to ForgetUser.
	Reason string
	// After is the number of messages recorded for the client when the
	// kick arrived.
	After int
}

// Kick records a kick of clientID (Recorder is a broker.Kicker).
func (r *Recorder) Kick(clientID, reason string) {
	r.mu.Lock()
	if r.kicks == nil {
		r.kicks = make(map[string][]Kick)
	}
	r.kicks[clientID] = append(r.kicks[clientID], Kick{Reason: reason, After: len(r.direct[clientID])})
	r.recordedLocked()
	r.mu.Unlock()
}

// Kicks returns the kicks recorded so far for clientID, oldest first.
func (r *Recorder) Kicks(clientID string) []Kick {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Kick(nil), r.kicks[clientID]...)
}

// WaitKicks waits until at least n kicks have been recorded for clientID
// and returns all of them, oldest first. If timeout passes first it fails
// the test with t.Fatalf, so it must be called from the test's goroutine.
func (r *Recorder) WaitKicks(t testing.TB, clientID string, n int, timeout time.Duration) []Kick {
	t.Helper()
	var got []Kick
	if !r.Wait(timeout, func() bool { got = r.Kicks(clientID); return len(got) >= n }) {
		t.Fatalf("client %q: got %d kicks after %v, want %d", clientID, len(got), timeout, n)
	}
	return got
}

// connectUser allocates a client id and connects it to serverID for user.
// It returns the id and the session secret.
func (e *env) connectUser(serverID, user string) (id, session string) {
	e.t.Helper()
	return e.connectClient(broker.Client{Server: serverID, User: user})
}

// uc is a client of user on server ("" when away), as UserClients lists it.
func uc(id, server, user string) broker.Client {
	return broker.Client{ID: id, Server: server, User: user}
}

// expectClients fails unless got holds want, in any order, without
// sessions, and is not nil.
func expectClients(t *testing.T, what string, got []broker.Client, want ...broker.Client) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s returned a nil slice, want an empty one", what)
	}
	byID := func(a, b broker.Client) int { return strings.Compare(a.ID, b.ID) }
	got = slices.Clone(got)
	slices.SortFunc(got, byID)
	want = slices.Clone(want)
	slices.SortFunc(want, byID)
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}

func (e *env) expectUserClients(user string, want ...broker.Client) {
	e.t.Helper()
	got, err := e.b.UserClients(e.ctx, user)
	if err != nil {
		e.t.Fatalf("UserClients(%q): %v", user, err)
	}
	expectClients(e.t, "UserClients("+user+")", got, want...)
}

func (e *env) sendUser(from, user, msg string) []broker.Client {
	e.t.Helper()
	got, err := e.b.SendUser(e.ctx, from, user, []byte(msg))
	if err != nil {
		e.t.Fatalf("SendUser(%q, %q, %q): %v", from, user, msg, err)
	}
	return got
}

// testUserClients: Connect records the user, Lookup returns it, and
// UserClients lists the user's clients, connected or away, until they are
// forgotten or recorded again under another user.
func testUserClients(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, _ := e.server()
	c1, _ := e.connectUser(a, "ann")
	c2, s2 := e.connectUser(b, "ann")
	c3, _ := e.connectUser(a, "bob")
	anon, _ := e.connect(a)
	for id, user := range map[string]string{c1: "ann", c3: "bob", anon: ""} {
		rec, err := e.b.Lookup(e.ctx, id)
		if err != nil || rec.User != user || rec.Session != "" {
			t.Fatalf("Lookup(%s) = %+v, %v; want User %q and no Session", id, rec, err, user)
		}
	}
	e.expectUserClients("ann", uc(c1, a, "ann"), uc(c2, b, "ann"))
	e.expectUserClients("bob", uc(c3, a, "bob"))
	e.expectUserClients("nobody")
	e.expectUserClients("") // clients without a user belong to no user

	// Away clients are listed without a server; Resume keeps the user.
	e.disconnect(c2, b)
	e.expectUserClients("ann", uc(c1, a, "ann"), uc(c2, "", "ann"))
	e.resume(c2, s2, a)
	e.expectUserClients("ann", uc(c1, a, "ann"), uc(c2, a, "ann"))
	if rec, err := e.b.Lookup(e.ctx, c2); err != nil || rec.User != "ann" {
		t.Fatalf("Lookup(%s) after Resume = %+v, %v; want User ann", c2, rec, err)
	}

	// Forget takes the client out.
	if err := e.b.Forget(e.ctx, c1); err != nil {
		t.Fatal(err)
	}
	e.expectUserClients("ann", uc(c2, a, "ann"))

	// A Connect that replaces a record moves it to its new user (or to
	// none).
	if err := e.b.Connect(e.ctx, broker.Client{ID: c3, Server: b, Session: "s", User: "cat"}); err != nil {
		t.Fatal(err)
	}
	e.expectUserClients("bob")
	e.expectUserClients("cat", uc(c3, b, "cat"))
	if err := e.b.Connect(e.ctx, broker.Client{ID: c3, Server: b, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	e.expectUserClients("cat")

	// User ids are arbitrary strings.
	odd := "a user: with spaces:clients"
	c4, _ := e.connectUser(b, odd)
	e.expectUserClients(odd, uc(c4, b, odd))
	e.expectUserClients("a user")
}

// testUserUnregister: the clients of a server that unregisters stay
// listed, away, and SendUser keeps messages for them.
func testUserUnregister(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c1, s1 := e.connectUser(a, "ann")
	c2, _ := e.connectUser(b, "ann")
	if err := e.b.UnregisterServer(e.ctx, a); err != nil {
		t.Fatal(err)
	}
	e.expectUserClients("ann", uc(c1, "", "ann"), uc(c2, b, "ann"))
	expectClients(t, "SendUser", e.sendUser("", "ann", "m0"), uc(c1, "", "ann"), uc(c2, b, "ann"))
	expectMsgs(t, "connected client", rb.WaitDirect(t, c2, 1, WaitTimeout), "m0")
	expectMsgs(t, "mail", e.resume(c1, s1, b), "m0")
	e.expectUserClients("ann", uc(c1, b, "ann"), uc(c2, b, "ann"))
	if n := ra.Total(); n != 0 {
		t.Fatalf("unregistered server got %d deliveries", n)
	}
}

// testUserTTL: an away client of a user is no longer listed once its
// session has expired.
func testUserTTL(t *testing.T, e *env) {
	const ttl = 200 * time.Millisecond
	e.open(Config{MailboxSize: 16, MailboxTTL: ttl})
	a, _ := e.server()
	kept, _ := e.connectUser(a, "ann")
	c, _ := e.connectUser(a, "ann")
	e.disconnect(c, a)
	deadline := time.Now().Add(ttl + WaitTimeout)
	for {
		got, err := e.b.UserClients(e.ctx, "ann")
		if err != nil {
			t.Fatalf("UserClients: %v", err)
		}
		if len(got) == 1 {
			expectClients(t, "UserClients(ann)", got, uc(kept, a, "ann"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: UserClients(ann) = %+v, want the expired client gone", ttl+WaitTimeout, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	expectClients(t, "SendUser", e.sendUser("", "ann", "m"), uc(kept, a, "ann"))
}

// testSendUser: SendUser reaches every client of the user, on every server
// or in its mailbox, after what was sent to them before, and leaves the
// clients on from to the caller.
func testSendUser(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	const user = "ann: the user"
	c1, _ := e.connectUser(a, user)
	c2, _ := e.connectUser(b, user)
	c3, s3 := e.connectUser(b, user)
	other, _ := e.connectUser(a, "bob")
	anon, _ := e.connect(b)
	e.disconnect(c3, b)
	all := []broker.Client{uc(c1, a, user), uc(c2, b, user), uc(c3, "", user)}

	e.send(c2, "s0")
	expectClients(t, "SendUser", e.sendUser("", user, "m0"), all...)
	expectMsgs(t, "c1", ra.WaitDirect(t, c1, 1, WaitTimeout), "m0")
	expectMsgs(t, "c2", rb.WaitDirect(t, c2, 2, WaitTimeout), "s0", "m0")

	// From a: c1 is returned but not delivered. The mailbox keeps a copy.
	data := []byte("m1")
	got, err := e.b.SendUser(e.ctx, a, user, data)
	if err != nil {
		t.Fatalf("SendUser from %s: %v", a, err)
	}
	copy(data, "XX")
	expectClients(t, "SendUser from a", got, all...)
	expectMsgs(t, "c2", rb.WaitDirect(t, c2, 3, WaitTimeout), "s0", "m0", "m1")
	ra.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "c1", ra.Direct(c1), "m0")

	// The away client finds both in its mailbox, in order.
	expectMsgs(t, "mail", e.resume(c3, s3, a), "m0", "m1")
	if n := len(ra.Direct(other)) + len(rb.Direct(anon)); n != 0 {
		t.Fatalf("clients of other users got %d messages", n)
	}
	expectClients(t, "SendUser(nobody)", e.sendUser("", "nobody", "x"))
}

// testForgetUser: ForgetUser forgets every client of the user, sessions
// and mail included, and kicks the connected ones on their servers, after
// the messages sent to them before; other users are untouched.
func testForgetUser(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	// x's handler is not a Kicker: its client is forgotten all the same.
	nop := funcHandler{deliver: func(string, []byte) {}, deliverRoom: func(string, []byte) {}}
	x, err := e.b.RegisterServer(e.ctx, nop)
	if err != nil {
		t.Fatal(err)
	}
	c1, s1 := e.connectUser(a, "ann")
	c2, s2 := e.connectUser(b, "ann")
	c3, s3 := e.connectUser(b, "ann")
	c4, s4 := e.connectUser(x, "ann")
	keep, _ := e.connectUser(a, "bob")
	e.disconnect(c3, b)
	e.send(c3, "mail")
	e.send(c1, "before")

	got, err := e.b.ForgetUser(e.ctx, "ann", "signed out everywhere")
	if err != nil {
		t.Fatalf("ForgetUser: %v", err)
	}
	expectClients(t, "ForgetUser", got, uc(c1, a, "ann"), uc(c2, b, "ann"), uc(c3, "", "ann"), uc(c4, x, "ann"))
	if k := ra.WaitKicks(t, c1, 1, WaitTimeout); k[0] != (Kick{Reason: "signed out everywhere", After: 1}) {
		t.Fatalf("kick of %s: %+v, want the reason, after the message sent before", c1, k)
	}
	expectMsgs(t, "c1", ra.Direct(c1), "before")
	if k := rb.WaitKicks(t, c2, 1, WaitTimeout); k[0].Reason != "signed out everywhere" {
		t.Fatalf("kick of %s: %+v", c2, k)
	}

	// Every session is gone, with its mail.
	for id, sess := range map[string]string{c1: s1, c2: s2, c3: s3, c4: s4} {
		_, err := e.b.Lookup(e.ctx, id)
		expectErr(t, "Lookup(forgotten)", err, broker.ErrUnknownClient)
		_, err = e.b.Resume(e.ctx, id, sess, a, 0)
		expectErr(t, "Resume(forgotten)", err, broker.ErrUnknownClient)
		err = e.b.Send(e.ctx, id, []byte("x"))
		expectErr(t, "Send(forgotten)", err, broker.ErrUnknownClient)
	}
	e.expectUserClients("ann")
	// The server closing the connection then finds nothing to mark away.
	e.disconnect(c1, a)
	if _, err := e.b.Lookup(e.ctx, c1); !errors.Is(err, broker.ErrUnknownClient) {
		t.Fatalf("Lookup after Disconnect of a forgotten client: %v", err)
	}

	// Other users are untouched; nothing else was kicked.
	e.expectServer(keep, a)
	e.expectUserClients("bob", uc(keep, a, "bob"))
	got, err = e.b.ForgetUser(e.ctx, "ann", "again")
	if err != nil {
		t.Fatalf("ForgetUser again: %v", err)
	}
	expectClients(t, "ForgetUser again", got)
	ra.ExpectQuiet(t, QuietPeriod)
	if len(ra.Kicks(keep)) != 0 || len(rb.Kicks(c3)) != 0 || len(ra.Kicks(c1)) != 1 || len(rb.Kicks(c2)) != 1 {
		t.Fatalf("kicks: keep %v, c3 %v, c1 %v, c2 %v; want only one each for c1 and c2",
			ra.Kicks(keep), rb.Kicks(c3), ra.Kicks(c1), rb.Kicks(c2))
	}
	e.send(keep, "still here")
	ra.WaitDirect(t, keep, 1, WaitTimeout)
}
