package redis

import (
	"context"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/internal/redistest"
)

// TestResumeFromLiveServerOnly: Resume names the server it took a client
// from (Resumed.From, for which the resuming server waits for a hand-back)
// only while that server's heartbeat is recent: a server that died, not
// yet reaped, would never hand anything back, and the clients of a
// crashed node that resume elsewhere must not wait for it.
func TestResumeFromLiveServerOnly(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{HeartbeatInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	register := func() string {
		id, err := b.RegisterServer(ctx, new(brokertest.Recorder))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a, other := register(), register()
	connect := func() string {
		id, err := b.NewClientID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Connect(ctx, broker.Client{ID: id, Server: a, Session: "secret"}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	c := connect()
	if r, err := b.Resume(ctx, c, "secret", other, 0); err != nil || r.From != a {
		t.Fatalf("Resume from a live server: %+v, %v; want From %s", r, err, a)
	}
	c = connect()
	rawDo(t, b, "ZADD", b.cfg.Prefix+"servers", "1", a) // its last heartbeat long ago
	if r, err := b.Resume(ctx, c, "secret", other, 0); err != nil || r.From != "" {
		t.Fatalf("Resume from a server without a recent heartbeat: %+v, %v; want From empty", r, err)
	}
}
