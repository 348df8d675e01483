package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	startTimeout = 20 * time.Second // a process becomes ready within this
	stopTimeout  = 10 * time.Second // SIGTERM, then SIGKILL after this
)

// logBuffer collects a process's output, thread-safe, and calls onLine for
// each complete line.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	onLine  func(line []byte)
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		if b.onLine != nil {
			b.onLine(b.partial[:i])
		}
		b.partial = b.partial[i+1:]
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a child process stopped with SIGTERM (then SIGKILL) at the end
// of the test.
type process struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	out     *logBuffer
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, set before done is closed
	stopMu  sync.Mutex
	stopped bool
}

// startProcess starts cmd with its output in out and registers its stop
// with t.Cleanup.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, out *logBuffer) *process {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, cmd.Path, err)
	}
	p := &process{t: t, name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, out.String())
		}
	})
	return p
}

// stop ends the process with SIGTERM, or SIGKILL when it is still running
// after stopTimeout, and reports whether it exited cleanly. It returns
// nil when called again.
func (p *process) stop() error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	select {
	case <-p.done:
		return fmt.Errorf("%s exited before the end of the test: %v", p.name, p.err)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM: killed", p.name, stopTimeout)
	}
	if p.err != nil {
		return fmt.Errorf("%s: exit after SIGTERM: %v", p.name, p.err)
	}
	if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
		return fmt.Errorf("%s: the race detector reported a data race (see its output)", p.name)
	}
	return nil
}

// node is a running cmd/rocket process, logging at debug level.
type node struct {
	*process
	ws, http string // ws://127.0.0.1:port/ and http://127.0.0.1:port/
	server   string // the server id it logged

	mu   sync.Mutex
	left map[string]chan struct{} // client id -> closed once "client left" is logged
}

// httpAddr is the host:port of the node's HTTP listener.
func (n *node) httpAddr() string {
	return strings.TrimSuffix(strings.TrimPrefix(n.http, "http://"), "/")
}

// leftCh returns the channel closed when the node logs that client id left
// (it is away: in the directory as such, its late messages in its mailbox).
func (n *node) leftCh(id string) chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.left[id]
	if !ok {
		ch = make(chan struct{})
		n.left[id] = ch
	}
	return ch
}

// waitLeft waits until the node has logged that client id left.
func (n *node) waitLeft(id string) error {
	select {
	case <-n.leftCh(id):
		return nil
	case <-time.After(startTimeout):
		return fmt.Errorf("%s logged no \"client left\" for client %q within %v", n.name, id, startTimeout)
	}
}

// startNode starts cmd/rocket on free loopback ports with the ROCKET_*
// variables in env, and waits until it listens.
func startNode(t testing.TB, name string, env ...string) *node {
	t.Helper()
	bin := rocketBinary(t)
	n := &node{left: map[string]chan struct{}{}}
	ready := make(chan struct{})
	out := &logBuffer{}
	out.onLine = func(line []byte) {
		var rec struct{ Msg, Websocket, HTTP, Server, Client string }
		if json.Unmarshal(line, &rec) != nil {
			return
		}
		switch rec.Msg {
		case "rocket listening":
			if n.http == "" {
				n.ws, n.http, n.server = rec.Websocket, rec.HTTP, rec.Server
				close(ready)
			}
		case "client left":
			ch := n.leftCh(rec.Client)
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
	}
	cmd := exec.Command(bin,
		"-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
		"-log-format", "json", "-log-level", "debug", "-shutdown-timeout", "5s")
	cmd.Env = append(cleanEnv(), env...)
	cmd.Dir = t.TempDir()
	p := startProcess(t, name, cmd, out)
	select {
	case <-ready:
	case <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", name, p.err, out.String())
	case <-time.After(startTimeout):
		t.Fatalf("%s logged no \"rocket listening\" line within %v:\n%s", name, startTimeout, out.String())
	}
	if !strings.HasPrefix(n.ws, "ws://") || !strings.HasPrefix(n.http, "http://") {
		t.Fatalf("%s: unexpected addresses in its log: websocket %q, http %q", name, n.ws, n.http)
	}
	n.process = p
	t.Logf("%s: server %s, %s and %s", name, n.server, n.http, n.ws)
	return n
}

// cleanEnv is this process's environment without ROCKET_* variables, so
// that a developer's settings do not leak into the servers under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROCKET_") {
			env = append(env, kv)
		}
	}
	return env
}

// startRedis starts a redis-server of its own on a free loopback port, with
// its files in a temporary directory, and returns its URL.
func startRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: the cluster browser test runs its own Redis (Debian: apt-get install redis-server)")
	}
	dir := t.TempDir()
	var lastOut string
	for try := 0; try < 3; try++ { // the free port may be taken before redis binds it
		port := freePort(t)
		out := &logBuffer{}
		cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--daemonize", "no")
		cmd.Env = cleanEnv()
		p := startProcess(t, "redis-server", cmd, out)
		addr := net.JoinHostPort("127.0.0.1", port)
		deadline := time.Now().Add(startTimeout)
		for time.Now().Before(deadline) {
			if redisPing(addr) == nil {
				t.Logf("redis-server on %s", addr)
				return "redis://" + addr + "/0"
			}
			select {
			case <-p.done:
				deadline = time.Time{} // exited: try another port
			case <-time.After(50 * time.Millisecond):
			}
		}
		lastOut = out.String()
		_ = p.stop()
	}
	t.Fatalf("redis-server did not start:\n%s", lastOut)
	return ""
}

// redisPing sends PING to addr and expects PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// proxy is a TCP proxy on a loopback port: each connection it accepts goes
// to the first backend that accepts a connection, in list order. Hold makes
// it keep new connections waiting until Release; Cut drops every connection
// it carries.
type proxy struct {
	t        testing.TB
	ln       net.Listener
	backends []string

	mu      sync.Mutex
	release chan struct{} // non-nil while holding; closed by Release
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
	quit    chan struct{}
}

// startProxy listens on a free loopback port in front of backends
// (host:port). It is closed, with every connection, in t.Cleanup.
func startProxy(t testing.TB, backends ...string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, backends: backends, conns: map[net.Conn]struct{}{}, quit: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	t.Logf("proxy on %s in front of %v", ln.Addr(), backends)
	return p
}

// url is the proxy's http:// address.
func (p *proxy) url() string { return "http://" + p.ln.Addr().String() + "/" }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track records c so that Cut and close can drop it; false when closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	hold := p.release
	p.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-p.quit:
			p.untrack(c)
			return
		}
	}
	var b net.Conn
	for _, addr := range p.backends {
		var err error
		if b, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			break
		}
	}
	if b == nil || !p.track(b) {
		if b != nil {
			b.Close()
		}
		p.untrack(c) // no live backend: the client sees the connection fail
		return
	}
	var once sync.Once
	done := func() { once.Do(func() { p.untrack(c, b) }) }
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(b, c)
		done()
	}()
	_, _ = io.Copy(c, b)
	done()
}

// Hold makes new connections wait (accepted, not forwarded) until Release.
func (p *proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.release == nil {
		p.release = make(chan struct{})
	}
}

// Release forwards the held connections and stops holding.
func (p *proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.release != nil {
		close(p.release)
		p.release = nil
	}
}

// Cut drops every connection the proxy has accepted or opened, like a
// network failure: the browser sees a WebSocket close 1006 and the server a
// dead TCP connection. It returns how many it dropped.
func (p *proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns)
}

func (p *proxy) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
		p.ln.Close()
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		p.t.Errorf("proxy: connections still open %v after close", stopTimeout)
	}
}

// startControl serves actions at POST /<name> on a loopback port, for the
// browser scripts to act on the processes (stop a node, hold the proxy).
// It returns its base URL.
func startControl(t testing.TB, actions map[string]func(q url.Values) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for name, fn := range actions {
		mux.HandleFunc("POST /"+name, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			err := fn(r.URL.Query())
			t.Logf("control: %s %s (%v): %v", name, r.URL.RawQuery, time.Since(start).Round(time.Millisecond), errOrOK(err))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "ok\n")
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("control server: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String() + "/"
}

// artifactsDir is where screenshots go: $ROCKET_E2E_ARTIFACTS, or
// rocket-e2e in the system's temporary directory.
func artifactsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("ROCKET_E2E_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "rocket-e2e")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	return dir
}

func errOrOK(err error) any {
	if err == nil {
		return "ok"
	}
	return err
}
