package brokertest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Mailboxes are bounded in bytes (the sum of the messages' data) as well
// as in count: the oldest messages are dropped first and counted in
// MailDropped, and a message larger than the bound is refused with
// ErrTooLarge.

var mailboxBytesTests = []subtest{
	{"MailboxBytes", testMailboxBytes},
	{"MailboxTooLarge", testMailboxTooLarge},
	{"AckedBytes", testAckedBytes},
}

// sized returns a message of n bytes that starts with name.
func sized(name string, n int) string {
	return name + strings.Repeat(".", n-len(name))
}

// testMailboxBytes: an away client's mailbox keeps the newest messages
// that fit in MailboxBytes, and a message of exactly the bound pushes out
// every other.
func testMailboxBytes(t *testing.T, e *env) {
	const bound, each, sent = 100, 30, 10
	e.open(Config{MailboxSize: 64, MailboxBytes: bound, MailboxTTL: time.Minute})
	a, _ := e.server()
	c, sess := e.connect(a)
	e.disconnect(c, a)
	var msgs []string
	for i := range sent {
		msgs = append(msgs, sized(fmt.Sprintf("m%d", i), each))
	}
	e.send(c, msgs...)
	keep := bound / each // 3 messages, 90 bytes
	expectMsgs(t, "mail", e.resume(c, sess, a), msgs[sent-keep:]...)
	if s := e.stats(); s.MailDropped != sent-uint64(keep) {
		t.Fatalf("MailDropped = %d, want %d", s.MailDropped, sent-keep)
	}

	// The mailbox is empty after Resume: its bytes are free again.
	e.disconnect(c, a)
	small, whole := sized("small", 10), sized("whole", bound)
	e.send(c, small, small)
	expectMsgs(t, "mail after a resume", e.resume(c, sess, a), small, small)
	e.disconnect(c, a)
	e.send(c, small, whole)
	expectMsgs(t, "mail with a message of the bound", e.resume(c, sess, a), whole)
	if s := e.stats(); s.MailDropped != sent-uint64(keep)+1 {
		t.Fatalf("MailDropped = %d, want %d", s.MailDropped, sent-keep+1)
	}
}

// testMailboxTooLarge: a message over MailboxBytes is refused with
// ErrTooLarge, by Send and SendUser, whether the client is connected or
// away, and nothing of it is kept or delivered.
func testMailboxTooLarge(t *testing.T, e *env) {
	const bound = 100
	e.open(Config{MailboxSize: 16, MailboxBytes: bound, MailboxTTL: time.Minute})
	a, ra := e.server()
	on, _ := e.connectUser(a, "u")
	off, sess := e.connectUser(a, "u")
	e.disconnect(off, a)
	big := []byte(sized("big", bound+1))
	for _, c := range []string{on, off} {
		if err := e.b.Send(e.ctx, c, big); !errors.Is(err, broker.ErrTooLarge) {
			t.Fatalf("Send(%s, %d bytes) = %v, want ErrTooLarge", c, len(big), err)
		}
	}
	if _, err := e.b.SendUser(e.ctx, "", "u", big); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("SendUser(%d bytes) = %v, want ErrTooLarge", len(big), err)
	}
	e.send(on, "after")
	expectMsgs(t, "delivered", ra.WaitDirect(t, on, 1, WaitTimeout), "after")
	if got := e.resume(off, sess, a); len(got) != 0 {
		t.Fatalf("mail of the away client: %q, want none", got)
	}
	if s := e.stats(); s.MailDropped != 0 {
		t.Fatalf("MailDropped = %d, want 0", s.MailDropped)
	}
}

// testAckedBytes: the unacknowledged messages of an acknowledging client
// are bounded in bytes too, connected or not; what Ack drops frees its
// bytes.
func testAckedBytes(t *testing.T, e *env) {
	const bound, each = 100, 30
	e.open(Config{MailboxSize: 64, MailboxBytes: bound, MailboxTTL: time.Minute})
	a, ra := e.server()
	c, sess := e.connectAcked(a, "")
	msg := func(i int) string { return sized(fmt.Sprintf("msg%d", i), each) }
	for i := 1; i <= 5; i++ {
		e.send(c, msg(i))
	}
	ra.WaitDirect(t, c, 5, WaitTimeout) // connected: every one delivered
	expectAckedMail(t, "Resume", e.resumeAcked(c, sess, a, 0), msg, 3, 4, 5)
	if s := e.stats(); s.MailDropped != 2 {
		t.Fatalf("MailDropped = %d, want 2", s.MailDropped)
	}
	e.ack(c, 4) // 30 bytes kept: room for two more
	e.send(c, msg(6), msg(7))
	expectAckedMail(t, "Resume after Ack(4)", e.resumeAcked(c, sess, a, 0), msg, 5, 6, 7)
	if s := e.stats(); s.MailDropped != 2 {
		t.Fatalf("MailDropped = %d, want still 2", s.MailDropped)
	}
	e.disconnect(c, a)
	e.send(c, msg(8)) // 120 bytes: 5 is dropped
	expectAckedMail(t, "Resume while away", e.resumeAcked(c, sess, a, 0), msg, 6, 7, 8)
	if s := e.stats(); s.MailDropped != 3 {
		t.Fatalf("MailDropped = %d, want 3", s.MailDropped)
	}
	e.ack(c, 7) // 30 bytes kept
	e.send(c, msg(9), msg(10))
	expectAckedMail(t, "Resume after Ack(7)", e.resumeAcked(c, sess, a, 0), msg, 8, 9, 10)
	if s := e.stats(); s.MailDropped != 3 {
		t.Fatalf("MailDropped = %d, want still 3", s.MailDropped)
	}
}

// expectAckedMail checks that got holds the messages numbered seqs, with
// the data msg gives.
func expectAckedMail(t *testing.T, what string, got []broker.Mail, msg func(int) string, seqs ...uint64) {
	t.Helper()
	ok := len(got) == len(seqs)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Seq == seqs[i] && string(got[i].Data) == msg(int(seqs[i]))
	}
	if !ok {
		t.Fatalf("%s: got %s, want the messages numbered %v", what, mailString(got), seqs)
	}
}
