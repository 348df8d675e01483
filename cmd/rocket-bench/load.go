package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Helpers shared by the scenarios: the clock, opening many connections,
// pacing, progress lines, and the sets that detect lost and duplicated
// messages.

// epoch is the origin of the tool's clock.
var epoch = time.Now()

// now returns nanoseconds since epoch on the monotonic clock; the tool puts
// it in the messages it sends, so that latency is measured by one clock.
func now() int64 { return int64(time.Since(epoch)) }

// sleepUntil sleeps until the clock reads t, or ctx ends; it reports
// whether ctx is still alive.
func sleepUntil(ctx context.Context, t int64) bool {
	d := time.Duration(t - now())
	if d <= 0 {
		return ctx.Err() == nil
	}
	if d < 50*time.Millisecond {
		time.Sleep(d) // no timer to allocate: pacers sleep this way often
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Read buffers: idle connections get a small one.
const (
	idleReadBuf   = 512
	activeReadBuf = 4096
)

// opener opens many connections with a bounded number of attempts in
// flight, optionally paced, recording connect-to-welcome latency.
type opener struct {
	d       dialer
	urlFor  func(i int) string
	conc    int
	pace    *pacer     // nil: as fast as possible
	latency *Histogram // nil: not recorded
	errs    *tally
	opened  atomic.Int64
	// onOpen, if set, is called with each open connection, on the goroutine
	// that opened it.
	onOpen func(i int, c *Conn)
}

// open opens connections first..first+n-1 and returns them (nil where a
// connection failed). It stops early when ctx ends.
func (op *opener) open(ctx context.Context, first, n int) []*Conn {
	conns := make([]*Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(op.conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := int(next.Add(1)) - 1
				if k >= n {
					return
				}
				if op.pace != nil {
					due, ok := op.pace.next()
					if !ok || !sleepUntil(ctx, due) {
						return
					}
				}
				i := first + k
				start := now()
				c, err := op.d.Dial(op.urlFor(i), i)
				if err != nil {
					op.errs.add("dial", 1, fmt.Sprintf("connection %d to %s: %v", i, op.urlFor(i), err))
					continue
				}
				if op.latency != nil {
					op.latency.Record(time.Duration(now() - start))
				}
				conns[k] = c
				op.opened.Add(1)
				if op.onOpen != nil {
					op.onOpen(i, c)
				}
			}
		})
	}
	wg.Wait()
	return conns
}

// openAll opens n connections for a scenario whose setup needs all of
// them: any failure is a setup failure.
func openAll(ctx context.Context, o *options, first, n int, urlFor func(int) string) ([]*Conn, error) {
	var errs tally
	op := &opener{d: o.dialer(activeReadBuf), urlFor: urlFor, conc: o.concurrency, errs: &errs}
	stop := progress(o, func() string { return fmt.Sprintf("connecting: %d/%d open", op.opened.Load(), n) })
	conns := op.open(ctx, first, n)
	stop()
	if errs.total.Load() > 0 || ctx.Err() != nil {
		closeAll(conns)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%d of %d connections failed; first: %s", errs.total.Load(), n, errs.firsts()["dial"])
	}
	return conns, nil
}

// closeAll closes every connection, a few at a time.
func closeAll(conns []*Conn) {
	var wg sync.WaitGroup
	const workers = 16
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(conns); i += workers {
				if conns[i] != nil {
					conns[i].Close()
				}
			}
		})
	}
	wg.Wait()
}

// preflight opens one connection to each node, so that an unreachable
// server is reported before anything else happens. The connections stay
// open until the caller closes them at the end of the run: closing them at
// once would make the server's client count change under idle's "before"
// reading.
func preflight(o *options) ([]*Conn, error) {
	d := o.dialer(idleReadBuf)
	var conns []*Conn
	for _, u := range o.urls {
		c, err := d.Dial(u, 0)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("cannot connect to %s: %w", u, err)
		}
		go func() { _ = c.ReadLoop(func([]byte) {}) }() // answers pings
		conns = append(conns, c)
	}
	return conns, nil
}

// pacer hands out the due times of events spaced evenly at a fixed rate,
// from its start: event k is due at start + k/rate. Callers wait until the
// due time and measure latency from it, so that a late sender does not hide
// queueing (coordinated omission).
type pacer struct {
	mu       sync.Mutex
	start    int64
	interval float64 // ns
	k        int64
	end      int64 // no event is due at or after end (0: no end)
}

// newPacer paces rate events per second starting at start (clock time).
func newPacer(rate float64, start int64) *pacer {
	return &pacer{start: start, interval: 1e9 / rate}
}

// next returns the next event's due time, and false once past end.
func (p *pacer) next() (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	due := p.start + int64(math.Round(float64(p.k)*p.interval))
	if p.end != 0 && due >= p.end {
		return 0, false
	}
	p.k++
	return due, true
}

// progress prints line() to stderr about once a second until stop is
// called (unless -quiet).
func progress(o *options, line func() string) (stop func()) {
	if o.quiet {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(o.stderr, "rocket-bench %s %5.1fs  %s\n", o.scenario, time.Since(start).Seconds(), line())
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// rates turns a counter into "N (R/s)" for progress lines.
type rates struct {
	last  int64
	lastT time.Time
}

func (r *rates) line(n int64) string {
	t, first := time.Now(), r.lastT.IsZero()
	per := float64(n-r.last) / t.Sub(r.lastT).Seconds()
	r.last, r.lastT = n, t
	if first {
		return fmt.Sprintf("%d", n)
	}
	return fmt.Sprintf("%d (%.0f/s)", n, per)
}

// errorsLine shows the error counts in a progress line.
func errorsLine(t *tally) string {
	n := t.total.Load()
	if n == 0 {
		return "errors 0"
	}
	s := fmt.Sprintf("ERRORS %d", n)
	c := t.counts()
	for _, k := range sortedKinds(c) {
		s += fmt.Sprintf(" %s=%d", k, c[k])
	}
	if c["rate_limited"] > 0 {
		s += " (the server rate-limits: start it with ROCKET_COMMAND_RATE=-1)"
	}
	return s
}

// seqSet is the set of sequence numbers one receiver has seen; it detects
// duplicates. Its memory grows with the highest number seen (1 bit each).
type seqSet struct {
	bits []uint64
	last int64 // highest seen, -1 at first
}

func newSeqSet() seqSet { return seqSet{last: -1} }

// add records seq and reports whether it was new and whether it came after
// a higher one (out of order).
func (s *seqSet) add(seq int64) (isNew, reordered bool) {
	w := int(seq / 64)
	if w >= len(s.bits) {
		s.bits = append(s.bits, make([]uint64, w+1-len(s.bits)+len(s.bits)/2)...)
	}
	bit := uint64(1) << (seq % 64)
	if s.bits[w]&bit != 0 {
		return false, false
	}
	s.bits[w] |= bit
	reordered = seq < s.last
	s.last = max(s.last, seq)
	return true, reordered
}

// window is a set of tokens: a sender takes one per message and the
// receiver gives it back, bounding the messages in flight.
type window chan struct{}

func newWindow(n int) window {
	w := make(window, n)
	for range n {
		w <- struct{}{}
	}
	return w
}

// take waits for a token until ctx ends.
func (w window) take(ctx context.Context) bool {
	select {
	case <-w:
		return true
	case <-ctx.Done():
		return false
	}
}

// tryTake takes a token if one is free at once.
func (w window) tryTake() bool {
	select {
	case <-w:
		return true
	default:
		return false
	}
}

// give returns a token (never blocks: extra tokens are dropped).
func (w window) give() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// waitFor polls cond until it holds or d passed; it reports whether cond
// held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
