package redis

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
)

// connectAcked connects a client that acknowledges, with session "s"+id.
func connectAcked(t *testing.T, b *Broker, serverID string) string {
	t.Helper()
	id, err := b.NewClientID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(t.Context(), broker.Client{ID: id, Server: serverID, Session: "s" + id, Acked: true}); err != nil {
		t.Fatal(err)
	}
	return id
}

// sendRange sends "m<i>" for i in [from, to] to clientID.
func sendRange(t *testing.T, b *Broker, clientID string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := b.Send(t.Context(), clientID, []byte("m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// expectNumbered fails unless mail is "m<i>" numbered i for i in seqs.
func expectNumbered(t *testing.T, what string, mail []broker.Mail, seqs ...uint64) {
	t.Helper()
	var got, want []string
	for _, m := range mail {
		got = append(got, strconv.FormatUint(m.Seq, 10)+":"+string(m.Data))
	}
	for _, s := range seqs {
		want = append(want, strconv.FormatUint(s, 10)+":m"+strconv.FormatUint(s, 10))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// TestAckedDeadNode: when the server holding an acknowledging client dies,
// the messages it had taken from its inbox and those still there are all
// in the client's mailbox, once: the cleanup does not move the inbox
// entries, whether the client resumed elsewhere before or after it.
func TestAckedDeadNode(t *testing.T) {
	a, b, prefix := twoBrokers(t, 400*time.Millisecond)
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, rb)
	late := connectAcked(t, b, sb)  // resumes after the cleanup
	early := connectAcked(t, b, sb) // resumes before it
	for _, c := range []string{late, early} {
		sendRange(t, a, c, 1, 5)
		rb.WaitDirect(t, c, 5, 5*time.Second)
	}
	if err := b.Close(); err != nil { // the crash
		t.Fatal(err)
	}
	for _, c := range []string{late, early} {
		sendRange(t, a, c, 6, 8)
	}
	if k := rawInt(t, a, "LLEN", prefix+"inbox:"+sb); k != 6 {
		t.Fatalf("dead server's inbox holds %d entries, want 6", k)
	}
	// The client had received up to 3 when the connection broke.
	r, err := a.Resume(ctx, early, "s"+early, sa, 3)
	if err != nil || !r.Acked {
		t.Fatalf("Resume(early) = %+v, %v", r, err)
	}
	expectNumbered(t, "early resume", r.Mail, 4, 5, 6, 7, 8)
	waitFor(t, 5*time.Second, "dead server cleaned up", func() bool {
		rec, err := a.Lookup(ctx, late)
		return err == nil && rec.Server == ""
	})
	if rawInt(t, a, "EXISTS", prefix+"inbox:"+sb) != 0 {
		t.Fatal("dead server's inbox still exists")
	}
	r, err = a.Resume(ctx, late, "s"+late, sa, 3)
	if err != nil {
		t.Fatal(err)
	}
	expectNumbered(t, "late resume", r.Mail, 4, 5, 6, 7, 8)
	// Nothing of the dead inbox reached the new server twice.
	ra.ExpectQuiet(t, brokertest.QuietPeriod)
	sendRange(t, a, early, 9, 9)
	got := ra.WaitDirect(t, early, 1, 5*time.Second)
	if s := ra.Seqs(early); len(got) != 1 || string(got[0]) != "m9" || s[0] != 9 {
		t.Fatalf("after resuming: got %q numbered %v, want m9 numbered 9", got, s)
	}
	if st, err := a.Stats(ctx); err != nil || st.MailDropped != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing dropped", st, err)
	}
}

// TestAckedReclaim: a server reaped while alive takes back its
// acknowledging clients with every unacknowledged message again, numbered
// (the server drops those it delivered already), and a client whose record
// was lost is recreated numbering on from the last message delivered.
func TestAckedReclaim(t *testing.T) {
	a, b, prefix := twoBrokers(t, 300*time.Millisecond)
	ctx := t.Context()
	ra := new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	away := connectAcked(t, a, sa)
	missing := connectAcked(t, a, sa)
	for _, c := range []string{away, missing} {
		sendRange(t, b, c, 1, 3)
		ra.WaitDirect(t, c, 3, 5*time.Second)
	}
	if err := a.Ack(ctx, away, 1); err != nil {
		t.Fatal(err)
	}
	a.heartbeatPaused.Store(true) // cut off
	waitFor(t, 5*time.Second, "server reaped", func() bool {
		rec, err := b.Lookup(ctx, away)
		return err == nil && rec.Server == ""
	})
	sendRange(t, b, away, 4, 5)
	rawDo(t, b, "DEL", prefix+"client:"+missing, prefix+"mail:"+missing)
	a.heartbeatPaused.Store(false) // back

	waitFor(t, 5*time.Second, "clients reclaimed", func() bool {
		rec, err := b.Lookup(ctx, missing)
		return err == nil && rec.Server == sa && rec.Acked
	})
	ra.WaitDirect(t, away, 3+4, 5*time.Second)
	if got, want := ra.Seqs(away), []uint64{1, 2, 3, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("away client: numbers %v, want %v", got, want)
	}
	sendRange(t, b, missing, 4, 4)
	ra.WaitDirect(t, missing, 4, 5*time.Second)
	if got, want := ra.Seqs(missing), []uint64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("recreated client: numbers %v, want %v", got, want)
	}
	r, err := a.Resume(ctx, away, "s"+away, sa, 0)
	if err != nil {
		t.Fatal(err)
	}
	expectNumbered(t, "kept mail", r.Mail, 2, 3, 4, 5)
}
