package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromiumPath is Debian's Chromium, which the scripts launch.
const chromiumPath = "/usr/bin/chromium"

// nodeTimeout bounds one run of `node --test` (browser included).
const nodeTimeout = 3 * time.Minute

var workDir string // this run's temporary directory (the rocket binary)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rocket-e2e-build-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// rocketBinary builds cmd/rocket once per run (with the race detector when
// the tests have it) and returns its path.
func rocketBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		bin := filepath.Join(workDir, "rocket")
		args := []string{"build", "-o", bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/rocket-go/rocket/cmd/rocket")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool(), args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		binPath = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// goTool is the go command: go test puts its toolchain's bin directory
// first on the PATH of the tests.
func goTool() string { return "go" }

var (
	npmOnce sync.Once
	npmErr  error
)

// requireBrowserTools fails the test, saying how to install them, when
// node, npm or Chromium is missing, and installs the npm packages
// (`npm ci`) when e2e/node_modules does not hold the locked versions.
// It returns node's path.
func requireBrowserTools(t testing.TB) string {
	t.Helper()
	const install = "the browser tests need Node.js 20 or newer, npm and Chromium (Debian: apt-get install chromium nodejs npm)"
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %s", install)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm not found: %s", install)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s not found: %s", chromiumPath, install)
	}
	npmOnce.Do(func() {
		if npmInstalled() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		out, err := cmd.CombinedOutput()
		if err != nil {
			npmErr = fmt.Errorf("npm ci --no-audit --no-fund (in e2e/): %v\n%s", err, out)
			return
		}
		if !npmInstalled() {
			npmErr = fmt.Errorf("npm ci did not install the locked packages:\n%s", out)
		}
	})
	if npmErr != nil {
		t.Fatal(npmErr)
	}
	return node
}

// npmInstalled reports whether node_modules holds every package of
// package-lock.json at its locked version.
func npmInstalled() bool {
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	b, err := os.ReadFile("package-lock.json")
	if err != nil || json.Unmarshal(b, &lock) != nil {
		return false
	}
	for path, pkg := range lock.Packages {
		if !strings.HasPrefix(path, "node_modules/") {
			continue
		}
		var got struct{ Version string }
		b, err := os.ReadFile(filepath.Join(filepath.FromSlash(path), "package.json"))
		if err != nil || json.Unmarshal(b, &got) != nil || got.Version != pkg.Version {
			return false
		}
	}
	return true
}

// runScript runs `node --test script` with env added to the environment
// and fails the test when a browser test fails.
func runScript(t *testing.T, script string, env ...string) {
	t.Helper()
	node := requireBrowserTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", script)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Env = append(cmd.Env, "ROCKET_E2E_CHROMIUM="+chromiumPath, "NO_COLOR=1", "FORCE_COLOR=0")
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("node --test %s did not finish within %v:\n%s", script, nodeTimeout, out)
	}
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", script, err, out)
	}
	t.Logf("node --test %s (%v):\n%s", script, time.Since(start).Round(time.Millisecond), out)
}

// TestChat: two pages on one node chat in a room and whisper; a reloaded
// tab resumes its session; rocket.js's API works in the browser.
func TestChat(t *testing.T) {
	t.Parallel()
	requireBrowserTools(t)
	n := startNode(t, "rocket")
	control := startControl(t, nodeActions(n))
	runScript(t, "chat.test.mjs", "ROCKET_E2E_URL="+n.http, "ROCKET_E2E_CONTROL="+control)
}

// nodeActions are the control actions on nodes: "left" waits until the
// node (query node=1, the default, or 2) has logged that the client in the
// query left, so that what is sent to it from then on lands in its mailbox.
func nodeActions(nodes ...*node) map[string]func(url.Values) error {
	return map[string]func(url.Values) error{
		"left": func(q url.Values) error {
			n := nodes[0]
			if q.Get("node") == "2" {
				n = nodes[1]
			}
			return n.waitLeft(q.Get("client"))
		},
	}
}

// proxyActions are nodeActions and the actions on a proxy: "hold" and
// "release" its new connections, "cut" those it carries.
func proxyActions(px *proxy, nodes ...*node) map[string]func(url.Values) error {
	actions := nodeActions(nodes...)
	actions["hold"] = func(url.Values) error { px.Hold(); return nil }
	actions["release"] = func(url.Values) error { px.Release(); return nil }
	actions["cut"] = func(url.Values) error {
		if px.Cut() == 0 {
			return fmt.Errorf("no connection to cut")
		}
		return nil
	}
	return actions
}

// TestResume: a page whose connection drops (offline, closed by the page
// with code 4000, or cut by the network) reconnects, resumes its session
// and shows the whisper sent while it was away.
func TestResume(t *testing.T) {
	t.Parallel()
	requireBrowserTools(t)
	n := startNode(t, "rocket")
	px := startProxy(t, n.httpAddr())
	control := startControl(t, proxyActions(px, n))
	arts := artifactsDir(t)
	shot := filepath.Join(arts, "chat-resumed.png")
	_ = os.Remove(shot) // not last run's
	runScript(t, "resume.test.mjs",
		"ROCKET_E2E_URL="+n.http, "ROCKET_E2E_PROXY_URL="+px.url(),
		"ROCKET_E2E_CONTROL="+control, "ROCKET_E2E_ARTIFACTS="+arts)
	if _, err := os.Stat(shot); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("screenshot of the chat page: %s", shot)
}

// TestCluster: two nodes on Redis; pages on different nodes chat and
// whisper; the node of one page stops and the page resumes on the other
// node (through a proxy in front of both), with the whisper sent meanwhile.
func TestCluster(t *testing.T) {
	t.Parallel()
	requireBrowserTools(t)
	redisURL := startRedis(t)
	env := []string{"ROCKET_REDIS_URL=" + redisURL, "ROCKET_HEARTBEAT_INTERVAL=100ms"}
	n1 := startNode(t, "rocket node 1", env...)
	n2 := startNode(t, "rocket node 2", env...)
	if n1.server == n2.server {
		t.Fatalf("both nodes have server id %q", n1.server)
	}
	px := startProxy(t, n2.httpAddr(), n1.httpAddr()) // node 2 while it lives
	actions := proxyActions(px, n1, n2)
	actions["stop-node2"] = func(url.Values) error { return n2.stop() } // SIGTERM: close 1001
	control := startControl(t, actions)
	runScript(t, "cluster.test.mjs",
		"ROCKET_E2E_URL="+n1.http, "ROCKET_E2E_PROXY_URL="+px.url(),
		"ROCKET_E2E_CONTROL="+control,
		"ROCKET_E2E_SERVER1="+n1.server, "ROCKET_E2E_SERVER2="+n2.server)
}
