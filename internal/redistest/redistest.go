// Package redistest starts throw-away redis-server processes for tests.
//
// Each Server listens on a free port of 127.0.0.1, keeps its data in a
// temporary directory of the test and runs with appendonly yes, so that a
// restart (Stop or Kill, then Start) keeps the data as a production Redis
// does. The process is killed when the test ends.
//
// The redis-server binary must be installed (Debian: apt-get install
// redis-server); Start fails the test, rather than skipping it, when it is
// missing, so that a machine without Redis cannot pass the suite silently.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the waits done by this package. They are only reached when
// something is wrong.
const (
	startTimeout = 10 * time.Second // until the server answers PING
	stopTimeout  = 10 * time.Second // until the process has exited
	pollInterval = 10 * time.Millisecond
	startTries   = 3 // ports tried by the first Start (another process may take the port)
)

// Server is a redis-server process started for a test.
type Server struct {
	// Addr is the server's address, 127.0.0.1:PORT.
	Addr string
	// URL is the server's URL, redis://127.0.0.1:PORT/0.
	URL string

	bin string
	dir string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been waited for
	log  *bytes.Buffer // what the process printed, for failure messages
}

// Start starts a redis-server on a free port of 127.0.0.1 in a temporary
// directory, waits until it answers PING and registers a cleanup that kills
// it at the end of the test. It fails the test when redis-server is not
// installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: install it (Debian: apt-get install redis-server)")
	}
	s := &Server{bin: bin, dir: t.TempDir()}
	t.Cleanup(func() { s.stop(syscall.SIGKILL) })
	var lastErr error
	for range startTries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr + "/0"
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Start starts the server again, on the same port and with the same data
// directory, after Stop or Kill, and waits until it answers PING.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

// Stop shuts the server down gracefully (SIGTERM: Redis flushes its append
// only file and exits) and waits until the process has exited.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("redistest: stop: %v", err)
	}
}

// Kill kills the server (SIGKILL, as in a crash) and waits until the
// process has exited.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("redistest: kill: %v", err)
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs redis-server and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("server already running")
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1",
		"--port", port,
		"--dir", s.dir,
		"--appendonly", "yes",
		"--save", "",
		"--protected-mode", "yes",
		"--daemonize", "no",
		"--logfile", "",
	)
	dieWithParent(cmd)
	p := &process{cmd: cmd, done: make(chan struct{}), log: new(bytes.Buffer)}
	cmd.Stdout = &lockedWriter{w: p.log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.Addr)
		if err == nil {
			s.proc = p
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis-server on %s exited at start: %s", s.Addr, p.output())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("redis-server on %s did not answer PING within %v (%v): %s", s.Addr, startTimeout, err, p.output())
		}
		time.Sleep(pollInterval)
	}
}

// stop sends sig to the process, if running, and waits until it exited,
// killing it if it takes longer than stopTimeout.
func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("redis-server on %s did not exit within %v of %v; killed", s.Addr, stopTimeout, sig)
}

// ping sends one PING and checks the answer.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func (p *process) output() string {
	w := p.cmd.Stdout.(*lockedWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.log.String()
}

// lockedWriter serializes writes of the process's output with reads of it.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Dir returns the server's data directory.
func (s *Server) Dir() string { return s.dir }
