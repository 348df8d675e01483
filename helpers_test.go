package rocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/internal/demo"
)

// wait is how long a test waits for something that should happen at once.
const wait = 5 * time.Second

// node is a started server behind an httptest listener.
type node struct {
	srv *rocket.Server
	hs  *httptest.Server
	url string
}

// startNode starts a server for cfg with the demo app plus whatever setup
// registers, and shuts it down when the test ends.
func startNode(t testing.TB, cfg rocket.Config, setup func(*rocket.Server)) *node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := rocket.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	demo.Register(srv)
	if setup != nil {
		setup(srv)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	hs := httptest.NewServer(srv)
	n := &node{srv: srv, hs: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return n
}

// testLogger logs to the test's log, at warn level and above.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is a test WebSocket client.
type client struct {
	t       *testing.T
	ws      *websocket.Conn
	welcome welcome
}

type welcome struct {
	Client  string `json:"client"`
	Server  string `json:"server"`
	Session string `json:"session"`
	Resumed bool   `json:"resumed"`
	Acks    bool   `json:"acks"`
}

// dial connects to url (optionally resuming session) and reads the
// welcome frame.
func dial(t *testing.T, url string, session string) *client {
	t.Helper()
	if session != "" {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + "session=" + session
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(16 << 20)
	c := &client{t: t, ws: ws}
	t.Cleanup(func() { _ = ws.CloseNow() })
	var w struct {
		Welcome *welcome `json:"welcome"`
	}
	c.readInto(&w)
	if w.Welcome == nil || w.Welcome.Client == "" || w.Welcome.Session == "" {
		t.Fatalf("first frame is not a welcome: %+v", w)
	}
	c.welcome = *w.Welcome
	return c
}

// sendRaw sends a text frame.
func (c *client) sendRaw(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send sends v encoded as JSON.
func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

// read returns the next frame.
func (c *client) read() []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		c.t.Fatalf("got a %v frame, want text", typ)
	}
	return data
}

func (c *client) readInto(v any) {
	c.t.Helper()
	data := c.read()
	if err := json.Unmarshal(data, v); err != nil {
		c.t.Fatalf("decode %s: %v", data, err)
	}
}

// frame is any server frame, decoded loosely.
type frame struct {
	Ref    json.RawMessage `json:"ref"`
	Action string          `json:"action"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Action  string `json:"action"`
	} `json:"error"`
	Message *struct {
		Room string `json:"room"`
		From string `json:"from"`
		Text string `json:"text"`
	} `json:"Chat.message"`
	Whisper *struct {
		From string `json:"from"`
		Name string `json:"name"`
		Text string `json:"text"`
	} `json:"Chat.whisper"`
}

func (c *client) next() frame {
	c.t.Helper()
	var f frame
	c.readInto(&f)
	return f
}

// call sends one command with a ref and returns its reply, failing the
// test on an error reply.
func (c *client) call(name string, args any, result any) {
	c.t.Helper()
	f := c.request(name, args)
	if f.Error != nil {
		c.t.Fatalf("%s: error %s: %s", name, f.Error.Code, f.Error.Message)
	}
	if result != nil {
		if err := json.Unmarshal(f.Result, result); err != nil {
			c.t.Fatalf("%s: decode result %s: %v", name, f.Result, err)
		}
	}
}

// request sends one command with a ref and returns the reply frame.
func (c *client) request(name string, args any) frame {
	c.t.Helper()
	c.send(map[string]any{"ref": "r-" + name, name: args})
	f := c.next()
	if string(f.Ref) != `"r-`+name+`"` || f.Action != name {
		c.t.Fatalf("%s: got frame %+v, want its reply", name, f)
	}
	return f
}

// expectError reads the next frame and checks it is an error (reply or
// frame-level) with code.
func (c *client) expectError(code string) frame {
	c.t.Helper()
	f := c.next()
	if f.Error == nil || f.Error.Code != code {
		c.t.Fatalf("got %+v, want error %q", f, code)
	}
	return f
}

// readUntilClosed reads until the connection ends and returns the error
// that ended it, failing the test if it does not end within the wait.
func (c *client) readUntilClosed() error {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		_, _, err := c.ws.Read(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			c.t.Fatalf("client %s: connection not closed within %v", c.welcome.Client, wait)
		}
		return err
	}
}

// expectClose reads until the connection closes and returns the close
// status (-1 when it ended without a close frame).
func (c *client) expectClose() websocket.StatusCode {
	c.t.Helper()
	return websocket.CloseStatus(c.readUntilClosed())
}

// expectCloseReason reads until the connection closes and returns the
// close code and reason; it fails the test if no close frame came.
func (c *client) expectCloseReason() (websocket.StatusCode, string) {
	c.t.Helper()
	err := c.readUntilClosed()
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		c.t.Fatalf("client %s: connection ended without a close frame: %v", c.welcome.Client, err)
	}
	return ce.Code, ce.Reason
}

// waitGone waits until the node no longer holds the client id (it has
// gone away, or moved).
func waitGone(t *testing.T, n *node, id string) {
	t.Helper()
	eventually(t, func() error {
		if n.srv.Client(id) != nil {
			return notYet("client %s still connected to server %s", id, n.srv.ID())
		}
		return nil
	})
}

// eventually polls cond until it returns nil or the wait is over.
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", wait, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpGet fetches url and returns the status and body.
func httpGet(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var errNotYet = errors.New("not yet")

func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errNotYet}, args...)...)
}

func httptestServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

// say sends Chat.say without a ref: the sender gets its own message like
// every member, and no reply.
func (c *client) say(room, text string) {
	c.t.Helper()
	c.send(map[string]any{"Chat.say": map[string]string{"room": room, "text": text}})
}

// metricValue returns the value of an unlabelled counter or gauge.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
