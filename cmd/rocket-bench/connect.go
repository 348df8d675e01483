package main

import (
	"context"
	"fmt"
)

// runConnect opens -conns connections as fast as possible (or at -rate per
// second) with -concurrency attempts in flight, holding them until all are
// open; a connection counts when its welcome frame arrived. -duration
// bounds the run: connections not open by then are not attempted.
func runConnect(ctx context.Context, o *options) (*Result, error) {
	pre, err := preflight(o)
	if err != nil {
		return nil, err
	}
	defer closeAll(pre)
	h := newHolder(o)
	_, errs, _, _ := h.results()
	var r rates
	stop := progress(o, func() string {
		return fmt.Sprintf("open %s of %d  %s", r.line(h.opened()), o.conns, errorsLine(errs))
	})
	defer stop()
	cpu := startCPU(o.metrics)
	octx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	elapsed, err := h.open(octx)
	cores := cpu.cores()
	stop()
	if err != nil {
		h.close()
		return nil, err
	}
	opened := h.opened()
	h.close()
	if opened == 0 {
		return nil, fmt.Errorf("no connection could be opened: %s", errs.firsts()["dial"])
	}
	latency, errs, procs, toolRSS := h.results()
	res := &Result{
		Ops:            opened,
		Opened:         opened,
		DurationS:      elapsed.Seconds(),
		latency:        latency,
		Processes:      procs,
		ToolRSSBytes:   toolRSS,
		ServerCPUCores: cores,
	}
	res.setErrors(errs)
	if opened < int64(o.conns) {
		res.notes = append(res.notes, fmt.Sprintf("only %d of %d connections were open within -duration %v", opened, o.conns, o.duration))
	}
	return res, nil
}
