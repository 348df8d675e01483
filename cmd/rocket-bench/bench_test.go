package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/internal/demo"
)

// TestMain lets the test binary serve as a worker process or a loopback
// peer: the idle test with -per-process below -conns and the loopback test
// run the binary again, as rocket-bench runs itself.
func TestMain(m *testing.M) {
	if first, ok := os.LookupEnv(workerEnv); ok {
		os.Exit(workerMain(context.Background(), first, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if addr, ok := os.LookupEnv(loopbackPeerEnv); ok {
		os.Exit(loopbackPeerMain(addr, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testNode is an in-process Rocket server with the demo app.
type testNode struct {
	ws      string // ws://127.0.0.1:port/
	metrics string // http://127.0.0.1:port/metrics
}

// startNode starts a node on b (nil: its own memory broker) with the
// command rate given (negative: unlimited).
func startNode(t *testing.T, b broker.Broker, commandRate float64) testNode {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := rocket.New(rocket.Config{
		CommandRate: commandRate,
		Metrics:     reg,
		Broker:      b,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	demo.Register(srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
		ms.Close()
	})
	return testNode{ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/", metrics: ms.URL + "/metrics"}
}

// bench runs rocket-bench with args and returns its exit status, the JSON
// object of its last line of output (nil if none) and its standard error.
func bench(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if last == "" {
		return code, nil, stderr.String()
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		t.Fatalf("last line of stdout is not a JSON object: %v\n%s", err, last)
	}
	return code, res, stderr.String()
}

// benchOK runs rocket-bench, expecting success, and checks the members
// every result has.
func benchOK(t *testing.T, scenario string, conns int, args ...string) map[string]any {
	t.Helper()
	args = append([]string{scenario, "-conns", itoa(conns), "-quiet"}, args...)
	code, res, stderr := bench(t, args...)
	if code != exitOK || res == nil {
		t.Fatalf("rocket-bench %v: exit %d, result %v\n%s", args, code, res, stderr)
	}
	if res["scenario"] != scenario {
		t.Errorf("scenario = %v, want %s", res["scenario"], scenario)
	}
	if res["conns"] != float64(conns) {
		t.Errorf("conns = %v, want %d", res["conns"], conns)
	}
	for _, k := range []string{"ops", "ops_per_sec", "p50_ms", "p99_ms"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want > 0", k, res[k])
		}
	}
	if res["errors"] != float64(0) {
		t.Errorf("errors = %v, want 0; %v", res["errors"], res["errors_by_kind"])
	}
	if p50, p99, maxMs := res["p50_ms"].(float64), res["p99_ms"].(float64), res["max_ms"].(float64); p50 > p99 || p99 > maxMs {
		t.Errorf("p50 %v, p99 %v, max %v are not in order", p50, p99, maxMs)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr)
	}
	return res
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// Short runs: the measured window, the warmup and the idle hold.
var short = []string{"-duration", "300ms", "-warmup", "100ms", "-drain", "3s"}

func TestIdle(t *testing.T) {
	n := startNode(t, nil, -1)
	res := benchOK(t, "idle", 40, "-url", n.ws, "-metrics", n.metrics, "-duration", "200ms")
	if _, ok := res["server_bytes_per_conn"].(float64); !ok {
		t.Errorf("server_bytes_per_conn = %v, want a number", res["server_bytes_per_conn"])
	}
	if got := res["clients_after"].(float64) - res["clients_before"].(float64); got != 40 {
		t.Errorf("rocket_clients grew by %v, want 40", got)
	}
	if res["opened"] != float64(40) || res["processes"] != float64(1) {
		t.Errorf("opened %v in %v processes, want 40 in 1", res["opened"], res["processes"])
	}
}

// TestIdleWorkers holds the connections in worker processes (this test
// binary, run again).
func TestIdleWorkers(t *testing.T) {
	n := startNode(t, nil, -1)
	res := benchOK(t, "idle", 30, "-url", n.ws, "-metrics", n.metrics, "-duration", "200ms", "-per-process", "12")
	if res["processes"] != float64(3) || res["opened"] != float64(30) {
		t.Errorf("opened %v in %v processes, want 30 in 3", res["opened"], res["processes"])
	}
	if got := res["clients_after"].(float64) - res["clients_before"].(float64); got != 30 {
		t.Errorf("rocket_clients grew by %v, want 30", got)
	}
}

func TestConnect(t *testing.T) {
	n := startNode(t, nil, -1)
	res := benchOK(t, "connect", 60, "-url", n.ws, "-metrics", n.metrics)
	if res["opened"] != float64(60) {
		t.Errorf("opened = %v, want 60", res["opened"])
	}
}

func TestEcho(t *testing.T) {
	n := startNode(t, nil, -1)
	t.Run("closed loop", func(t *testing.T) {
		benchOK(t, "echo", 8, append([]string{"-url", n.ws, "-metrics", n.metrics}, short...)...)
	})
	t.Run("rate", func(t *testing.T) {
		res := benchOK(t, "echo", 8, append([]string{"-url", n.ws, "-rate", "2000", "-size", "300"}, short...)...)
		// 2000/s for 0.3 s, give or take the edges.
		if ops := res["ops"].(float64); ops < 400 || ops > 800 {
			t.Errorf("ops = %v, want about 600", ops)
		}
	})
}

func TestFanout(t *testing.T) {
	n := startNode(t, nil, -1)
	t.Run("window", func(t *testing.T) {
		res := benchOK(t, "fanout", 20, append([]string{"-url", n.ws}, short...)...)
		if res["missing"] != float64(0) || res["duplicates"] != float64(0) {
			t.Errorf("missing %v, duplicates %v", res["missing"], res["duplicates"])
		}
		if d := res["deliveries"].(float64); d != 20*res["ops"].(float64) {
			t.Errorf("deliveries %v, want 20 × ops %v", d, res["ops"])
		}
	})
	t.Run("rate", func(t *testing.T) {
		res := benchOK(t, "fanout", 20, append([]string{"-url", n.ws, "-rate", "200"}, short...)...)
		if ops := res["ops"].(float64); ops < 40 || ops > 80 {
			t.Errorf("ops = %v, want about 60", ops)
		}
	})
}

// TestDirect runs two nodes on one in-memory broker.
func TestDirect(t *testing.T) {
	b := memory.New(memory.Config{})
	t.Cleanup(func() { b.Close() })
	a, c := startNode(t, b, -1), startNode(t, b, -1)
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	res := benchOK(t, "direct", 20, append([]string{"-url", a.ws, "-url", c.ws, "-metrics", a.metrics, "-metrics", c.metrics, "-cpuprofile", prof}, short...)...)
	if res["missing"] != float64(0) || res["duplicates"] != float64(0) {
		t.Errorf("missing %v, duplicates %v", res["missing"], res["duplicates"])
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("-cpuprofile %s: %v, %v", prof, st, err)
	}
	if res["sent"] != res["deliveries"] {
		t.Errorf("sent %v, delivered %v", res["sent"], res["deliveries"])
	}
	t.Run("acks", func(t *testing.T) {
		b := &ackCounter{Broker: memory.New(memory.Config{}), last: map[string]uint64{}}
		t.Cleanup(func() { b.Close() })
		a, c := startNode(t, b, -1), startNode(t, b, -1)
		res := benchOK(t, "direct", 20, append([]string{"-acks", "-url", a.ws, "-url", c.ws}, short...)...)
		if res["missing"] != float64(0) || res["duplicates"] != float64(0) || res["acks"] != true {
			t.Errorf("missing %v, duplicates %v, acks %v", res["missing"], res["duplicates"], res["acks"])
		}
		// Each of the 10 receivers acknowledges every ackEvery whispers:
		// the numbers acknowledged add up to all but fewer than ackEvery
		// per receiver.
		delivered := uint64(res["deliveries"].(float64))
		deadline := time.Now().Add(5 * time.Second)
		for {
			acked, clients := b.sum()
			if acked > 0 && acked+10*ackEvery > delivered {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d whispers delivered, %d acknowledged by %d clients; want all but fewer than %d per receiver", delivered, acked, clients, ackEvery)
			}
			time.Sleep(10 * time.Millisecond) // the last acks may still be on their way
		}
	})
}

// ackCounter is a broker that records the last number each client
// acknowledged.
type ackCounter struct {
	broker.Broker
	mu   sync.Mutex
	last map[string]uint64
}

func (b *ackCounter) Ack(ctx context.Context, clientID string, seq uint64) error {
	b.mu.Lock()
	b.last[clientID] = max(b.last[clientID], seq)
	b.mu.Unlock()
	return b.Broker.Ack(ctx, clientID, seq)
}

// sum returns the numbers acknowledged, added up, and the clients that
// acknowledged.
func (b *ackCounter) sum() (acked uint64, clients int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.last {
		acked += n
	}
	return acked, len(b.last)
}

// TestRateLimited runs against a server with the default command rate:
// the tool must say so.
func TestRateLimited(t *testing.T) {
	n := startNode(t, nil, 0)
	code, res, stderr := bench(t, append([]string{"echo", "-conns", "2", "-quiet", "-url", n.ws}, short...)...)
	if code != exitErrors {
		t.Errorf("exit %d, want %d", code, exitErrors)
	}
	if res == nil || res["rate_limited"].(float64) == 0 || res["errors"].(float64) < res["rate_limited"].(float64) {
		t.Errorf("result %v: want rate_limited errors", res)
	}
	if !strings.Contains(stderr, "ROCKET_COMMAND_RATE=-1") {
		t.Errorf("summary does not tell how to start the server:\n%s", stderr)
	}
}

func TestSetupFailures(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"echo", "-url", "ws://" + closed + "/"}, "cannot connect"},
		{[]string{"idle", "-url", "ws://" + closed + "/", "-metrics", "http://" + closed + "/metrics"}, "cannot connect"},
		{[]string{"idle", "-url", "ws://" + closed + "/"}, "-metrics is required"},
		{[]string{"echo", "-url", "ws://192.0.2.1:9185/"}, "only loads servers on this machine"},
		{[]string{"nope"}, "unknown scenario"},
		{[]string{}, "missing SCENARIO"},
		{[]string{"echo", "-conns", "0"}, "-conns"},
	} {
		code, res, stderr := bench(t, tc.args...)
		if code != exitSetup || res != nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("rocket-bench %q: exit %d, result %v, stderr %q; want exit %d and %q", tc.args, code, res, stderr, exitSetup, tc.want)
		}
	}
}
