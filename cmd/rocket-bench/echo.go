package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runEcho measures Echo.echo round trips with ref: {"ref":N,"Echo.echo":
// "xxx..."}. With -rate 0 each connection keeps -window requests
// outstanding (closed loop; the requests that replies allow are written
// together once the replies read so far are handled); with -rate R the connections send R requests per second in
// all on a fixed schedule (open loop), and latency counts from the time a
// request was due, so that a sender held up behind a slow server does not
// hide the wait.
func runEcho(ctx context.Context, o *options) (*Result, error) {
	if o.conns > o.perProcess {
		return nil, fmt.Errorf("echo holds its connections in one process: -conns must be at most -per-process (%d)", o.perProcess)
	}
	pre, err := preflight(o)
	if err != nil {
		return nil, err
	}
	defer closeAll(pre)
	conns, err := openAll(ctx, o, 0, o.conns, o.urlFor)
	if err != nil {
		return nil, err
	}
	r := &echoRun{o: o, pad: strings.Repeat("x", o.size)}
	start := now() + int64(10*time.Millisecond)
	r.warmEnd = start + int64(o.warmup)
	r.end = r.warmEnd + int64(o.duration)
	ecs := make([]*echoConn, len(conns))
	for i, c := range conns {
		ecs[i] = &echoConn{run: r, c: c, nextRef: 1, ackRef: 1}
	}

	var rps rates
	stop := progress(o, func() string {
		return fmt.Sprintf("replies %s  %s", rps.line(r.replies.Load()), errorsLine(&r.errs))
	})
	defer stop()
	var senders sync.WaitGroup
	runCtx, cancel := context.WithDeadline(ctx, epoch.Add(time.Duration(r.end)))
	defer cancel()
	for i, e := range ecs {
		if o.rate == 0 {
			sleepUntil(ctx, start)
			for range o.windowOr(1) {
				e.queue(now())
			}
			if err := e.c.Flush(); err != nil {
				r.errs.add("send", 1, err.Error())
			}
		} else {
			// Each connection sends rate/conns per second, the
			// connections' schedules interleaved.
			per := o.rate / float64(len(ecs))
			p := newPacer(per, start+int64(float64(i)*1e9/o.rate))
			p.end = r.end
			senders.Go(func() { e.pace(runCtx, p) })
		}
		readInBackground(e.c, e.handle, &r.closing, &r.errs)
	}

	sleepUntil(ctx, r.warmEnd)
	cpu := startCPU(o.metrics)
	sleepUntil(ctx, r.end)
	cores := cpu.cores()
	senders.Wait()

	// Drain: wait for the replies still due, then count the missing ones.
	outstanding := func() int {
		n := 0
		for _, e := range ecs {
			n += e.outstanding()
		}
		return n
	}
	waitFor(o.drain, func() bool { return outstanding() == 0 })
	r.errs.add("timeout", int64(outstanding()), fmt.Sprintf("no reply within -drain %v after the end", o.drain))
	stop()
	r.closing.Store(true)
	closeAll(conns)

	res := &Result{
		Ops:            r.ops.Load(),
		DurationS:      o.duration.Seconds(),
		latency:        &r.latency,
		Size:           o.size,
		ServerCPUCores: cores,
	}
	if o.rate == 0 {
		res.Window = o.windowOr(1)
	}
	res.setErrors(&r.errs)
	return res, nil
}

// echoRun is the state shared by an echo run's connections.
type echoRun struct {
	o            *options
	pad          string
	warmEnd, end int64 // the measured window, clock times
	closing      atomic.Bool
	latency      Histogram
	ops          atomic.Int64 // replies to requests due in the window
	replies      atomic.Int64 // all replies, for progress
	errs         tally
}

// maxOutstanding bounds the requests a connection has in flight in open
// loop; past it the sender waits (and the wait counts in the latency).
const maxOutstanding = 10000

// echoConn is one connection of an echo run.
type echoConn struct {
	run *echoRun
	c   *Conn

	mu      sync.Mutex
	due     []int64 // due times of the requests not answered yet, oldest first
	ackRef  int64   // ref of due[0]
	nextRef int64   // ref of the next request

	buf []byte // the request being built; owned by the sending goroutine
}

// send sends the next request, due at due.
func (e *echoConn) send(due int64) error {
	return e.c.Send(e.next(due))
}

// queue queues the next request, due at due, for the connection's next
// Flush.
func (e *echoConn) queue(due int64) {
	e.c.Queue(e.next(due))
}

// next records the next request, due at due, and returns its frame,
// valid until the next call.
func (e *echoConn) next(due int64) []byte {
	e.mu.Lock()
	ref := e.nextRef
	e.nextRef++
	e.due = append(e.due, due)
	e.mu.Unlock()
	b := append(e.buf[:0], `{"ref":`...)
	b = strconv.AppendInt(b, ref, 10)
	b = append(b, `,"Echo.echo":"`...)
	b = append(b, e.run.pad...)
	b = append(b, `"}`...)
	e.buf = b
	return b
}

// pop forgets the oldest outstanding request and returns its due time.
func (e *echoConn) pop() int64 {
	d := e.due[0]
	e.due = e.due[1:]
	if len(e.due) == 0 {
		e.due = e.due[:0:0] // let the backing array go once drained
	}
	e.ackRef++
	return d
}

func (e *echoConn) outstanding() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.due)
}

// pace sends requests on p's schedule until it ends.
func (e *echoConn) pace(ctx context.Context, p *pacer) {
	for {
		due, ok := p.next()
		if !ok || !sleepUntil(ctx, due) {
			return
		}
		for e.outstanding() >= maxOutstanding {
			if !sleepUntil(ctx, now()+int64(time.Millisecond)) {
				return
			}
		}
		if err := e.send(due); err != nil {
			return // the reader reports the lost connection
		}
	}
}

// handle reads one server frame; in closed loop it sends the next request.
func (e *echoConn) handle(msg []byte) {
	t := now()
	r := e.run
	f := inspect(msg)
	switch f.kind {
	case kindReply:
		e.mu.Lock()
		if f.ref < e.ackRef || f.ref >= e.nextRef {
			e.mu.Unlock()
			r.errs.add("unexpected_reply", 1, string(msg))
			return
		}
		for e.ackRef < f.ref {
			e.pop()
			r.errs.add("missing_reply", 1, fmt.Sprintf("reply %d came before the reply to an earlier request", f.ref))
		}
		due := e.pop()
		e.mu.Unlock()
		r.replies.Add(1)
		switch {
		case f.code != "":
			r.errs.add(f.code, 1, string(msg))
		case due >= r.warmEnd && due < r.end:
			r.latency.Record(time.Duration(t - due))
			r.ops.Add(1)
		}
	case kindError:
		// A frame refused whole gets this instead of a reply.
		r.errs.add(f.code, 1, string(msg))
		e.mu.Lock()
		if len(e.due) > 0 {
			e.pop()
		}
		e.mu.Unlock()
	default:
		r.errs.add("unexpected_frame", 1, string(msg))
		return
	}
	if r.o.rate == 0 {
		if t = now(); t < r.end {
			e.queue(t) // written by ReadLoop
		}
	}
}
