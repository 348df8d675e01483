package rocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/internal/demo"
	"github.com/rocket-go/rocket/internal/redistest"
	"github.com/rocket-go/rocket/rockettest"
)

// startDemoApp starts a rockettest app with the demo actions on cfg.
func startDemoApp(t *testing.T, cfg rocket.Config) *rockettest.App {
	t.Helper()
	return rockettest.Start(t, cfg, demo.Register)
}

// joinPresent joins room as name with presence, failing the test on an
// error.
func joinPresent(t *testing.T, c *rockettest.Client, room, name string) {
	t.Helper()
	if err := c.Call("Chat.join", map[string]any{"room": room, "name": name, "presence": true}, nil); err != nil {
		t.Fatalf("Chat.join %s as %s: %v", room, name, err)
	}
}

// expectMember reads the next push, which must be event ("Chat.joined"
// or "Chat.left") for client id named name in room.
func expectMember(t *testing.T, c *rockettest.Client, event, room, id, name string) {
	t.Helper()
	var ev demo.MemberEvent
	c.ExpectInto(event, &ev)
	if want := (demo.MemberEvent{Room: room, Client: id, Name: name}); ev != want {
		t.Fatalf("client %s: %s %+v, want %+v", c.ID, event, ev, want)
	}
}

// who calls Chat.who and returns the members as "id:name" strings, in
// the order given.
func who(t *testing.T, c *rockettest.Client, room string) ([]string, demo.WhoResult) {
	t.Helper()
	var res demo.WhoResult
	if err := c.Call("Chat.who", map[string]string{"room": room}, &res); err != nil {
		t.Fatalf("Chat.who %s: %v", room, err)
	}
	if res.Room != room {
		t.Fatalf("Chat.who %s: result for room %q", room, res.Room)
	}
	out := make([]string, len(res.Members))
	for i, m := range res.Members {
		out[i] = m.Client + ":" + m.Name
	}
	return out, res
}

func expectWho(t *testing.T, c *rockettest.Client, room string, want ...string) demo.WhoResult {
	t.Helper()
	got, res := who(t, c, room)
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Chat.who %s by %s = %q, want %q", room, c.ID, got, want)
	}
	return res
}

// expectCode fails unless err is a *rocket.Error with code.
func expectCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var re *rocket.Error
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("%s: got %v, want error %s", what, err, code)
	}
}

// TestPresenceOneNode: join with presence, Chat.who, join and leave
// messages on leave and on disconnect; a member without presence gets
// the messages but is not listed.
func TestPresenceOneNode(t *testing.T) {
	app := startDemoApp(t, rocket.Config{CommandRate: -1})
	ann, bob, cat, dan := app.Connect(t), app.Connect(t), app.Connect(t), app.Connect(t)

	before := time.Now().Add(-time.Second)
	joinPresent(t, ann, "lobby", "ann")
	expectMember(t, ann, "Chat.joined", "lobby", ann.ID, "ann") // her own
	res := expectWho(t, ann, "lobby", ann.ID+":ann")
	if at := res.Members[0].JoinedAt; at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("joined_at %v, want about now", at)
	}

	joinPresent(t, bob, "lobby", "bob")
	expectMember(t, ann, "Chat.joined", "lobby", bob.ID, "bob")
	expectMember(t, bob, "Chat.joined", "lobby", bob.ID, "bob")
	// cat is a member without presence: not listed, but told.
	if err := cat.Call("Chat.join", map[string]string{"room": "lobby", "name": "cat"}, nil); err != nil {
		t.Fatal(err)
	}
	expectWho(t, cat, "lobby", ann.ID+":ann", bob.ID+":bob")
	// Only members may ask.
	expectCode(t, "Chat.who by a non-member", dan.Call("Chat.who", map[string]string{"room": "lobby"}, nil), rocket.CodeUnauthorized)
	expectCode(t, "Chat.who without a room", ann.Call("Chat.who", map[string]string{}, nil), rocket.CodeBadArgs)

	// Joining again under another name: listed with the new name, same
	// joined_at, and told again.
	first := expectWho(t, ann, "lobby", ann.ID+":ann", bob.ID+":bob").Members[1].JoinedAt
	joinPresent(t, bob, "lobby", "robert")
	for _, c := range []*rockettest.Client{ann, bob, cat} {
		expectMember(t, c, "Chat.joined", "lobby", bob.ID, "robert")
	}
	if again := expectWho(t, ann, "lobby", ann.ID+":ann", bob.ID+":robert").Members[1].JoinedAt; !again.Equal(first) {
		t.Fatalf("joined_at changed from %v to %v on joining again", first, again)
	}

	// Leaving: the others are told, the leaver is not.
	if err := bob.Call("Chat.leave", map[string]string{"room": "lobby"}, nil); err != nil {
		t.Fatal(err)
	}
	expectMember(t, ann, "Chat.left", "lobby", bob.ID, "robert")
	expectMember(t, cat, "Chat.left", "lobby", bob.ID, "robert")
	expectWho(t, ann, "lobby", ann.ID+":ann")
	if err := ann.Call("Chat.say", map[string]string{"room": "lobby", "text": "bye bob"}, nil); err != nil {
		t.Fatal(err)
	}
	ann.Expect("Chat.message")
	cat.Expect("Chat.message")
	// bob's next push is his own join message, not his own leave.
	joinPresent(t, bob, "lobby", "bob")
	for _, c := range []*rockettest.Client{ann, bob, cat} {
		expectMember(t, c, "Chat.joined", "lobby", bob.ID, "bob")
	}

	// Disconnecting: the others are told.
	ann.Close()
	expectMember(t, bob, "Chat.left", "lobby", ann.ID, "ann")
	expectMember(t, cat, "Chat.left", "lobby", ann.ID, "ann")
	expectWho(t, cat, "lobby", bob.ID+":bob")
}

// TestPresenceResume: presence belongs to the connection, as room
// membership does. A client whose connection drops leaves (the others are
// told), and resuming its session joins nothing by itself.
func TestPresenceResume(t *testing.T) {
	app := startDemoApp(t, rocket.Config{CommandRate: -1})
	ann, bob := app.Connect(t), app.Connect(t)
	joinPresent(t, ann, "lobby", "ann")
	ann.Expect("Chat.joined")
	joinPresent(t, bob, "lobby", "bob")
	bob.Expect("Chat.joined")
	expectMember(t, ann, "Chat.joined", "lobby", bob.ID, "bob")

	bob.Close()
	expectMember(t, ann, "Chat.left", "lobby", bob.ID, "bob")
	back := app.Resume(t, bob.Session)
	if !back.Resumed || back.ID != bob.ID {
		t.Fatalf("resume: %+v", back)
	}
	expectWho(t, ann, "lobby", ann.ID+":ann")
	joinPresent(t, back, "lobby", "bob")
	expectMember(t, ann, "Chat.joined", "lobby", bob.ID, "bob")
	expectWho(t, ann, "lobby", ann.ID+":ann", bob.ID+":bob")
}

// TestPresenceLibrary: the library API without the demo: the default
// messages, Info, the user id, Silent, and Server.Presence.
func TestPresenceLibrary(t *testing.T) {
	var users atomic.Int32
	type trackArgs struct {
		Room   string
		Info   json.RawMessage
		Silent bool
	}
	app := rockettest.Start(t, rocket.Config{CommandRate: -1}, func(srv *rocket.Server) {
		srv.OnConnect(func(*rocket.ConnectEvent) (rocket.ConnectReply, error) {
			return rocket.ConnectReply{UserID: fmt.Sprint("user", users.Add(1))}, nil
		})
		srv.Handle("Test.track", rocket.Action(func(c *rocket.Context, in trackArgs) (bool, error) {
			var info any
			if in.Info != nil {
				info = in.Info
			}
			return true, c.Client().JoinWithPresence(c.Context(), in.Room, rocket.Presence{Info: info, Silent: in.Silent})
		}))
		srv.Handle("Test.big", rocket.Action(func(c *rocket.Context, room string) (bool, error) {
			return true, c.Client().JoinWithPresence(c.Context(), room, rocket.Presence{Info: strings.Repeat("x", rocket.MaxPresenceBytes)})
		}))
		srv.Handle("Test.leave", rocket.Action(func(c *rocket.Context, room string) (bool, error) {
			return true, c.Client().Leave(c.Context(), room)
		}))
	})
	a, b := app.Connect(t), app.Connect(t)
	if err := a.Call("Test.track", trackArgs{Room: "r", Info: json.RawMessage(`{"name":"ann","n":[1,2]}`)}, nil); err != nil {
		t.Fatal(err)
	}
	var ev rocket.PresenceEvent
	a.ExpectInto(rocket.PresenceJoinEvent, &ev)
	if ev.Room != "r" || ev.Client != a.ID || ev.User != "user1" || string(ev.Info) != `{"name":"ann","n":[1,2]}` || ev.JoinedAt.IsZero() {
		t.Fatalf("join message %+v", ev)
	}
	// b is present silently: listed, but a is told nothing.
	if err := b.Call("Test.track", trackArgs{Room: "r", Silent: true}, nil); err != nil {
		t.Fatal(err)
	}
	members, err := app.Server.Presence(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[0].Client != a.ID || members[0].User != "user1" || !members[0].JoinedAt.Equal(ev.JoinedAt) ||
		string(members[0].Info) != `{"name":"ann","n":[1,2]}` || members[1].Client != b.ID || members[1].User != "user2" || members[1].Info != nil {
		t.Fatalf("Presence = %+v", members)
	}
	if err := b.Call("Test.leave", "r", nil); err != nil {
		t.Fatal(err)
	}
	if err := app.Server.Publish(t.Context(), "r", rocket.Push{Name: "Test.mark", Value: 1}); err != nil {
		t.Fatal(err)
	}
	a.Expect("Test.mark") // nothing about b before it
	// Info over the limit is refused.
	expectCode(t, "Info over MaxPresenceBytes", b.Call("Test.big", "r", nil), rocket.CodeActionFailed)
	if m, _ := app.Server.Presence(t.Context(), "r"); len(m) != 1 {
		t.Fatalf("Presence after the refused join = %+v", m)
	}
	// a's leave message reaches b, present or not.
	if err := b.Call("Test.track", trackArgs{Room: "r", Silent: true}, nil); err != nil {
		t.Fatal(err)
	}
	a.Close()
	var left rocket.PresenceEvent
	b.ExpectInto(rocket.PresenceLeaveEvent, &left)
	if left.Room != "r" || left.Client != a.ID || left.User != "user1" || !left.JoinedAt.Equal(ev.JoinedAt) {
		t.Fatalf("leave message %+v", left)
	}
	if m, err := app.Server.Presence(t.Context(), "empty"); err != nil || m == nil || len(m) != 0 {
		t.Fatalf("Presence(empty) = %#v, %v; want an empty list", m, err)
	}
}

// TestPresenceTwoNodesShutdown: two nodes on one memory broker. A node
// that shuts down takes its clients out of presence, and the other node's
// members are told.
func TestPresenceTwoNodesShutdown(t *testing.T) {
	b := memory.New(memory.Config{})
	t.Cleanup(func() { b.Close() })
	n1 := startDemoApp(t, rocket.Config{Broker: b, CommandRate: -1})
	n2 := startDemoApp(t, rocket.Config{Broker: b, CommandRate: -1})
	ann, bob := n1.Connect(t), n2.Connect(t)
	joinPresent(t, ann, "lobby", "ann")
	ann.Expect("Chat.joined")
	joinPresent(t, bob, "lobby", "bob")
	expectMember(t, ann, "Chat.joined", "lobby", bob.ID, "bob")
	expectWho(t, bob, "lobby", ann.ID+":ann", bob.ID+":bob")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := n2.Server.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	expectMember(t, ann, "Chat.left", "lobby", bob.ID, "bob")
	expectWho(t, ann, "lobby", ann.ID+":ann")
}

// redisBroker returns a Redis broker of the cluster prefix on rs with
// heartbeats every interval (DeadAfter is 5 intervals). The broker is
// closed at the end of the test.
func redisBroker(t *testing.T, rs *redistest.Server, prefix string, interval time.Duration) *redis.Broker {
	t.Helper()
	b, err := redis.New(context.Background(), redis.Config{
		URL: rs.URL, Prefix: prefix, HeartbeatInterval: interval, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// startDoomedNode starts a node with the demo on b, which the test will
// close to simulate the node's death: its shutdown at the end of the test
// then fails to reach the broker, which is not an error here.
func startDoomedNode(t *testing.T, b broker.Broker) *node {
	t.Helper()
	srv, err := rocket.New(rocket.Config{Broker: b, CommandRate: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	demo.Register(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return &node{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// TestClusterPresence: three nodes on one Redis. Members on every node are
// listed by Chat.who on every node and get every join and leave message.
// When a node dies (its broker stops without unregistering), its members
// leave the room's presence and the others are told within DeadAfter and
// a reaper round.
func TestClusterPresence(t *testing.T) {
	const interval = 100 * time.Millisecond
	const deadAfter = 5 * interval // redis.Config's default
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	n1 := startDemoApp(t, rocket.Config{Broker: redisBroker(t, rs, prefix, interval), CommandRate: -1})
	n2 := startDemoApp(t, rocket.Config{Broker: redisBroker(t, rs, prefix, interval), CommandRate: -1})
	b3 := redisBroker(t, rs, prefix, interval)
	n3 := startDoomedNode(t, b3)
	ann, bob := n1.Connect(t), n2.Connect(t)
	cat := dial(t, n3.url, "")

	joinPresent(t, ann, "lobby", "ann")
	expectMember(t, ann, "Chat.joined", "lobby", ann.ID, "ann")
	joinPresent(t, bob, "lobby", "bob")
	expectMember(t, ann, "Chat.joined", "lobby", bob.ID, "bob")
	expectMember(t, bob, "Chat.joined", "lobby", bob.ID, "bob")
	// cat's own join message is written before the reply to its join.
	cat.send(map[string]any{"ref": 1, "Chat.join": map[string]any{"room": "lobby", "name": "cat", "presence": true}})
	catID := cat.welcome.Client
	var catJoined struct {
		Joined *demo.MemberEvent `json:"Chat.joined"`
	}
	cat.readInto(&catJoined)
	if catJoined.Joined == nil || catJoined.Joined.Client != catID {
		t.Fatalf("cat got %+v, want its own Chat.joined", catJoined)
	}
	if f := cat.next(); f.Action != "Chat.join" || f.Error != nil {
		t.Fatalf("cat got %+v, want the reply to its join", f)
	}
	expectMember(t, ann, "Chat.joined", "lobby", catID, "cat")
	expectMember(t, bob, "Chat.joined", "lobby", catID, "cat")
	all := []string{ann.ID + ":ann", bob.ID + ":bob", catID + ":cat"}
	expectWho(t, ann, "lobby", all...)
	expectWho(t, bob, "lobby", all...)
	var res demo.WhoResult
	cat.call("Chat.who", map[string]string{"room": "lobby"}, &res)
	if len(res.Members) != 3 {
		t.Fatalf("Chat.who on node 3: %+v", res)
	}

	// bob disconnects: the members on the other nodes are told.
	bob.Close()
	expectMember(t, ann, "Chat.left", "lobby", bob.ID, "bob")
	var catLeft struct {
		Left *demo.MemberEvent `json:"Chat.left"`
	}
	cat.readInto(&catLeft)
	if catLeft.Left == nil || catLeft.Left.Client != bob.ID {
		t.Fatalf("cat got %+v, want bob's Chat.left", catLeft)
	}
	expectWho(t, ann, "lobby", ann.ID+":ann", catID+":cat")

	// Node 3 dies: its broker stops heartbeating and never unregisters
	// (cat's connection stays open to the dead node).
	if err := b3.Close(); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	expectMember(t, ann, "Chat.left", "lobby", catID, "cat")
	took := time.Since(died)
	t.Logf("Chat.left of the dead node's member arrived %v after its death", took)
	// DeadAfter and a reaper round (HeartbeatInterval, give or take a
	// quarter), plus slack for a loaded machine.
	if limit := deadAfter + 2*interval + 2*time.Second; took > limit {
		t.Errorf("Chat.left took %v, want at most DeadAfter + a reaper round (%v)", took, limit)
	}
	// The entry went in the same script that published the message.
	expectWho(t, ann, "lobby", ann.ID+":ann")
	members, err := n2.Server.Presence(t.Context(), "lobby")
	if err != nil || len(members) != 1 || members[0].Client != ann.ID {
		t.Fatalf("Presence on node 2 = %+v, %v", members, err)
	}
}

// TestPresenceReclaimed: when the broker took the server back after
// finding it dead (broker.Reclaimer; the Redis broker does after a cut-off
// longer than DeadAfter, having removed the server's entries), the server
// adds its clients' entries again, same joined_at and info, and tells the
// rooms they are back.
func TestPresenceReclaimed(t *testing.T) {
	b := &tappedBroker{Broker: memory.New(memory.Config{})}
	t.Cleanup(func() { b.Close() })
	app := startDemoApp(t, rocket.Config{Broker: b, CommandRate: -1})
	ann, bob := app.Connect(t), app.Connect(t)
	joinPresent(t, ann, "lobby", "ann")
	expectMember(t, ann, "Chat.joined", "lobby", ann.ID, "ann")
	joinPresent(t, bob, "lobby", "bob")
	expectMember(t, ann, "Chat.joined", "lobby", bob.ID, "bob")
	expectMember(t, bob, "Chat.joined", "lobby", bob.ID, "bob")
	before := expectWho(t, bob, "lobby", ann.ID+":ann", bob.ID+":bob")

	// What the broker's cleanup of a dead server does to presence.
	for _, id := range []string{ann.ID, bob.ID} {
		if removed, err := b.PresenceRemove(t.Context(), "lobby", id, app.Server.ID()); err != nil || !removed {
			t.Fatalf("PresenceRemove(%s) = %v, %v", id, removed, err)
		}
	}
	expectWho(t, bob, "lobby")
	b.mu.Lock()
	h := b.h
	b.mu.Unlock()
	h.(broker.Reclaimer).Reclaimed()

	for _, c := range []*rockettest.Client{ann, bob} {
		var names []string
		for range 2 {
			var ev demo.MemberEvent
			c.ExpectInto("Chat.joined", &ev)
			names = append(names, ev.Client+":"+ev.Name)
		}
		want := []string{ann.ID + ":ann", bob.ID + ":bob"}
		slices.Sort(names)
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Fatalf("client %s told %q, want both back", c.ID, names)
		}
	}
	after := expectWho(t, bob, "lobby", ann.ID+":ann", bob.ID+":bob")
	for i := range after.Members {
		if !after.Members[i].JoinedAt.Equal(before.Members[i].JoinedAt) {
			t.Fatalf("member %d: joined_at %v, was %v", i, after.Members[i].JoinedAt, before.Members[i].JoinedAt)
		}
	}
}
