package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Result is the JSON object printed as the last line of standard output.
// Optional members are left out when they do not apply.
type Result struct {
	Scenario     string           `json:"scenario"`
	Conns        int              `json:"conns"`
	Ops          int64            `json:"ops"`
	DurationS    float64          `json:"duration_s"`
	OpsPerSec    float64          `json:"ops_per_sec"`
	P50ms        float64          `json:"p50_ms"`
	P90ms        float64          `json:"p90_ms"`
	P99ms        float64          `json:"p99_ms"`
	MaxMs        float64          `json:"max_ms"`
	Errors       int64            `json:"errors"`
	ErrorsByKind map[string]int64 `json:"errors_by_kind,omitempty"`
	RateLimited  int64            `json:"rate_limited"`

	// idle (and connect: Opened)
	Opened             int64    `json:"opened,omitempty"`
	ServerBytesPerConn *float64 `json:"server_bytes_per_conn,omitempty"`
	RSSBefore          *float64 `json:"rss_before,omitempty"`
	RSSAfter           *float64 `json:"rss_after,omitempty"`
	HeapBefore         *float64 `json:"heap_inuse_before,omitempty"`
	HeapAfter          *float64 `json:"heap_inuse_after,omitempty"`
	ClientsBefore      *float64 `json:"clients_before,omitempty"`
	ClientsAfter       *float64 `json:"clients_after,omitempty"`
	GoroutinesAfter    *float64 `json:"server_goroutines_after,omitempty"`

	// fanout, direct
	Sent             int64    `json:"sent,omitempty"`
	Deliveries       int64    `json:"deliveries,omitempty"`
	DeliveriesPerSec *float64 `json:"deliveries_per_sec,omitempty"`
	DeliveryP50ms    *float64 `json:"delivery_p50_ms,omitempty"`
	DeliveryP99ms    *float64 `json:"delivery_p99_ms,omitempty"`
	Missing          *int64   `json:"missing,omitempty"`
	Duplicates       *int64   `json:"duplicates,omitempty"`
	Reordered        *int64   `json:"reordered,omitempty"`

	// loopback
	HopCPUus *float64 `json:"hop_cpu_us,omitempty"` // CPU per hop, both processes
	CPUCores *float64 `json:"cpu_cores,omitempty"`  // during the ping-pong

	// the run
	Rate           float64  `json:"rate"`
	Size           int      `json:"size,omitempty"`
	Window         int      `json:"window,omitempty"`
	Acks           bool     `json:"acks,omitempty"`
	Nodes          int      `json:"nodes"`
	Processes      int      `json:"processes"`
	Sources        int      `json:"sources"`
	ServerCPUCores *float64 `json:"server_cpu_cores,omitempty"`
	ToolRSSBytes   int64    `json:"tool_rss_bytes,omitempty"`

	latency *Histogram        // behind the p*_ms members
	notes   []string          // extra summary lines
	firsts  map[string]string // first message of each error kind
}

// ms converts a duration to milliseconds, rounded to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// setErrors fills the error members from a tally.
func (r *Result) setErrors(t *tally) {
	r.Errors = t.total.Load()
	r.ErrorsByKind = t.counts()
	r.RateLimited = r.ErrorsByKind["rate_limited"]
	r.firsts = t.firsts()
}

// complete fills the members common to every scenario.
func (r *Result) complete(o *options) {
	r.Scenario = o.scenario
	r.Conns = o.conns
	r.Rate = o.rate
	if o.scenario != "loopback" { // it loads no node
		r.Nodes = len(o.urls)
	}
	r.Sources = o.sources
	if r.Processes == 0 {
		r.Processes = 1
	}
	if r.latency != nil {
		h := r.latency
		r.P50ms, r.P90ms, r.P99ms, r.MaxMs = ms(h.Quantile(.5)), ms(h.Quantile(.9)), ms(h.Quantile(.99)), ms(h.Max())
	}
	r.DurationS = math.Round(r.DurationS*1e6) / 1e6
	if r.DurationS > 0 {
		r.OpsPerSec = math.Round(float64(r.Ops)/r.DurationS*10) / 10
	}
	if r.ToolRSSBytes == 0 {
		r.ToolRSSBytes = selfRSS()
	}
}

// printJSON writes the result as one line.
func (r *Result) printJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printSummary writes the human summary.
func (r *Result) printSummary(w io.Writer) {
	if r.Nodes > 0 {
		fmt.Fprintf(w, "\n== rocket-bench %s: %d connections over %d node(s), %d process(es)\n", r.Scenario, r.Conns, r.Nodes, r.Processes)
	} else {
		fmt.Fprintf(w, "\n== rocket-bench %s: %d connections, %d process(es)\n", r.Scenario, r.Conns, r.Processes)
	}
	fmt.Fprintf(w, "   %d ops in %.2fs: %.1f ops/s\n", r.Ops, r.DurationS, r.OpsPerSec)
	if r.latency != nil && r.latency.Count() > 0 {
		fmt.Fprintf(w, "   latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (%d samples)\n", r.P50ms, r.P90ms, r.P99ms, r.MaxMs, r.latency.Count())
	}
	for _, n := range r.notes {
		fmt.Fprintf(w, "   %s\n", n)
	}
	if r.ServerCPUCores != nil {
		fmt.Fprintf(w, "   server CPU: %.2f cores on average\n", *r.ServerCPUCores)
	}
	if r.ToolRSSBytes > 0 {
		fmt.Fprintf(w, "   rocket-bench RSS: %.1f MiB\n", float64(r.ToolRSSBytes)/(1<<20))
	}
	if r.Errors == 0 {
		fmt.Fprintf(w, "   errors: 0\n")
	} else {
		fmt.Fprintf(w, "   ERRORS: %d\n", r.Errors)
		for _, k := range sortedKinds(r.ErrorsByKind) {
			fmt.Fprintf(w, "     %-18s %d", k, r.ErrorsByKind[k])
			if m := r.firsts[k]; m != "" {
				fmt.Fprintf(w, "  (first: %.160s)", m)
			}
			fmt.Fprintln(w)
		}
	}
	if r.RateLimited > 0 {
		fmt.Fprintf(w, "   !! The server refused %d commands with rate_limited: it limits commands per client.\n", r.RateLimited)
		fmt.Fprintf(w, "   !! Start it with ROCKET_COMMAND_RATE=-1 (or -command-rate -1) for benchmarks; these figures are not valid.\n")
	}
}

// selfRSS returns this process's resident memory in bytes (Linux), or 0.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
