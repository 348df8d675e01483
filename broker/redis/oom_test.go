package redis

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/internal/redistest"
)

// usedMemory returns Redis's used_memory.
func usedMemory(t *testing.T, b *Broker) int64 {
	t.Helper()
	info, err := b.rdb.Do(t.Context(), b.rdb.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		t.Fatalf("INFO memory: %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("used_memory %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no used_memory in INFO memory")
	return 0
}

// fillRedis sets maxmemory a little above what Redis uses and appends to
// key until Redis refuses with OOM.
func fillRedis(t *testing.T, b *Broker, key string) {
	t.Helper()
	rawDo(t, b, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	rawDo(t, b, "CONFIG", "SET", "maxmemory", strconv.FormatInt(usedMemory(t, b)+4<<20, 10))
	chunk := strings.Repeat("x", 64<<10)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("Redis still takes writes after 64 MB")
		}
		err := b.rdb.Do(t.Context(), b.rdb.B().Append().Key(key).Value(chunk).Build()).Error()
		if isOOM(err) {
			return
		}
		if err != nil {
			t.Fatalf("APPEND: %v", err)
		}
	}
}

// TestOutOfMemory fills a real redis-server up to its maxmemory under two
// nodes: their heartbeats fail, but neither declares the other dead; the
// errors are counted and logged as Redis being out of memory, Ready says
// so and Send fails with ErrOutOfMemory. When memory frees, both recover
// with their clients where they were.
func TestOutOfMemory(t *testing.T) {
	const deadAfter = 250 * time.Millisecond
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	la, lb := newLogs(t), newLogs(t)
	cfg := Config{Prefix: prefix, HeartbeatInterval: twoNodesHeartbeat, DeadAfter: deadAfter}
	cfg.Logger = la.logger()
	a := newBroker(t, srv, cfg)
	cfg.Logger = lb.logger()
	b := newBroker(t, srv, cfg)
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
	ca, cb := "ca", "cb"
	if err := a.Connect(ctx, broker.Client{ID: ca, Server: sa, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, broker.Client{ID: cb, Server: sb, Session: "s"}); err != nil {
		t.Fatal(err)
	}
	// Both servers and clients stay where they are, checked while the
	// time passes: long enough for several rounds of each reaper.
	stayAlive := func(what string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			for _, s := range []string{sa, sb} {
				if err := a.rdb.Do(ctx, a.rdb.B().Zscore().Key(prefix+"servers").Member(s).Build()).Error(); err != nil {
					t.Fatalf("%s: server %s left the servers set: %v", what, s, err)
				}
			}
			for c, s := range map[string]string{ca: sa, cb: sb} {
				rec, err := b.Lookup(ctx, c)
				if err != nil || rec.Server != s {
					t.Fatalf("%s: client %s: %+v, %v; want on server %s", what, c, rec, err, s)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	fillRedis(t, a, prefix+"filler")
	for _, x := range []*Broker{a, b} {
		waitFor(t, 5*time.Second, "Ready reports the OOM", func() bool {
			return errors.Is(x.Ready(ctx), broker.ErrOutOfMemory)
		})
	}
	err = a.Ready(ctx)
	if !strings.Contains(err.Error(), "out of memory") || !strings.Contains(err.Error(), "new clients cannot connect") {
		t.Fatalf("Ready = %v, want it to say Redis is out of memory", err)
	}
	t.Logf("Ready under OOM: %v", err)
	if err := a.Send(ctx, cb, []byte("hello")); !errors.Is(err, broker.ErrOutOfMemory) {
		t.Fatalf("Send under OOM = %v, want ErrOutOfMemory", err)
	}
	stayAlive("Redis full", 8*deadAfter)
	for _, l := range []*logs{la, lb} {
		if len(l.lines("Redis is out of memory", "heartbeat failed")) == 0 {
			t.Errorf("no log line says the heartbeat failed because Redis is out of memory")
		}
		if len(l.lines("not cleaning up other servers")) == 0 {
			t.Errorf("no log line says the reaper holds")
		}
	}
	for _, x := range []*Broker{a, b} {
		st, err := x.Stats(ctx)
		if err != nil || st.OutOfMemory == 0 {
			t.Fatalf("Stats = %+v, %v; want OutOfMemory counted", st, err)
		}
	}

	rawDo(t, a, "DEL", prefix+"filler")
	for _, x := range []*Broker{a, b} {
		waitFor(t, 5*time.Second, "Ready again", func() bool { return x.Ready(ctx) == nil })
	}
	if err := a.Send(ctx, cb, []byte("hello")); err != nil {
		t.Fatalf("Send after recovery: %v", err)
	}
	rb.WaitDirect(t, cb, 1, 5*time.Second)
	stayAlive("memory freed", 4*deadAfter)
	for _, l := range []*logs{la, lb} {
		if got := l.lines("dead server cleaned up"); len(got) != 0 {
			t.Fatalf("a server was reaped: %q", got)
		}
		waitFor(t, 5*time.Second, "heartbeat recovery logged", func() bool { return len(l.lines("heartbeat recovered")) > 0 })
	}
}
