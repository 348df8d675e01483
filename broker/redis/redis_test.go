package redis

import (
	"context"
	"errors"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/internal/redistest"
)

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
		return newBroker(t, srv, Config{MailboxSize: cfg.MailboxSize, MailboxBytes: cfg.MailboxBytes, MailboxTTL: cfg.MailboxTTL})
	})
}

func TestConfig(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "URL is required"},
		{"bad URL", Config{URL: "http://127.0.0.1:1"}, "invalid URL scheme"},
		{"dead after", Config{URL: "redis://127.0.0.1:1", HeartbeatInterval: time.Second, DeadAfter: time.Second}, "must exceed"},
		{"negative size", Config{URL: "redis://127.0.0.1:1", MailboxSize: -1}, "negative MailboxSize"},
		{"negative bytes", Config{URL: "redis://127.0.0.1:1", MailboxBytes: -1}, "negative MailboxBytes"},
		{"unparsable URL", Config{URL: "redis://user:pw-123@127.0.0.1:port/0"}, "invalid port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) error = %v, want one containing %q", tc.cfg, err, tc.want)
			}
			if strings.Contains(err.Error(), "pw-123") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}

	cfg, err := Config{URL: "redis://x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != DefaultPrefix || cfg.MailboxSize != DefaultMailboxSize || cfg.MailboxTTL != DefaultMailboxTTL ||
		cfg.HeartbeatInterval != DefaultHeartbeatInterval || cfg.DeadAfter != 5*DefaultHeartbeatInterval ||
		cfg.InboxBatch != DefaultInboxBatch || cfg.Logger == nil {
		t.Fatalf("defaults: %+v", cfg)
	}
	if d := cfg.sweepInterval(); d != time.Second {
		t.Fatalf("sweep interval = %v, want 1s", d)
	}
	cfg.MailboxTTL = 20 * time.Millisecond
	if d := cfg.sweepInterval(); d != minSweepInterval {
		t.Fatalf("sweep interval = %v, want %v", d, minSweepInterval)
	}
}

// TestUnreachable checks that New fails at once, naming the address, when
// Redis does not answer.
func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = New(ctx, Config{URL: "redis://" + addr + "/0"})
	if err == nil || !strings.Contains(err.Error(), "redis: connect to "+addr) {
		t.Fatalf("New error = %v, want one naming %s", err, addr)
	}
}

func TestVersion(t *testing.T) {
	for v, want := range map[string]bool{"6.2.0": true, "7.0.15": true, "10.0.0": true, "6.0.9": false, "5.0.1": false, "": false, "x.y": false} {
		if got := versionAtLeast(v, 6, 2); got != want {
			t.Errorf("versionAtLeast(%q, 6, 2) = %v", v, got)
		}
	}
}

// TestTwoNodesDirected: Send on one node reaches a client connected on the
// other through the owner's inbox, in order, exactly once.
func TestTwoNodesDirected(t *testing.T) {
	const n = 10000
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	a := newBroker(t, srv, Config{Prefix: prefix})
	b := newBroker(t, srv, Config{Prefix: prefix})
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, err := a.RegisterServer(ctx, ra)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.RegisterServer(ctx, rb)
	if err != nil {
		t.Fatal(err)
	}
	if sa == sb {
		t.Fatalf("both nodes got server id %s", sa)
	}
	c, err := b.NewClientID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, broker.Client{ID: c, Server: sb, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	if rec, err := a.Lookup(ctx, c); err != nil || rec.Server != sb {
		t.Fatalf("Lookup on the other node = %+v, %v; want server %s", rec, err, sb)
	}
	for i := range n {
		if err := a.Send(ctx, c, []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	got := rb.WaitDirect(t, c, n, 20*time.Second)
	rb.ExpectQuiet(t, 100*time.Millisecond)
	got = rb.Direct(c)
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if string(m) != strconv.Itoa(i) {
			t.Fatalf("message %d is %q: lost, duplicated or out of order", i, m)
		}
	}
	if k := ra.Total(); k != 0 {
		t.Fatalf("sending node's server got %d deliveries, want 0", k)
	}
}

// TestTwoNodesConcurrent: several goroutines on both nodes send to clients
// on both nodes; each sender's messages arrive in order, exactly once.
func TestTwoNodesConcurrent(t *testing.T) {
	const senders, perSender = 4, 500
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	nodes := []*Broker{newBroker(t, srv, Config{Prefix: prefix}), newBroker(t, srv, Config{Prefix: prefix})}
	ctx := t.Context()
	recs := []*brokertest.Recorder{new(brokertest.Recorder), new(brokertest.Recorder)}
	var clients []string
	for i, nd := range nodes {
		s, err := nd.RegisterServer(ctx, recs[i])
		if err != nil {
			t.Fatal(err)
		}
		c, err := nd.NewClientID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.Connect(ctx, broker.Client{ID: c, Server: s, Session: "s"}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			nd := nodes[g%2]
			for i := range perSender {
				for _, c := range clients {
					if err := nd.Send(ctx, c, []byte(strconv.Itoa(g)+":"+strconv.Itoa(i))); err != nil {
						t.Errorf("Send: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for i, c := range clients {
		got := recs[i].WaitDirect(t, c, senders*perSender, 10*time.Second)
		next := make([]int, senders)
		for _, m := range got {
			g, k, _ := strings.Cut(string(m), ":")
			gi, _ := strconv.Atoi(g)
			ki, _ := strconv.Atoi(k)
			if ki != next[gi] {
				t.Fatalf("client %s: sender %d message %d arrived when %d was expected", c, gi, ki, next[gi])
			}
			next[gi]++
		}
	}
	for i, r := range recs {
		r.ExpectQuiet(t, 50*time.Millisecond)
		if k := r.Total(); k != senders*perSender {
			t.Fatalf("server %d got %d deliveries, want %d", i, k, senders*perSender)
		}
	}
}

// TestTwoNodesRooms: a room message published on one node reaches the
// servers subscribed on both, but not the publishing server.
func TestTwoNodesRooms(t *testing.T) {
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	a := newBroker(t, srv, Config{Prefix: prefix})
	b := newBroker(t, srv, Config{Prefix: prefix})
	ctx := t.Context()
	ra1, ra2, rb := new(brokertest.Recorder), new(brokertest.Recorder), new(brokertest.Recorder)
	sa1, _ := a.RegisterServer(ctx, ra1)
	sa2, _ := a.RegisterServer(ctx, ra2)
	sb, _ := b.RegisterServer(ctx, rb)
	for _, sub := range []struct {
		b  *Broker
		id string
	}{{a, sa1}, {a, sa2}, {b, sb}} {
		if err := sub.b.Subscribe(ctx, sub.id, "room"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if err := a.Publish(ctx, sa1, "room", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	want := make([]string, 100)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	for name, r := range map[string]*brokertest.Recorder{"other server of the node": ra2, "other node": rb} {
		var got []string
		for _, m := range r.WaitRoom(t, "room", 100, 5*time.Second) {
			got = append(got, string(m))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s got %q", name, got)
		}
	}
	ra1.ExpectQuiet(t, 50*time.Millisecond)
	if ra1.Total() != 0 {
		t.Fatal("publishing server got its own messages")
	}
	// The last local server leaving unsubscribes the channel.
	if err := b.Unsubscribe(ctx, sb, "room"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "channel unsubscribed", func() bool {
		return rawInt(t, a, "PUBLISH", prefix+"room:room", "x y") == 1 // only a's connection left
	})
}

// TestDeadNode: node B crashes (Close without UnregisterServer). Node A's
// reaper cleans up B's server within DeadAfter and a few intervals: its
// clients are away, the messages sent to them before the cleanup (left in
// B's inbox) and after (kept in their mailboxes) are all returned by Resume
// on A, in order, exactly once.
func TestDeadNode(t *testing.T) {
	const interval, deadAfter, n = 50 * time.Millisecond, 400 * time.Millisecond, 50
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	cfg := Config{Prefix: prefix, HeartbeatInterval: interval, DeadAfter: deadAfter}
	a := newBroker(t, srv, cfg)
	b := newBroker(t, srv, cfg)
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, rb)
	clients := map[string]string{}
	for range 2 {
		c, _ := b.NewClientID(ctx)
		if err := b.Connect(ctx, broker.Client{ID: c, Server: sb, Session: "secret" + c}); err != nil {
			t.Fatal(err)
		}
		clients[c] = "secret" + c
	}
	if err := b.Subscribe(ctx, sb, "room"); err != nil {
		t.Fatal(err)
	}

	if err := b.Close(); err != nil { // the crash
		t.Fatal(err)
	}
	crashed := time.Now()
	for c := range clients {
		for i := range n {
			if err := a.Send(ctx, c, []byte("before"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if k := rawInt(t, a, "LLEN", prefix+"inbox:"+sb); k != 2*n {
		t.Fatalf("dead server's inbox holds %d messages, want %d (reaped too early?)", k, 2*n)
	}
	for c := range clients {
		waitFor(t, 5*time.Second, "client "+c+" away", func() bool {
			rec, err := a.Lookup(ctx, c)
			return err == nil && rec.Server == ""
		})
	}
	took := time.Since(crashed)
	t.Logf("cleaned up %v after the crash", took)
	// DeadAfter and a reaper interval, plus slack for a loaded machine.
	if limit := deadAfter + 2*interval + time.Second; took > limit {
		t.Errorf("cleanup took %v, want at most DeadAfter + a few intervals (%v)", took, limit)
	}
	for _, key := range []string{"inbox:" + sb, "server:" + sb + ":clients"} {
		if rawInt(t, a, "EXISTS", prefix+key) != 0 {
			t.Errorf("%s still exists", key)
		}
	}
	if _, err := a.rdb.Do(ctx, a.rdb.B().Zscore().Key(prefix+"servers").Member(sb).Build()).ToString(); !rueidis.IsRedisNil(err) {
		t.Errorf("dead server still in the servers set (%v)", err)
	}
	for c := range clients {
		for i := range n {
			if err := a.Send(ctx, c, []byte("after"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for c, sess := range clients {
		r, err := a.Resume(ctx, c, sess, sa, 0)
		mail := mailData(r)
		if err != nil {
			t.Fatalf("Resume(%s): %v", c, err)
		}
		if len(mail) != 2*n {
			t.Fatalf("Resume(%s) returned %d messages, want %d", c, len(mail), 2*n)
		}
		for i, m := range mail {
			want := "before" + strconv.Itoa(i)
			if i >= n {
				want = "after" + strconv.Itoa(i-n)
			}
			if string(m) != want {
				t.Fatalf("Resume(%s): message %d is %q, want %q", c, i, m, want)
			}
		}
	}
	if rb.Total() != 0 {
		t.Fatalf("crashed server got %d deliveries after its crash", rb.Total())
	}
	if st, err := a.Stats(ctx); err != nil || st.MailDropped != 0 || st.MailExpired != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing dropped", st, err)
	}
}

// TestUnregisterMovesInbox: messages left in a server's inbox when it
// unregisters go to the front of their away clients' mailboxes, or to the
// inbox of the server that holds their client now.
func TestUnregisterMovesInbox(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{})
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, _ := b.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, rb)
	c1, c2 := "1001", "1002"
	for _, c := range []string{c1, c2} {
		if err := b.Connect(ctx, broker.Client{ID: c, Server: sa, Session: c}); err != nil {
			t.Fatal(err)
		}
	}
	// Leftovers, as if sa's consumer had not read them yet, for c1 (to
	// become away) and c2 (moved to sb meanwhile).
	inbox := b.cfg.Prefix + "inbox:" + sa
	if _, err := b.Resume(ctx, c2, c2, sb, 0); err != nil {
		t.Fatal(err)
	}
	// Stop sa's goroutines without unregistering, then leave messages.
	s := b.local(sa)
	close(s.stop)
	b.wake(ctx, sa)
	<-s.done
	s.stop = make(chan struct{}) // UnregisterServer closes it again
	for _, e := range []string{c1 + " old0", c2 + " x0", c1 + " old1", "garbage", c2 + " x1"} {
		rawDo(t, b, "RPUSH", inbox, e)
	}
	if err := b.UnregisterServer(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, c1, []byte("new0")); err != nil {
		t.Fatal(err)
	}
	r, err := b.Resume(ctx, c1, c1, sb, 0)
	mail := mailData(r)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mail {
		got = append(got, string(m))
	}
	if want := []string{"old0", "old1", "new0"}; !slices.Equal(got, want) {
		t.Fatalf("mail of c1 = %q, want %q", got, want)
	}
	var x []string
	for _, m := range rb.WaitDirect(t, c2, 2, 5*time.Second) {
		x = append(x, string(m))
	}
	if want := []string{"x0", "x1"}; !slices.Equal(x, want) {
		t.Fatalf("c2 got %q, want %q", x, want)
	}
	// sa may have been told that c2 resumed on sb, before it stopped (or
	// the cleanup dropped the replaced entry); nothing else.
	if n, r := len(ra.Direct(c1))+len(ra.Direct(c2)), ra.Replacements(c2); n != 0 || len(r) > 1 || ra.Total() != n+len(r) {
		t.Fatalf("unregistered server got %d deliveries, %d messages and Replaced for c2 %v", ra.Total(), n, r)
	}
}

// TestReclaim: a server reaped while alive (its heartbeats did not reach
// Redis) takes its clients back at its next heartbeat.
func TestReclaim(t *testing.T) {
	const interval, deadAfter = 50 * time.Millisecond, 300 * time.Millisecond
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	la := newLogs(t)
	cfg := Config{Prefix: prefix, HeartbeatInterval: interval, DeadAfter: deadAfter}
	acfg := cfg
	acfg.Logger = la.logger()
	a := newBroker(t, srv, acfg)
	b := newBroker(t, srv, cfg)
	ctx := t.Context()
	ra, rb := new(brokertest.Recorder), new(brokertest.Recorder)
	sa, _ := a.RegisterServer(ctx, ra)
	sb, _ := b.RegisterServer(ctx, rb)
	var ids []string
	for range 4 {
		c, _ := a.NewClientID(ctx)
		if err := a.Connect(ctx, broker.Client{ID: c, Server: sa, Session: "s" + c}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c)
	}
	away, missing, moved, expired := ids[0], ids[1], ids[2], ids[3]

	a.heartbeatPaused.Store(true) // cut off
	waitFor(t, 5*time.Second, "server reaped", func() bool {
		rec, err := b.Lookup(ctx, away)
		return err == nil && rec.Server == ""
	})
	for i := range 10 {
		if err := b.Send(ctx, away, []byte("m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	rawDo(t, b, "DEL", prefix+"client:"+missing)
	if _, err := b.Resume(ctx, moved, "s"+moved, sb, 0); err != nil {
		t.Fatal(err)
	}
	// expired: its session timed out meanwhile.
	rawDo(t, b, "HSET", prefix+"client:"+expired, "away_until", "1")
	a.heartbeatPaused.Store(false) // back

	waitFor(t, 5*time.Second, "clients reclaimed", func() bool {
		rec, err := b.Lookup(ctx, away)
		return err == nil && rec.Server == sa
	})
	var got []string
	for _, m := range ra.WaitDirect(t, away, 10, 5*time.Second) {
		got = append(got, string(m))
	}
	if want := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}; !slices.Equal(got, want) {
		t.Fatalf("mail moved to the inbox: got %q, want %q", got, want)
	}
	for _, c := range []string{away, missing, expired} {
		waitFor(t, 5*time.Second, "client "+c+" on "+sa, func() bool {
			rec, err := b.Lookup(ctx, c)
			return err == nil && rec.Server == sa
		})
		// The session hash was kept or recreated.
		if _, err := a.Resume(ctx, c, "s"+c, sa, 0); err != nil {
			t.Fatalf("Resume(%s): %v", c, err)
		}
		if rawInt(t, b, "SISMEMBER", prefix+"server:"+sa+":clients", c) != 1 {
			t.Fatalf("client %s not in the set of %s", c, sa)
		}
	}
	if rec, err := b.Lookup(ctx, moved); err != nil || rec.Server != sb {
		t.Fatalf("client that moved: %+v, %v; want it left on %s", rec, err, sb)
	}
	if err := b.Send(ctx, away, []byte("later")); err != nil {
		t.Fatal(err)
	}
	ra.WaitDirect(t, away, 11, 5*time.Second)
	if lines := la.lines("clients reclaimed", "taken_back=1", "recreated=2", "held_elsewhere=1", "messages_moved=10"); len(lines) != 1 {
		t.Fatalf("reclaim log: %q", la.lines("reclaim"))
	}
}

// TestIDsAfterDataLoss: after Redis lost its data, server ids keep
// increasing and no client id issued before is issued again: client ids
// start a new epoch.
func TestIDsAfterDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	a := newBroker(t, srv, Config{Prefix: prefix, HeartbeatInterval: 50 * time.Millisecond})
	ctx := t.Context()
	var maxServer uint64
	for range 3 {
		s, err := a.RegisterServer(ctx, new(brokertest.Recorder))
		if err != nil {
			t.Fatal(err)
		}
		maxServer = max(maxServer, serverNum(t, s))
	}
	issued := map[string]bool{}
	newIDs := func(b *Broker, n int) []string {
		t.Helper()
		var ids []string
		for range n {
			c, err := b.NewClientID(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !clientIDFormat.MatchString(c) {
				t.Fatalf("client id %q: want <8 base32 characters>-<decimal>", c)
			}
			if issued[c] {
				t.Fatalf("client id %q issued twice", c)
			}
			issued[c] = true
			ids = append(ids, c)
		}
		return ids
	}
	before := newIDs(a, 5)
	s, _ := a.RegisterServer(ctx, new(brokertest.Recorder))
	held := before[4]
	if err := a.Connect(ctx, broker.Client{ID: held, Server: s}); err != nil {
		t.Fatal(err)
	}
	maxServer = max(maxServer, serverNum(t, s))

	rawDo(t, a, "FLUSHALL")
	after := newIDs(a, 5)
	epoch := func(id string) string { e, _, _ := strings.Cut(id, "-"); return e }
	if epoch(after[0]) == epoch(before[0]) {
		t.Fatalf("client ids %v after FLUSHALL, %v before: want a new epoch", after, before)
	}
	s2, err := a.RegisterServer(ctx, new(brokertest.Recorder))
	if err != nil {
		t.Fatal(err)
	}
	if serverNum(t, s2) <= maxServer {
		t.Fatalf("server id %s after FLUSHALL, want above %d", s2, maxServer)
	}
	// The client held is recorded again by the next heartbeat, which
	// finds its server gone.
	waitFor(t, 5*time.Second, "client reclaimed", func() bool {
		rec, err := a.Lookup(ctx, held)
		return err == nil && rec.Server == s
	})
	// Another node, which has seen nothing, continues the epoch.
	b := newBroker(t, srv, Config{Prefix: prefix})
	if c := newIDs(b, 1)[0]; epoch(c) != epoch(after[0]) {
		t.Fatalf("client id %s on another node, want the epoch of %s", c, after[0])
	}
}

// clientIDFormat is the documented shape of client ids.
var clientIDFormat = regexp.MustCompile(`^[0-9a-v]{8}-[1-9][0-9]*$`)

// serverNum returns the number of server id s.
func serverNum(t *testing.T, s string) uint64 {
	t.Helper()
	n, ok := serverNumber(s)
	if !ok {
		t.Fatalf("server id %q has no number", s)
	}
	return n
}

// TestSessionNotStored: Redis holds a hash of the session secret, never
// the secret.
func TestSessionNotStored(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{})
	ctx := t.Context()
	s, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	const secret = "very-secret-value"
	if err := b.Connect(ctx, broker.Client{ID: "7", Server: s, Session: secret}); err != nil {
		t.Fatal(err)
	}
	got, err := b.rdb.Do(ctx, b.rdb.B().Hget().Key(b.cfg.Prefix+"client:7").Field("session").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	if got != sessionHash(secret) || strings.Contains(got, secret) {
		t.Fatalf("stored session %q", got)
	}
	if _, err := b.Resume(ctx, "7", secret+"x", s, 0); !errors.Is(err, broker.ErrBadSession) {
		t.Fatalf("Resume with a wrong secret: %v", err)
	}
}

// TestSweeperExpires: away clients expire without being touched, their
// mail counted, and their keys are deleted.
func TestSweeperExpires(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{MailboxTTL: 100 * time.Millisecond})
	ctx := t.Context()
	s, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	for i := range 3 {
		id := strconv.Itoa(i + 1)
		_ = b.Connect(ctx, broker.Client{ID: id, Server: s})
		_ = b.Disconnect(ctx, id, s)
		for range i + 1 {
			if err := b.Send(ctx, id, []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 5*time.Second, "6 messages expired", func() bool {
		st, err := b.Stats(ctx)
		return err == nil && st.MailExpired == 6
	})
	for i := range 3 {
		id := strconv.Itoa(i + 1)
		if n := rawInt(t, b, "EXISTS", b.cfg.Prefix+"client:"+id, b.cfg.Prefix+"mail:"+id); n != 0 {
			t.Fatalf("keys of expired client %s still exist", id)
		}
	}
	if n := rawInt(t, b, "ZCARD", b.cfg.Prefix+"away"); n != 0 {
		t.Fatalf("away set holds %d clients", n)
	}
}

// TestMailBytesTracked: the byte total of a mailbox (mail_bytes in the
// client's hash) follows what the scripts add and drop, including the
// messages the cleanup of an unregistered server moves from its inbox to
// the mailbox, which are bounded in bytes like the others.
func TestMailBytesTracked(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{MailboxBytes: 10})
	ctx := t.Context()
	sa, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	sb, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	c := "c1"
	if err := b.Connect(ctx, broker.Client{ID: c, Server: sa, Session: c}); err != nil {
		t.Fatal(err)
	}
	mailBytes := func() string {
		t.Helper()
		v, err := b.rdb.Do(ctx, b.rdb.B().Hget().Key(b.cfg.Prefix+"client:"+c).Field("mail_bytes").Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			t.Fatal(err)
		}
		return v
	}
	s := b.local(sa)
	close(s.stop)
	b.wake(ctx, sa)
	<-s.done
	s.stop = make(chan struct{}) // UnregisterServer closes it again
	for _, e := range []string{"old0", "old1", "old2"} {
		rawDo(t, b, "RPUSH", b.cfg.Prefix+"inbox:"+sa, c+" "+e)
	}
	if err := b.UnregisterServer(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if got := mailBytes(); got != "8" {
		t.Fatalf("mail_bytes after the cleanup = %q, want 8 (old1, old2)", got)
	}
	if err := b.Send(ctx, c, []byte("new0")); err != nil {
		t.Fatal(err)
	}
	if got := mailBytes(); got != "8" {
		t.Fatalf("mail_bytes after a send = %q, want 8 (old2, new0)", got)
	}
	r, err := b.Resume(ctx, c, c, sb, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := mailData(r); len(got) != 2 || string(got[0]) != "old2" || string(got[1]) != "new0" {
		t.Fatalf("mail = %q, want old2, new0", got)
	}
	if got := mailBytes(); got != "" {
		t.Fatalf("mail_bytes after Resume = %q, want none", got)
	}
	if st, _ := b.Stats(ctx); st.MailDropped != 2 {
		t.Fatalf("MailDropped = %d, want 2", st.MailDropped)
	}
}
