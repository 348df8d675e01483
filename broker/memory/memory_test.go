package memory_test

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/broker/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
		return memory.New(memory.Config{MailboxSize: cfg.MailboxSize, MailboxBytes: cfg.MailboxBytes, MailboxTTL: cfg.MailboxTTL})
	})
}

// TestIDsAreCounters checks the documented id format: server ids count
// from 1, client ids too, after the epoch.
func TestIDsAreCounters(t *testing.T) {
	b := memory.New(memory.Config{})
	defer b.Close()
	ctx := t.Context()
	for i := 1; i <= 3; i++ {
		s, err := b.RegisterServer(ctx, new(brokertest.Recorder))
		if err != nil || s != strconv.Itoa(i) {
			t.Fatalf("RegisterServer = %q, %v; want %d", s, err, i)
		}
		c, err := b.NewClientID(ctx)
		if err != nil || !strings.HasSuffix(c, "-"+strconv.Itoa(i)) {
			t.Fatalf("NewClientID = %q, %v; want <epoch>-%d", c, err, i)
		}
	}
}

// TestClientIDsNotReused: a Broker created anew (a process restarted)
// never issues a client id of an earlier one; ids are 8 base32
// characters, a dash and a decimal counter.
func TestClientIDsNotReused(t *testing.T) {
	seen := map[string]bool{}
	format := regexp.MustCompile(`^[0-9a-v]{8}-[1-9][0-9]*$`)
	for range 20 {
		b := memory.New(memory.Config{})
		for range 3 {
			c, err := b.NewClientID(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !format.MatchString(c) || seen[c] {
				t.Fatalf("NewClientID = %q (issued before: %v)", c, seen[c])
			}
			seen[c] = true
		}
		b.Close()
	}
}

// TestDefaultMailboxSize checks that a zero Config keeps 128 messages.
func TestDefaultMailboxSize(t *testing.T) {
	b := memory.New(memory.Config{})
	defer b.Close()
	ctx := t.Context()
	s, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	if err := b.Connect(ctx, broker.Client{ID: "c", Server: s, Session: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Disconnect(ctx, "c", s); err != nil {
		t.Fatal(err)
	}
	for i := range memory.DefaultMailboxSize + 3 {
		if err := b.Send(ctx, "c", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.Resume(ctx, "c", "x", s, 0)
	if err != nil {
		t.Fatal(err)
	}
	if mail := r.Mail; len(mail) != memory.DefaultMailboxSize || string(mail[0].Data) != "3" {
		t.Fatalf("got %d messages starting with %q, want %d starting with \"3\"", len(mail), mail[0].Data, memory.DefaultMailboxSize)
	}
	if st, _ := b.Stats(ctx); st.MailDropped != 3 {
		t.Fatalf("MailDropped = %d, want 3", st.MailDropped)
	}
}

// TestSweeper checks that expired sessions are swept without being touched.
func TestSweeper(t *testing.T) {
	b := memory.New(memory.Config{MailboxTTL: 50 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	defer b.Close()
	ctx := t.Context()
	s, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	for i := range 3 {
		id := strconv.Itoa(i)
		if err := b.Connect(ctx, broker.Client{ID: id, Server: s}); err != nil {
			t.Fatal(err)
		}
		if err := b.Disconnect(ctx, id, s); err != nil {
			t.Fatal(err)
		}
		for range i + 1 {
			if err := b.Send(ctx, id, []byte("m")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Only Stats is called: expiry must come from the sweeper.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := b.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.MailExpired == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MailExpired = %d after 5s, want 6", st.MailExpired)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := b.Lookup(ctx, "0"); !errors.Is(err, broker.ErrUnknownClient) {
		t.Fatalf("Lookup(expired) error = %v, want ErrUnknownClient", err)
	}
}

// TestResumeResetsTTL checks that a client that came back and left again
// gets a full TTL from its second departure.
func TestResumeResetsTTL(t *testing.T) {
	const ttl = 500 * time.Millisecond
	b := memory.New(memory.Config{MailboxTTL: ttl, SweepInterval: time.Hour})
	defer b.Close()
	ctx := t.Context()
	s, _ := b.RegisterServer(ctx, new(brokertest.Recorder))
	if err := b.Connect(ctx, broker.Client{ID: "c", Server: s, Session: "x"}); err != nil {
		t.Fatal(err)
	}
	_ = b.Disconnect(ctx, "c", s)
	time.Sleep(ttl * 3 / 5)
	if _, err := b.Resume(ctx, "c", "x", s, 0); err != nil {
		t.Fatal(err)
	}
	_ = b.Disconnect(ctx, "c", s)
	time.Sleep(ttl * 3 / 5)
	// 6/5 TTL after the first departure, 3/5 TTL after the second.
	if _, err := b.Lookup(ctx, "c"); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
}

// TestConcurrentUse hammers the broker from many goroutines, for the race
// detector.
func TestConcurrentUse(t *testing.T) {
	b := memory.New(memory.Config{MailboxSize: 8, MailboxTTL: 20 * time.Millisecond, SweepInterval: time.Millisecond})
	defer b.Close()
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rec := new(brokertest.Recorder)
			s, err := b.RegisterServer(ctx, rec)
			if err != nil {
				t.Error(err)
				return
			}
			room := "room" + strconv.Itoa(g%2)
			_ = b.Subscribe(ctx, s, room)
			for i := range 200 {
				id, _ := b.NewClientID(ctx)
				_ = b.Connect(ctx, broker.Client{ID: id, Server: s, Session: id})
				_ = b.Send(ctx, id, []byte("x"))
				_ = b.Disconnect(ctx, id, s)
				_ = b.Send(ctx, id, []byte("y"))
				_ = b.Publish(ctx, "", room, []byte("r"))
				if i%3 == 0 {
					_, _ = b.Resume(ctx, id, id, s, 0)
				}
				if i%5 == 0 {
					_ = b.Forget(ctx, id)
				}
				_, _ = b.Lookup(ctx, id)
				_, _ = b.Stats(ctx)
			}
			_ = b.Unsubscribe(ctx, s, room)
			_ = b.UnregisterServer(ctx, s)
		})
	}
	wg.Wait()
}

// TestCloseFromHandler checks that a handler may close the broker.
func TestCloseFromHandler(t *testing.T) {
	b := memory.New(memory.Config{})
	ctx := t.Context()
	h := closer{b}
	s, _ := b.RegisterServer(ctx, h)
	_ = b.Connect(ctx, broker.Client{ID: "c", Server: s})
	if err := b.Send(ctx, "c", []byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, "c", []byte("again")); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
}

type closer struct{ b *memory.Broker }

func (c closer) Deliver(string, uint64, []byte) { c.b.Close() }
func (c closer) DeliverRoom(string, []byte)     { c.b.Close() }

type nopHandler struct{}

func (nopHandler) Deliver(string, uint64, []byte) {}
func (nopHandler) DeliverRoom(string, []byte)     {}

func BenchmarkSendConnected(b *testing.B) {
	br := memory.New(memory.Config{})
	defer br.Close()
	ctx := context.Background()
	s, _ := br.RegisterServer(ctx, nopHandler{})
	_ = br.Connect(ctx, broker.Client{ID: "c", Server: s, Session: "x"})
	data := []byte("hello, rocket")
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Send(ctx, "c", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendAway(b *testing.B) {
	br := memory.New(memory.Config{})
	defer br.Close()
	ctx := context.Background()
	s, _ := br.RegisterServer(ctx, nopHandler{})
	_ = br.Connect(ctx, broker.Client{ID: "c", Server: s, Session: "x"})
	_ = br.Disconnect(ctx, "c", s)
	data := []byte("hello, rocket")
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Send(ctx, "c", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublish2Servers(b *testing.B) {
	br := memory.New(memory.Config{})
	defer br.Close()
	ctx := context.Background()
	for range 2 {
		s, _ := br.RegisterServer(ctx, nopHandler{})
		_ = br.Subscribe(ctx, s, "room")
	}
	data := []byte("hello, rocket")
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Publish(ctx, "", "room", data); err != nil {
			b.Fatal(err)
		}
	}
}
