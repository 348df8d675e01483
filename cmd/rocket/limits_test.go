package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// idleConn opens a raw TCP connection to addr, sends one keep-alive GET of
// path and reads the answer, leaving the connection open and silent.
func idleConn(addr, path string) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = fmt.Errorf("GET %s: the server does not keep the connection alive", path)
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, br, nil
}

// openFDs counts the file descriptors of process pid, or returns -1 where
// /proc is not available.
func openFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// Keep-alive connections that sent one request and then wait are closed
// after ROCKET_HTTP_IDLE_TIMEOUT on both ports, while others are served;
// WebSockets, idle for as long, are not closed.
func TestIdleKeepAliveClosed(t *testing.T) {
	const idle = 2 * time.Second
	const perPort = 1000
	p := startProc(t, "ROCKET_HTTP_IDLE_TIMEOUT="+idle.String())
	pid := p.cmd.Process.Pid
	baseline := openFDs(pid)

	// WebSockets opened first, on both ports, then left silent (no ping
	// within the default 25 s interval).
	wsA := dialClient(t, "ws://"+p.ws+"/")
	wsB := dialClient(t, "ws://"+p.web+"/ws")

	type held struct {
		c      net.Conn
		br     *bufio.Reader
		served time.Time
	}
	conns := make([]held, 2*perPort)
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	sem := make(chan struct{}, 64)
	for i := range conns {
		addr, path := p.web, "/healthz"
		if i%2 == 1 {
			addr, path = p.ws, "/healthz" // the WebSocket port answers 400 to a plain GET
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// The server's idle time starts after its answer, so after
			// this: taken before the request, the time cannot make a
			// close look early on a busy machine.
			sent := time.Now()
			c, br, err := idleConn(addr, path)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = held{c, br, sent}
		})
	}
	wg.Wait()
	close(errs)
	defer func() {
		for _, h := range conns {
			if h.c != nil {
				h.c.Close()
			}
		}
	}()
	for err := range errs {
		t.Fatalf("opening the idle connections: %v", err)
	}
	opened := time.Since(conns[0].served)
	if fds := openFDs(pid); fds >= 0 {
		t.Logf("%d idle connections open after %v: the server holds %d file descriptors (%d before)", len(conns), opened.Round(time.Millisecond), fds, baseline)
	}

	// A bystander is served meanwhile: a page, and a WebSocket.
	resp, err := noKeepAlive.Get("http://" + p.web + "/healthz")
	if err != nil {
		t.Fatalf("bystander: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bystander: HTTP %d", resp.StatusCode)
	}
	by := dialClient(t, "ws://"+p.ws+"/")
	echo(t, by.c)

	// Each idle connection is closed by the server, not before the
	// timeout, and within a few seconds of it.
	var early, late []string
	var mu sync.Mutex
	for i := range conns {
		h := conns[i]
		wg.Go(func() {
			h.c.SetReadDeadline(h.served.Add(idle + 10*time.Second))
			_, err := h.br.ReadByte()
			after := time.Since(h.served)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !errors.Is(err, io.EOF):
				late = append(late, fmt.Sprintf("%v after %v", err, after.Round(time.Millisecond)))
			case after < idle-idle/4:
				early = append(early, after.Round(time.Millisecond).String())
			}
		})
	}
	wg.Wait()
	if len(early) > 0 || len(late) > 0 {
		t.Fatalf("of %d idle connections, %d closed before the %v timeout (%v...), %d not closed by the server (%v...)",
			len(conns), len(early), idle, first(early), len(late), first(late))
	}
	if fds := openFDs(pid); baseline >= 0 && fds > baseline+20 {
		// The server closed its side when the client saw EOF.
		t.Errorf("the server holds %d file descriptors after the idle connections were closed, %d before", fds, baseline)
	}

	// The WebSockets, silent for longer than the idle timeout, still work.
	echo(t, wsA.c)
	echo(t, wsB.c)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Request headers over ROCKET_MAX_HEADER_BYTES get HTTP 431 on both ports.
func TestMaxHeaderBytes(t *testing.T) {
	get := func(addr, path string, headerBytes int) int {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("a", headerBytes))
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			t.Fatalf("GET %s with %d header bytes: %v", path, headerBytes, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// net/http reads 4 KiB more than MaxHeaderBytes before it refuses.
	for _, tc := range []struct {
		env          map[string]string
		ok, tooLarge int
	}{
		{nil, 48 << 10, 80 << 10}, // default 64 KiB (net/http's own is 1 MiB)
		{map[string]string{"ROCKET_MAX_HEADER_BYTES": "4096"}, 2 << 10, 12 << 10},
	} {
		ws, web, stop := startRocket(t, tc.env)
		for _, port := range []struct{ addr, path string }{{web, "/healthz"}, {ws, "/"}} {
			if got := get(port.addr, port.path, tc.tooLarge); got != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%v: %s%s with %d header bytes: HTTP %d, want 431", tc.env, port.addr, port.path, tc.tooLarge, got)
			}
			if got := get(port.addr, port.path, tc.ok); got == http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%v: %s%s with %d header bytes: HTTP 431", tc.env, port.addr, port.path, tc.ok)
			}
		}
		c, _, _ := tryDial(t, "ws://"+ws+"/", &websocket.DialOptions{HTTPHeader: http.Header{"X-Padding": {strings.Repeat("a", tc.ok)}}})
		if c == nil {
			t.Errorf("%v: upgrade with %d header bytes refused", tc.env, tc.ok)
		} else {
			c.Close(websocket.StatusNormalClosure, "")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// fromAddr returns dial options that connect from the loopback address
// local (127.0.0.0/8 is all loopback on Linux), with header added.
func fromAddr(local string, header http.Header) *websocket.DialOptions {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	return &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, HTTPHeader: header}
}

// dialUntil dials until the connection is accepted, failing the test if it
// is still refused after 5 s (the server releases a closed connection's
// slot when it has noticed the close). It returns the connection and the
// number of refusals before it.
func dialUntil(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for refusals := 0; ; refusals++ {
		c, status, body := tryDial(t, url, opts)
		if c != nil {
			return c, refusals
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after 5s: HTTP %d %s", status, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func expectRefused(t *testing.T, url string, opts *websocket.DialOptions, want int) {
	t.Helper()
	c, status, body := tryDial(t, url, opts)
	if c != nil || status != want {
		t.Fatalf("dial %s: HTTP %d %q, want %d", url, status, body, want)
	}
}

func metricsText(t *testing.T, web string) string {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// ROCKET_MAX_CONNECTIONS refuses upgrades past it with 503, on both ports
// together; a closed connection's place is given back.
func TestMaxConnections(t *testing.T) {
	ws, web, _ := startRocket(t, map[string]string{"ROCKET_MAX_CONNECTIONS": "3"})
	a, _, _ := tryDial(t, "ws://"+ws+"/", nil)
	b, _, _ := tryDial(t, "ws://"+web+"/ws", nil)
	c, _, _ := tryDial(t, "ws://"+ws+"/", fromAddr("127.0.0.2", nil))
	if a == nil || b == nil || c == nil {
		t.Fatal("a connection under the cap was refused")
	}
	expectRefused(t, "ws://"+ws+"/", nil, http.StatusServiceUnavailable)
	expectRefused(t, "ws://"+web+"/ws", fromAddr("127.0.0.3", nil), http.StatusServiceUnavailable)
	echo(t, a) // the others are served
	a.Close(websocket.StatusNormalClosure, "")
	d, retries := dialUntil(t, "ws://"+web+"/ws", nil)
	echo(t, d)
	expectRefused(t, "ws://"+ws+"/", nil, http.StatusServiceUnavailable)
	if m := metricsText(t, web); !strings.Contains(m, fmt.Sprintf(`rocket_connections_refused_total{reason="max_connections"} %d`, 3+retries)) {
		t.Errorf("/metrics: %s", grepLines(m, "refused"))
	}
}

// ROCKET_MAX_CONNECTIONS_PER_IP refuses upgrades past it with 429, per
// client address: the TCP peer's, or X-Forwarded-For's from a trusted
// proxy only.
func TestMaxConnectionsPerIP(t *testing.T) {
	ws, web, _ := startRocket(t, map[string]string{
		"ROCKET_MAX_CONNECTIONS_PER_IP": "2",
		"ROCKET_TRUSTED_PROXIES":        "127.0.0.10/31, ::1",
	})
	url := "ws://" + ws + "/"
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }

	// Without a proxy: per TCP peer, on both ports together.
	a1, _, _ := tryDial(t, url, fromAddr("127.0.0.2", nil))
	a2, _, _ := tryDial(t, "ws://"+web+"/ws", fromAddr("127.0.0.2", nil))
	if a1 == nil || a2 == nil {
		t.Fatal("a connection under the cap was refused")
	}
	expectRefused(t, url, fromAddr("127.0.0.2", nil), http.StatusTooManyRequests)
	// A spoofed header from an untrusted peer is ignored.
	expectRefused(t, url, fromAddr("127.0.0.2", xff("198.51.100.1")), http.StatusTooManyRequests)
	// Another address is not affected.
	b1, _, _ := tryDial(t, url, fromAddr("127.0.0.3", nil))
	if b1 == nil {
		t.Fatal("another address was refused")
	}
	echo(t, a1)

	// Behind trusted proxies (127.0.0.10 and .11): per X-Forwarded-For
	// client, whichever proxy the connection comes through.
	for _, proxy := range []string{"127.0.0.10", "127.0.0.11"} {
		c, _, _ := tryDial(t, url, fromAddr(proxy, xff("203.0.113.5")))
		if c == nil {
			t.Fatalf("first connection of 203.0.113.5 through %s refused", proxy)
		}
	}
	expectRefused(t, url, fromAddr("127.0.0.10", xff("203.0.113.5")), http.StatusTooManyRequests)
	// The right-most untrusted address counts: what the client wrote to
	// the left of it does not let it past the cap.
	expectRefused(t, url, fromAddr("127.0.0.10", xff("192.0.2.99, 203.0.113.5")), http.StatusTooManyRequests)
	expectRefused(t, url, fromAddr("127.0.0.10", xff("203.0.113.5, 127.0.0.11")), http.StatusTooManyRequests)
	// Other clients of the same proxy are not affected, nor the proxy's
	// own address (a trusted peer without the header counts as itself).
	for _, h := range []http.Header{xff("203.0.113.6"), xff("203.0.113.6"), nil, nil} {
		if c, status, body := tryDial(t, url, fromAddr("127.0.0.10", h)); c == nil {
			t.Fatalf("through the proxy with %v: HTTP %d %s", h, status, body)
		}
	}
	expectRefused(t, url, fromAddr("127.0.0.10", nil), http.StatusTooManyRequests)

	// A closed connection gives its place back.
	a1.Close(websocket.StatusNormalClosure, "")
	again, retries := dialUntil(t, url, fromAddr("127.0.0.2", nil))
	echo(t, again)
	expectRefused(t, url, fromAddr("127.0.0.2", nil), http.StatusTooManyRequests)

	m := metricsText(t, web)
	if !strings.Contains(m, fmt.Sprintf(`rocket_connections_refused_total{reason="max_connections_per_ip"} %d`, 7+retries)) {
		t.Errorf("/metrics: %s", grepLines(m, "refused"))
	}
}

// A connection refused by the connect hook (here: no JWT) gives its place
// back at once.
func TestConnectionCapReleasedOnRefusal(t *testing.T) {
	ws, _, _ := startRocket(t, map[string]string{
		"ROCKET_MAX_CONNECTIONS":        "1",
		"ROCKET_MAX_CONNECTIONS_PER_IP": "1",
		"ROCKET_JWT_HMAC_SECRET":        testSecret,
	})
	for range 3 {
		expectRefused(t, "ws://"+ws+"/", nil, http.StatusUnauthorized)
	}
	token := hsToken(t, testSecret, validClaims(nil))
	c, status, body := tryDial(t, "ws://"+ws+"/?token="+token, nil)
	if c == nil {
		t.Fatalf("refused after refusals by the hook: HTTP %d %s", status, body)
	}
	expectRefused(t, "ws://"+ws+"/?token="+token, nil, http.StatusServiceUnavailable)
	// A request that is not an upgrade fails in the upgrade, after the
	// slot was taken: it is given back too.
	c.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := noKeepAlive.Get("http://" + ws + "/?token=" + token)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadRequest {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plain GET: HTTP %d, want 400 once the closed connection's place is back", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
	dialUntil(t, "ws://"+ws+"/?token="+token, nil)
}

// The public directory serves its regular files only: no symbolic link out
// of it, no dotfile or dot-directory, no directory listing.
func TestPublicDirConfined(t *testing.T) {
	outside := t.TempDir()
	dir := t.TempDir()
	files := map[string]string{
		"index.html":          "<h1>home</h1>",
		"app.js":              "console.log(1)",
		"style.css":           "body{}",
		"logo.svg":            "<svg xmlns='http://www.w3.org/2000/svg'/>",
		"notes":               "plain words",
		"docs/index.html":     "<h1>docs</h1>",
		"docs/guide.txt":      "guide",
		"empty/readme.txt":    "no index here",
		".env":                "SECRET=1",
		".git/config":         "[core]",
		"docs/.hidden":        "hidden",
		"nested/deep/x.json":  `{"x":1}`,
		"nested/index.html/a": "a directory named index.html",
	}
	for name, content := range files {
		p := dir + "/" + name
		if err := os.MkdirAll(p[:strings.LastIndexByte(p, '/')], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(p, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFile(outside+"/secret.txt", "outside"); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"etc":         "/etc",                  // a directory outside
		"outside":     outside,                 // another one
		"secret.txt":  outside + "/secret.txt", // a file outside
		"up":          "..",                    // relative, out
		"docs/up.txt": "../../secret.txt",      // relative, out
		"inside.js":   "app.js",                // a file inside: served
		"docs/home":   "../index.html",         // inside, relative: served
		"docs-link":   "docs",                  // a directory inside: served
	} {
		if err := os.Symlink(target, dir+"/"+link); err != nil {
			t.Fatal(err)
		}
	}
	_, web, _ := startRocket(t, map[string]string{"ROCKET_PUBLIC_DIR": dir})
	noRedirect := &http.Client{Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+web+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusMovedPermanently {
			return resp.StatusCode, resp.Header.Get("Location"), ""
		}
		return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
	}
	for _, tc := range []struct {
		path   string
		status int
		body   string // for 200: the body; for 301: the Location
		ctype  string
	}{
		{"/", 200, "<h1>home</h1>", "text/html; charset=utf-8"},
		{"/index.html", 200, "<h1>home</h1>", "text/html; charset=utf-8"},
		{"/app.js", 200, "console.log(1)", "text/javascript; charset=utf-8"},
		{"/style.css", 200, "body{}", "text/css; charset=utf-8"},
		{"/logo.svg", 200, "<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"},
		{"/notes", 200, "plain words", "text/plain; charset=utf-8"},
		{"/nested/deep/x.json", 200, `{"x":1}`, "application/json"},
		{"/docs/", 200, "<h1>docs</h1>", "text/html; charset=utf-8"},
		{"/docs", 301, "/docs/", ""},
		{"/docs/guide.txt", 200, "guide", "text/plain; charset=utf-8"},
		{"/inside.js", 200, "console.log(1)", "text/javascript; charset=utf-8"},
		{"/docs/home", 200, "<h1>home</h1>", "text/html; charset=utf-8"},
		{"/docs-link/guide.txt", 200, "guide", "text/plain; charset=utf-8"},
		// No listing: a directory without index.html is not found.
		{"/empty/", 404, "", ""},
		{"/empty/readme.txt", 200, "no index here", "text/plain; charset=utf-8"},
		{"/nested/", 404, "", ""},
		{"/nested/deep/", 404, "", ""},
		{"/nested/index.html/", 404, "", ""},
		{"/app.js/", 404, "", ""},
		// Dotfiles and dot-directories.
		{"/.env", 404, "", ""},
		{"/.git/config", 404, "", ""},
		{"/.git/", 404, "", ""},
		{"/docs/.hidden", 404, "", ""},
		{"/%2eenv", 404, "", ""},
		// Symbolic links out of the directory.
		{"/etc/passwd", 404, "", ""},
		{"/etc/", 404, "", ""},
		{"/outside/secret.txt", 404, "", ""},
		{"/secret.txt", 404, "", ""},
		{"/up/", 404, "", ""},
		{"/docs/up.txt", 404, "", ""},
	} {
		status, body, ctype := get(tc.path)
		if status != tc.status || (tc.status != 404 && (body != tc.body || ctype != tc.ctype)) {
			t.Errorf("GET %s: %d %q %q, want %d %q %q", tc.path, status, body, ctype, tc.status, tc.body, tc.ctype)
		}
		if status == 404 && (strings.Contains(body, "root:") || strings.Contains(body, "outside") || strings.Contains(body, "SECRET") || strings.Contains(body, "<a href")) {
			t.Errorf("GET %s: 404 with %q", tc.path, body)
		}
	}
	// Paths that climb are cleaned by net/http first, and stay inside.
	c, err := net.Dial("tcp", web)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(c)
	if strings.Contains(string(raw), "root:") {
		t.Fatalf("a climbing path served /etc/passwd: %q", raw)
	}
}
