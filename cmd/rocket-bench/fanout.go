package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// runFanout: -conns members join one room, and one more client, the
// publisher, says messages in it (Chat.say with ref = the message's
// sequence number; the text carries the sequence number and the send
// time). The latency of a message is the time until every member has it;
// each delivery's own latency is reported too. Every message must reach
// every member exactly once: the ones that did not are "missing" errors,
// the extra ones "duplicate" errors.
func runFanout(ctx context.Context, o *options) (*Result, error) {
	if o.conns+1 > o.perProcess {
		return nil, fmt.Errorf("fanout holds its connections in one process: -conns must be below -per-process (%d)", o.perProcess)
	}
	pre, err := preflight(o)
	if err != nil {
		return nil, err
	}
	defer closeAll(pre)
	r := &fanoutRun{o: o, members: int32(o.conns), win: newWindow(o.windowOr(16))}

	// The members join, each starting to read once it has.
	conns, err := openAll(ctx, o, 0, o.conns, o.urlFor)
	if err != nil {
		return nil, err
	}
	defer func() {
		r.closing.Store(true)
		closeAll(conns)
	}()
	if err := joinAll(o, conns, func(i int, c *Conn) {
		m := &member{run: r, seen: newSeqSet()}
		readInBackground(c, m.handle, &r.closing, &r.errs)
	}); err != nil {
		return nil, err
	}
	// The publisher: the next source address, the first node.
	pubs, err := openAll(ctx, o, o.conns, 1, func(int) string { return o.urls[0] })
	if err != nil {
		return nil, err
	}
	pub := pubs[0]
	conns = append(conns, pub)
	if err := pub.Call(joinFrame(o.room, "publisher"), 1, o.timeout); err != nil {
		return nil, fmt.Errorf("publisher: Chat.join: %w", err)
	}
	readInBackground(pub, r.handlePublisher, &r.closing, &r.errs)

	start := now() + int64(10*time.Millisecond)
	r.warmEnd = start + int64(o.warmup)
	r.end = r.warmEnd + int64(o.duration)
	var mps, dps rates
	stop := progress(o, func() string {
		return fmt.Sprintf("sent %d  delivered to all %s  deliveries %s  %s",
			r.sent.Load(), mps.line(r.completed.Load()), dps.line(r.allDeliveries.Load()), errorsLine(&r.errs))
	})
	defer stop()

	runCtx, cancel := context.WithDeadline(ctx, epoch.Add(time.Duration(r.end)))
	defer cancel()
	published := make(chan error, 1)
	go func() {
		sleepUntil(ctx, start)
		published <- r.publish(runCtx, pub)
	}()
	sleepUntil(ctx, r.warmEnd)
	cpu := startCPU(o.metrics)
	sleepUntil(ctx, r.end)
	cores := cpu.cores()
	if err := <-published; err != nil {
		r.errs.add("send", 1, err.Error())
	}

	// Drain, then count what never arrived.
	sent := r.sent.Load()
	waitFor(o.drain, func() bool { return r.completed.Load()+r.refused.Load() >= sent })
	stop()
	var missing int64
	for seq := range sent {
		if n := r.counts.get(seq); n >= 0 && n < r.members && !r.isRefused(seq) {
			missing += int64(r.members - n)
		}
	}
	r.errs.add("missing", missing, fmt.Sprintf("deliveries that had not arrived %v after the end", o.drain))
	r.errs.add("duplicate", r.duplicates.Load(), "a member received a message twice")

	dur := o.duration.Seconds()
	res := &Result{
		Ops:              r.ops.Load(),
		DurationS:        dur,
		latency:          &r.latency,
		Size:             o.size,
		Window:           r.windowSize(),
		Sent:             sent,
		Deliveries:       r.deliveries.Load(),
		DeliveriesPerSec: ptr(float64(int64(float64(r.deliveries.Load())/dur*10)) / 10),
		DeliveryP50ms:    ptr(ms(r.delivery.Quantile(.5))),
		DeliveryP99ms:    ptr(ms(r.delivery.Quantile(.99))),
		Missing:          ptr(missing),
		Duplicates:       ptr(r.duplicates.Load()),
		Reordered:        ptr(r.reordered.Load()),
		ServerCPUCores:   cores,
	}
	res.setErrors(&r.errs)
	res.notes = append(res.notes,
		fmt.Sprintf("messages: %d sent, %d delivered to all %d members in the window; %.1f deliveries/s",
			sent, res.Ops, o.conns, *res.DeliveriesPerSec),
		fmt.Sprintf("latency is until the last member has a message; per delivery: p50 %.3f ms, p99 %.3f ms",
			*res.DeliveryP50ms, *res.DeliveryP99ms))
	if n := r.reordered.Load(); n > 0 {
		res.notes = append(res.notes, fmt.Sprintf("note: %d deliveries arrived after a later message", n))
	}
	return res, nil
}

// joinFrame is a Chat.join request with ref 1.
func joinFrame(room, name string) []byte {
	b := []byte(`{"ref":1,"Chat.join":{"room":`)
	b = appendJSONString(b, room)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, name)
	return append(b, "}}"...)
}

// joinAll has every connection join the room as m<i>, -concurrency at a
// time, and calls then(i, c) after each join.
func joinAll(o *options, conns []*Conn, then func(i int, c *Conn)) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range min(o.concurrency, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				if err := conns[i].Call(joinFrame(o.room, "m"+strconv.Itoa(i)), 1, o.timeout); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("member %d: Chat.join: %w", i, err)
					}
					mu.Unlock()
					return
				}
				then(i, conns[i])
			}
		})
	}
	wg.Wait()
	return firstErr
}

// fanoutRun is the state of a fanout run.
type fanoutRun struct {
	o            *options
	members      int32
	win          window
	warmEnd, end int64
	counts       counters // deliveries of each message
	closing      atomic.Bool

	sent          atomic.Int64
	completed     atomic.Int64 // messages every member has
	allDeliveries atomic.Int64 // for progress
	ops           atomic.Int64 // messages sent in the window that every member has
	deliveries    atomic.Int64 // deliveries of messages sent in the window
	duplicates    atomic.Int64
	reordered     atomic.Int64
	refused       atomic.Int64
	refusedMu     sync.Mutex
	refusedSeqs   map[int64]bool

	latency  Histogram // until every member has a message
	delivery Histogram // each delivery
	errs     tally
}

func (r *fanoutRun) windowSize() int {
	if r.o.rate > 0 {
		return 0
	}
	return cap(r.win)
}

// maxUndelivered bounds the messages not yet delivered to everyone in
// open loop; past it the publisher waits (and the wait counts).
const maxUndelivered = 1 << 16

// publish says messages until ctx ends: on -rate's schedule, or whenever
// the window has room.
func (r *fanoutRun) publish(ctx context.Context, pub *Conn) error {
	var p *pacer
	if r.o.rate > 0 {
		p = newPacer(r.o.rate, now())
		p.end = r.end
	}
	var buf, text []byte
	for seq := int64(0); ; seq++ {
		var due int64
		if p != nil {
			var ok bool
			if due, ok = p.next(); !ok || !sleepUntil(ctx, due) {
				return nil
			}
			for seq-r.completed.Load()-r.refused.Load() >= maxUndelivered {
				if !sleepUntil(ctx, now()+int64(time.Millisecond)) {
					return nil
				}
			}
		} else {
			if !r.win.take(ctx) {
				return nil
			}
			due = now()
		}
		if !r.counts.ensure(seq) {
			return nil
		}
		text = appendStamp(text[:0], seq, due, r.o.size)
		buf = append(buf[:0], `{"ref":`...)
		buf = strconv.AppendInt(buf, seq, 10)
		buf = append(buf, `,"Chat.say":{"room":`...)
		buf = appendJSONString(buf, r.o.room)
		buf = append(buf, `,"text":"`...)
		buf = append(buf, text...)
		buf = append(buf, `"}}`...)
		r.sent.Store(seq + 1)
		if err := pub.Send(buf); err != nil {
			return err
		}
	}
}

// handlePublisher reads the publisher's frames: its own copy of each
// message (ignored), the replies to Chat.say, errors.
func (r *fanoutRun) handlePublisher(msg []byte) {
	f := inspect(msg)
	switch {
	case f.kind == kindPush:
	case f.kind == kindReply && f.code == "":
	case f.kind == kindReply:
		// Chat.say refused (e.g. rate_limited): the message never left.
		r.errs.add(f.code, 1, string(msg))
		r.refusedMu.Lock()
		if r.refusedSeqs == nil {
			r.refusedSeqs = make(map[int64]bool)
		}
		r.refusedSeqs[f.ref] = true
		r.refusedMu.Unlock()
		r.refused.Add(1)
		r.win.give()
	case f.kind == kindError:
		r.errs.add(f.code, 1, string(msg))
	default:
		r.errs.add("unexpected_frame", 1, string(msg))
	}
}

func (r *fanoutRun) isRefused(seq int64) bool {
	r.refusedMu.Lock()
	defer r.refusedMu.Unlock()
	return r.refusedSeqs[seq]
}

// member is one member of the room.
type member struct {
	run  *fanoutRun
	seen seqSet // owned by the member's reading goroutine
}

func (m *member) handle(msg []byte) {
	t := now()
	r := m.run
	f := inspect(msg)
	switch {
	case f.kind == kindPush && f.name == "Chat.message":
		seq, ts, ok := parseStamp(f.text)
		if !ok || seq >= r.sent.Load() {
			r.errs.add("unexpected_frame", 1, string(msg))
			return
		}
		isNew, reordered := m.seen.add(seq)
		if !isNew {
			r.duplicates.Add(1)
			return
		}
		if reordered {
			r.reordered.Add(1)
		}
		r.allDeliveries.Add(1)
		inWindow := ts >= r.warmEnd && ts < r.end
		if inWindow {
			r.delivery.Record(time.Duration(t - ts))
			r.deliveries.Add(1)
		}
		if r.counts.add(seq) == r.members {
			r.completed.Add(1)
			if inWindow {
				r.latency.Record(time.Duration(t - ts))
				r.ops.Add(1)
			}
			r.win.give()
		}
	case f.kind == kindError:
		r.errs.add(f.code, 1, string(msg))
	default:
		r.errs.add("unexpected_frame", 1, string(msg))
	}
}

// counters count the deliveries of each message, by sequence number, in
// chunks allocated as messages are sent: lock-free for the readers.
type counters struct {
	chunks [1 << 12]atomic.Pointer[[1 << chunkBits]atomic.Int32]
}

const chunkBits = 16

// ensure makes room for seq; only the publisher calls it. It is false past
// the largest run the counters can hold (268 million messages).
func (c *counters) ensure(seq int64) bool {
	i := seq >> chunkBits
	if i >= int64(len(c.chunks)) {
		return false
	}
	if c.chunks[i].Load() == nil {
		c.chunks[i].Store(new([1 << chunkBits]atomic.Int32))
	}
	return true
}

// add counts one delivery of seq and returns the new count (-1 if seq was
// never sent).
func (c *counters) add(seq int64) int32 {
	if seq < 0 || seq>>chunkBits >= int64(len(c.chunks)) {
		return -1
	}
	p := c.chunks[seq>>chunkBits].Load()
	if p == nil {
		return -1
	}
	return p[seq&(1<<chunkBits-1)].Add(1)
}

// get returns the deliveries of seq (-1 if it was never sent).
func (c *counters) get(seq int64) int32 {
	if seq < 0 || seq>>chunkBits >= int64(len(c.chunks)) {
		return -1
	}
	p := c.chunks[seq>>chunkBits].Load()
	if p == nil {
		return -1
	}
	return p[seq&(1<<chunkBits-1)].Load()
}
