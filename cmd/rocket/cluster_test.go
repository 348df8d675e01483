package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/internal/redistest"
)

// runMainEnv makes the test binary run main() instead of the tests, so
// that tests can start real rocket processes (and kill them).
const runMainEnv = "ROCKET_TEST_RUN_MAIN"

// proc is a rocket process started by a test.
type proc struct {
	cmd     *exec.Cmd
	ws, web string
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit status, once exited is closed
}

// startProc runs a rocket process on free loopback ports with env added to
// the environment, and waits until it listens.
func startProc(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-log-format", "json")
	cmd.Env = append(os.Environ(), append([]string{runMainEnv + "=1"}, env...)...)
	dieWithParent(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rocket: %v", err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Websocket, HTTP string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "rocket listening" {
				p.ws = strings.TrimSuffix(strings.TrimPrefix(line.Websocket, "ws://"), "/")
				p.web = strings.TrimSuffix(strings.TrimPrefix(line.HTTP, "http://"), "/")
				close(listening)
			}
			if testing.Verbose() {
				t.Logf("rocket %d: %s", cmd.Process.Pid, sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case <-listening:
		return p
	case <-p.exited:
		t.Fatalf("rocket exited before listening: %v", p.err)
	case <-time.After(15 * time.Second):
		t.Fatal("rocket did not listen within 15s")
	}
	return nil
}

// kill9 kills the process at once, as a crash would.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("killed process did not exit")
	}
}

type wsClient struct {
	t       *testing.T
	c       *websocket.Conn
	id      string
	session string
	resumed bool
}

func dialClient(t *testing.T, url string) *wsClient {
	t.Helper()
	c, w := dial(t, url)
	return &wsClient{t: t, c: c, id: w["client"], session: w["session"], resumed: w["resumed"] == "true"}
}

// whisper is tryWhisper on the test's goroutine: it fails the test on an
// error.
func (w *wsClient) whisper(to, text string) {
	w.t.Helper()
	if err := w.tryWhisper(to, text); err != nil {
		w.t.Fatalf("whisper %s: %v", text, err)
	}
}

func (w *wsClient) expectWhispers(from int, to int) {
	w.t.Helper()
	for i := from; i < to; i++ {
		var f struct {
			Whisper *struct{ Text string } `json:"Chat.whisper"`
		}
		readJSON(w.t, w.c, &f)
		if f.Whisper == nil || f.Whisper.Text != fmt.Sprint(i) {
			w.t.Fatalf("whisper %d: got %+v", i, f.Whisper)
		}
	}
}

// TestClusterNodeKilled: a node dies (kill -9) with a client on it. The
// other node's heartbeat watch declares it dead and keeps the client's
// mail; messages sent to the client before and after the cleanup wait in
// its mailbox, and when it resumes on the surviving node it gets every one,
// in order, exactly once.
func TestClusterNodeKilled(t *testing.T) {
	rs := redistest.Start(t)
	env := []string{"ROCKET_REDIS_URL=" + rs.URL, "ROCKET_HEARTBEAT_INTERVAL=100ms", "ROCKET_COMMAND_RATE=-1"}
	a := startProc(t, env...)
	b := startProc(t, env...)

	ann := dialClient(t, "ws://"+a.ws+"/")
	bob := dialClient(t, "ws://"+b.web+"/ws")
	for i := range 10 {
		ann.whisper(bob.id, fmt.Sprint(i))
	}
	bob.expectWhispers(0, 10)

	b.kill9(t)
	// Sent at once: the directory still names the dead node, so these go
	// to its inbox, and the cleanup moves them to bob's mailbox.
	for i := 10; i < 20; i++ {
		ann.whisper(bob.id, fmt.Sprint(i))
	}
	// An observer on the same Redis sees the cleanup mark bob away.
	obs, err := redis.New(context.Background(), redis.Config{URL: rs.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	waitAway(t, obs, bob.id, time.Now().Add(10*time.Second))
	// Sent after the cleanup: straight to the mailbox.
	for i := 20; i < 30; i++ {
		ann.whisper(bob.id, fmt.Sprint(i))
	}
	bob2 := dialClient(t, "ws://"+a.ws+"/?session="+bob.session)
	if bob2.id != bob.id || !bob2.resumed {
		t.Fatalf("resumed as %s (resumed %v), want %s", bob2.id, bob2.resumed, bob.id)
	}
	bob2.expectWhispers(10, 30)
	// Nothing more (no duplicate): the next frame is the reply to our own
	// command.
	write(t, bob2.c, `{"ref":"last","Echo.echo":1}`)
	var reply struct{ Ref string }
	readJSON(t, bob2.c, &reply)
	if reply.Ref != "last" {
		t.Fatalf("got %+v, want the echo reply (a duplicate whisper?)", reply)
	}
}
