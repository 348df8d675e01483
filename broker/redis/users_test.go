package redis

import (
	"slices"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
)

// userClientIDs returns the ids of the clients of user and their servers,
// "<id>@<server>", sorted.
func userClientIDs(t *testing.T, b *Broker, user string) []string {
	t.Helper()
	cs, err := b.UserClients(t.Context(), user)
	if err != nil {
		t.Fatalf("UserClients(%s): %v", user, err)
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID + "@" + c.Server
	}
	slices.Sort(out)
	return out
}

// TestUsersDeadNode: node B crashes holding clients of two users. Before
// it is reaped, a SendUser to one user lands in B's inbox and a
// ForgetUser of the other pushes a kick there. The reaper makes the first
// user's clients away (listed, resumable, the message at the front of
// their mailboxes) and drops the kick with B's inbox; nothing of B is left.
func TestUsersDeadNode(t *testing.T) {
	a, b, prefix := twoBrokers(t, 400*time.Millisecond)
	ctx := t.Context()
	ra := new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	connect := func(br *Broker, id, server, user string) {
		t.Helper()
		if err := br.Connect(ctx, broker.Client{ID: id, Server: server, Session: "s" + id, User: user}); err != nil {
			t.Fatal(err)
		}
	}
	connect(b, "1", sb, "ann")
	connect(b, "2", sb, "ann")
	connect(a, "3", sa, "ann")
	connect(b, "4", sb, "bob")

	if err := b.Close(); err != nil { // the crash
		t.Fatal(err)
	}
	if _, err := a.SendUser(ctx, "", "ann", []byte("before")); err != nil {
		t.Fatal(err)
	}
	forgotten, err := a.ForgetUser(ctx, "bob", "bye")
	if err != nil || len(forgotten) != 1 || forgotten[0].ID != "4" || forgotten[0].Server != sb {
		t.Fatalf("ForgetUser(bob) = %+v, %v; want client 4 on %s", forgotten, err, sb)
	}
	if n := rawInt(t, a, "LLEN", prefix+"inbox:"+sb); n != 3 {
		t.Fatalf("dead server's inbox holds %d entries, want 2 messages and a kick (reaped too early?)", n)
	}
	waitFor(t, 5*time.Second, "dead server reaped", func() bool {
		return slices.Equal(userClientIDs(t, a, "ann"), []string{"1@", "2@", "3@" + sa})
	})
	expectMsgs(t, "client 3", ra.WaitDirect(t, "3", 1, 5*time.Second), "before")
	if _, err := a.SendUser(ctx, sa, "ann", []byte("after")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		r, err := a.Resume(ctx, id, "s"+id, sa, 0)
		mail := mailData(r)
		if err != nil {
			t.Fatalf("Resume(%s): %v", id, err)
		}
		expectMsgs(t, "mail of "+id, mail, "before", "after")
	}
	ra.ExpectQuiet(t, brokertest.QuietPeriod)
	if n := len(ra.Kicks("4")) + len(ra.Direct("4")); n != 0 {
		t.Fatalf("the kick of a dead server's client reached another server (%d)", n)
	}
	for _, key := range []string{"inbox:" + sb, "server:" + sb + ":clients", "user:bob:clients", "client:4", "mail:4", "mail:"} {
		if rawInt(t, a, "EXISTS", prefix+key) != 0 {
			t.Errorf("%s still exists", key)
		}
	}
}

// TestUsersReclaim: a server reaped while cut off recreates a client that
// vanished meanwhile with its user; UserClients drops the stale id of the
// vanished client until then.
func TestUsersReclaim(t *testing.T) {
	a, b, prefix := twoBrokers(t, 300*time.Millisecond)
	ctx := t.Context()
	sa, _ := a.RegisterServer(ctx, new(brokertest.Recorder))
	if _, err := b.RegisterServer(ctx, new(brokertest.Recorder)); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, broker.Client{ID: "7", Server: sa, Session: "s7", User: "ann"}); err != nil {
		t.Fatal(err)
	}
	a.heartbeatPaused.Store(true) // cut off
	waitFor(t, 5*time.Second, "server reaped", func() bool {
		return slices.Equal(userClientIDs(t, b, "ann"), []string{"7@"})
	})
	rawDo(t, b, "DEL", prefix+"client:7") // vanished (the key's own expiry, say)
	if got := userClientIDs(t, b, "ann"); len(got) != 0 {
		t.Fatalf("UserClients(ann) = %q, want none", got)
	}
	if rawInt(t, b, "EXISTS", prefix+"user:ann:clients") != 0 {
		t.Fatal("stale id left in the user's set")
	}
	a.heartbeatPaused.Store(false) // back
	waitFor(t, 5*time.Second, "client reclaimed", func() bool {
		return slices.Equal(userClientIDs(t, b, "ann"), []string{"7@" + sa})
	})
	if rec, err := b.Lookup(ctx, "7"); err != nil || rec.User != "ann" || rec.Server != sa {
		t.Fatalf("Lookup(7) = %+v, %v; want user ann on %s", rec, err, sa)
	}
}

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
