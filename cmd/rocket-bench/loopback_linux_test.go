package main

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoopback measures the machine's floor with its peer process (this
// test binary, run again).
func TestLoopback(t *testing.T) {
	res := benchOK(t, "loopback", 50, short...)
	if v, ok := res["hop_cpu_us"].(float64); !ok || v <= 0 {
		t.Errorf("hop_cpu_us = %v, want > 0", res["hop_cpu_us"])
	}
	if v, ok := res["cpu_cores"].(float64); !ok || v <= 0 {
		t.Errorf("cpu_cores = %v, want > 0", res["cpu_cores"])
	}
	if res["processes"] != float64(2) || res["nodes"] != float64(0) {
		t.Errorf("processes %v, nodes %v: want 2 and 0", res["processes"], res["nodes"])
	}
}

// TestLoopbackSize refuses messages of no bytes, and messages larger than
// the event loop's read buffer.
func TestLoopbackSize(t *testing.T) {
	for size, want := range map[string]string{"0": "-size must be at least 1", "65537": "-size must be at most 65536"} {
		code, res, stderr := bench(t, "loopback", "-size", size)
		if code != exitSetup || res != nil {
			t.Fatalf("-size %s: exit %d, result %v; want %d and none\n%s", size, code, res, exitSetup, stderr)
		}
		if !strings.Contains(stderr, want) {
			t.Errorf("-size %s: stderr does not say what is wrong:\n%s", size, stderr)
		}
	}
}

// TestLoopbackCountsSplitMessages counts messages that arrive in parts
// (reads of less than -size bytes).
func TestLoopbackCountsSplitMessages(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(fds[:])
	lp, err := newEpollLoop(fds[:1], 100)
	if err != nil {
		t.Fatal(err)
	}
	defer lp.close()
	lp.echo.Store(false)
	defer lp.start(-1)()
	for range 5 { // 3 messages of 100 bytes, in 5 reads of 60
		if err := writeFull(fds[1], make([]byte, 60)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); lp.count.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := lp.count.Load(); n != 3 {
		t.Errorf("count = %d, want 3", n)
	}
}

// loopbackPeerExitsEnv, set by a test in the peer's environment, makes the
// peer (this test binary, run again) exit once it has answered "sink".
const loopbackPeerExitsEnv = "ROCKET_BENCH_TEST_LOOPBACK_PEER_EXITS"

func init() {
	if addr, ok := os.LookupEnv(loopbackPeerEnv); ok && os.Getenv(loopbackPeerExitsEnv) != "" {
		os.Exit(loopbackPeerMain(addr, os.Args[1:], os.Stdin, exitAfterOK{os.Stdout}, os.Stderr))
	}
}

// exitAfterOK ends the process once it has written "ok".
type exitAfterOK struct{ w io.Writer }

func (e exitAfterOK) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if string(p) == "ok\n" {
		os.Exit(3)
	}
	return n, err
}

// TestLoopbackPeerExits fails at once, saying so, when the peer exits
// during the broadcast rounds, not after -timeout.
func TestLoopbackPeerExits(t *testing.T) {
	t.Setenv(loopbackPeerExitsEnv, "1")
	start := time.Now()
	code, res, stderr := bench(t, "loopback", "-conns", "20", "-quiet", "-duration", "100ms", "-warmup", "10ms", "-timeout", "20s")
	if code != exitSetup || res != nil {
		t.Fatalf("exit %d, result %v; want %d and none\n%s", code, res, exitSetup, stderr)
	}
	if !strings.Contains(stderr, "the peer exited") {
		t.Errorf("stderr does not say the peer exited:\n%s", stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to notice", d)
	}
}
