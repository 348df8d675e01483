package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/internal/redistest"
)

// get fetches http://addr+path without keep-alive and returns the status
// and body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestClusterRedisFull: two nodes on a Redis that reaches its maxmemory.
// Each node's /readyz fails and says Redis is out of memory, /metrics
// counts the OOM errors, whispers fail with an error, and no node declares
// the other dead: when memory frees, /readyz is ready again and the
// clients, never marked away, whisper to each other where they are.
func TestClusterRedisFull(t *testing.T) {
	rs := redistest.Start(t)
	env := []string{"ROCKET_REDIS_URL=" + rs.URL, "ROCKET_HEARTBEAT_INTERVAL=100ms", "ROCKET_COMMAND_RATE=-1"}
	a := startProc(t, env...)
	b := startProc(t, env...)
	ca := dialClient(t, "ws://"+a.ws+"/")
	cb := dialClient(t, "ws://"+b.ws+"/")
	ca.whisper(cb.id, "0")
	cb.expectWhispers(0, 1)

	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rs.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx := t.Context()
	info, err := rc.Do(ctx, rc.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	used, _ := strconv.ParseInt(regexp.MustCompile(`used_memory:(\d+)`).FindStringSubmatch(info)[1], 10, 64)
	if err := rc.Do(ctx, rc.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", strconv.FormatInt(used+4<<20, 10)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	chunk := strings.Repeat("x", 64<<10)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("Redis still takes writes after 64 MB")
		}
		err := rc.Do(ctx, rc.B().Append().Key("filler").Value(chunk).Build()).Error()
		if err != nil && strings.HasPrefix(err.Error(), "OOM") {
			break
		}
		if err != nil {
			t.Fatalf("APPEND: %v", err)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for _, p := range []*proc{a, b} {
		var code int
		var body string
		pollUntil(t, deadline, func() bool {
			code, body = get(t, p.web, "/readyz")
			return code == http.StatusServiceUnavailable
		}, func() string { return "/readyz still " + strconv.Itoa(code) + ": " + body })
		if !strings.Contains(body, "out of memory") {
			t.Fatalf("/readyz under OOM: %q, want it to say Redis is out of memory", body)
		}
		t.Logf("/readyz: %d %s", code, strings.TrimSpace(body))
	}
	if err := ca.tryWhisper(cb.id, "full"); err == nil {
		t.Fatal("a whisper was accepted while Redis is full")
	} else {
		t.Logf("whisper while full: %v", err)
	}
	// Long enough for many rounds of each node's reaper (a node is dead
	// after 500 ms without heartbeat).
	end := time.Now().Add(2 * time.Second)
	pollUntil(t, end.Add(time.Second), func() bool { return time.Now().After(end) }, func() string { return "" })
	for _, p := range []*proc{a, b} {
		_, metrics := get(t, p.web, "/metrics")
		m := regexp.MustCompile(`(?m)^rocket_broker_oom_errors_total (\d+)`).FindStringSubmatch(metrics)
		if m == nil || m[1] == "0" {
			t.Fatalf("/metrics: rocket_broker_oom_errors_total %v, want counted", m)
		}
	}

	if err := rc.Do(ctx, rc.B().Del().Key("filler").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for _, p := range []*proc{a, b} {
		pollUntil(t, deadline, func() bool {
			code, _ := get(t, p.web, "/readyz")
			return code == http.StatusOK
		}, func() string { return "/readyz not ready after memory freed" })
	}
	// Neither client was marked away: each whisper goes straight to it.
	ca.whisper(cb.id, "1")
	cb.expectWhispers(1, 2)
	cb.whisper(ca.id, "2")
	ca.expectWhispers(2, 3)
}

// TestClusterNodePaused: a node is paused (SIGSTOP) for longer than its
// inbox pop waits for Redis, with a client (without acknowledged
// delivery) on it, while whispers are sent to that client from the other
// node: Redis hands the first one to the paused node's blocked pop, the
// others wait in its inbox. When the node continues, the client gets every
// whisper, in order: the one Redis had handed over is not lost.
func TestClusterNodePaused(t *testing.T) {
	rs := redistest.Start(t)
	// Heartbeats slow enough that the pause does not get the node
	// declared dead: only the pop is under test.
	env := []string{"ROCKET_REDIS_URL=" + rs.URL, "ROCKET_HEARTBEAT_INTERVAL=5s", "ROCKET_COMMAND_RATE=-1"}
	a := startProc(t, env...)
	b := startProc(t, env...)
	sender := dialClient(t, "ws://"+a.ws+"/")
	receiver := dialClient(t, "ws://"+b.ws+"/")
	sender.whisper(receiver.id, "0")
	receiver.expectWhispers(0, 1)

	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.cmd.Process.Signal(syscall.SIGCONT) })
	const n = 10
	for i := 1; i <= n; i++ {
		sender.whisper(receiver.id, strconv.Itoa(i))
	}
	const pause = 10 * time.Second // the pop used to give up after 6 s
	paused := time.Now()
	pollUntil(t, paused.Add(pause+time.Second), func() bool { return time.Since(paused) >= pause }, func() string { return "" })
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	receiver.expectWhispers(1, n+1)
}
