package scaffold

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// appTestTimeout bounds the whole end-to-end test of a generated app.
const appTestTimeout = 90 * time.Second

// goEnv returns the environment for go commands run on a generated app:
// this process's, with the go command's GOFLAGS, GOCACHE and GOMODCACHE
// made explicit, no workspace and no toolchain switch.
func goEnv(t *testing.T, ctx context.Context, gobin string) []string {
	t.Helper()
	out, err := exec.CommandContext(ctx, gobin, "env", "-json", "GOFLAGS", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	var vars map[string]string
	if err := json.Unmarshal(out, &vars); err != nil {
		t.Fatalf("go env: %v: %s", err, out)
	}
	env := os.Environ()
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return append(env, "GOWORK=off", "GOTOOLCHAIN=local")
}

// TestGeneratedAppWorks generates an app against this Rocket tree, runs
// go mod tidy, vet, build and test in it, then runs the binary: it serves
// its page, rocket.js and the action on both ports, and exits 0 on SIGINT.
func TestGeneratedAppWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a generated app with the go command; skipped with -short")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the generated app: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), appTestTimeout)
	defer cancel()
	env := goEnv(t, ctx, gobin)
	dir := filepath.Join(t.TempDir(), "myapp")
	if err := Generate(dir, Options{Name: "myapp", Module: "example.com/myapp", RocketDir: repoRoot(t)}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "myapp")
	for _, args := range [][]string{
		{"mod", "tidy"},
		{"vet", "./..."},
		{"build", "./..."},
		{"test", "-count=1", "./..."},
		{"build", "-o", bin, "."},
	} {
		start := time.Now()
		cmd := exec.CommandContext(ctx, gobin, args...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("go %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	}
	if src := readFile(t, filepath.Join(dir, "go.sum")); !strings.Contains(src, "github.com/redis/rueidis") {
		t.Errorf("go.sum after go mod tidy lacks Rocket's dependencies:\n%s", src)
	}

	app := startApp(t, ctx, bin)
	ws, page := app.ws, app.page
	for path, want := range map[string]string{"/": "Greeter.hello", "/rocket.js": "export class Rocket"} {
		if body := get(t, ctx, page+path); !strings.Contains(body, want) {
			t.Errorf("GET %s: no %q in\n%s", path, want, body)
		}
	}
	// The action answers on the WebSocket port and at /ws on the HTTP port.
	c1 := hello(t, ctx, ws, "Ada", 1)
	c2 := hello(t, ctx, "ws"+strings.TrimPrefix(page, "http")+"/ws", "Grace", 2)

	// SIGINT: the clients are closed with 1001 and the app exits 0.
	app.stop(t)
	for _, c := range []*websocket.Conn{c1, c2} {
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err := c.Read(rctx)
		rcancel()
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Errorf("after SIGINT the client read %v (close code %d), want close code 1001", err, code)
		}
	}
}

// runningApp is a generated app's process.
type runningApp struct {
	ws, page string // its WebSocket URL and its page's URL
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	err      error         // its exit status, once exited is closed
}

// startApp runs bin on loopback port 0 for both addresses and waits until
// it says, in its "listening" log line, where it listens. The process is
// killed at the end of the test if it still runs.
func startApp(t *testing.T, ctx context.Context, bin string) *runningApp {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "ROCKET_WS_ADDR=127.0.0.1:0", "ROCKET_HTTP_ADDR=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the app: %v", err)
	}
	app := &runningApp{cmd: cmd, exited: make(chan struct{})}
	listening := regexp.MustCompile(`msg="myapp listening" websocket=(ws://\S+)/ page=(http://\S+)/`)
	addrs := make(chan [2]string, 1)
	var logs strings.Builder // written by the goroutine below until exited is closed
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		app.err = cmd.Wait()
		close(app.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-app.exited
		if t.Failed() {
			t.Logf("the app's log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addrs:
		app.ws, app.page = a[0], a[1]
		return app
	case <-app.exited:
		t.Fatalf("the app exited before listening: %v", app.err)
	case <-ctx.Done():
		t.Fatal("the app did not listen in time")
	}
	return nil
}

// stop sends SIGINT to the app and checks that it exits with status 0
// within 15 seconds.
func (app *runningApp) stop(t *testing.T) {
	t.Helper()
	if err := app.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	select {
	case <-app.exited:
		if app.err != nil {
			t.Errorf("after SIGINT the app exited with %v, want status 0", app.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the app did not exit within 15s of SIGINT")
	}
}

// get returns the body of a successful GET of url.
func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// hello dials url, calls Greeter.hello for name and checks the reply
// (count is the greeting's expected number). It returns the connection,
// still open; the test's end closes it.
func hello(t *testing.T, ctx context.Context, url, name string, count int) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	if _, welcome, err := c.Read(ctx); err != nil || !strings.Contains(string(welcome), `"welcome"`) {
		t.Fatalf("%s: welcome %s, %v", url, welcome, err)
	}
	frame := `{"ref":1,"Greeter.hello":{"name":"` + name + `"}}`
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("%s: write: %v", url, err)
	}
	_, reply, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("%s: read the reply: %v", url, err)
	}
	var got struct {
		Ref    int
		Action string
		Result struct {
			Text  string
			Count int
		}
	}
	if err := json.Unmarshal(reply, &got); err != nil || got.Ref != 1 || got.Action != "Greeter.hello" ||
		got.Result.Text != "Hello, "+name+"!" || got.Result.Count != count {
		t.Fatalf("%s: reply %s (%v), want greeting %d for %s", url, reply, err, count, name)
	}
	return c
}
