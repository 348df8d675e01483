package redis

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
)

// TestPresenceDeadNode: node B crashes (Close without UnregisterServer)
// with clients present in rooms. Node A's reaper removes B's entries, and
// only those, and A's server receives their leave messages, within
// DeadAfter and a reaper round of the crash (plus slack).
func TestPresenceDeadNode(t *testing.T) {
	const interval, deadAfter = twoNodesHeartbeat, 400 * time.Millisecond
	a, b, prefix := twoBrokers(t, deadAfter)
	ctx := t.Context()
	ra := new(brokertest.Recorder)
	sa, err := a.RegisterServer(ctx, ra)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.RegisterServer(ctx, new(brokertest.Recorder))
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"r1", "r2"} {
		if err := a.Subscribe(ctx, sa, room); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	add := func(br *Broker, room, client, server, leave string) {
		t.Helper()
		m := broker.Member{ClientID: client, ServerID: server, Data: []byte(`{"n":"` + client + `"}`), LeaveMessage: []byte(leave), JoinedAt: now}
		if err := br.PresenceAdd(ctx, room, m); err != nil {
			t.Fatalf("PresenceAdd(%s, %s): %v", room, client, err)
		}
	}
	add(a, "r1", "a1", sa, "a1 left")
	add(b, "r1", "b1", sb, "b1 left r1")
	add(b, "r2", "b1", sb, "b1 left r2")
	add(b, "r1", "b2", sb, "")
	if n := rawInt(t, a, "HLEN", prefix+"presence:r1"); n != 3 {
		t.Fatalf("HLEN presence:r1 = %d, want 3", n)
	}
	if n := rawInt(t, a, "SCARD", prefix+"server:"+sb+":presence"); n != 3 {
		t.Fatalf("SCARD server:%s:presence = %d, want 3", sb, n)
	}

	if err := b.Close(); err != nil { // the crash
		t.Fatal(err)
	}
	crashed := time.Now()
	ra.WaitRoom(t, "r1", 1, 5*time.Second)
	took := time.Since(crashed)
	t.Logf("leave message delivered %v after the crash", took)
	// The bound: DeadAfter and a reaper round (HeartbeatInterval, give or
	// take a quarter), plus slack for a loaded machine.
	if limit := deadAfter + 2*interval + time.Second; took > limit {
		t.Errorf("leave message took %v, want at most DeadAfter + a reaper round (%v)", took, limit)
	}
	ra.WaitRoom(t, "r2", 1, 5*time.Second)
	ra.ExpectQuiet(t, brokertest.QuietPeriod)
	if got := [][]byte{ra.Room("r1")[0], ra.Room("r2")[0]}; string(got[0]) != "b1 left r1" || string(got[1]) != "b1 left r2" ||
		len(ra.Room("r1")) != 1 || len(ra.Room("r2")) != 1 {
		t.Fatalf("leave messages: r1 %q, r2 %q", ra.Room("r1"), ra.Room("r2"))
	}
	members, err := a.Presence(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].ClientID != "a1" || members[0].ServerID != sa {
		t.Fatalf("Presence(r1) = %+v, want a1 on %s only", members, sa)
	}
	if members, err := a.Presence(ctx, "r2"); err != nil || len(members) != 0 {
		t.Fatalf("Presence(r2) = %+v, %v; want none", members, err)
	}
	for _, key := range []string{"server:" + sb + ":presence", "presence:r2"} {
		if rawInt(t, a, "EXISTS", prefix+key) != 0 {
			t.Errorf("%s still exists", key)
		}
	}
}

// TestPresenceReapedWhileAlive: a server reaped while cut off from Redis
// loses its entries (their leave messages are published), and may not add
// entries until its heartbeat has put it back in the servers set; then
// its Handler is told (broker.Reclaimer), once.
func TestPresenceReapedWhileAlive(t *testing.T) {
	a, b, _ := twoBrokers(t, 300*time.Millisecond)
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, rb)
	if err := a.Subscribe(ctx, sa, "room"); err != nil {
		t.Fatal(err)
	}
	m := broker.Member{ClientID: "c", ServerID: sb, LeaveMessage: []byte("c left"), JoinedAt: time.Now()}
	if err := b.PresenceAdd(ctx, "room", m); err != nil {
		t.Fatal(err)
	}
	b.heartbeatPaused.Store(true) // cut off
	ra.WaitRoom(t, "room", 1, 5*time.Second)
	err := b.PresenceAdd(ctx, "room", m)
	if !errors.Is(err, broker.ErrUnknownServer) {
		t.Fatalf("PresenceAdd by a reaped server: %v, want ErrUnknownServer", err)
	}
	if n := rb.Reclaims(); n != 0 {
		t.Fatalf("Reclaimed called %d times while cut off", n)
	}
	b.heartbeatPaused.Store(false) // back
	waitFor(t, 5*time.Second, "Reclaimed called", func() bool { return rb.Reclaims() == 1 })
	if err := b.PresenceAdd(ctx, "room", m); err != nil {
		t.Fatalf("PresenceAdd after Reclaimed: %v", err)
	}
	members, err := a.Presence(ctx, "room")
	if err != nil || len(members) != 1 || members[0].ServerID != sb {
		t.Fatalf("Presence = %+v, %v", members, err)
	}
	if got := ra.Room("room"); !slices.EqualFunc(got, []string{"c left"}, func(g []byte, w string) bool { return string(g) == w }) {
		t.Fatalf("leave messages %q", got)
	}
}
