package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/internal/redistest"
)

// TestClusterNodeKilledUnderTraffic: senders on node a whisper without
// pause to receivers on node b, which acknowledge their messages
// (?acks=1), and node b dies (kill -9) in the middle of it. One receiver
// resumes on node a at once, before the cluster has noticed the death;
// the senders go on through the death and the cleanup; then the other
// receivers resume on node a too, each giving the number of the last
// message it received. Every whisper the server accepted (an ok reply)
// reaches its receiver: those the dead node had taken from its inbox or
// written toward the socket come again from the mailbox. Receivers drop
// the numbers they have had (the messages received but not yet
// acknowledged when the node died); after that, each whisper arrives
// once, numbers have no gap, and the whispers of one sender arrive in the
// order sent.
func TestClusterNodeKilledUnderTraffic(t *testing.T) {
	rs := redistest.Start(t)
	// Mailboxes big enough for everything sent while the receivers are
	// away or not acknowledging: none of it is dropped for space.
	env := []string{"ROCKET_REDIS_URL=" + rs.URL, "ROCKET_HEARTBEAT_INTERVAL=100ms", "ROCKET_COMMAND_RATE=-1", "ROCKET_MAILBOX_SIZE=100000"}
	a := startProc(t, env...)
	b := startProc(t, env...)

	const nReceivers, nSenders = 3, 4
	var receivers []*receiver
	for range nReceivers {
		c := dialClient(t, "ws://"+b.ws+"/?acks=1")
		r := &receiver{id: c.id, session: c.session}
		r.listen(t, c.c)
		receivers = append(receivers, r)
	}
	var senders []*wsClient
	for range nSenders {
		senders = append(senders, dialClient(t, "ws://"+a.ws+"/"))
	}

	var killed atomic.Bool // set once node b has exited
	var stop atomic.Bool
	var mu sync.Mutex
	accepted := map[string]*receiver{} // text -> its receiver
	beforeKill := map[string]bool{}    // texts accepted before node b died
	var afterKill atomic.Int64
	var wg sync.WaitGroup
	for s, sender := range senders {
		wg.Go(func() {
			for seq := 0; !stop.Load(); seq++ {
				to := receivers[seq%nReceivers]
				text := fmt.Sprintf("%d %d", s, seq)
				after := killed.Load()
				if err := sender.tryWhisper(to.id, text); err != nil {
					t.Errorf("sender %d: whisper %d: %v", s, seq, err)
					return
				}
				if after {
					afterKill.Add(1)
				}
				mu.Lock()
				accepted[text] = to
				if !after {
					beforeKill[text] = true
				}
				mu.Unlock()
			}
		})
	}
	stopSenders := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopSenders()

	// Traffic flows to every receiver; then node b dies under it.
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range receivers {
		pollUntil(t, deadline, func() bool { return r.count() >= 20 },
			func() string { return fmt.Sprintf("receiver %s got %d whispers before the kill", r.id, r.count()) })
	}
	b.kill9(t)
	killed.Store(true)
	for _, r := range receivers {
		<-r.done // the connection ends with the process
	}
	before := make([]int, nReceivers)
	for i, r := range receivers {
		before[i] = r.count()
	}
	early, late := receivers[0], receivers[1:]
	early.resume(t, a.ws)

	// The cleanup marks the other receivers away; the senders keep going.
	obs, err := redis.New(context.Background(), redis.Config{URL: rs.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	for _, r := range late {
		waitAway(t, obs, r.id, deadline)
	}
	mu.Lock()
	n := len(accepted)
	mu.Unlock()
	more := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) - n
	}
	pollUntil(t, deadline, func() bool { return more() >= 100 },
		func() string { return fmt.Sprintf("only %d whispers accepted after the cleanup", more()) })
	stopSenders()

	for _, r := range late {
		r.resume(t, a.ws)
	}
	want := map[*receiver]int{}
	for _, r := range accepted {
		want[r]++
	}
	deadline = time.Now().Add(10 * time.Second)
	for i, r := range receivers {
		pollUntil(t, deadline, func() bool { return r.count() >= want[r] },
			func() string { return fmt.Sprintf("receiver %s got %d of its %d whispers", r.id, r.count(), want[r]) })
		r.mu.Lock()
		again := 0 // accepted before the kill, received only after resuming
		for _, text := range r.texts[before[i]:] {
			if beforeKill[text] {
				again++
			}
		}
		t.Logf("receiver %s: %d whispers before the kill, %d in all; %d accepted before the kill came after resuming; %d numbers received twice and dropped",
			r.id, before[i], len(r.texts), again, r.dups)
		for _, g := range r.gaps {
			t.Errorf("receiver %s: %s", r.id, g)
		}
		checkOrder(t, r.id, r.texts)
		received := map[string]int{}
		for _, text := range r.texts {
			received[text]++
		}
		r.mu.Unlock()
		for text, k := range received {
			if k != 1 {
				t.Errorf("receiver %s: whisper %q delivered %d times under different numbers", r.id, text, k)
			}
			if accepted[text] != r {
				t.Errorf("receiver %s: whisper %q delivered but never accepted for it", r.id, text)
			}
		}
		for text, to := range accepted {
			if to == r && received[text] == 0 {
				t.Errorf("receiver %s: whisper %q accepted but never delivered", r.id, text)
			}
		}
	}
	t.Logf("%d whispers accepted, %d of them after the kill; every one delivered", len(accepted), afterKill.Load())
}

// receiver is a client that acknowledges its messages, across its
// connections: a goroutine reads each connection's frames and records the
// whispers until the connection ends.
type receiver struct {
	id, session string
	done        chan struct{} // closed when the current connection's reader returns

	mu    sync.Mutex
	seq   uint64   // number of the last message received
	texts []string // whispers received, without the numbers received twice
	dups  int      // messages dropped for a number received already
	gaps  []string // numbers that skipped some
}

// ackEvery is how many messages a receiver gets between two acks: the
// last few before the kill stay unacknowledged, as with a real client.
const ackEvery = 10

// listen starts reading c.
func (r *receiver) listen(t *testing.T, c *websocket.Conn) {
	r.done = make(chan struct{})
	done := r.done
	go func() {
		defer close(done)
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var f struct {
				Seq     uint64
				Message *struct {
					Whisper *struct{ Text string } `json:"Chat.whisper"`
				}
			}
			if json.Unmarshal(data, &f) != nil || f.Message == nil || f.Message.Whisper == nil {
				continue
			}
			r.mu.Lock()
			switch {
			case f.Seq <= r.seq:
				r.dups++
			default:
				if f.Seq != r.seq+1 {
					r.gaps = append(r.gaps, fmt.Sprintf("message %d after %d", f.Seq, r.seq))
				}
				r.seq = f.Seq
				r.texts = append(r.texts, f.Message.Whisper.Text)
			}
			seq := r.seq
			r.mu.Unlock()
			if seq%ackEvery == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"ack":%d}`, seq)))
				cancel()
			}
		}
	}()
	t.Cleanup(func() { c.CloseNow(); <-done })
}

// resume connects to the node at wsAddr with the receiver's session and
// last number, and listens.
func (r *receiver) resume(t *testing.T, wsAddr string) {
	t.Helper()
	r.mu.Lock()
	seq := r.seq
	r.mu.Unlock()
	c := dialClient(t, fmt.Sprintf("ws://%s/?acks=1&ack=%d&session=%s", wsAddr, seq, r.session))
	if c.id != r.id || !c.resumed {
		t.Fatalf("resumed as %s (resumed %v), want %s", c.id, c.resumed, r.id)
	}
	r.listen(t, c.c)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.texts)
}

// checkOrder checks that the whispers of each sender ("<sender> <seq>")
// arrived in the order sent.
func checkOrder(t *testing.T, receiver string, texts []string) {
	t.Helper()
	last := map[int]int{}
	for _, text := range texts {
		var s, seq int
		if _, err := fmt.Sscanf(text, "%d %d", &s, &seq); err != nil {
			t.Errorf("receiver %s: whisper %q: %v", receiver, text, err)
			continue
		}
		if l, ok := last[s]; ok && seq <= l {
			t.Errorf("receiver %s: whisper %q after %d %d", receiver, text, s, l)
		}
		last[s] = seq
	}
}

// tryWhisper whispers text to the client to and waits for the reply; it
// returns an error for an error reply or a broken connection. It may run
// on any goroutine.
func (w *wsClient) tryWhisper(to, text string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	frame := fmt.Sprintf(`{"ref":%q,"Chat.whisper":{"to":%q,"text":%q}}`, text, to, text)
	if err := w.c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		return err
	}
	_, data, err := w.c.Read(ctx)
	if err != nil {
		return err
	}
	var reply struct {
		Ref   string
		Error *struct{ Code, Message string }
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return err
	}
	if reply.Ref != text {
		return fmt.Errorf("got %s, want the reply", data)
	}
	if reply.Error != nil {
		return errors.New(reply.Error.Code + ": " + reply.Error.Message)
	}
	return nil
}

// waitAway waits until obs sees the client id marked away (no server), as
// the cleanup of its dead node does.
func waitAway(t *testing.T, obs *redis.Broker, id string, deadline time.Time) {
	t.Helper()
	var c broker.Client
	var err error
	pollUntil(t, deadline, func() bool {
		c, err = obs.Lookup(context.Background(), id)
		return err == nil && c.Server == ""
	}, func() string {
		return fmt.Sprintf("client %s not marked away after its node died: %+v, %v", id, c, err)
	})
}

// pollUntil polls cond (what happens in the background has no
// notification) until it holds, failing the test with what() at deadline
// or once the test has failed elsewhere.
func pollUntil(t *testing.T, deadline time.Time, cond func() bool, what func() string) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) || t.Failed() {
			t.Fatal(what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
