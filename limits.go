package rocket

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// connLimits enforces Config.MaxConnections and Config.MaxConnectionsPerIP.
// A connection takes a slot before the connect hook runs and gives it back
// once, when it is refused, when its upgrade fails, or when it closes.
type connLimits struct {
	max     int64 // 0: no cap
	perAddr int   // 0: no cap
	trusted []netip.Prefix

	open atomic.Int64 // slots taken

	mu     sync.Mutex
	byAddr map[netip.Addr]int // slots taken per client address; no zero entries
}

func newConnLimits(cfg Config) *connLimits {
	trusted, _ := parsePrefixes(cfg.TrustedProxies) // validated in withDefaults
	return &connLimits{
		max:     int64(cfg.MaxConnections),
		perAddr: cfg.MaxConnectionsPerIP,
		trusted: trusted,
		byAddr:  make(map[netip.Addr]int),
	}
}

// A refusal is why a connection was not given a slot: the reason label of
// rocket_connections_refused_total, and the HTTP answer.
type refusal struct {
	reason string
	status int
	msg    string
}

var (
	refusedNodeFull = &refusal{"max_connections", http.StatusServiceUnavailable, "rocket: too many connections to this server"}
	refusedAddrFull = &refusal{"max_connections_per_ip", http.StatusTooManyRequests, "rocket: too many connections from this address"}
)

// slot is a connection's place under the caps; nil when there are none.
// release is safe to call more than once, from any goroutine.
type slot struct {
	l        *connLimits
	addr     netip.Addr // valid when counted per address
	released atomic.Bool
}

// acquire takes a slot for a connection from the client address addr (the
// zero Addr when it is unknown: then only the node's cap applies). It
// returns a nil slot when no cap is set.
func (l *connLimits) acquire(addr netip.Addr) (*slot, *refusal) {
	if l.max == 0 && l.perAddr == 0 {
		return nil, nil
	}
	if l.max > 0 {
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			return nil, refusedNodeFull
		}
	}
	sl := &slot{l: l}
	if l.perAddr > 0 && addr.IsValid() {
		l.mu.Lock()
		n := l.byAddr[addr]
		if n >= l.perAddr {
			l.mu.Unlock()
			if l.max > 0 {
				l.open.Add(-1)
			}
			return nil, refusedAddrFull
		}
		l.byAddr[addr] = n + 1
		l.mu.Unlock()
		sl.addr = addr
	}
	return sl, nil
}

// release gives the slot back; calls after the first do nothing.
func (sl *slot) release() {
	if sl == nil || sl.released.Swap(true) {
		return
	}
	l := sl.l
	if l.max > 0 {
		l.open.Add(-1)
	}
	if sl.addr.IsValid() {
		l.mu.Lock()
		if n := l.byAddr[sl.addr] - 1; n > 0 {
			l.byAddr[sl.addr] = n
		} else {
			delete(l.byAddr, sl.addr)
		}
		l.mu.Unlock()
	}
}

// addrs returns the number of client addresses holding slots.
func (l *connLimits) addrs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byAddr)
}

// clientAddr returns the address of the client that sent r: its TCP peer's,
// or, when the peer is a trusted proxy, the right-most address of
// X-Forwarded-For that is not a trusted proxy (each proxy appends the
// address it received the request from, so the entries right of the first
// untrusted one were written by trusted proxies; those left of it may be
// forged). It returns the zero Addr when the peer's address is unknown.
func (l *connLimits) clientAddr(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !l.isTrusted(addr) {
		return addr
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		entries := strings.Split(xff[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			a, ok := parseForwarded(entries[j])
			if !ok {
				// Not written by a proxy we know: trust no further.
				return addr
			}
			addr = a
			if !l.isTrusted(a) {
				return a
			}
		}
	}
	return addr
}

func (l *connLimits) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseForwarded reads one entry of X-Forwarded-For: an address, possibly
// with a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwarded(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// parsePrefixes reads CIDR prefixes, or single addresses.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, netip.PrefixFrom(p.Addr().Unmap(), unmappedBits(p)).Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix (10.0.0.0/8) nor an address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// unmappedBits gives the prefix length of p once its address is unmapped
// (::ffff:10.0.0.0/104 is 10.0.0.0/8).
func unmappedBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return max(p.Bits()-96, 0)
	}
	return p.Bits()
}
