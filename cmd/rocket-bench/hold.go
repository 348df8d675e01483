package main

import (
	"context"
	"sync/atomic"
	"time"
)

// A holder opens connections and holds them open, for idle and connect: in
// this process (localHolder) or, above -per-process connections, in worker
// processes (workerHolder, workers.go).
type holder interface {
	// open opens the connections and returns when each is open or failed,
	// with the time it took.
	open(ctx context.Context) (time.Duration, error)
	// opened is the number of connections open so far (for progress).
	opened() int64
	// close closes every connection and collects the last errors.
	close()
	// results: connect-to-welcome latency, errors, processes that held
	// the connections and their memory.
	results() (latency *Histogram, errs *tally, processes int, toolRSS int64)
}

// newHolder returns the holder for -conns connections.
func newHolder(o *options) holder {
	if o.conns > o.perProcess {
		return newWorkerHolder(o)
	}
	return newLocalHolder(o, 0, o.conns)
}

// localHolder holds connections first..first+n-1 in this process: one
// goroutine per connection, blocked in a read, answers the server's pings.
type localHolder struct {
	o        *options
	first, n int
	op       *opener
	conns    []*Conn
	closing  atomic.Bool
	latency  Histogram
	errs     tally
}

func newLocalHolder(o *options, first, n int) *localHolder {
	h := &localHolder{o: o, first: first, n: n}
	h.op = &opener{
		d:       o.dialer(idleReadBuf),
		urlFor:  o.urlFor,
		conc:    o.concurrency,
		latency: &h.latency,
		errs:    &h.errs,
		onOpen:  h.hold,
	}
	return h
}

// hold reads c until it is closed; a connection lost before close is an
// error.
func (h *localHolder) hold(_ int, c *Conn) {
	go func() {
		err := c.ReadLoop(func([]byte) {})
		if !h.closing.Load() {
			h.errs.add("disconnected", 1, err.Error())
		}
	}()
}

func (h *localHolder) open(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if h.o.rate > 0 {
		h.op.pace = newPacer(h.o.rate, now())
	}
	h.conns = h.op.open(ctx, h.first, h.n)
	return time.Since(start), nil
}

func (h *localHolder) opened() int64 { return h.op.opened.Load() }

func (h *localHolder) close() {
	h.closing.Store(true)
	closeAll(h.conns)
}

func (h *localHolder) results() (*Histogram, *tally, int, int64) {
	return &h.latency, &h.errs, 1, selfRSS()
}
