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
// pause to receivers on node b, and node b dies (kill -9) in the middle of
// it. The senders go on through the death and the cleanup; then the
// receivers resume on node a. For each whisper the server accepted (an ok
// reply):
//
//   - none is delivered twice, and those from one sender to one receiver
//     arrive in the order sent;
//   - every whisper sent after node b was dead is delivered (from the
//     dead node's inbox or the mailbox, by the cleanup);
//   - whispers accepted before the kill may be lost only if node b had
//     taken them from its inbox and not got them to the receiver when it
//     died (at most once for a node's in-flight output, see docs/design.md).
func TestClusterNodeKilledUnderTraffic(t *testing.T) {
	rs := redistest.Start(t)
	// Mailboxes big enough for everything sent while the receivers are
	// away: none of it is dropped for space.
	env := []string{"ROCKET_REDIS_URL=" + rs.URL, "ROCKET_HEARTBEAT_INTERVAL=100ms", "ROCKET_COMMAND_RATE=-1", "ROCKET_MAILBOX_SIZE=100000"}
	a := startProc(t, env...)
	b := startProc(t, env...)

	const nReceivers, nSenders = 3, 4
	var receivers []*tapped
	for range nReceivers {
		receivers = append(receivers, tap(t, dialClient(t, "ws://"+b.ws+"/")))
	}
	var senders []*wsClient
	for range nSenders {
		senders = append(senders, dialClient(t, "ws://"+a.ws+"/"))
	}

	var killed atomic.Bool // set once node b has exited
	var stop atomic.Bool
	var mu sync.Mutex
	accepted := map[string]bool{} // text -> sent after node b was dead
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
				mu.Lock()
				accepted[text] = after
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

	// The cleanup marks the receivers away; the senders keep going.
	obs, err := redis.New(context.Background(), redis.Config{URL: rs.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	for _, r := range receivers {
		var c broker.Client
		var err error
		pollUntil(t, deadline, func() bool {
			c, err = obs.Lookup(context.Background(), r.id)
			return err == nil && c.Server == ""
		}, func() string {
			return fmt.Sprintf("receiver %s not marked away after node b died: %+v, %v", r.id, c, err)
		})
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

	// The receivers resume on node a and get their mail, then the ones
	// sent live; an echo marks the end (nothing after it is a duplicate
	// in flight).
	received := map[string]int{}
	for _, r := range receivers {
		r2 := dialClient(t, "ws://"+a.ws+"/?session="+r.session)
		if r2.id != r.id || !r2.resumed {
			t.Fatalf("resumed as %s (resumed %v), want %s", r2.id, r2.resumed, r.id)
		}
		write(t, r2.c, `{"ref":"end","Echo.echo":1}`)
		var after []string
		for {
			var f struct {
				Ref     string
				Whisper *struct{ Text string } `json:"Chat.whisper"`
			}
			readJSON(t, r2.c, &f)
			if f.Ref == "end" {
				break
			}
			if f.Whisper == nil {
				t.Fatalf("receiver %s: unexpected frame %+v", r.id, f)
			}
			after = append(after, f.Whisper.Text)
		}
		all := append(r.texts(), after...)
		checkOrder(t, r.id, all)
		for _, text := range all {
			received[text]++
		}
		t.Logf("receiver %s: %d whispers before the kill, %d after resuming", r.id, r.count(), len(after))
	}
	for text, n := range received {
		if n != 1 {
			t.Errorf("whisper %q delivered %d times", text, n)
		}
		if _, ok := accepted[text]; !ok {
			t.Errorf("whisper %q delivered but never accepted", text)
		}
	}
	lost, afterKill := 0, 0
	for text, after := range accepted {
		if after {
			afterKill++
		}
		if received[text] > 0 {
			continue
		}
		if after {
			t.Errorf("whisper %q, accepted after node b was dead, never delivered", text)
		} else {
			lost++
		}
	}
	t.Logf("%d whispers accepted, %d of them after the kill; %d accepted before the kill lost in node b's in-flight output", len(accepted), afterKill, lost)
	if lost > 100 {
		t.Errorf("%d whispers lost: more than a node's in-flight output", lost)
	}
}

// tapped is a client whose frames a goroutine reads and records, until
// its connection ends.
type tapped struct {
	*wsClient
	done chan struct{}

	mu       sync.Mutex
	whispers []string
}

func tap(t *testing.T, c *wsClient) *tapped {
	r := &tapped{wsClient: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			_, data, err := c.c.Read(context.Background())
			if err != nil {
				return
			}
			var f struct {
				Whisper *struct{ Text string } `json:"Chat.whisper"`
			}
			if json.Unmarshal(data, &f) == nil && f.Whisper != nil {
				r.mu.Lock()
				r.whispers = append(r.whispers, f.Whisper.Text)
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { c.c.CloseNow(); <-r.done })
	return r
}

func (r *tapped) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.whispers)
}

func (r *tapped) texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.whispers...)
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
