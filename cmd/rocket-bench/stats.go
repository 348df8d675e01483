package main

import (
	"math"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Histogram records durations in nanoseconds in log-linear buckets, in the
// manner of HDR histograms: values below 256 ns are exact, larger ones fall
// in buckets 1/128 of their power of two wide, so a reported percentile is
// within 0.4% of the true value. Record is safe for concurrent use and does
// not allocate; a Histogram takes about 60 KiB whatever it records.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Uint64
	notMin atomic.Uint64 // ^min, so that the minimum is kept like the maximum (0: none yet)
}

const (
	subBits    = 7
	subCount   = 1 << subBits // buckets per power of two
	numBuckets = (64 - subBits + 1) * subCount
)

// bucketOf returns the bucket of value v.
func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	return shift*subCount + int(v>>shift)
}

// bucketRange returns the smallest and largest values of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	shift := i/subCount - 1
	top := uint64(i - shift*subCount)
	lo = top << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	storeMax(&h.max, v)
	storeMax(&h.notMin, ^v)
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// Count is the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest recorded duration (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the q-quantile (0 < q <= 1) by nearest rank: the
// smallest recorded value v such that at least q of all values are <= v,
// as the middle of its bucket, clamped to the exact minimum and maximum.
// It is 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = min(max(v, ^h.notMin.Load()), h.max.Load())
			return time.Duration(v)
		}
	}
	return h.Max()
}

// histSnapshot is a Histogram in a form that crosses process boundaries
// (worker processes send theirs to the parent as JSON).
type histSnapshot struct {
	Buckets [][2]uint64 `json:"buckets"` // {bucket index, count}, non-empty buckets only
	Min     uint64      `json:"min"`
	Max     uint64      `json:"max"`
}

// Snapshot returns the non-empty buckets.
func (h *Histogram) Snapshot() histSnapshot {
	s := histSnapshot{Min: ^h.notMin.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			s.Buckets = append(s.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// Merge adds a snapshot's counts to h.
func (h *Histogram) Merge(s histSnapshot) {
	var n uint64
	for _, b := range s.Buckets {
		if b[0] < numBuckets {
			h.counts[b[0]].Add(b[1])
			n += b[1]
		}
	}
	if n == 0 {
		return
	}
	h.n.Add(n)
	storeMax(&h.max, s.Max)
	storeMax(&h.notMin, ^s.Min)
}

// tally counts errors by kind: a server error code such as rate_limited or
// bad_args, or one of the tool's own kinds (dial, disconnected, timeout,
// missing, duplicate, unexpected_frame...). It keeps the first message of
// each kind to show in the summary.
type tally struct {
	total atomic.Int64
	mu    sync.Mutex
	kinds map[string]int64
	first map[string]string
}

// add counts n errors of kind; detail describes the first one.
func (t *tally) add(kind string, n int64, detail string) {
	if n <= 0 {
		return
	}
	t.total.Add(n)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kinds == nil {
		t.kinds = make(map[string]int64)
		t.first = make(map[string]string)
	}
	t.kinds[kind] += n
	if _, ok := t.first[kind]; !ok && detail != "" {
		t.first[kind] = detail
	}
}

// merge adds counts (e.g. from a worker process).
func (t *tally) merge(kinds map[string]int64, first map[string]string) {
	for k, n := range kinds {
		t.add(k, n, first[k])
	}
}

// counts returns a copy of the counts by kind, or nil when there are none.
func (t *tally) counts() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.kinds) == 0 {
		return nil
	}
	out := make(map[string]int64, len(t.kinds))
	for k, n := range t.kinds {
		out[k] = n
	}
	return out
}

// firsts returns a copy of the first message of each kind.
func (t *tally) firsts() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]string, len(t.first))
	for k, m := range t.first {
		out[k] = m
	}
	return out
}

// sortedKinds returns the kinds of m, most frequent first.
func sortedKinds(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if m[ks[i]] != m[ks[j]] {
			return m[ks[i]] > m[ks[j]]
		}
		return ks[i] < ks[j]
	})
	return ks
}
