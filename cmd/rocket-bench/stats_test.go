package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestQuantile(t *testing.T) {
	ms := time.Millisecond
	seq := func(n int, unit time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i+1) * unit
		}
		return out
	}
	for _, tc := range []struct {
		name               string
		values             []time.Duration
		p50, p90, p99, max time.Duration
	}{
		{"empty", nil, 0, 0, 0, 0},
		{"one", []time.Duration{7 * ms}, 7 * ms, 7 * ms, 7 * ms, 7 * ms},
		{"1..100 ms", seq(100, ms), 50 * ms, 90 * ms, 99 * ms, 100 * ms},
		{"1..1000 µs", seq(1000, time.Microsecond), 500 * time.Microsecond, 900 * time.Microsecond, 990 * time.Microsecond, time.Millisecond},
		{"small exact ns", []time.Duration{3, 1, 2, 4}, 2, 4, 4, 4},
		{"two values", []time.Duration{ms, 100 * ms}, ms, 100 * ms, 100 * ms, 100 * ms},
		{"a tail", append(slices.Repeat([]time.Duration{ms}, 98), 50*ms, 2*time.Second), ms, ms, 50 * ms, 2 * time.Second},
		{"zero and negative", []time.Duration{0, -5, 10}, 0, 10, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tc.values {
				h.Record(v)
			}
			for _, c := range []struct {
				what      string
				got, want time.Duration
			}{
				{"p50", h.Quantile(.5), tc.p50},
				{"p90", h.Quantile(.9), tc.p90},
				{"p99", h.Quantile(.99), tc.p99},
				{"max", h.Max(), tc.max},
			} {
				if !within(c.got, c.want, 0.004) {
					t.Errorf("%s = %v, want %v (±0.4%%)", c.what, c.got, c.want)
				}
			}
		})
	}
}

func within(got, want time.Duration, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

// TestQuantileRandom compares with sorted samples over a wide range.
func TestQuantileRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]time.Duration, 20000)
	for i := range vals {
		vals[i] = time.Duration(math.Exp(r.Float64() * 25)) // 1 ns .. ~20 s
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{.001, .1, .5, .9, .99, .999, 1} {
		if got, want := h.Quantile(q), exactQuantile(vals, q); !within(got, want, 0.004) {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	var merged Histogram
	merged.Merge(h.Snapshot())
	merged.Merge(histSnapshot{})
	if merged.Count() != h.Count() || merged.Quantile(.5) != h.Quantile(.5) || merged.Max() != h.Max() || merged.Quantile(0) != h.Quantile(0) {
		t.Errorf("merged snapshot differs: n %d/%d p50 %v/%v", merged.Count(), h.Count(), merged.Quantile(.5), h.Quantile(.5))
	}
}

func TestBuckets(t *testing.T) {
	prevHi := int64(-1)
	for i := range numBuckets {
		lo, hi := bucketRange(i)
		if int64(lo) != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d, %d], previous ended at %d", i, lo, hi, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d] maps back to %d, %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		prevHi = int64(hi)
		if hi == math.MaxUint64 {
			break
		}
	}
	if uint64(prevHi) != math.MaxUint64 {
		t.Errorf("buckets end at %d", prevHi)
	}
}

func TestInspect(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want frame
	}{
		{`{"welcome":{"client":"1","server":"1","session":"1.x","resumed":false}}`, frame{kind: kindWelcome}},
		{`{"ref":12,"action":"Echo.echo","result":"xx"}`, frame{kind: kindReply, ref: 12, action: "Echo.echo"}},
		{`{"ref":"a","action":"Echo.echo","result":1}`, frame{kind: kindReply, ref: -1, action: "Echo.echo"}},
		{`{"ref":3,"action":"Chat.say","error":{"code":"rate_limited","message":"slow down"}}`, frame{kind: kindReply, ref: 3, action: "Chat.say", code: "rate_limited"}},
		{`{"error":{"code":"rate_limited","message":"too many","action":"Chat.whisper"}}`, frame{kind: kindError, code: "rate_limited", action: "Chat.whisper"}},
		{`{"error":{"code":"bad_frame","message":"invalid JSON"}}`, frame{kind: kindError, code: "bad_frame"}},
		{`{"Chat.message":{"room":"bench","from":"p","text":"4 99 xx"}}`, frame{kind: kindPush, name: "Chat.message", text: []byte("4 99 xx")}},
		{`{"Chat.whisper":{"from":"1","name":"guest-1","text":"0 5 "}}`, frame{kind: kindPush, name: "Chat.whisper", text: []byte("0 5 ")}},
		{`{"Other.event":1}`, frame{}},
		{`{"ref":1}`, frame{}},
	} {
		got := inspect([]byte(tc.msg))
		if got.kind != tc.want.kind || got.ref != tc.want.ref || got.code != tc.want.code || got.action != tc.want.action ||
			got.name != tc.want.name || string(got.text) != string(tc.want.text) {
			t.Errorf("inspect(%s) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}

func TestStamp(t *testing.T) {
	for _, size := range []int{0, 5, 64, 4096} {
		text := appendStamp(nil, 42, 123456789, size)
		if len(text) < size {
			t.Errorf("size %d: text is %d bytes", size, len(text))
		}
		if seq, ns, ok := parseStamp(text); !ok || seq != 42 || ns != 123456789 {
			t.Errorf("parseStamp(%q) = %d, %d, %v", text, seq, ns, ok)
		}
	}
	for _, bad := range []string{"", "12", "x 1 ", "1 y "} {
		if _, _, ok := parseStamp([]byte(bad)); ok {
			t.Errorf("parseStamp(%q) ok", bad)
		}
	}
}

func TestSeqSet(t *testing.T) {
	s := newSeqSet()
	steps := []struct {
		seq                int64
		isNew, reorderedTo bool
	}{{0, true, false}, {1, true, false}, {1, false, false}, {300, true, false}, {5, true, true}, {5, false, false}, {301, true, false}}
	for _, st := range steps {
		isNew, reordered := s.add(st.seq)
		if isNew != st.isNew || reordered != st.reorderedTo {
			t.Errorf("add(%d) = %v, %v; want %v, %v", st.seq, isNew, reordered, st.isNew, st.reorderedTo)
		}
	}
}

func TestPacer(t *testing.T) {
	p := newPacer(1000, 5_000_000)
	p.end = 5_000_000 + 3_000_000
	var got []int64
	for {
		due, ok := p.next()
		if !ok {
			break
		}
		got = append(got, due)
	}
	if want := []int64{5_000_000, 6_000_000, 7_000_000}; !slices.Equal(got, want) {
		t.Errorf("due times %v, want %v", got, want)
	}
}
