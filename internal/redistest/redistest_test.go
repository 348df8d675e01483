package redistest

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// do sends one inline command and returns the first line of the answer.
func do(t *testing.T, addr, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		line, err = r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimRight(line, "\r\n")
}

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.URL, "redis://127.0.0.1:") || !strings.HasSuffix(s.URL, "/0") {
		t.Fatalf("URL = %q", s.URL)
	}
	if got := do(t, s.Addr, "SET k v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if got := do(t, s.Addr, "CONFIG GET appendonly"); got != "*2" {
		t.Fatalf("CONFIG GET: %q", got)
	}

	s.Stop(t)
	if err := ping(s.Addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Start(t)
	if got := do(t, s.Addr, "GET k"); got != "v" {
		t.Fatalf("GET after graceful restart = %q, want v (appendonly)", got)
	}

	if got := do(t, s.Addr, "SET k2 v2"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	s.Kill(t)
	if err := ping(s.Addr); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Kill(t) // killing a stopped server is harmless
	s.Start(t)
	if got := do(t, s.Addr, "GET k"); got != "v" {
		t.Fatalf("GET after crash restart = %q, want v", got)
	}
}

func TestTwoServers(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr || a.Dir() == b.Dir() {
		t.Fatalf("servers share %s / %s", a.Addr, a.Dir())
	}
	do(t, a.Addr, "SET k a")
	if got := do(t, b.Addr, "GET k"); got != "$-1" {
		t.Fatalf("GET on the other server = %q, want nil", got)
	}
}

// fatalTB records the message of Fatal and ends its goroutine, as
// testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinaryFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
	const want = "redis-server not found: install it (Debian: apt-get install redis-server)"
	if f.msg != want {
		t.Fatalf("Fatal message = %q, want %q", f.msg, want)
	}
}
