package redis

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/internal/redistest"
)

// TestMoveAcrossNodes sends numbered messages from a third node to a client
// that moves back and forth between a server on node A and one on node B:
// every message ends up exactly once with a handler or in the mail returned
// by Resume.
func TestMoveAcrossNodes(t *testing.T) {
	const n = 1000
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	cfg := Config{Prefix: prefix, MailboxSize: n}
	nodes := []*Broker{newBroker(t, srv, cfg), newBroker(t, srv, cfg)}
	sender := newBroker(t, srv, cfg)
	ctx := t.Context()
	rec := new(brokertest.Recorder) // the union is what matters
	var ids [2]string
	for i, nd := range nodes {
		id, err := nd.RegisterServer(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	c, _ := nodes[0].NewClientID(ctx)
	if err := nodes[0].Connect(ctx, broker.Client{ID: c, Server: ids[0], Session: "s"}); err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			if err := sender.Send(ctx, c, []byte(strconv.Itoa(i))); err != nil {
				t.Errorf("Send %d: %v", i, err)
				return
			}
		}
	}()
	var mail [][]byte
	moves, replaced := 0, 0
	for done := false; !done; moves++ {
		select {
		case <-sent:
			done = true
		default:
		}
		cur, next := moves%2, (moves+1)%2
		if moves%4 < 2 {
			if err := nodes[cur].Disconnect(ctx, c, ids[cur]); err != nil {
				t.Fatal(err)
			}
		} else {
			replaced++ // ids[cur] is told
		}
		r, err := nodes[next].Resume(ctx, c, "s", ids[next], 0)
		if err != nil {
			t.Fatal(err)
		}
		mail = append(mail, mailData(r)...)
	}
	var got [][]byte
	if !rec.Wait(10*time.Second, func() bool {
		got = slices.Concat(rec.Direct(c), mail)
		return len(got) >= n
	}) {
		t.Fatalf("after %d moves: %d of %d messages arrived", moves, len(got), n)
	}
	if r := rec.WaitReplacements(t, c, replaced, 10*time.Second); len(r) != replaced {
		t.Fatalf("%d Replaced calls, want one per resume that overtook a disconnect, %d", len(r), replaced)
	}
	rec.ExpectQuiet(t, 50*time.Millisecond)
	got = slices.Concat(rec.Direct(c), mail)
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
	t.Logf("%d moves, %d messages from Resume", moves, len(mail))
}

// TestConcurrentUse hammers two nodes from many goroutines, for the race
// detector, while their sweepers expire clients.
func TestConcurrentUse(t *testing.T) {
	srv := redistest.Start(t)
	prefix := uniquePrefix()
	cfg := Config{Prefix: prefix, MailboxSize: 8, MailboxTTL: 20 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond}
	nodes := []*Broker{newBroker(t, srv, cfg), newBroker(t, srv, cfg)}
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			b := nodes[g%2]
			s, err := b.RegisterServer(ctx, new(brokertest.Recorder))
			if err != nil {
				t.Error(err)
				return
			}
			room := "room" + strconv.Itoa(g%3)
			_ = b.Subscribe(ctx, s, room)
			for i := range 100 {
				id, _ := b.NewClientID(ctx)
				_ = b.Connect(ctx, broker.Client{ID: id, Server: s, Session: id})
				_ = b.Send(ctx, id, []byte("x"))
				_ = nodes[(g+1)%2].Send(ctx, id, []byte("y"))
				_ = b.Disconnect(ctx, id, s)
				_ = b.Send(ctx, id, []byte("z"))
				_ = b.Publish(ctx, s, room, []byte("r"))
				if i%3 == 0 {
					_, _ = b.Resume(ctx, id, id, s, 0)
				}
				if i%5 == 0 {
					_ = b.Forget(ctx, id)
				}
				_, _ = b.Lookup(ctx, id)
				_, _ = b.Stats(ctx)
				if i%20 == 0 {
					_ = b.Unsubscribe(ctx, s, room)
					_ = b.Subscribe(ctx, s, room)
				}
			}
			_ = b.Unsubscribe(ctx, s, room)
			if g%2 == 0 {
				if err := b.UnregisterServer(ctx, s); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
