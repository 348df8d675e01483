package rocket_test

import (
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
)

func TestRateLimitedDisconnects(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := startNode(t, rocket.Config{CommandRate: 1, CommandBurst: 2, MaxRateLimited: 6, Metrics: reg}, nil)

	// A client well over its rate: the burst runs, six are refused, then
	// the connection is closed with 1008.
	c := dial(t, n.url, "")
	c.sendRaw(`[` + strings.TrimSuffix(strings.Repeat(`{"Echo.echo":1},`, 20), ",") + `]`)
	code, reason := c.expectCloseReason()
	if code != websocket.StatusPolicyViolation || reason != "rate limit exceeded" {
		t.Fatalf("closed with %d %q, want 1008 \"rate limit exceeded\"", code, reason)
	}
	if v := metricValue(t, reg, "rocket_rate_limit_disconnects_total"); v != 1 {
		t.Fatalf("rocket_rate_limit_disconnects_total = %v, want 1", v)
	}

	// Refusals that a command that runs interrupts do not add up: the
	// burst and four refusals, then a token later one command and four
	// refusals, and a fifth: the connection stays open.
	c2 := dial(t, n.url, "")
	four := `[{"Echo.echo":1},{"Echo.echo":2},{"Echo.echo":3},{"Echo.echo":4},{"Echo.echo":5},{"Echo.echo":6}]`
	c2.sendRaw(four)
	for range 4 {
		c2.expectError(rocket.CodeRateLimited)
	}
	time.Sleep(1100 * time.Millisecond) // the limiter gives a token back after 1 s
	c2.sendRaw(four[:len(four)-len(`,{"Echo.echo":6}]`)] + "]")
	for range 4 {
		c2.expectError(rocket.CodeRateLimited)
	}
	if f := c2.request("Echo.ping", nil); f.Error == nil || f.Error.Code != rocket.CodeRateLimited {
		t.Fatalf("want a rate_limited answer on an open connection, got %+v", f)
	}
	if v := metricValue(t, reg, "rocket_rate_limit_disconnects_total"); v != 1 {
		t.Fatalf("rocket_rate_limit_disconnects_total = %v, want 1: the second client was disconnected", v)
	}
}
