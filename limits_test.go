package rocket

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestClientAddr(t *testing.T) {
	l := newConnLimits(Config{TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7", "fd00::/8"}})
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer, no header", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"untrusted peer's header ignored", "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"trusted peer, no header", "10.1.2.3:5000", nil, "10.1.2.3"},
		{"trusted peer", "10.1.2.3:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"forged left part", "10.1.2.3:5000", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "10.1.2.3:5000", []string{"1.1.1.1, 203.0.113.9, 192.0.2.7, 10.9.9.9"}, "203.0.113.9"},
		{"several headers", "10.1.2.3:5000", []string{"1.1.1.1", "203.0.113.9, 10.0.0.1"}, "203.0.113.9"},
		{"all trusted", "10.1.2.3:5000", []string{"10.0.0.5, 10.0.0.6"}, "10.0.0.5"},
		{"garbage ends the walk", "10.1.2.3:5000", []string{"203.0.113.9, nonsense, 10.0.0.6"}, "10.0.0.6"},
		{"entries with ports", "10.1.2.3:5000", []string{"[2001:db8::1]:4711, 203.0.113.9:80"}, "203.0.113.9"},
		{"IPv6 peer", "[fd00::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped entry", "10.1.2.3:5000", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := l.clientAddr(r); got.String() != tc.want {
				t.Fatalf("clientAddr = %s, want %s", got, tc.want)
			}
		})
	}
	if got := l.clientAddr(&http.Request{RemoteAddr: "pipe"}); got.IsValid() {
		t.Fatalf("clientAddr of an unknown peer = %s, want none", got)
	}
}

func TestTrustedProxiesValidated(t *testing.T) {
	_, err := New(Config{TrustedProxies: []string{"10.0.0.0/8", "10.0.0.300/8"}})
	if err == nil || !strings.Contains(err.Error(), "TrustedProxies") || !strings.Contains(err.Error(), "10.0.0.300/8") {
		t.Fatalf("New = %v, want an error naming TrustedProxies and the bad entry", err)
	}
	for _, cfg := range []Config{{MaxConnections: -1}, {MaxConnectionsPerIP: -1}, {MaxInputBytes: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a negative limit", cfg)
		}
	}
	cfg, err := Config{MaxFrameBytes: 1000}.withDefaults()
	if err != nil || cfg.MaxInputBytes != 4000 {
		t.Fatalf("MaxInputBytes default = %d (%v), want 4×MaxFrameBytes", cfg.MaxInputBytes, err)
	}
}

// The caps hold under concurrent takers, and the per-address table keeps
// no entry for an address without connections.
func TestConnLimitsBounded(t *testing.T) {
	l := newConnLimits(Config{MaxConnections: 50, MaxConnectionsPerIP: 3})
	var mu sync.Mutex
	var held []*slot
	refusals := map[string]int{}
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() {
			addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 40)})
			sl, ref := l.acquire(addr)
			mu.Lock()
			defer mu.Unlock()
			if ref != nil {
				refusals[ref.reason]++
				return
			}
			held = append(held, sl)
		})
	}
	wg.Wait()
	if len(held) > 50 || int(l.open.Load()) != len(held) {
		t.Fatalf("%d slots held (%d counted), want at most 50", len(held), l.open.Load())
	}
	l.mu.Lock()
	for a, n := range l.byAddr {
		if n > 3 || n < 1 {
			t.Errorf("address %s holds %d slots", a, n)
		}
	}
	l.mu.Unlock()
	if refusals["max_connections"]+refusals["max_connections_per_ip"] != 400-len(held) {
		t.Fatalf("refusals %v", refusals)
	}
	for _, sl := range held {
		sl.release()
		sl.release() // a second release gives nothing back twice
	}
	if l.open.Load() != 0 || l.addrs() != 0 {
		t.Fatalf("after release: %d open, %d addresses in the table", l.open.Load(), l.addrs())
	}
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 4 {
		sl, ref := l.acquire(a)
		if (i < 3) != (ref == nil) {
			t.Fatalf("connection %d from one address: refusal %v", i+1, ref)
		}
		defer sl.release()
	}
	if sl, ref := newConnLimits(Config{}).acquire(netip.Addr{}); sl != nil || ref != nil {
		t.Fatalf("without caps: slot %v, refusal %v", sl, ref)
	}
}
