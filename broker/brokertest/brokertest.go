// Package brokertest is the conformance suite that every broker.Broker
// implementation must pass, plus a recording Handler useful to other tests.
//
// An implementation's tests call Run with a constructor:
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
//			return memory.New(memory.Config{MailboxSize: cfg.MailboxSize,
//				MailboxBytes: cfg.MailboxBytes, MailboxTTL: cfg.MailboxTTL})
//		})
//	}
//
// The suite does not rely on in-process details: it waits, with timeouts, for
// every delivery it expects, so brokers that deliver asynchronously pass as
// well as synchronous ones. Checks that something is not delivered wait for
// QuietPeriod, which a slow broker may raise.
package brokertest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Config is what the suite asks of a broker under test.
type Config struct {
	// MailboxSize is the number of messages kept per away client.
	MailboxSize int
	// MailboxBytes bounds the bytes of the messages kept per client; zero
	// means the broker's default (broker.DefaultMailboxBytes).
	MailboxBytes int
	// MailboxTTL is how long an away client's session and mail are kept.
	MailboxTTL time.Duration
}

var (
	// WaitTimeout bounds every wait for an expected delivery or state. It
	// is only reached when a test fails.
	WaitTimeout = 5 * time.Second
	// QuietPeriod is how long the suite watches for deliveries that must
	// not happen.
	QuietPeriod = 50 * time.Millisecond
)

// defaultConfig is used by the tests that do not exercise the limits.
var defaultConfig = Config{MailboxSize: 64, MailboxTTL: time.Minute}

// Run runs the conformance suite as subtests of t. newBroker must return a
// fresh, empty broker with the given mailbox limits; the suite closes it.
func Run(t *testing.T, newBroker func(t *testing.T, cfg Config) broker.Broker) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"ServerIDsUnique", testServerIDsUnique},
		{"ClientIDsUnique", testClientIDsUnique},
		{"ConnectLookup", testConnectLookup},
		{"UnknownServer", testUnknownServer},
		{"SendInOrderToOwner", testSendInOrderToOwner},
		{"SendUnknownClient", testSendUnknownClient},
		{"DisconnectKeepsMail", testDisconnectKeepsMail},
		{"ResumeMovesClient", testResumeMovesClient},
		{"ResumeOvertakesDisconnect", testResumeOvertakesDisconnect},
		{"ResumeBadSession", testResumeBadSession},
		{"ResumeUnknownClient", testResumeUnknownClient},
		{"StaleDisconnect", testStaleDisconnect},
		{"MailCopied", testMailCopied},
		{"MailboxOverflow", testMailboxOverflow},
		{"MailboxTTL", testMailboxTTL},
		{"MailboxBytes", testMailboxBytes},
		{"MailboxTooLarge", testMailboxTooLarge},
		{"AckedBytes", testAckedBytes},
		{"Forget", testForget},
		{"RoomPublish", testRoomPublish},
		{"RoomPublishSkipsOrigin", testRoomPublishSkipsOrigin},
		{"RoomUnsubscribe", testRoomUnsubscribe},
		{"RoomDoubleSubscribe", testRoomDoubleSubscribe},
		{"RoomEmpty", testRoomEmpty},
		{"UnregisterServer", testUnregisterServer},
		{"PresenceAddList", testPresenceAddList},
		{"PresenceReplace", testPresenceReplace},
		{"PresenceRemove", testPresenceRemove},
		{"PresenceUnknownServer", testPresenceUnknownServer},
		{"PresenceDataCopied", testPresenceDataCopied},
		{"PresenceUnregister", testPresenceUnregister},
		{"UserClients", testUserClients},
		{"UserUnregister", testUserUnregister},
		{"UserTTL", testUserTTL},
		{"SendUser", testSendUser},
		{"ForgetUser", testForgetUser},
		{"AckedNumbered", testAckedNumbered},
		{"AckedResume", testAckedResume},
		{"AckedBound", testAckedBound},
		{"AckedBoundConnected", testAckedBoundConnected},
		{"AckedConcurrentInOrder", testAckedConcurrentInOrder},
		{"AckedSendUser", testAckedSendUser},
		{"AckedUnregister", testAckedUnregister},
		{"HandlerCallsBack", testHandlerCallsBack},
		{"ConcurrentMoveNoLoss", testConcurrentMoveNoLoss},
		{"Closed", testClosed},
		{"CanceledContext", testCanceledContext},
	}
	tests = append(tests, replacedTests...)
	tests = append(tests, unsentTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, &env{t: t, newBroker: newBroker})
		})
	}
}

// env builds a broker for one subtest and offers shortcuts that fail the
// test on unexpected errors.
type env struct {
	t         *testing.T
	newBroker func(*testing.T, Config) broker.Broker
	b         broker.Broker
	ctx       context.Context
	// abandoned is set when the broker is deadlocked: Close would hang.
	abandoned bool
}

// open creates the broker under test with cfg and closes it at the end of
// the test.
func (e *env) open(cfg Config) broker.Broker {
	e.t.Helper()
	e.b = e.newBroker(e.t, cfg)
	if e.b == nil {
		e.t.Fatal("newBroker returned nil")
	}
	e.t.Cleanup(func() {
		if e.abandoned {
			return
		}
		if err := e.b.Close(); err != nil {
			e.t.Errorf("Close: %v", err)
		}
	})
	e.ctx = e.t.Context()
	return e.b
}

// server registers a server with a fresh Recorder.
func (e *env) server() (string, *Recorder) {
	e.t.Helper()
	r := new(Recorder)
	id, err := e.b.RegisterServer(e.ctx, r)
	if err != nil {
		e.t.Fatalf("RegisterServer: %v", err)
	}
	if id == "" {
		e.t.Fatal("RegisterServer returned an empty id")
	}
	return id, r
}

// connect allocates a client id and connects it to serverID. It returns the
// id and the session secret.
func (e *env) connect(serverID string) (id, session string) {
	e.t.Helper()
	return e.connectClient(broker.Client{Server: serverID})
}

// connectClient allocates a client id and connects c under it, with the
// session secret "secret-<id>", to c.Server. It returns the id and the
// session secret.
func (e *env) connectClient(c broker.Client) (id, session string) {
	e.t.Helper()
	id, err := e.b.NewClientID(e.ctx)
	if err != nil {
		e.t.Fatalf("NewClientID: %v", err)
	}
	c.ID, c.Session = id, "secret-"+id
	if err := e.b.Connect(e.ctx, c); err != nil {
		e.t.Fatalf("Connect(%+v): %v", c, err)
	}
	return c.ID, c.Session
}

// send sends msgs to clientID, each from this goroutine, in order.
func (e *env) send(clientID string, msgs ...string) {
	e.t.Helper()
	for _, m := range msgs {
		if err := e.b.Send(e.ctx, clientID, []byte(m)); err != nil {
			e.t.Fatalf("Send(%s, %q): %v", clientID, m, err)
		}
	}
}

// publish publishes msgs to room, in order.
func (e *env) publish(room string, msgs ...string) {
	e.t.Helper()
	for _, m := range msgs {
		if err := e.b.Publish(e.ctx, "", room, []byte(m)); err != nil {
			e.t.Fatalf("Publish(%s, %q): %v", room, m, err)
		}
	}
}

func (e *env) subscribe(serverID, room string) {
	e.t.Helper()
	if err := e.b.Subscribe(e.ctx, serverID, room); err != nil {
		e.t.Fatalf("Subscribe(%s, %s): %v", serverID, room, err)
	}
}

func (e *env) disconnect(clientID, serverID string) {
	e.t.Helper()
	if err := e.b.Disconnect(e.ctx, clientID, serverID); err != nil {
		e.t.Fatalf("Disconnect(%s, %s): %v", clientID, serverID, err)
	}
}

// resume resumes a client that does not acknowledge and returns its mail.
func (e *env) resume(clientID, session, serverID string) [][]byte {
	e.t.Helper()
	r, err := e.b.Resume(e.ctx, clientID, session, serverID, 0)
	if err != nil {
		e.t.Fatalf("Resume(%s on %s): %v", clientID, serverID, err)
	}
	if r.Acked {
		e.t.Fatalf("Resume(%s on %s) says Acked for a client connected without", clientID, serverID)
	}
	var mail [][]byte
	for _, m := range r.Mail {
		if m.Seq != 0 {
			e.t.Fatalf("Resume(%s on %s): mail numbered %d for a client that does not acknowledge", clientID, serverID, m.Seq)
		}
		mail = append(mail, m.Data)
	}
	return mail
}

// expectServer checks that the directory places clientID on serverID ("" for
// away).
func (e *env) expectServer(clientID, serverID string) {
	e.t.Helper()
	c, err := e.b.Lookup(e.ctx, clientID)
	if err != nil {
		e.t.Fatalf("Lookup(%s): %v", clientID, err)
	}
	if c.ID != clientID || c.Server != serverID || c.Session != "" {
		e.t.Fatalf("Lookup(%s) = %+v, want {ID:%s Server:%s Session:}", clientID, c, clientID, serverID)
	}
}

func (e *env) stats() broker.Stats {
	e.t.Helper()
	s, err := e.b.Stats(e.ctx)
	if err != nil {
		e.t.Fatalf("Stats: %v", err)
	}
	return s
}

// expectErr fails unless errors.Is(err, target).
func expectErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// expectMsgs fails unless got holds exactly want, in order.
func expectMsgs(t *testing.T, what string, got [][]byte, want ...string) {
	t.Helper()
	gs := make([]string, len(got))
	for i, g := range got {
		gs[i] = string(g)
	}
	if !slices.Equal(gs, want) {
		t.Fatalf("%s: got %q, want %q", what, gs, want)
	}
}

// seq returns n messages named prefix0, prefix1, ...
func seq(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = prefix + strconv.Itoa(i)
	}
	return s
}

func testServerIDsUnique(t *testing.T, e *env) {
	e.open(defaultConfig)
	const goroutines, perGoroutine = 8, 10
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				id, err := e.b.RegisterServer(e.ctx, new(Recorder))
				if err != nil {
					t.Errorf("RegisterServer: %v", err)
					return
				}
				ids[g] = append(ids[g], id)
			}
		})
	}
	wg.Wait()
	expectDistinct(t, "server", slices.Concat(ids...), goroutines*perGoroutine)
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

func expectDistinct(t *testing.T, kind string, ids []string, n int) {
	t.Helper()
	if len(ids) != n {
		t.Fatalf("got %d %s ids, want %d", len(ids), kind, n)
	}
	seen := make(map[string]bool, n)
	for _, id := range ids {
		if id == "" {
			t.Fatalf("empty %s id", kind)
		}
		if seen[id] {
			t.Fatalf("%s id %q allocated twice", kind, id)
		}
		seen[id] = true
	}
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

func testUnknownServer(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connect(a)
	const ghost = "no-such-server"
	err := e.b.Connect(e.ctx, broker.Client{ID: c + "x", Server: ghost, Session: "s"})
	expectErr(t, "Connect(unknown server)", err, broker.ErrUnknownServer)
	_, err = e.b.Resume(e.ctx, c, sess, ghost, 0)
	expectErr(t, "Resume(unknown server)", err, broker.ErrUnknownServer)
	e.expectServer(c, a)
	err = e.b.Subscribe(e.ctx, ghost, "room")
	expectErr(t, "Subscribe(unknown server)", err, broker.ErrUnknownServer)
	err = e.b.UnregisterServer(e.ctx, ghost)
	expectErr(t, "UnregisterServer(unknown server)", err, broker.ErrUnknownServer)
}

func testSendInOrderToOwner(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	_, rb := e.server()
	c, _ := e.connect(a)
	msgs := seq("m", 1000)
	e.send(c, msgs...)
	expectMsgs(t, "owner", ra.WaitDirect(t, c, len(msgs), WaitTimeout), msgs...)
	ra.ExpectQuiet(t, QuietPeriod)
	if n := rb.Total(); n != 0 {
		t.Fatalf("other server got %d deliveries, want 0", n)
	}
}

func testSendUnknownClient(t *testing.T, e *env) {
	e.open(defaultConfig)
	e.server()
	err := e.b.Send(e.ctx, "no-such-client", []byte("x"))
	expectErr(t, "Send(unknown)", err, broker.ErrUnknownClient)
	// A fresh id is unknown until Connect.
	id, err := e.b.NewClientID(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = e.b.Send(e.ctx, id, []byte("x"))
	expectErr(t, "Send(allocated, not connected)", err, broker.ErrUnknownClient)
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

func testMailCopied(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	buf := []byte("hello")
	if err := e.b.Send(e.ctx, c, buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // callers may reuse their buffers
	if err := e.b.Send(e.ctx, c, []byte{}); err != nil {
		t.Fatal(err)
	}
	mail := e.resume(c, sess, a)
	expectMsgs(t, "mail", mail, "hello", "")
}

func testMailboxOverflow(t *testing.T, e *env) {
	const size, sent = 4, 10
	e.open(Config{MailboxSize: size, MailboxTTL: time.Minute})
	a, _ := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	msgs := seq("m", sent)
	e.send(c, msgs...)
	expectMsgs(t, "mail", e.resume(c, sess, a), msgs[sent-size:]...)
	if s := e.stats(); s.MailDropped != sent-size || s.MailExpired != 0 {
		t.Fatalf("Stats = %+v, want MailDropped %d, MailExpired 0", s, sent-size)
	}
}

func testMailboxTTL(t *testing.T, e *env) {
	const ttl = 200 * time.Millisecond
	e.open(Config{MailboxSize: 16, MailboxTTL: ttl})
	a, ra := e.server()
	// kept stays connected: only away clients expire.
	kept, _ := e.connect(a)
	c, sess := e.connect(a)
	e.disconnect(c, a)
	e.send(c, "m0", "m1", "m2")
	// Wait for the session to expire: Lookup reports it gone and Stats count
	// its three messages.
	deadline := time.Now().Add(ttl + WaitTimeout)
	for {
		_, lerr := e.b.Lookup(e.ctx, c)
		s := e.stats()
		if errors.Is(lerr, broker.ErrUnknownClient) && s.MailExpired == 3 {
			break
		}
		if lerr != nil && !errors.Is(lerr, broker.ErrUnknownClient) {
			t.Fatalf("Lookup: %v", lerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: Lookup error %v, Stats %+v; want ErrUnknownClient and MailExpired 3", ttl+WaitTimeout, lerr, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := e.b.Resume(e.ctx, c, sess, a, 0)
	expectErr(t, "Resume(expired)", err, broker.ErrUnknownClient)
	err = e.b.Send(e.ctx, c, []byte("late"))
	expectErr(t, "Send(expired)", err, broker.ErrUnknownClient)
	if s := e.stats(); s.MailExpired != 3 || s.MailDropped != 0 {
		t.Fatalf("Stats = %+v, want MailExpired 3, MailDropped 0", s)
	}
	e.expectServer(kept, a)
	e.send(kept, "k")
	ra.WaitDirect(t, kept, 1, WaitTimeout)
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

func testRoomPublish(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	_, rc := e.server()
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	e.subscribe(b, "other")
	msgs := seq("r", 100)
	e.publish("room", msgs...)
	expectMsgs(t, "server a", ra.WaitRoom(t, "room", len(msgs), WaitTimeout), msgs...)
	expectMsgs(t, "server b", rb.WaitRoom(t, "room", len(msgs), WaitTimeout), msgs...)
	rc.ExpectQuiet(t, QuietPeriod)
	if n := rc.Total(); n != 0 {
		t.Fatalf("unsubscribed server got %d deliveries, want 0", n)
	}
	if got := rb.Room("other"); len(got) != 0 {
		t.Fatalf("room other got %q, want nothing", got)
	}
}

// testRoomPublishSkipsOrigin: the publishing server is not delivered its
// own message; the others are.
func testRoomPublishSkipsOrigin(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	msgs := seq("o", 20)
	for _, m := range msgs {
		if err := e.b.Publish(e.ctx, a, "room", []byte(m)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	expectMsgs(t, "server b", rb.WaitRoom(t, "room", len(msgs), WaitTimeout), msgs...)
	ra.ExpectQuiet(t, QuietPeriod)
	if n := ra.Total(); n != 0 {
		t.Fatalf("publishing server got %d of its own messages, want 0", n)
	}
}

func testRoomUnsubscribe(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	e.publish("room", "r0")
	ra.WaitRoom(t, "room", 1, WaitTimeout)
	rb.WaitRoom(t, "room", 1, WaitTimeout)
	if err := e.b.Unsubscribe(e.ctx, b, "room"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	// Unsubscribing twice, or from a room never joined, is harmless.
	if err := e.b.Unsubscribe(e.ctx, b, "room"); err != nil {
		t.Fatalf("Unsubscribe again: %v", err)
	}
	if err := e.b.Unsubscribe(e.ctx, b, "never"); err != nil {
		t.Fatalf("Unsubscribe(never joined): %v", err)
	}
	e.publish("room", "r1")
	expectMsgs(t, "still subscribed", ra.WaitRoom(t, "room", 2, WaitTimeout), "r0", "r1")
	rb.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "unsubscribed", rb.Room("room"), "r0")
	// Subscribing again resumes delivery.
	e.subscribe(b, "room")
	e.publish("room", "r2")
	expectMsgs(t, "subscribed again", rb.WaitRoom(t, "room", 2, WaitTimeout), "r0", "r2")
}

func testRoomDoubleSubscribe(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	e.subscribe(a, "room")
	e.subscribe(a, "room")
	e.publish("room", "r0", "r1")
	expectMsgs(t, "room", ra.WaitRoom(t, "room", 2, WaitTimeout), "r0", "r1")
	ra.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "room", ra.Room("room"), "r0", "r1")
	// One Unsubscribe undoes both.
	if err := e.b.Unsubscribe(e.ctx, a, "room"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	e.publish("room", "r2")
	ra.ExpectQuiet(t, QuietPeriod)
}

func testRoomEmpty(t *testing.T, e *env) {
	e.open(defaultConfig)
	_, ra := e.server()
	e.publish("nobody", "r0")
	ra.ExpectQuiet(t, QuietPeriod)
}

func testUnregisterServer(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connect(a)
	d, dsess := e.connect(a)
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	if err := e.b.UnregisterServer(e.ctx, a); err != nil {
		t.Fatalf("UnregisterServer: %v", err)
	}
	e.expectServer(c, "")
	e.expectServer(d, "")
	e.send(c, "m0", "m1")
	e.publish("room", "r0")
	rb.WaitRoom(t, "room", 1, WaitTimeout)
	ra.ExpectQuiet(t, QuietPeriod)
	if n := ra.Total(); n != 0 {
		t.Fatalf("unregistered server got %d deliveries, want 0", n)
	}
	err := e.b.UnregisterServer(e.ctx, a)
	expectErr(t, "UnregisterServer twice", err, broker.ErrUnknownServer)

	// The clients are resumable elsewhere, with their mail.
	expectMsgs(t, "mail", e.resume(c, sess, b), "m0", "m1")
	expectMsgs(t, "mail", e.resume(d, dsess, b))
	e.send(c, "m2")
	expectMsgs(t, "new server", rb.WaitDirect(t, c, 1, WaitTimeout), "m2")
}

// funcHandler is a broker.Handler made of functions.
type funcHandler struct {
	deliver     func(clientID string, data []byte)
	deliverRoom func(room string, data []byte)
}

func (h funcHandler) Deliver(clientID string, _ uint64, data []byte) { h.deliver(clientID, data) }
func (h funcHandler) DeliverRoom(room string, data []byte)           { h.deliverRoom(room, data) }

// testHandlerCallsBack checks that handlers may call the broker, as servers
// do when they forward a message for a client they no longer hold.
func testHandlerCallsBack(t *testing.T, e *env) {
	e.open(defaultConfig)
	b, rb := e.server()
	target, _ := e.connect(b)
	e.subscribe(b, "out")
	ctx := e.ctx
	fwd := funcHandler{
		deliver: func(clientID string, data []byte) {
			if _, err := e.b.Lookup(ctx, clientID); err != nil {
				t.Errorf("Lookup from handler: %v", err)
			}
			if err := e.b.Send(ctx, target, data); err != nil {
				t.Errorf("Send from handler: %v", err)
			}
		},
		deliverRoom: func(_ string, data []byte) {
			if err := e.b.Publish(ctx, "", "out", data); err != nil {
				t.Errorf("Publish from handler: %v", err)
			}
		},
	}
	a, err := e.b.RegisterServer(ctx, fwd)
	if err != nil {
		t.Fatal(err)
	}
	e.subscribe(a, "in")
	c, _ := e.connect(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.b.Send(ctx, c, []byte("via-a")); err != nil {
			t.Errorf("Send: %v", err)
		}
		if err := e.b.Publish(ctx, "", "in", []byte("room-via-a")); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(WaitTimeout):
		e.abandoned = true
		t.Fatal("Send or Publish blocked: deadlock with a handler calling the broker?")
	}
	expectMsgs(t, "forwarded", rb.WaitDirect(t, target, 1, WaitTimeout), "via-a")
	expectMsgs(t, "republished", rb.WaitRoom(t, "out", 1, WaitTimeout), "room-via-a")
}

// testConcurrentMoveNoLoss sends numbered messages to a client while it
// moves back and forth between two servers: every message must end up
// exactly once with a handler or in the mail returned by Resume.
func testConcurrentMoveNoLoss(t *testing.T, e *env) {
	const n = 500
	e.open(Config{MailboxSize: n, MailboxTTL: time.Minute})
	// Both servers record into one Recorder: what matters is the union.
	rec := new(Recorder)
	var ids [2]string
	for i := range ids {
		id, err := e.b.RegisterServer(e.ctx, rec)
		if err != nil {
			t.Fatalf("RegisterServer: %v", err)
		}
		ids[i] = id
	}
	c, sess := e.connect(ids[0])

	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			if err := e.b.Send(e.ctx, c, []byte(strconv.Itoa(i))); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	// Move the client until the sender is done, then once more so that the
	// last Resume collects whatever was mailed.
	var mail [][]byte
	moves := 0
	for done := false; !done; moves++ {
		select {
		case <-sent:
			done = true
		default:
		}
		cur, next := ids[moves%2], ids[(moves+1)%2]
		if moves%4 < 2 {
			e.disconnect(c, cur) // else: a reconnect that overtakes the close
		}
		mail = append(mail, e.resume(c, sess, next)...)
	}
	t.Logf("%d moves, %d messages from Resume, %d delivered so far", moves, len(mail), len(rec.Direct(c)))
	var got [][]byte
	if !rec.Wait(WaitTimeout, func() bool {
		got = slices.Concat(rec.Direct(c), mail)
		return len(got) >= n
	}) {
		t.Fatalf("after %d moves: %d of %d messages arrived", moves, len(got), n)
	}
	seen := make([]int, n)
	for _, m := range got {
		i, err := strconv.Atoi(string(m))
		if err != nil || i < 0 || i >= n {
			t.Fatalf("unexpected message %q", m)
		}
		seen[i]++
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("message %d seen %d times, want once (after %d moves)", i, k, moves)
		}
	}
	if s := e.stats(); s.MailDropped != 0 {
		t.Fatalf("Stats = %+v, want MailDropped 0", s)
	}
}

func testClosed(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, sess := e.connect(a)
	e.subscribe(a, "room")
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, call := range calls(a, c, sess) {
		expectErr(t, call.name+" after Close", call.fn(e.ctx, e.b), broker.ErrClosed)
	}
}

func testCanceledContext(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	c, sess := e.connect(a)
	e.subscribe(a, "room")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	for _, call := range calls(a, c, sess) {
		if err := call.fn(ctx, e.b); err == nil {
			t.Errorf("%s with a canceled context: got nil error", call.name)
		}
	}
	// The broker is still usable with a live context.
	e.send(c, "m0")
	ra.WaitDirect(t, c, 1, WaitTimeout)
}

// call is one use of every broker method but Close.
type call struct {
	name string
	fn   func(context.Context, broker.Broker) error
}

// calls returns a call of every broker method but Close, for a registered
// server, a client on it and its session.
func calls(serverID, clientID, session string) []call {
	return []call{
		{"RegisterServer", func(ctx context.Context, b broker.Broker) error {
			_, err := b.RegisterServer(ctx, new(Recorder))
			return err
		}},
		{"NewClientID", func(ctx context.Context, b broker.Broker) error {
			_, err := b.NewClientID(ctx)
			return err
		}},
		{"Connect", func(ctx context.Context, b broker.Broker) error {
			return b.Connect(ctx, broker.Client{ID: clientID + "-new", Server: serverID, Session: "s"})
		}},
		{"Lookup", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Lookup(ctx, clientID)
			return err
		}},
		{"Send", func(ctx context.Context, b broker.Broker) error {
			return b.Send(ctx, clientID, []byte("x"))
		}},
		{"Subscribe", func(ctx context.Context, b broker.Broker) error {
			return b.Subscribe(ctx, serverID, "room2")
		}},
		{"Publish", func(ctx context.Context, b broker.Broker) error {
			return b.Publish(ctx, "", "room", []byte("x"))
		}},
		{"Unsubscribe", func(ctx context.Context, b broker.Broker) error {
			return b.Unsubscribe(ctx, serverID, "room")
		}},
		{"Stats", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Stats(ctx)
			return err
		}},
		{"PresenceAdd", func(ctx context.Context, b broker.Broker) error {
			return b.PresenceAdd(ctx, "room", broker.Member{ClientID: clientID, ServerID: serverID, JoinedAt: time.Now()})
		}},
		{"Presence", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Presence(ctx, "room")
			return err
		}},
		{"PresenceRemove", func(ctx context.Context, b broker.Broker) error {
			_, err := b.PresenceRemove(ctx, "room", clientID, serverID)
			return err
		}},
		{"UserClients", func(ctx context.Context, b broker.Broker) error {
			_, err := b.UserClients(ctx, "user")
			return err
		}},
		{"SendUser", func(ctx context.Context, b broker.Broker) error {
			_, err := b.SendUser(ctx, "", "user", []byte("x"))
			return err
		}},
		{"ForgetUser", func(ctx context.Context, b broker.Broker) error {
			_, err := b.ForgetUser(ctx, "user", "reason")
			return err
		}},
		{"Resume", func(ctx context.Context, b broker.Broker) error {
			_, err := b.Resume(ctx, clientID, session, serverID, 0)
			return err
		}},
		{"Ack", func(ctx context.Context, b broker.Broker) error {
			return b.Ack(ctx, clientID, 1)
		}},
		{"Disconnect", func(ctx context.Context, b broker.Broker) error {
			return b.Disconnect(ctx, clientID, serverID)
		}},
		{"Forget", func(ctx context.Context, b broker.Broker) error {
			return b.Forget(ctx, clientID)
		}},
		{"UnregisterServer", func(ctx context.Context, b broker.Broker) error {
			return b.UnregisterServer(ctx, serverID)
		}},
	}
}
