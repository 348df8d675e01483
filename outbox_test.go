package rocket

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/transport"
)

// fakeConn is a transport connection that records what the outbox writes.
// Its peer reads nothing until take is called: what is written stays
// buffered, and a write that would take the buffered bytes over max fails
// with transport.ErrSlow (max 0: no bound).
type fakeConn struct {
	mu        sync.Mutex
	frames    []string
	buffered  int
	max       int
	closed    bool
	code      int
	reason    string
	abortErr  error
	pings     int
	closeHook func() // called by Close and Abort, without mu
	// closeAfter, when set, closes the connection (as its peer would)
	// once that many frames are written.
	closeAfter int
}

func (c *fakeConn) WriteText(data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return transport.ErrClosed
	}
	if c.max > 0 && c.buffered+len(data) > c.max {
		return transport.ErrSlow
	}
	c.frames = append(c.frames, string(data))
	c.buffered += len(data)
	if c.closeAfter > 0 && len(c.frames) == c.closeAfter {
		c.closed = true
	}
	return nil
}

func (c *fakeConn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buffered
}

func (c *fakeConn) Ping() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return transport.ErrClosed
	}
	c.pings++
	return nil
}

func (c *fakeConn) Close(code int, reason string) {
	c.mu.Lock()
	if !c.closed {
		c.closed, c.code, c.reason = true, code, reason
	}
	hook := c.closeHook
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (c *fakeConn) Abort(err error) {
	c.mu.Lock()
	c.closed = true
	if c.abortErr == nil {
		c.abortErr = err
	}
	hook := c.closeHook
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// take makes the peer read everything buffered.
func (c *fakeConn) take() {
	c.mu.Lock()
	c.buffered = 0
	c.mu.Unlock()
}

func (c *fakeConn) written() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

// testOutbox is an outbox on a fakeConn, with its own counters.
type testOutbox struct {
	*outbox
	c     *fakeConn
	slows int
}

func newTestOutbox(maxPending, maxBuffered int) *testOutbox {
	c := &fakeConn{max: maxBuffered}
	t := &testOutbox{c: c}
	t.outbox = &outbox{
		conn: c,
		count: outboxCounters{
			sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sent"}),
			slow:    prometheus.NewCounter(prometheus.CounterOpts{Name: "slow"}),
			dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"}),
		},
		maxPending: maxPending,
		stall:      time.Minute,
		onSlow:     func(string) { t.slows++ },
	}
	return t
}

// check fails t unless the outbox is in state want and has counted sent,
// slow and dropped frames.
func (o *testOutbox) check(t *testing.T, want connState, sent, slow, dropped int) {
	t.Helper()
	if got := o.state(); got != want {
		t.Errorf("state %v, want %v", got, want)
	}
	for _, c := range []struct {
		name string
		got  float64
		want int
	}{
		{"sent", counted(o.count.sent), sent},
		{"slow", counted(o.count.slow), slow},
		{"dropped", counted(o.count.dropped), dropped},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s counted %v, want %d", c.name, c.got, c.want)
		}
	}
	if o.slows != slow {
		t.Errorf("slow client logged %d times, want %d", o.slows, slow)
	}
}

// counted returns a counter's value.
func counted(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func mailOf(data ...string) []broker.Mail {
	var m []broker.Mail
	for _, d := range data {
		m = append(m, broker.Mail{Data: []byte(d)})
	}
	return m
}

func leftoverFrames(q []queued) []string {
	var out []string
	for _, l := range q {
		out = append(out, l.id+":"+string(l.frame))
	}
	return out
}

func expectFrames(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s %q, want %q", what, got, want)
	}
}

// TestOutboxSetupToReady: what is written during setup is queued, and the
// hand-over writes the welcome, the mail, then the queue, in that order;
// once ready, writes go straight through; finished, deliveries are kept
// aside until drained, then refused.
func TestOutboxSetupToReady(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.check(t, connSetup, 0, 0, 0)
	if err := o.send([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if !o.deliver("c1", []byte("direct")) {
		t.Fatal("deliver during setup refused")
	}
	expectFrames(t, "written during setup", o.c.written())
	if misrouted := o.handOver("c1", []byte("welcome"), mailOf("m1", "m2")); misrouted != nil {
		t.Fatalf("misrouted %v", misrouted)
	}
	o.check(t, connReady, 5, 0, 0)
	if err := o.send([]byte("push")); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, "written", o.c.written(), "welcome", "m1", "m2", "reply", "direct", "push")
	o.ping()
	if o.c.pings != 1 {
		t.Errorf("%d pings written, want 1", o.c.pings)
	}

	o.close(transport.CloseNormal, "bye")
	o.check(t, connClosing, 6, 0, 0)
	if err := o.send([]byte("late")); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("send while closing: %v, want ErrUnknownClient", err)
	}
	if !o.deliver("c1", []byte("kept")) {
		t.Error("deliver while closing refused")
	}
	reason, left := o.finish("closed by client")
	if reason != "bye" {
		t.Errorf("reason %q, want the first one, bye", reason)
	}
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:kept")
	o.check(t, connFinished, 6, 0, 0)
	// Until drained, what arrives is kept aside (the leftovers are on
	// their way back to the broker); after, it is refused.
	if !o.deliver("c1", []byte("late")) {
		t.Error("deliver after finish, before drain, refused")
	}
	expectFrames(t, "drained", leftoverFrames(o.drain()), "c1:late")
	if o.deliver("c1", []byte("after")) {
		t.Error("deliver after drain accepted: the caller would not send it on")
	}
	o.ping()
	if o.c.pings != 1 {
		t.Error("ping written to a finished connection")
	}
}

// TestOutboxCloseDuringSetup: a connection closed while its client is set
// up (its peer left, or a newer connection resumed the session) writes
// nothing; the mail it took and the directed messages queued are kept, the
// mail first, and the rest is dropped uncounted (no bound was hit).
func TestOutboxCloseDuringSetup(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	_ = o.send([]byte("reply"))
	o.deliver("c1", []byte("d1"))
	o.deliverNumbered("c1", 7, []byte("n7"))
	o.close(transport.ClosePolicy, "replaced by a newer connection")
	o.deliver("c1", []byte("d2"))
	o.handOver("c1", []byte("welcome"), mailOf("m1", "m2"))
	expectFrames(t, "written", o.c.written())
	_, left := o.finish("x")
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:m1", "c1:m2", "c1:d1", "c1:d2")
	o.check(t, connFinished, 0, 0, 0)
	if o.c.code != transport.ClosePolicy {
		t.Errorf("close code %d", o.c.code)
	}
}

// TestOutboxClosedByTransportDuringSetup: the transport's close (the peer
// went away) during setup makes the hand-over write nothing.
func TestOutboxClosedByTransportDuringSetup(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.closed("closed by client", false)
	o.handOver("c1", []byte("welcome"), mailOf("m1"))
	expectFrames(t, "written", o.c.written())
	reason, left := o.finish("closed by client")
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:m1")
	if reason != "closed by client" {
		t.Errorf("reason %q", reason)
	}
	o.check(t, connFinished, 0, 0, 0)
}

// TestOutboxResumeRacingClose: a hand-over waiting for the client to read
// its mail stops when the connection is closed (a newer connection resumed
// the session): what it wrote is counted sent, what it had not written is
// kept in order, ahead of what was queued and what arrived since.
func TestOutboxResumeRacingClose(t *testing.T) {
	o := newTestOutbox(10, 0)
	mail := mailOf("m1-xxxx", "m2-xxxx", "m3-xxxx")
	done := make(chan []queued)
	go func() { done <- o.handOver("c1", []byte("w"), mail) }()
	// The welcome and the first message fit in the bound; the second
	// waits for the peer to read.
	waitFor(t, func() bool { return len(o.c.written()) == 2 })
	if s := o.state(); s != connHandover {
		t.Fatalf("state %v during the hand-over", s)
	}
	_ = o.send([]byte("reply"))   // queued behind the mail
	o.deliver("c1", []byte("d1")) // likewise
	o.close(transport.ClosePolicy, "replaced by a newer connection")
	o.deliver("c1", []byte("d2"))
	<-done
	expectFrames(t, "written", o.c.written(), "w", "m1-xxxx")
	_, left := o.finish("x")
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:m2-xxxx", "c1:m3-xxxx", "c1:d1", "c1:d2")
	o.check(t, connFinished, 2, 0, 0)
}

// TestOutboxHandOverAsRead: mail far over the pending bound is handed over
// as the peer reads it, never more than the bound buffered, all of it in
// order, and what was queued meanwhile after it.
func TestOutboxHandOverAsRead(t *testing.T) {
	const bound = 64
	o := newTestOutbox(bound, bound)
	var mail []broker.Mail
	var want []string
	want = append(want, "welcome")
	for i := range 40 {
		d := fmt.Sprintf("message-%02d", i)
		mail = append(mail, broker.Mail{Data: []byte(d)})
		want = append(want, d)
	}
	stop := make(chan struct{})
	var peer sync.WaitGroup
	peer.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				o.c.take()
			}
		}
	})
	_ = o.send([]byte("reply"))
	o.handOver("c1", []byte("welcome"), mail)
	close(stop)
	peer.Wait()
	want = append(want, "reply")
	expectFrames(t, "written", o.c.written(), want...)
	o.check(t, connReady, len(want), 0, 0)
}

// TestOutboxSlowDuringHandOver: a client that reads nothing of its mail
// for the stall time is disconnected as slow, counted once (the transport's
// close that follows does not count it again); the mail not handed to the
// transport is kept, and the reply queued behind it is dropped and counted.
func TestOutboxSlowDuringHandOver(t *testing.T) {
	o := newTestOutbox(10, 0)
	o.stall = 20 * time.Millisecond
	o.c.closeHook = func() { o.closed("connection lost", true) }
	done := make(chan struct{})
	go func() {
		o.handOver("c1", []byte("w"), mailOf("m1-xxxx", "m2-xxxx"))
		close(done)
	}()
	waitFor(t, func() bool { return len(o.c.written()) == 2 })
	_ = o.send([]byte("reply"))
	<-done
	if o.c.abortErr == nil {
		t.Error("slow client not aborted")
	}
	reason, left := o.finish("x")
	if reason != slowReason {
		t.Errorf("reason %q", reason)
	}
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:m2-xxxx")
	o.check(t, connFinished, 2, 1, 1)
}

// TestOutboxSlowDuringSetup: output queued during setup over the pending
// bound disconnects the client as slow, once; directed messages are kept,
// replies dropped and counted.
func TestOutboxSlowDuringSetup(t *testing.T) {
	o := newTestOutbox(10, 0)
	o.c.closeHook = func() { o.closed("connection lost", true) }
	_ = o.send([]byte("r1"))
	o.deliver("c1", []byte("d1"))
	o.deliverNumbered("c1", 1, []byte("n1"))
	if err := o.send([]byte("r2-xxxx")); !errors.Is(err, ErrSlowClient) {
		t.Fatalf("send over the bound: %v, want ErrSlowClient", err)
	}
	o.check(t, connClosing, 0, 1, 2)
	o.handOver("c1", []byte("welcome"), nil)
	expectFrames(t, "written", o.c.written())
	_, left := o.finish("x")
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:d1")
	o.check(t, connFinished, 0, 1, 2)
}

// TestOutboxSlowWhenReady: a write the transport refuses as slow
// disconnects the client, counted once whatever follows (the transport
// reporting the same close as slow, a ping); the frame is dropped and
// counted, or kept if directed.
func TestOutboxSlowWhenReady(t *testing.T) {
	for _, directed := range []bool{false, true} {
		t.Run(fmt.Sprintf("directed=%v", directed), func(t *testing.T) {
			o := newTestOutbox(1<<20, 8)
			o.c.closeHook = func() { o.closed("connection lost", true) }
			o.handOver("c1", []byte("w"), nil)
			var err error
			if directed {
				if !o.deliver("c1", []byte("too-large")) {
					t.Fatal("deliver refused")
				}
			} else {
				err = o.send([]byte("too-large"))
			}
			if !directed && !errors.Is(err, ErrSlowClient) {
				t.Fatalf("send: %v, want ErrSlowClient", err)
			}
			o.closed("slow client", true)
			o.ping()
			dropped := 1
			if directed {
				dropped = 0
			}
			o.check(t, connClosing, 1, 1, dropped)
			_, left := o.finish("x")
			if directed {
				expectFrames(t, "leftovers", leftoverFrames(left), "c1:too-large")
			} else {
				expectFrames(t, "leftovers", leftoverFrames(left))
			}
		})
	}
}

// TestOutboxNumbered: for a client that acknowledges, the mail is numbered,
// a numbered message queued meanwhile that the mail held is dropped, none
// is written twice, and one arriving while closing is neither written nor
// kept (the broker keeps it until acknowledged).
func TestOutboxNumbered(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.setAcks(true, 0)
	o.deliverNumbered("c1", 2, []byte(`{"seq":2,"message":"b"}`))
	o.deliverNumbered("c1", 3, []byte(`{"seq":3,"message":"c"}`))
	o.handOver("c1", []byte("w"), []broker.Mail{{Seq: 1, Data: []byte(`"a"`)}, {Seq: 2, Data: []byte(`"b"`)}})
	o.deliverNumbered("c1", 3, []byte(`{"seq":3,"message":"c"}`))
	o.deliverNumbered("c1", 4, []byte(`{"seq":4,"message":"d"}`))
	expectFrames(t, "written", o.c.written(), "w",
		`{"seq":1,"message":"a"}`, `{"seq":2,"message":"b"}`, `{"seq":3,"message":"c"}`, `{"seq":4,"message":"d"}`)
	if fresh, past, _ := o.acknowledge(5); fresh || !past {
		t.Errorf("ack 5 of 4: fresh %v past %v", fresh, past)
	}
	if fresh, past, _ := o.acknowledge(3); !fresh || past {
		t.Errorf("ack 3: fresh %v past %v", fresh, past)
	}
	if fresh, _, _ := o.acknowledge(2); fresh {
		t.Error("ack 2 after 3 counted as fresh")
	}
	o.close(transport.CloseNormal, "bye")
	o.deliverNumbered("c1", 5, []byte(`{"seq":5,"message":"e"}`))
	_, left := o.finish("x")
	if len(left) != 0 {
		t.Errorf("numbered message kept as leftover: %q", leftoverFrames(left))
	}
	o.check(t, connFinished, 5, 0, 0)
}

// TestOutboxMisrouted: directed messages queued for the id of a resume
// that failed are returned by the hand-over (not numbered) or dropped
// (numbered: the broker keeps them), never written to the new client.
func TestOutboxMisrouted(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.deliver("old", []byte("for-old"))
	o.deliverNumbered("old", 1, []byte("numbered-for-old"))
	o.deliver("new", []byte("for-new"))
	misrouted := o.handOver("new", []byte("w"), nil)
	expectFrames(t, "misrouted", leftoverFrames(misrouted), "old:for-old")
	expectFrames(t, "written", o.c.written(), "w", "for-new")
}

// TestOutboxKickDuringSetup: a client kicked while it is set up (its user
// was disconnected) writes nothing and keeps nothing.
func TestOutboxKickDuringSetup(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.deliver("c1", []byte("d1"))
	o.kick(CloseUserDisconnected, "signed out")
	o.handOver("c1", []byte("w"), mailOf("m1"))
	o.deliver("c1", []byte("d2"))
	expectFrames(t, "written", o.c.written())
	reason, left := o.finish("x")
	if reason != "signed out" || len(left) != 0 {
		t.Errorf("reason %q, leftovers %q", reason, leftoverFrames(left))
	}
	if o.c.code != CloseUserDisconnected {
		t.Errorf("close code %d", o.c.code)
	}
	o.check(t, connFinished, 0, 0, 0)
}

// TestOutboxPeerClosedWhenReady: a write that finds the connection closed
// keeps a directed message and reports ErrUnknownClient for the rest.
func TestOutboxPeerClosedWhenReady(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.handOver("c1", []byte("w"), nil)
	o.c.Close(transport.CloseNormal, "")
	if err := o.send([]byte("r")); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("send: %v", err)
	}
	if !o.deliver("c1", []byte("d")) {
		t.Error("deliver refused")
	}
	o.closed("closed by client", false)
	reason, left := o.finish("closed by client")
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:d")
	if reason != "closed by client" {
		t.Errorf("reason %q", reason)
	}
	o.check(t, connFinished, 1, 0, 0)
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOutboxBacklog: directed messages the transport has no room for while
// the client is ready (a burst, e.g. what a connection replaced on another
// node sends on) are handed over as the client reads them, in order, with
// what follows them queued behind; a client that reads none of them for
// the stall time is disconnected as slow, once, with the ones not written
// kept, in order.
func TestOutboxBacklog(t *testing.T) {
	t.Run("read", func(t *testing.T) {
		o := newTestOutbox(32, 32)
		o.maxMail = 1 << 20
		o.handOver("c1", []byte("w"), nil)
		var want []string
		for i := range 20 {
			d := fmt.Sprintf("direct-%02d", i)
			want = append(want, d)
			if !o.deliver("c1", []byte(d)) {
				t.Fatal("deliver refused")
			}
		}
		_ = o.send([]byte("reply"))
		want = append(want, "reply")
		if s := o.state(); s != connHandover {
			t.Fatalf("state %v with a backlog, want handover", s)
		}
		for o.state() != connReady {
			o.c.take()
			time.Sleep(time.Millisecond)
		}
		expectFrames(t, "written", o.c.written()[1:], want...)
		o.check(t, connReady, 1+len(want), 0, 0)
	})
	t.Run("not read", func(t *testing.T) {
		o := newTestOutbox(32, 32)
		o.maxMail = 1 << 20
		o.stall = 20 * time.Millisecond
		o.c.closeHook = func() { o.closed("connection lost", true) }
		o.handOver("c1", []byte("w"), nil)
		for i := range 10 {
			o.deliver("c1", []byte(fmt.Sprintf("direct-%02d", i)))
		}
		waitFor(t, func() bool { return o.state() == connClosing })
		_, left := o.finish("x")
		written := len(o.c.written()) - 1
		var want []string
		for i := written; i < 10; i++ {
			want = append(want, fmt.Sprintf("c1:direct-%02d", i))
		}
		expectFrames(t, "leftovers", leftoverFrames(left), want...)
		o.check(t, connFinished, 1+written, 1, 0)
	})
}

// TestOutboxPeerClosedDuringHandOver: the transport refuses a write of the
// hand-over (the peer closed meanwhile): the mail not written is kept, in
// order, ahead of what was queued behind it, and nothing is counted slow or
// dropped.
func TestOutboxPeerClosedDuringHandOver(t *testing.T) {
	o := newTestOutbox(1<<20, 0)
	o.c.closeAfter = 3 // the welcome and two messages, then closed
	_ = o.send([]byte("reply"))
	o.deliver("c1", []byte("d1"))
	o.handOver("c1", []byte("w"), mailOf("m1", "m2", "m3", "m4"))
	expectFrames(t, "written", o.c.written(), "w", "m1", "m2")
	_, left := o.finish("closed by client")
	expectFrames(t, "leftovers", leftoverFrames(left), "c1:m3", "c1:m4", "c1:d1")
	o.check(t, connFinished, 3, 0, 0)
}
