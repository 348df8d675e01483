package redis

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// prefixes makes the prefixes of the brokers of a test run unique, so that
// they can share one redis-server.
var prefixes atomic.Int64

func uniquePrefix() string {
	return fmt.Sprintf("t%d:", prefixes.Add(1))
}

// logs records what brokers log, and passes it to the test's log while the
// test runs.
type logs struct {
	t      testing.TB
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
}

func newLogs(t testing.TB) *logs {
	l := &logs{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
	})
	return l
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.closed {
		l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the lines logged so far that contain every one of subs.
func (l *logs) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// twoNodesHeartbeat is the heartbeat interval of twoBrokers' Brokers.
const twoNodesHeartbeat = 50 * time.Millisecond

// twoBrokers starts a redis-server and two Brokers on it, as two nodes
// with twoNodesHeartbeat heartbeats declared dead after deadAfter, sharing
// a fresh key prefix, which it returns.
func twoBrokers(t testing.TB, deadAfter time.Duration) (a, b *Broker, prefix string) {
	t.Helper()
	srv := redistest.Start(t)
	prefix = uniquePrefix()
	cfg := Config{Prefix: prefix, HeartbeatInterval: twoNodesHeartbeat, DeadAfter: deadAfter}
	return newBroker(t, srv, cfg), newBroker(t, srv, cfg), prefix
}

// newBroker returns a Broker on srv, closed at the end of the test. An
// empty cfg.Prefix is replaced with a unique one; a nil cfg.Logger with one
// that writes to the test's log.
func newBroker(t testing.TB, srv *redistest.Server, cfg Config) *Broker {
	t.Helper()
	cfg.URL = srv.URL
	if cfg.Prefix == "" {
		cfg.Prefix = uniquePrefix()
	}
	if cfg.Logger == nil {
		cfg.Logger = newLogs(t).logger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// waitFor polls cond every 10ms until it returns true, failing the test
// after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawDo runs a command on b's connection, failing the test on error.
func rawDo(t testing.TB, b *Broker, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.rdb.Do(ctx, b.rdb.B().Arbitrary(args...).Build()).Error(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// rawInt runs a command on b's connection that answers an integer.
func rawInt(t testing.TB, b *Broker, args ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := b.rdb.Do(ctx, b.rdb.B().Arbitrary(args...).Build()).AsInt64()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return n
}

// mailData returns the data of the mail Resume returned.
func mailData(r broker.Resumed) [][]byte {
	var out [][]byte
	for _, m := range r.Mail {
		out = append(out, m.Data)
	}
	return out
}
