package brokertest

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// The Delivery subtests (broker.Delivery): directed messages in order to
// the server holding the client, mailboxes bounded in length and age, no
// loss while the client moves. The mailboxes' bytes bound is tested in
// mailbytes.go, acknowledged delivery in acks.go: Run gives the three
// lists one group.

var deliveryTests = []subtest{
	{"SendInOrderToOwner", testSendInOrderToOwner},
	{"SendUnknownClient", testSendUnknownClient},
	{"MailCopied", testMailCopied},
	{"MailboxOverflow", testMailboxOverflow},
	{"MailboxTTL", testMailboxTTL},
	{"ConcurrentMoveNoLoss", testConcurrentMoveNoLoss},
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
