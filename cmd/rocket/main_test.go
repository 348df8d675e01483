package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// startRocket runs the command on free loopback ports and returns the
// WebSocket and HTTP addresses, and a function that stops it and returns
// run's error.
func startRocket(t *testing.T, env map[string]string) (ws, web string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	args := []string{"-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-log-level", "warn"}
	var logs bytes.Buffer
	go func() { done <- run(ctx, args, getenv, &logs, ready) }()
	select {
	case addrs := <-ready:
		stopped := false
		stop = func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(15 * time.Second):
				t.Fatal("rocket did not stop within 15s")
				return nil
			}
		}
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("run: %v", err)
			}
		})
		return addrs[0].String(), addrs[1].String(), stop
	case err := <-done:
		cancel()
		t.Fatalf("run: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("rocket did not start within 10s")
	}
	return "", "", nil
}

func dial(t *testing.T, url string) (*websocket.Conn, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	var w struct {
		Welcome struct {
			Client, Server, Session string
			Resumed                 bool
		}
	}
	readJSON(t, c, &w)
	return c, map[string]string{"client": w.Welcome.Client, "server": w.Welcome.Server, "session": w.Welcome.Session, "resumed": fmt.Sprint(w.Welcome.Resumed)}
}

// expectGoingAway checks that the server closes each of conns with 1001
// (going away), as a graceful shutdown does.
func expectGoingAway(t *testing.T, conns ...*websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range conns {
		_, _, err := c.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("after shutdown: %v, want close 1001", err)
		}
	}
}

func readJSON(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

func write(t *testing.T, c *websocket.Conn, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestServesDemoOnBothPorts(t *testing.T) {
	ws, web, stop := startRocket(t, nil)

	// Static files with their content types.
	for path, want := range map[string]string{
		"/":            "text/html",
		"/chat.css":    "text/css",
		"/chat.js":     "text/javascript",
		"/rocket.js":   "text/javascript",
		"/rocket.d.ts": "",
		"/healthz":     "text/plain",
		"/readyz":      "text/plain",
	} {
		resp, err := noKeepAlive.Get("http://" + web + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) {
			t.Errorf("GET %s: Content-Type %q, want %q", path, ct, want)
		}
	}
	resp, err := noKeepAlive.Get("http://" + web + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: HTTP %d, want 404", resp.StatusCode)
	}

	// WebSockets on the WebSocket port and at /ws on the HTTP port, on
	// one server: a whisper crosses from one to the other.
	a, aw := dial(t, "ws://"+ws+"/")
	b, bw := dial(t, "ws://"+web+"/ws")
	if aw["server"] != bw["server"] || aw["client"] == bw["client"] {
		t.Fatalf("welcomes %v and %v", aw, bw)
	}
	write(t, a, `{"ref":1,"Echo.echo":{"x":1}}`)
	var reply struct {
		Ref    int
		Result map[string]int
	}
	readJSON(t, a, &reply)
	if reply.Ref != 1 || reply.Result["x"] != 1 {
		t.Fatalf("echo reply %+v", reply)
	}
	// The command shows in the metrics, with the runtime's and the
	// process's.
	resp, err = noKeepAlive.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`rocket_commands_total{action="Echo.echo",outcome="ok"} 1`,
		`rocket_clients 2`,
		`rocket_connections_total 2`,
		`rocket_command_duration_seconds_count{action="Echo.echo"} 1`,
		`rocket_broker_duration_seconds_count{op="connect"} 2`,
		`rocket_mailbox_dropped_total 0`,
		`process_resident_memory_bytes `,
		`go_goroutines `,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	write(t, a, `{"Chat.whisper":{"to":"`+bw["client"]+`","text":"hi"}}`)
	var whisper struct {
		Whisper map[string]string `json:"Chat.whisper"`
	}
	readJSON(t, b, &whisper)
	if whisper.Whisper["text"] != "hi" || whisper.Whisper["from"] != aw["client"] {
		t.Fatalf("whisper %+v", whisper)
	}

	// Graceful shutdown closes clients with 1001.
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	expectGoingAway(t, a, b)
}

func TestPublicDir(t *testing.T) {
	dir := t.TempDir()
	if err := writeFile(dir+"/index.html", "<h1>mine</h1>"); err != nil {
		t.Fatal(err)
	}
	_, web, _ := startRocket(t, map[string]string{"ROCKET_PUBLIC_DIR": dir})
	resp, err := noKeepAlive.Get("http://" + web + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "<h1>mine</h1>" {
		t.Fatalf("got %q", body)
	}
}

func TestBadConfiguration(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"bad integer":  {"ROCKET_MAX_FRAME_BYTES": "lots"},
		"bad duration": {"ROCKET_MAILBOX_TTL": "forever"},
		"negative":     {"ROCKET_MAX_DEPTH": "-3"},
		"bad level":    {"ROCKET_LOG_LEVEL": "loud"},
		"no dir":       {"ROCKET_PUBLIC_DIR": "/does/not/exist"},
		"redis":        {"ROCKET_REDIS_URL": "redis://127.0.0.1:1/0"},
		"bad proxy":    {"ROCKET_TRUSTED_PROXIES": "10.0.0.0/33"},
		"negative cap": {"ROCKET_MAX_CONNECTIONS_PER_IP": "-1"},
		"idle timeout": {"ROCKET_HTTP_IDLE_TIMEOUT": "-1s"},
		"header bytes": {"ROCKET_MAX_HEADER_BYTES": "-5"},
		"input bytes":  {"ROCKET_MAX_INPUT_BYTES": "-5"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, nil)
			if err == nil {
				t.Fatal("run accepted a bad configuration")
			}
			for k := range env {
				if !strings.Contains(err.Error(), k) && !strings.Contains(err.Error(), env[k]) {
					t.Errorf("error %q names neither %s nor its value", err, k)
				}
			}
		})
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	o, err := parseOptions([]string{"-max-frame-bytes", "2048"}, func(k string) string {
		return map[string]string{"ROCKET_MAX_FRAME_BYTES": "1024", "ROCKET_MAILBOX_SIZE": "7", "ROCKET_ALLOWED_ORIGINS": "a.com, *.b.com",
			"ROCKET_TRUSTED_PROXIES": "10.0.0.0/8, ::1", "ROCKET_MAX_CONNECTIONS": "9", "ROCKET_MAX_CONNECTIONS_PER_IP": "3",
			"ROCKET_MAX_INPUT_BYTES": "5000", "ROCKET_HTTP_IDLE_TIMEOUT": "0"}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.cfg.TrustedProxies, "|"); got != "10.0.0.0/8|::1" || o.cfg.MaxConnections != 9 || o.cfg.MaxConnectionsPerIP != 3 || o.cfg.MaxInputBytes != 5000 {
		t.Fatalf("limits %q %+v", got, o.cfg)
	}
	if o.idleTimeout != 60*time.Second || o.maxHeaderBytes != 64<<10 {
		t.Fatalf("HTTP limits: idle %v, header bytes %d; want the defaults", o.idleTimeout, o.maxHeaderBytes)
	}
	if o.cfg.MaxFrameBytes != 2048 || o.cfg.MailboxSize != 7 || o.wsAddr != ":9185" || o.httpAddr != ":9346" {
		t.Fatalf("options %+v", o)
	}
	if got := strings.Join(o.cfg.AllowedOrigins, "|"); got != "a.com|*.b.com" {
		t.Fatalf("allowed origins %q", got)
	}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}

// noKeepAlive is an HTTP client that leaves no idle connection (and so no
// goroutine) behind.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for env, want := range map[string]int{"": http.StatusNotFound, "true": http.StatusOK} {
		_, web, stop := startRocket(t, map[string]string{"ROCKET_PPROF": env})
		resp, err := noKeepAlive.Get("http://" + web + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("ROCKET_PPROF=%q: /debug/pprof/ answered %d, want %d", env, resp.StatusCode, want)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// A port in use is reported at once, with the address, and nothing is left
// running.
func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, flag := range []string{"-ws-addr", "-http-addr"} {
		t.Run(flag, func(t *testing.T) {
			args := []string{"-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", flag, busy.Addr().String()}
			done := make(chan error, 1)
			go func() { done <- run(context.Background(), args, func(string) string { return "" }, io.Discard, nil) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
					t.Fatalf("run = %v, want an error naming %s", err, busy.Addr())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("run did not return with its port in use")
			}
		})
	}
}
