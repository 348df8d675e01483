package brokertest

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Conformance of acknowledged delivery (broker.Client.Acked).

var ackedTests = []subtest{
	{"AckedNumbered", testAckedNumbered},
	{"AckedResume", testAckedResume},
	{"AckedBound", testAckedBound},
	{"AckedBoundConnected", testAckedBoundConnected},
	{"AckedConcurrentInOrder", testAckedConcurrentInOrder},
	{"AckedSendUser", testAckedSendUser},
	{"AckedUnregister", testAckedUnregister},
}

// connectAcked connects a new client that acknowledges, of user (may be
// empty), to serverID.
func (e *env) connectAcked(serverID, user string) (id, session string) {
	e.t.Helper()
	return e.connectClient(broker.Client{Server: serverID, User: user, Acked: true})
}

// resumeAcked resumes an acknowledging client from ack and returns its
// mail.
func (e *env) resumeAcked(clientID, session, serverID string, ack uint64) []broker.Mail {
	e.t.Helper()
	r, err := e.b.Resume(e.ctx, clientID, session, serverID, ack)
	if err != nil {
		e.t.Fatalf("Resume(%s on %s from %d): %v", clientID, serverID, ack, err)
	}
	if !r.Acked {
		e.t.Fatalf("Resume(%s on %s): Acked false for a client connected with Acked", clientID, serverID)
	}
	return r.Mail
}

func (e *env) ack(clientID string, seq uint64) {
	e.t.Helper()
	if err := e.b.Ack(e.ctx, clientID, seq); err != nil {
		e.t.Fatalf("Ack(%s, %d): %v", clientID, seq, err)
	}
}

// expectMail fails unless got holds exactly the messages msg<seq> numbered
// seqs, in order.
func expectMail(t *testing.T, what string, got []broker.Mail, seqs ...uint64) {
	t.Helper()
	want := make([]broker.Mail, len(seqs))
	for i, s := range seqs {
		want[i] = broker.Mail{Seq: s, Data: []byte(fmt.Sprintf("msg%d", s))}
	}
	eq := func(a, b broker.Mail) bool { return a.Seq == b.Seq && string(a.Data) == string(b.Data) }
	if !slices.EqualFunc(got, want, eq) {
		t.Fatalf("%s: got %s, want %s", what, mailString(got), mailString(want))
	}
}

func mailString(ms []broker.Mail) string {
	s := "["
	for i, m := range ms {
		if i > 0 {
			s += " "
		}
		s += strconv.FormatUint(m.Seq, 10) + ":" + string(m.Data)
	}
	return s + "]"
}

// sendNumbered sends msg<from> ... msg<to> to clientID, in order: to an
// acknowledging client whose last message is numbered from-1, message
// msg<n> gets number n.
func (e *env) sendNumbered(clientID string, from, to int) {
	e.t.Helper()
	for i := from; i <= to; i++ {
		e.send(clientID, fmt.Sprintf("msg%d", i))
	}
}

// expectDelivered waits until the recorder has n messages for clientID and
// checks that they are msg1 ... msg<n> numbered 1 ... n.
func expectDelivered(t *testing.T, r *Recorder, clientID string, n int) {
	t.Helper()
	data := r.WaitDirect(t, clientID, n, WaitTimeout)
	seqs := r.Seqs(clientID)
	got := make([]broker.Mail, len(data))
	want := make([]uint64, n)
	for i := range data {
		got[i] = broker.Mail{Seq: seqs[i], Data: data[i]}
	}
	for i := range want {
		want[i] = uint64(i + 1)
	}
	expectMail(t, "delivered to "+clientID, got, want...)
}

// testAckedNumbered: messages to an acknowledging client reach its server
// numbered from 1, in order, and Lookup reports Acked; a client that does
// not acknowledge gets 0.
func testAckedNumbered(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	c, _ := e.connectAcked(a, "")
	plain, _ := e.connect(a)
	e.sendNumbered(c, 1, 5)
	e.send(plain, "p")
	expectDelivered(t, ra, c, 5)
	ra.WaitDirect(t, plain, 1, WaitTimeout)
	if got := ra.Seqs(plain); !slices.Equal(got, []uint64{0}) {
		t.Fatalf("plain client: numbers %v, want [0]", got)
	}
	rec, err := e.b.Lookup(e.ctx, c)
	if err != nil || !rec.Acked {
		t.Fatalf("Lookup(%s) = %+v, %v; want Acked", c, rec, err)
	}
	if rec, err := e.b.Lookup(e.ctx, plain); err != nil || rec.Acked {
		t.Fatalf("Lookup(%s) = %+v, %v; want not Acked", plain, rec, err)
	}
}

// testAckedResume: messages delivered but not acknowledged stay in the
// mailbox; Resume drops those up to its ack and returns the others, which
// stay until acknowledged; messages sent while away are numbered on.
func testAckedResume(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, sess := e.connectAcked(a, "")
	e.sendNumbered(c, 1, 5)
	expectDelivered(t, ra, c, 5)
	e.ack(c, 2)
	// The client received up to 3 before its server went (say).
	expectMail(t, "Resume from 3", e.resumeAcked(c, sess, b, 3), 4, 5)
	// Still kept: a second reconnect, without ack, gets them again.
	expectMail(t, "Resume from 0", e.resumeAcked(c, sess, a, 0), 4, 5)
	e.ack(c, 5)
	expectMail(t, "Resume after Ack(5)", e.resumeAcked(c, sess, b, 0))
	// Away: numbered on, kept, handed over by Resume.
	e.disconnect(c, b)
	e.sendNumbered(c, 6, 8)
	expectMail(t, "Resume after away", e.resumeAcked(c, sess, a, 5), 6, 7, 8)
	e.sendNumbered(c, 9, 9)
	got := ra.WaitDirect(t, c, 6, WaitTimeout)
	if s := ra.Seqs(c); string(got[5]) != "msg9" || s[5] != 9 {
		t.Fatalf("after resuming on %s: got %q numbered %v", a, got, s)
	}
	if n := len(rb.Direct(c)); n != 0 {
		t.Fatalf("server %s got %d messages, want none", b, n)
	}
	// An ack past the last number counts as the last number, up to the
	// largest ack there is.
	r, err := e.b.Resume(e.ctx, c, sess, a, math.MaxUint64)
	if err != nil || !r.Acked || len(r.Mail) != 0 || r.Seq != 9 {
		t.Fatalf("Resume(ack 2^64-1) = %+v, %v; want no mail, Seq 9", r, err)
	}
	e.sendNumbered(c, 10, 10)
	expectMail(t, "Resume after a huge ack", e.resumeAcked(c, sess, a, 0), 10)
	// Acknowledging twice, too far, or for unknown and plain clients is
	// harmless.
	e.ack(c, 9)
	e.ack(c, 9)
	e.ack(c, 100)
	e.ack(c, math.MaxUint64)
	expectMail(t, "Resume after a huge Ack", e.resumeAcked(c, sess, a, 0))
	e.ack("no-such-client", 1)
	plain, psess := e.connect(a)
	e.ack(plain, 1)
	e.disconnect(plain, a)
	e.send(plain, "p")
	r, err = e.b.Resume(e.ctx, plain, psess, b, 7)
	if err != nil || r.Acked || len(r.Mail) != 1 || r.Mail[0].Seq != 0 || string(r.Mail[0].Data) != "p" {
		t.Fatalf("Resume(plain, ack 7) = %+v, %v; want its one message, unnumbered", r, err)
	}
	if s := e.stats(); s.MailDropped != 0 {
		t.Fatalf("MailDropped = %d, want 0", s.MailDropped)
	}
}

// testAckedBound: the mailbox of an acknowledging client keeps at most
// MailboxSize unacknowledged messages, connected or not, and counts the
// others as dropped.
func testAckedBound(t *testing.T, e *env) {
	e.open(Config{MailboxSize: 4, MailboxTTL: time.Minute})
	a, ra := e.server()
	c, sess := e.connectAcked(a, "")
	e.sendNumbered(c, 1, 10)
	expectDelivered(t, ra, c, 10)
	expectMail(t, "Resume", e.resumeAcked(c, sess, a, 0), 7, 8, 9, 10)
	if s := e.stats(); s.MailDropped != 6 {
		t.Fatalf("MailDropped = %d, want 6", s.MailDropped)
	}
	e.ack(c, 8)
	e.sendNumbered(c, 11, 12)
	expectMail(t, "Resume after Ack(8)", e.resumeAcked(c, sess, a, 0), 9, 10, 11, 12)
	if s := e.stats(); s.MailDropped != 6 {
		t.Fatalf("MailDropped = %d, want still 6", s.MailDropped)
	}
}

// testAckedConcurrentInOrder: messages sent concurrently to an
// acknowledging client reach its server in the order of their numbers,
// each once.
func testAckedConcurrentInOrder(t *testing.T, e *env) {
	const senders, each = 8, 50
	e.open(Config{MailboxSize: senders * each, MailboxTTL: time.Minute})
	a, ra := e.server()
	c, sess := e.connectAcked(a, "")
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				if err := e.b.Send(e.ctx, c, []byte(fmt.Sprintf("%d-%d", g, i))); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	data := ra.WaitDirect(t, c, senders*each, WaitTimeout)
	seqs := ra.Seqs(c)
	last := make([]int, senders)
	for i := range last {
		last[i] = -1
	}
	for i, d := range data {
		if seqs[i] != uint64(i+1) {
			t.Fatalf("delivery %d numbered %d, want %d (numbers %v...)", i, seqs[i], i+1, seqs[:min(len(seqs), i+5)])
		}
		var g, n int
		if _, err := fmt.Sscanf(string(d), "%d-%d", &g, &n); err != nil {
			t.Fatalf("unexpected message %q", d)
		}
		if n != last[g]+1 {
			t.Fatalf("sender %d: message %d after %d", g, n, last[g])
		}
		last[g] = n
	}
	// The mailbox holds them all, numbered alike.
	mail := e.resumeAcked(c, sess, a, 0)
	if len(mail) != senders*each {
		t.Fatalf("Resume returned %d messages, want %d", len(mail), senders*each)
	}
	for i, m := range mail {
		if m.Seq != seqs[i] || string(m.Data) != string(data[i]) {
			t.Fatalf("mail %d = %d:%s, delivered %d:%s", i, m.Seq, m.Data, seqs[i], data[i])
		}
	}
}

// testAckedSendUser: SendUser numbers the messages of the user's
// acknowledging clients like Send and delivers them through the Handler
// even on server from, which delivers only to its plain clients itself.
func testAckedSendUser(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	const user = "ann"
	onA, _ := e.connectAcked(a, user)
	onB, _ := e.connectAcked(b, user)
	away, sess := e.connectAcked(b, user)
	plainA, _ := e.connectUser(a, user)
	e.disconnect(away, b)
	e.sendNumbered(onA, 1, 1)
	got := e.sendUser(a, user, "msg2")
	want := []broker.Client{
		{ID: onA, Server: a, User: user, Acked: true},
		{ID: onB, Server: b, User: user, Acked: true},
		{ID: away, User: user, Acked: true},
		{ID: plainA, Server: a, User: user},
	}
	expectClients(t, "SendUser", got, want...)
	expectDelivered(t, ra, onA, 2)
	data := rb.WaitDirect(t, onB, 1, WaitTimeout)
	if s := rb.Seqs(onB); string(data[0]) != "msg2" || s[0] != 1 {
		t.Fatalf("client on %s: got %q numbered %v, want msg2 numbered 1", b, data, s)
	}
	ra.ExpectQuiet(t, QuietPeriod)
	if n := len(ra.Direct(plainA)); n != 0 {
		t.Fatalf("plain client on from got %d messages from the broker, want 0 (the caller delivers)", n)
	}
	mail := e.resumeAcked(away, sess, b, 0)
	if len(mail) != 1 || mail[0].Seq != 1 || string(mail[0].Data) != "msg2" {
		t.Fatalf("away client's mail = %s, want [1:msg2]", mailString(mail))
	}
}

// testAckedUnregister: a server that goes leaves the unacknowledged
// messages of its acknowledging clients in their mailboxes, once each.
func testAckedUnregister(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, _ := e.server()
	c, sess := e.connectAcked(a, "")
	e.sendNumbered(c, 1, 4)
	expectDelivered(t, ra, c, 4)
	if err := e.b.UnregisterServer(e.ctx, a); err != nil {
		t.Fatalf("UnregisterServer: %v", err)
	}
	e.expectServer(c, "")
	e.sendNumbered(c, 5, 6)
	expectMail(t, "Resume from 1", e.resumeAcked(c, sess, b, 1), 2, 3, 4, 5, 6)
}

// slowRecorder is a Recorder whose deliveries to clients take a while, so
// that concurrent sends pile up behind them.
type slowRecorder struct{ Recorder }

func (r *slowRecorder) Deliver(clientID string, seq uint64, data []byte) {
	time.Sleep(100 * time.Microsecond)
	r.Recorder.Deliver(clientID, seq, data)
}

// testAckedBoundConnected: the mailbox bound limits what is kept for a
// resume, never what reaches a connected client: a burst of concurrent
// sends many times the mailbox size, to a server slow to take them, all
// arrive, numbered in order.
func testAckedBoundConnected(t *testing.T, e *env) {
	const senders, each, size = 4, 50, 4
	e.open(Config{MailboxSize: size, MailboxTTL: time.Minute})
	r := new(slowRecorder)
	a, err := e.b.RegisterServer(e.ctx, r)
	if err != nil {
		t.Fatalf("RegisterServer: %v", err)
	}
	c, _ := e.connectAcked(a, "")
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				if err := e.b.Send(e.ctx, c, []byte("m")); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	r.WaitDirect(t, c, senders*each, WaitTimeout)
	for i, s := range r.Seqs(c) {
		if s != uint64(i+1) {
			t.Fatalf("delivery %d numbered %d, want %d", i, s, i+1)
		}
	}
}
