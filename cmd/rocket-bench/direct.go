package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runDirect: -conns/2 senders on the first -url each whisper (Chat.whisper,
// no ref: a refused whisper comes back as an error frame) to a partner
// among -conns/2 receivers on the second -url, so that every message
// crosses the cluster's broker. The text carries a sequence number and the
// send time: latency is end to end; messages that never arrived are "lost"
// errors, extra copies "duplicate" errors.
func runDirect(ctx context.Context, o *options) (*Result, error) {
	pairs := o.conns / 2
	if pairs > o.perProcess/2 {
		return nil, fmt.Errorf("direct holds its connections in one process: -conns must be at most -per-process (%d)", o.perProcess)
	}
	pre, err := preflight(o)
	if err != nil {
		return nil, err
	}
	defer closeAll(pre)
	urlA, urlB := o.urls[0], o.urls[len(o.urls)-1]
	r := &directRun{o: o}
	senders, err := openAll(ctx, o, 0, pairs, func(int) string { return urlA })
	if err != nil {
		return nil, err
	}
	recvURL := urlB
	if o.acks {
		recvURL = withQuery(urlB, "acks=1")
	}
	receivers, err := openAll(ctx, o, pairs, pairs, func(int) string { return recvURL })
	if err != nil {
		closeAll(senders)
		return nil, err
	}
	defer func() {
		r.closing.Store(true)
		closeAll(senders)
		closeAll(receivers)
	}()
	r.pairs = make([]*pair, pairs)
	for i := range pairs {
		p := &pair{run: r, from: senders[i], to: receivers[i], win: newWindow(o.windowOr(64)), seen: newSeqSet()}
		p.head = append([]byte(`{"Chat.whisper":{"to":`), appendJSONString(nil, p.to.ID)...)
		p.head = append(p.head, `,"text":"`...)
		r.pairs[i] = p
		readInBackground(p.from, p.handleSender, &r.closing, &r.errs)
		readInBackground(p.to, p.handleReceiver, &r.closing, &r.errs)
	}

	start := now() + int64(10*time.Millisecond)
	r.warmEnd = start + int64(o.warmup)
	r.end = r.warmEnd + int64(o.duration)
	var dps rates
	stop := progress(o, func() string {
		return fmt.Sprintf("sent %d  delivered %s  %s", r.totalSent(), dps.line(r.delivered.Load()), errorsLine(&r.errs))
	})
	defer stop()
	runCtx, cancel := context.WithDeadline(ctx, epoch.Add(time.Duration(r.end)))
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range r.pairs {
		var pace *pacer
		if o.rate > 0 {
			pace = newPacer(o.rate/float64(pairs), start+int64(float64(i)*1e9/o.rate))
			pace.end = r.end
		}
		wg.Go(func() {
			sleepUntil(ctx, start)
			if err := p.send(runCtx, pace); err != nil {
				r.errs.add("send", 1, err.Error())
			}
		})
	}
	sleepUntil(ctx, r.warmEnd)
	cpu := startCPU(o.metrics)
	sleepUntil(ctx, r.end)
	cores := cpu.cores()
	wg.Wait()

	// Drain, then count what never arrived.
	sent := r.totalSent()
	waitFor(o.drain, func() bool { return r.delivered.Load()+r.refused.Load() >= sent })
	stop()
	lost := max(0, sent-r.delivered.Load()-r.refused.Load())
	r.errs.add("lost", lost, fmt.Sprintf("whispers that had not arrived %v after the end", o.drain))
	r.errs.add("duplicate", r.duplicates.Load(), "a receiver got a whisper twice")

	res := &Result{
		Ops:            r.ops.Load(),
		DurationS:      o.duration.Seconds(),
		latency:        &r.latency,
		Size:           o.size,
		Sent:           sent,
		Deliveries:     r.delivered.Load(),
		Missing:        ptr(lost),
		Duplicates:     ptr(r.duplicates.Load()),
		Reordered:      ptr(r.reordered.Load()),
		ServerCPUCores: cores,
		Acks:           o.acks,
	}
	if o.rate == 0 {
		res.Window = o.windowOr(64)
	}
	res.setErrors(&r.errs)
	res.notes = append(res.notes, fmt.Sprintf("%d senders on %s whisper to %d receivers on %s; %d sent, %d delivered, %d lost, %d duplicated",
		pairs, urlA, pairs, urlB, sent, r.delivered.Load(), lost, r.duplicates.Load()))
	switch {
	case urlA == urlB:
		res.notes = append(res.notes, "note: one node only: whispers did not cross a broker between nodes (give two -url)")
	case senders[0].Server == receivers[0].Server:
		res.notes = append(res.notes, fmt.Sprintf("note: both -url nodes say they are server %q: the same node, or two nodes that are not one cluster (same ROCKET_REDIS_URL)?", senders[0].Server))
	}
	if sent > 0 && r.delivered.Load() == 0 {
		res.notes = append(res.notes, "note: no whisper arrived: are both nodes in one cluster (same ROCKET_REDIS_URL), is the first -url really up?")
	}
	if n := r.reordered.Load(); n > 0 {
		res.notes = append(res.notes, fmt.Sprintf("note: %d whispers arrived after a later one from the same sender", n))
	}
	return res, nil
}

// directRun is the state of a direct run.
type directRun struct {
	o            *options
	pairs        []*pair
	warmEnd, end int64
	closing      atomic.Bool

	delivered  atomic.Int64 // distinct whispers received
	ops        atomic.Int64 // those sent in the window
	refused    atomic.Int64 // whispers the server refused (error frames)
	duplicates atomic.Int64
	reordered  atomic.Int64
	latency    Histogram
	errs       tally
}

func (r *directRun) totalSent() int64 {
	var n int64
	for _, p := range r.pairs {
		n += p.sent.Load()
	}
	return n
}

// pair is a sender and its receiver.
type pair struct {
	run      *directRun
	from, to *Conn
	win      window
	head     []byte // {"Chat.whisper":{"to":"<id>","text":"
	sent     atomic.Int64
	done     atomic.Int64 // whispers received or refused
	seen     seqSet       // owned by the receiver's reading goroutine
	// With -acks, owned by the receiver's reading goroutine: the number of
	// the last numbered message and of the last one acknowledged.
	lastSeq, ackedSeq uint64
}

// ackEvery is how many numbered whispers a receiver gets between acks.
const ackEvery = 64

// withQuery adds query to rawURL.
func withQuery(rawURL, query string) string {
	if strings.Contains(rawURL, "?") {
		return rawURL + "&" + query
	}
	return rawURL + "?" + query
}

// unwrapNumbered returns the message inside {"seq":N,"message":<message>}
// and N, or msg and 0.
func unwrapNumbered(msg []byte) ([]byte, uint64) {
	const head, member = `{"seq":`, `,"message":`
	if !bytes.HasPrefix(msg, []byte(head)) || msg[len(msg)-1] != '}' {
		return msg, 0
	}
	rest := msg[len(head):]
	i := bytes.IndexByte(rest, ',')
	if i <= 0 || !bytes.HasPrefix(rest[i:], []byte(member)) {
		return msg, 0
	}
	n, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil || n == 0 {
		return msg, 0
	}
	return rest[i+len(member) : len(rest)-1], n
}

// maxInFlight bounds a sender's whispers in flight in open loop; past it
// the sender waits (and the wait counts).
const maxInFlight = 1 << 14

// send whispers until ctx ends: on pace's schedule, or whenever the window
// has room. In closed loop the whispers the window allows at once are
// written together.
func (p *pair) send(ctx context.Context, pace *pacer) error {
	var buf []byte
	size := p.run.o.size
	for seq := int64(0); ; seq++ {
		var due int64
		batch := false
		if pace != nil {
			var ok bool
			if due, ok = pace.next(); !ok || !sleepUntil(ctx, due) {
				return nil
			}
			for seq-p.done.Load() >= maxInFlight {
				if !sleepUntil(ctx, now()+int64(time.Millisecond)) {
					return nil
				}
			}
		} else {
			if !p.win.take(ctx) {
				return nil
			}
			due = now()
			batch = true
		}
		for {
			buf = append(buf[:0], p.head...)
			buf = appendStamp(buf, seq, due, size)
			buf = append(buf, `"}}`...)
			p.sent.Store(seq + 1)
			if !batch {
				break
			}
			p.from.Queue(buf)
			if !p.win.tryTake() {
				break
			}
			seq++
		}
		if batch {
			if err := p.from.Flush(); err != nil {
				return err
			}
		} else if err := p.from.Send(buf); err != nil {
			return err
		}
	}
}

// handleSender reads the sender's frames: only errors are expected (a
// refused whisper, e.g. rate_limited).
func (p *pair) handleSender(msg []byte) {
	r := p.run
	f := inspect(msg)
	if f.kind == kindError {
		r.errs.add(f.code, 1, string(msg))
		if f.action == "Chat.whisper" {
			r.refused.Add(1)
			p.done.Add(1)
			p.win.give()
		}
		return
	}
	r.errs.add("unexpected_frame", 1, string(msg))
}

// handleReceiver reads the receiver's frames: the whispers (numbered with
// -acks, acknowledged every ackEvery).
func (p *pair) handleReceiver(msg []byte) {
	t := now()
	r := p.run
	if r.o.acks {
		var seq uint64
		if msg, seq = unwrapNumbered(msg); seq > p.lastSeq {
			p.lastSeq = seq
			if seq-p.ackedSeq >= ackEvery {
				p.ackedSeq = seq
				if err := p.to.Send(append(strconv.AppendUint([]byte(`{"ack":`), seq, 10), '}')); err != nil {
					r.errs.add("ack", 1, err.Error())
				}
			}
		}
	}
	f := inspect(msg)
	switch {
	case f.kind == kindPush && f.name == "Chat.whisper":
		seq, ts, ok := parseStamp(f.text)
		if !ok || seq >= p.sent.Load() {
			r.errs.add("unexpected_frame", 1, string(msg))
			return
		}
		isNew, reordered := p.seen.add(seq)
		if !isNew {
			r.duplicates.Add(1)
			return
		}
		if reordered {
			r.reordered.Add(1)
		}
		r.delivered.Add(1)
		p.done.Add(1)
		if ts >= r.warmEnd && ts < r.end {
			r.latency.Record(time.Duration(t - ts))
			r.ops.Add(1)
		}
		p.win.give()
	case f.kind == kindError:
		r.errs.add(f.code, 1, string(msg))
	default:
		r.errs.add("unexpected_frame", 1, string(msg))
	}
}
