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
//
// The suite is organised by the roles of broker.Broker: Run runs one group
// of subtests per role (TestConformance/Servers/..., Directory, Delivery,
// Rooms, Presences, Users) and one, Broker, for what Broker adds to every
// role (Close, contexts that end). Each role's subtests are listed in the
// file named after it (servers.go, directory.go, delivery.go, rooms.go,
// presence.go, users.go, broker.go); Delivery's group adds those of
// mailbytes.go and acks.go. A new subtest goes in its file's list; a new
// file of subtests brings its own list and takes one line in Run.
package brokertest

import (
	"context"
	"errors"
	"slices"
	"strconv"
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

// subtest is one subtest of the suite: its name under its role's group
// and its function.
type subtest = struct {
	name string
	fn   func(*testing.T, *env)
}

// Run runs the conformance suite as subtests of t, one group per role of
// broker.Broker and one, Broker, for what Broker adds to its roles.
// newBroker must return a fresh, empty broker with the given mailbox
// limits; the suite closes it.
func Run(t *testing.T, newBroker func(t *testing.T, cfg Config) broker.Broker) {
	roles := []struct {
		name  string
		tests []subtest
	}{
		{"Servers", serversTests},
		{"Directory", slices.Concat(directoryTests, replacedTests, unsentTests)},
		{"Delivery", slices.Concat(deliveryTests, mailboxBytesTests, ackedTests)},
		{"Rooms", roomsTests},
		{"Presences", presenceTests},
		{"Users", usersTests},
		{"Broker", brokerTests},
	}
	for _, role := range roles {
		t.Run(role.name, func(t *testing.T) {
			for _, tt := range role.tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.fn(t, &env{t: t, newBroker: newBroker})
				})
			}
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
