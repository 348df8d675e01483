package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// runIdle opens -conns connections, holds them idle for -duration, and
// reports the server's memory per connection: the change of the nodes'
// resident memory (from /metrics, read before connecting and at the end of
// the hold) divided by the connections opened.
func runIdle(ctx context.Context, o *options) (*Result, error) {
	pre, err := preflight(o)
	if err != nil {
		return nil, err
	}
	defer closeAll(pre)
	before, err := scrapeAll(o.metrics)
	if err != nil {
		return nil, err
	}
	if _, ok := before[metricRSS]; !ok {
		return nil, fmt.Errorf("%v: no %s (the server must register Prometheus' process collector)", o.metrics, metricRSS)
	}
	h := newHolder(o)
	_, errs, _, _ := h.results()
	var holding atomic.Bool
	var r rates
	stop := progress(o, func() string {
		if holding.Load() {
			return fmt.Sprintf("holding %d connections  %s", h.opened(), errorsLine(errs))
		}
		return fmt.Sprintf("open %s of %d  %s", r.line(h.opened()), o.conns, errorsLine(errs))
	})
	defer stop()
	elapsed, err := h.open(ctx)
	if err != nil {
		return nil, err
	}
	opened := h.opened()
	if opened == 0 {
		h.close()
		return nil, fmt.Errorf("no connection could be opened: %s", errs.firsts()["dial"])
	}
	holding.Store(true)
	select {
	case <-time.After(o.duration):
	case <-ctx.Done():
	}
	after, err := scrapeAll(o.metrics)
	h.close()
	stop()
	if err != nil {
		return nil, err
	}
	latency, errs, procs, toolRSS := h.results()
	res := &Result{
		Ops:             opened,
		Opened:          opened,
		DurationS:       elapsed.Seconds(),
		latency:         latency,
		Processes:       procs,
		ToolRSSBytes:    toolRSS,
		RSSBefore:       ptr(before[metricRSS]),
		RSSAfter:        ptr(after[metricRSS]),
		HeapBefore:      ptr(before[metricHeap]),
		HeapAfter:       ptr(after[metricHeap]),
		ClientsBefore:   ptr(before[metricClients]),
		ClientsAfter:    ptr(after[metricClients]),
		GoroutinesAfter: ptr(after[metricGoros]),
	}
	perConn := (after[metricRSS] - before[metricRSS]) / float64(opened)
	res.ServerBytesPerConn = ptr(float64(int64(perConn)))
	res.setErrors(errs)
	res.notes = append(res.notes,
		fmt.Sprintf("server RSS %.1f MiB -> %.1f MiB: %.0f bytes (%.2f KiB) per connection",
			before[metricRSS]/(1<<20), after[metricRSS]/(1<<20), perConn, perConn/1024),
		fmt.Sprintf("server heap in use %.1f MiB -> %.1f MiB; rocket_clients %.0f -> %.0f; goroutines %.0f",
			before[metricHeap]/(1<<20), after[metricHeap]/(1<<20), before[metricClients], after[metricClients], after[metricGoros]))
	if got := int64(after[metricClients] - before[metricClients]); got != opened {
		res.notes = append(res.notes, fmt.Sprintf("note: rocket_clients grew by %d, not by the %d connections opened", got, opened))
	}
	return res, nil
}
