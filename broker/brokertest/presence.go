package brokertest

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// The presence subtests: PresenceAdd, PresenceRemove, Presence, and the
// removal of a server's entries by UnregisterServer.

var presenceTests = []subtest{
	{"PresenceAddList", testPresenceAddList},
	{"PresenceReplace", testPresenceReplace},
	{"PresenceRemove", testPresenceRemove},
	{"PresenceUnknownServer", testPresenceUnknownServer},
	{"PresenceDataCopied", testPresenceDataCopied},
	{"PresenceUnregister", testPresenceUnregister},
}

// joinedAt is a JoinedAt with a sub-millisecond part, which brokers drop.
var joinedAt = time.UnixMilli(1_700_000_000_123).Add(456 * time.Microsecond)

func (e *env) presenceAdd(room string, m broker.Member) {
	e.t.Helper()
	if err := e.b.PresenceAdd(e.ctx, room, m); err != nil {
		e.t.Fatalf("PresenceAdd(%s, %s on %s): %v", room, m.ClientID, m.ServerID, err)
	}
}

func (e *env) presenceRemove(room, clientID, serverID string) bool {
	e.t.Helper()
	removed, err := e.b.PresenceRemove(e.ctx, room, clientID, serverID)
	if err != nil {
		e.t.Fatalf("PresenceRemove(%s, %s, %s): %v", room, clientID, serverID, err)
	}
	return removed
}

// expectPresence checks that Presence(room) returns want, in any order,
// with JoinedAt to the millisecond and without leave messages.
func (e *env) expectPresence(room string, want ...broker.Member) {
	e.t.Helper()
	got, err := e.b.Presence(e.ctx, room)
	if err != nil {
		e.t.Fatalf("Presence(%s): %v", room, err)
	}
	if got == nil {
		e.t.Fatalf("Presence(%s) returned a nil slice, want an empty one", room)
	}
	byID := func(a, b broker.Member) int { return strings.Compare(a.ClientID, b.ClientID) }
	got = slices.Clone(got)
	slices.SortFunc(got, byID)
	want = slices.Clone(want)
	slices.SortFunc(want, byID)
	if len(got) != len(want) {
		e.t.Fatalf("Presence(%s) = %s, want %s", room, describe(got), describe(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ClientID != w.ClientID || g.ServerID != w.ServerID || !bytes.Equal(g.Data, w.Data) ||
			!g.JoinedAt.Equal(w.JoinedAt.Truncate(time.Millisecond)) || g.LeaveMessage != nil {
			e.t.Fatalf("Presence(%s) = %s, want %s (JoinedAt to the millisecond, no LeaveMessage)",
				room, describe(got), describe(want))
		}
	}
}

func describe(ms []broker.Member) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range ms {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("{" + m.ClientID + "@" + m.ServerID + " " + string(m.Data) + " " +
			m.JoinedAt.UTC().Format(time.RFC3339Nano))
		if m.LeaveMessage != nil {
			b.WriteString(" leave:" + string(m.LeaveMessage))
		}
		b.WriteString("}")
	}
	b.WriteString("]")
	return b.String()
}

func member(clientID, serverID, data, leave string) broker.Member {
	m := broker.Member{ClientID: clientID, ServerID: serverID, Data: []byte(data), JoinedAt: joinedAt}
	if leave != "" {
		m.LeaveMessage = []byte(leave)
	}
	return m
}

func testPresenceAddList(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, _ := e.server()
	c1, _ := e.connect(a)
	c2, _ := e.connect(b)
	e.expectPresence("room")
	m1 := member(c1, a, `{"name":"ann"}`, "ann left")
	m2 := member(c2, b, "", "")
	m2.JoinedAt = joinedAt.Add(time.Second)
	e.presenceAdd("room", m1)
	e.presenceAdd("room", m2)
	e.presenceAdd("other room", m1)
	e.expectPresence("room", m1, m2)
	e.expectPresence("other room", m1)
	e.expectPresence("empty")
	// Room names are arbitrary strings.
	e.presenceAdd("a room: with spaces", m2)
	e.expectPresence("a room: with spaces", m2)
	e.expectPresence("a room:")
}

func testPresenceReplace(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	b, _ := e.server()
	c, _ := e.connect(a)
	e.presenceAdd("room", member(c, a, "v1", "bye"))
	// Adding again replaces the entry.
	e.presenceAdd("room", member(c, a, "v2", "bye"))
	e.expectPresence("room", member(c, a, "v2", ""))
	// The client reconnected to b, which adds its entry: a may no longer
	// remove it.
	e.presenceAdd("room", member(c, b, "v3", "bye"))
	e.expectPresence("room", member(c, b, "v3", ""))
	if e.presenceRemove("room", c, a) {
		t.Fatal("PresenceRemove by the old server removed the new server's entry")
	}
	e.expectPresence("room", member(c, b, "v3", ""))
	if !e.presenceRemove("room", c, b) {
		t.Fatal("PresenceRemove by the entry's server reported nothing removed")
	}
	e.expectPresence("room")
}

func testPresenceRemove(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c1, _ := e.connect(a)
	c2, _ := e.connect(a)
	e.presenceAdd("room", member(c1, a, "1", ""))
	e.presenceAdd("room", member(c2, a, "2", ""))
	if !e.presenceRemove("room", c1, a) {
		t.Fatal("PresenceRemove reported nothing removed")
	}
	e.expectPresence("room", member(c2, a, "2", ""))
	// Removing again, from another room, or an unknown client does
	// nothing.
	if e.presenceRemove("room", c1, a) || e.presenceRemove("other", c2, a) ||
		e.presenceRemove("room", "no-such-client", a) {
		t.Fatal("PresenceRemove of a missing entry reported it removed")
	}
	e.expectPresence("room", member(c2, a, "2", ""))
	// The directory and presence are independent: a client that went
	// away keeps its entry until its server removes it.
	e.disconnect(c2, a)
	e.expectPresence("room", member(c2, a, "2", ""))
}

func testPresenceUnknownServer(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, _ := e.server()
	c, _ := e.connect(a)
	err := e.b.PresenceAdd(e.ctx, "room", member(c, "no-such-server", "", ""))
	expectErr(t, "PresenceAdd(unknown server)", err, broker.ErrUnknownServer)
	e.expectPresence("room")
}

func testPresenceDataCopied(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	c, _ := e.connect(a)
	e.subscribe(b, "room")
	data, leave := []byte("data"), []byte("leave")
	if err := e.b.PresenceAdd(e.ctx, "room", broker.Member{ClientID: c, ServerID: a, Data: data, LeaveMessage: leave, JoinedAt: joinedAt}); err != nil {
		t.Fatal(err)
	}
	copy(data, "XXXX") // callers may reuse their buffers
	copy(leave, "XXXXX")
	e.expectPresence("room", member(c, a, "data", ""))
	if err := e.b.UnregisterServer(e.ctx, a); err != nil {
		t.Fatal(err)
	}
	expectMsgs(t, "leave message", rb.WaitRoom(t, "room", 1, WaitTimeout), "leave")
	if n := ra.Total(); n != 0 {
		t.Fatalf("unregistered server got %d deliveries", n)
	}
}

// testPresenceUnregister: UnregisterServer removes the server's entries,
// and only those, and publishes their leave messages to the servers
// subscribed to their rooms.
func testPresenceUnregister(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	x, rx := e.server()
	e.subscribe(a, "r1")
	e.subscribe(b, "r1")
	e.subscribe(b, "r2")
	e.subscribe(x, "r2")
	c1, _ := e.connect(a)
	c2, _ := e.connect(a)
	c3, _ := e.connect(a)
	c4, _ := e.connect(b)
	e.presenceAdd("r1", member(c1, a, "1", "c1 left r1"))
	e.presenceAdd("r2", member(c1, a, "1", "c1 left r2"))
	e.presenceAdd("r1", member(c2, a, "2", "")) // no leave message
	e.presenceAdd("r1", member(c3, a, "3", "c3 left r1"))
	e.presenceAdd("r1", member(c3, b, "3b", "c3 moved")) // c3 moved to b
	e.presenceAdd("r1", member(c4, b, "4", "c4 left r1"))
	if err := e.b.UnregisterServer(e.ctx, a); err != nil {
		t.Fatalf("UnregisterServer: %v", err)
	}
	e.expectPresence("r1", member(c3, b, "3b", ""), member(c4, b, "4", ""))
	e.expectPresence("r2")
	expectMsgs(t, "b in r1", rb.WaitRoom(t, "r1", 1, WaitTimeout), "c1 left r1")
	expectMsgs(t, "b in r2", rb.WaitRoom(t, "r2", 1, WaitTimeout), "c1 left r2")
	expectMsgs(t, "x in r2", rx.WaitRoom(t, "r2", 1, WaitTimeout), "c1 left r2")
	rb.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "b in r1", rb.Room("r1"), "c1 left r1")
	if n := ra.Total(); n != 0 {
		t.Fatalf("unregistered server got %d deliveries", n)
	}
	// b's entries are still b's to remove.
	if !e.presenceRemove("r1", c3, b) {
		t.Fatal("PresenceRemove of the moved entry reported nothing removed")
	}
}
