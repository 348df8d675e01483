package brokertest

import (
	"sync"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Recorder is a broker.Handler that records, in arrival order, copies of the
// messages delivered to it, per client and per room, the kicks it gets
// (it is a broker.Kicker) and the Replaced calls (a broker.Replacer), and
// lets tests wait for them. The zero value is
// ready to use; a Recorder must not be copied after first use.
type Recorder struct {
	mu       sync.Mutex
	direct   map[string][][]byte
	seqs     map[string][]uint64
	rooms    map[string][][]byte
	kicks    map[string][]Kick
	replaced map[string][]int // per client, messages recorded before each Replaced
	returned map[string]int   // per client, Returned calls
	reclaims int
	total    int
	changed  chan struct{} // closed and replaced on every delivery
}

var (
	_ broker.Handler   = (*Recorder)(nil)
	_ broker.Kicker    = (*Recorder)(nil)
	_ broker.Reclaimer = (*Recorder)(nil)
	_ broker.Replacer  = (*Recorder)(nil)
	_ broker.Returner  = (*Recorder)(nil)
)

// Reclaimed counts the call (see Reclaims).
func (r *Recorder) Reclaimed() {
	r.mu.Lock()
	r.reclaims++
	r.recordedLocked()
	r.mu.Unlock()
}

// Reclaims returns how many times Reclaimed was called.
func (r *Recorder) Reclaims() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reclaims
}

// Deliver records a copy of data, and seq, for clientID.
func (r *Recorder) Deliver(clientID string, seq uint64, data []byte) {
	msg := clone(data)
	r.mu.Lock()
	if r.direct == nil {
		r.direct = make(map[string][][]byte)
		r.seqs = make(map[string][]uint64)
	}
	r.direct[clientID] = append(r.direct[clientID], msg)
	r.seqs[clientID] = append(r.seqs[clientID], seq)
	r.recordedLocked()
	r.mu.Unlock()
}

// DeliverRoom records a copy of data for room.
func (r *Recorder) DeliverRoom(room string, data []byte) {
	msg := clone(data)
	r.mu.Lock()
	if r.rooms == nil {
		r.rooms = make(map[string][][]byte)
	}
	r.rooms[room] = append(r.rooms[room], msg)
	r.recordedLocked()
	r.mu.Unlock()
}

// recordedLocked counts a delivery and wakes the waiters. r.mu must be held.
func (r *Recorder) recordedLocked() {
	r.total++
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Direct returns the messages recorded so far for clientID, oldest first.
func (r *Recorder) Direct(clientID string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.direct[clientID]...)
}

// Seqs returns the numbers that came with the messages recorded so far for
// clientID (see Direct), oldest first.
func (r *Recorder) Seqs(clientID string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs[clientID]...)
}

// Room returns the messages recorded so far for room, oldest first.
func (r *Recorder) Room(room string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.rooms[room]...)
}

// Total returns the number of deliveries recorded so far, to clients and
// rooms, and of kicks, Reclaimed and Replaced calls.
func (r *Recorder) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Wait waits until cond, called with no lock held, returns true, rechecking
// it after every delivery. It reports false if timeout passed first.
func (r *Recorder) Wait(timeout time.Duration, cond func() bool) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		// Take the wake-up channel before checking, so that no delivery
		// between the check and the select is missed.
		r.mu.Lock()
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return cond()
		}
	}
}

// WaitDirect waits until at least n messages have been recorded for
// clientID and returns all of them, oldest first. If timeout passes first it
// fails the test with t.Fatalf, so it must be called from the test's
// goroutine.
func (r *Recorder) WaitDirect(t testing.TB, clientID string, n int, timeout time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	if !r.Wait(timeout, func() bool { got = r.Direct(clientID); return len(got) >= n }) {
		t.Fatalf("client %q: got %d messages after %v, want %d", clientID, len(got), timeout, n)
	}
	return got
}

// WaitRoom waits until at least n messages have been recorded for room and
// returns all of them, oldest first. If timeout passes first it fails the
// test with t.Fatalf, so it must be called from the test's goroutine.
func (r *Recorder) WaitRoom(t testing.TB, room string, n int, timeout time.Duration) [][]byte {
	t.Helper()
	var got [][]byte
	if !r.Wait(timeout, func() bool { got = r.Room(room); return len(got) >= n }) {
		t.Fatalf("room %q: got %d messages after %v, want %d", room, len(got), timeout, n)
	}
	return got
}

// ExpectQuiet fails the test if any delivery is recorded within d, and
// returns at the first such delivery or after d. It must be called from the
// test's goroutine.
func (r *Recorder) ExpectQuiet(t testing.TB, d time.Duration) {
	t.Helper()
	before := r.Total()
	if r.Wait(d, func() bool { return r.Total() != before }) {
		r.mu.Lock()
		direct, rooms := len(r.direct), len(r.rooms)
		r.mu.Unlock()
		t.Fatalf("unexpected delivery (now %d deliveries to %d clients and %d rooms, %d before)",
			r.Total(), direct, rooms, before)
	}
}

func clone(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}
