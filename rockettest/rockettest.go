// Package rockettest helps test Rocket applications in-process, without
// sleeps.
//
// Start builds and starts a rocket.Server for a test and serves it on a
// loopback httptest server; Connect and Resume dial it with a test
// WebSocket client. A Client calls actions and waits for their replies
// (Call), sends commands without a reply (Send), and reads what the server
// pushes (Next, Expect, ExpectInto). Pushed messages that arrive while a
// Call waits for its reply are kept, in order, for Next and Expect: nothing
// is dropped. Everything is closed and waited for by t.Cleanup.
//
//	func TestHello(t *testing.T) {
//		app := rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
//			srv.Handle("Greet.hello", rocket.Action(func(c *rocket.Context, in struct{ Name string }) (string, error) {
//				err := c.Client().Send(rocket.Push{Name: "Greet.done", Value: in.Name})
//				return "hello " + in.Name, err
//			}))
//		})
//		c := app.Connect(t)
//		var got string
//		if err := c.Call("Greet.hello", map[string]string{"Name": "ann"}, &got); err != nil {
//			t.Fatal(err)
//		}
//		var who string
//		c.ExpectInto("Greet.done", &who)
//	}
//
// Calls that fail on the server return a *rocket.Error carrying the
// error's code and message:
//
//	err := c.Call("Nope.nothing", nil, nil)
//	var re *rocket.Error
//	if errors.As(err, &re) && re.Code == rocket.CodeUnknownAction { ... }
//
// Methods that fail the test (Connect, Resume, Send, Next, Expect,
// ExpectInto, Close) call Fatalf on the testing.TB they were given, so
// they must be called from the test's goroutine.
package rockettest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// DefaultTimeout is how long a Client waits for a reply or a pushed
// message unless its Timeout says otherwise. It also bounds dialing,
// writing, closing and the server's shutdown.
const DefaultTimeout = 5 * time.Second

// App is a Rocket server started for a test, served by a loopback
// httptest server. It is shut down by t.Cleanup.
type App struct {
	// Server is the started server.
	Server *rocket.Server
	// URL is the server's WebSocket URL, ws://127.0.0.1:port.
	URL string

	mu   sync.Mutex
	open map[string]int // client id -> open Clients of this app with it
}

// Start builds a server from cfg, lets setup (if not nil) register actions
// and hooks on it, starts it and serves it on a loopback httptest server.
// When cfg.Logger is nil the server logs to t.Log, at warn level and
// above. The server is shut down, and the HTTP server closed, by
// t.Cleanup. Start fails the test if the server cannot be built or
// started.
func Start(t testing.TB, cfg rocket.Config, setup func(*rocket.Server)) *App {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := rocket.New(cfg)
	if err != nil {
		t.Fatalf("rockettest: rocket.New: %v", err)
		return nil
	}
	if setup != nil {
		setup(srv)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("rockettest: Start: %v", err)
		return nil
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("rockettest: Shutdown: %v", err)
		}
		hs.Close()
	})
	return &App{
		Server: srv,
		URL:    "ws" + strings.TrimPrefix(hs.URL, "http"),
		open:   make(map[string]int),
	}
}

// logWriter writes log lines to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Client is a test WebSocket client of an App (github.com/coder/websocket
// underneath). A background goroutine reads every frame the server sends:
// replies go to the Call waiting for them, anything else is queued for
// Next and Expect. The goroutine is stopped and waited for by Close and by
// t.Cleanup.
type Client struct {
	// ID is the client id the server gave in its welcome.
	ID string
	// Session is the session token, to Resume with.
	Session string
	// ServerID is the id of the server that welcomed the client.
	ServerID string
	// Resumed reports whether the welcome said the session was resumed.
	Resumed bool
	// Timeout bounds how long Call, Next and Expect wait; zero means
	// DefaultTimeout. Set it before using the client, not concurrently.
	Timeout time.Duration

	t    testing.TB
	app  *App
	ws   *websocket.Conn
	done chan struct{} // closed when the reader goroutine has returned
	refs atomic.Uint64

	mu      sync.Mutex
	changed chan struct{}              // closed and replaced when the state below changes
	queue   []json.RawMessage          // frames that are not awaited replies, in order
	pending map[string]json.RawMessage // awaited ref -> reply (nil until it arrives)
	readErr error                      // why the reader stopped, once it has
	closed  bool                       // Close has run
}

// Connect dials the app as a new client and reads its welcome. It fails
// the test if that does not succeed within DefaultTimeout.
func (a *App) Connect(t testing.TB) *Client {
	t.Helper()
	return a.dial(t, "")
}

// Resume dials the app with the session token session and reads the
// welcome; mail kept while the client was away follows it, ready for Next
// and Expect. Check Resumed: with an expired or unknown token the server
// welcomes a new client instead.
func (a *App) Resume(t testing.TB, session string) *Client {
	t.Helper()
	return a.dial(t, session)
}

func (a *App) dial(t testing.TB, session string) *Client {
	t.Helper()
	u := a.URL
	if session != "" {
		u += "/?session=" + url.QueryEscape(session)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("rockettest: dial %s: %v", u, err)
		return nil
	}
	ws.SetReadLimit(16 << 20)
	typ, data, err := ws.Read(ctx)
	if err != nil || typ != websocket.MessageText {
		_ = ws.CloseNow()
		t.Fatalf("rockettest: reading the welcome: type %v, error %v", typ, err)
		return nil
	}
	var w struct {
		Welcome *struct {
			Client  string `json:"client"`
			Server  string `json:"server"`
			Session string `json:"session"`
			Resumed bool   `json:"resumed"`
		} `json:"welcome"`
	}
	if err := json.Unmarshal(data, &w); err != nil || w.Welcome == nil || w.Welcome.Client == "" {
		_ = ws.CloseNow()
		t.Fatalf("rockettest: first frame is not a welcome: %s", data)
		return nil
	}
	c := &Client{
		ID:       w.Welcome.Client,
		Session:  w.Welcome.Session,
		ServerID: w.Welcome.Server,
		Resumed:  w.Welcome.Resumed,
		t:        t,
		app:      a,
		ws:       ws,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		pending:  make(map[string]json.RawMessage),
	}
	a.mu.Lock()
	a.open[c.ID]++
	a.mu.Unlock()
	go c.read()
	t.Cleanup(c.stop)
	return c
}

// read is the reader goroutine: it files every frame until the connection
// ends.
func (c *Client) read() {
	defer close(c.done)
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err == nil && typ != websocket.MessageText {
			err = fmt.Errorf("rockettest: got a %v frame, want text", typ)
			_ = c.ws.CloseNow()
		}
		c.mu.Lock()
		if err != nil {
			c.readErr = err
		} else if ref, ok := replyRef(data); ok && c.isPending(ref) {
			c.pending[ref] = data
		} else {
			c.queue = append(c.queue, data)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// isPending reports whether a Call waits for ref and has no reply yet.
// c.mu must be held.
func (c *Client) isPending(ref string) bool {
	r, ok := c.pending[ref]
	return ok && r == nil
}

// replyRef returns the ref of a reply frame whose ref is a string.
func replyRef(data []byte) (string, bool) {
	var f struct {
		Ref    json.RawMessage `json:"ref"`
		Action *string         `json:"action"`
	}
	if json.Unmarshal(data, &f) != nil || f.Action == nil || len(f.Ref) == 0 {
		return "", false
	}
	var ref string
	if json.Unmarshal(f.Ref, &ref) != nil {
		return "", false
	}
	return ref, true
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// wait calls ready with c.mu held until it returns true, the connection
// ends (returns the reader's error) or the timeout passes (returns an
// error saying so).
func (c *Client) wait(ready func() bool) error {
	timer := time.NewTimer(c.timeout())
	defer timer.Stop()
	for {
		c.mu.Lock()
		if ready() {
			c.mu.Unlock()
			return nil
		}
		if c.readErr != nil {
			err := c.readErr
			c.mu.Unlock()
			return fmt.Errorf("connection ended: %w", err)
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("nothing within %v", c.timeout())
		}
	}
}

// write sends one frame.
func (c *Client) write(frame []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, frame)
}

// Send sends the command {"name": args} without a ref: fire and forget,
// no reply comes (a failure arrives, if at all, as a frame-level error
// for Next). It fails the test if args cannot be encoded or the frame
// cannot be written.
func (c *Client) Send(name string, args any) {
	c.t.Helper()
	frame, err := command(name, args, "")
	if err == nil {
		err = c.write(frame)
	}
	if err != nil {
		c.t.Fatalf("rockettest: Send %s: %v", name, err)
	}
}

// command encodes {"ref": ref, "name": args} (without ref if it is empty).
func command(name string, args any, ref string) ([]byte, error) {
	a, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("encode args: %w", err)
	}
	n, _ := json.Marshal(name)
	var b []byte
	b = append(b, '{')
	if ref != "" {
		r, _ := json.Marshal(ref)
		b = append(append(append(b, `"ref":`...), r...), ',')
	}
	b = append(append(append(b, n...), ':'), a...)
	return append(b, '}'), nil
}

// Call sends the command {"name": args} with a fresh ref and waits, up to
// the client's timeout, for the reply with that ref. A successful reply's
// result is decoded into result (unless result is nil); an error reply is
// returned as a *rocket.Error with its code and message. Frames that
// arrive meanwhile are kept, in order, for Next and Expect. Call returns
// any other failure (encoding, writing, timeout, connection ended) as an
// error too; it does not fail the test by itself. A reply that arrives
// after its Call gave up is queued like a pushed message.
func (c *Client) Call(name string, args any, result any) error {
	ref := fmt.Sprintf("rockettest-%d", c.refs.Add(1))
	frame, err := command(name, args, ref)
	if err != nil {
		return fmt.Errorf("rockettest: Call %s: %w", name, err)
	}
	c.mu.Lock()
	c.pending[ref] = nil
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
	}()
	if err := c.write(frame); err != nil {
		return fmt.Errorf("rockettest: Call %s: write: %w", name, err)
	}
	var reply json.RawMessage
	if err := c.wait(func() bool { reply = c.pending[ref]; return reply != nil }); err != nil {
		return fmt.Errorf("rockettest: Call %s: no reply: %w", name, err)
	}
	var r struct {
		Action string          `json:"action"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return fmt.Errorf("rockettest: Call %s: decode reply %s: %w", name, reply, err)
	}
	if r.Error != nil {
		return &rocket.Error{Code: r.Error.Code, Message: r.Error.Message}
	}
	if result != nil {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return fmt.Errorf("rockettest: Call %s: decode result %s: %w", name, r.Result, err)
		}
	}
	return nil
}

// Next returns the next frame that is not the reply to a Call, waiting up
// to the client's timeout. A pushed message {"Name": value} (any one-key
// object) comes back as its name and value; any other frame comes back
// whole, with an empty name. A frame-level error {"error": {...}} thus has
// the name "error". Next fails the test if nothing arrives in time or the
// connection ends.
func (c *Client) Next() (name string, value json.RawMessage) {
	c.t.Helper()
	frame, err := c.pop()
	if err != nil {
		c.t.Fatalf("rockettest: client %s: no pushed message: %v", c.ID, err)
		return "", nil
	}
	name, value = split(frame)
	return name, value
}

// pop removes and returns the first queued frame, waiting for one.
func (c *Client) pop() (json.RawMessage, error) {
	var frame json.RawMessage
	err := c.wait(func() bool {
		if len(c.queue) == 0 {
			return false
		}
		frame = c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		return true
	})
	return frame, err
}

// split returns the key and value of a one-key object, or "" and frame.
func split(frame json.RawMessage) (string, json.RawMessage) {
	var m map[string]json.RawMessage
	if json.Unmarshal(frame, &m) == nil && len(m) == 1 {
		for k, v := range m {
			return k, v
		}
	}
	return "", frame
}

// Expect returns the value of the next pushed message, which must be
// named name. It fails the test, saying what arrived instead, if the next
// frame is something else, or if nothing arrives within the timeout.
func (c *Client) Expect(name string) json.RawMessage {
	c.t.Helper()
	frame, err := c.pop()
	if err != nil {
		c.t.Fatalf("rockettest: client %s: expected %s, got nothing: %v", c.ID, name, err)
		return nil
	}
	got, value := split(frame)
	if got != name {
		c.t.Fatalf("rockettest: client %s: expected %s, got %s", c.ID, name, frame)
		return nil
	}
	return value
}

// ExpectInto is Expect, decoding the message's value into v. It fails the
// test if the value does not decode.
func (c *Client) ExpectInto(name string, v any) {
	c.t.Helper()
	value := c.Expect(name)
	if value == nil {
		return
	}
	if err := json.Unmarshal(value, v); err != nil {
		c.t.Fatalf("rockettest: client %s: decode %s %s: %v", c.ID, name, value, err)
	}
}

// Close closes the connection normally (close code 1000), waits for the
// reader goroutine, then waits, bounded by DefaultTimeout, until the
// server has let the client go (Server.Client(ID) is nil): from then on
// the client is away and what is sent to it is kept for Resume. The wait
// for the server is skipped while another open Client of the app holds
// the same session. Close fails the test if the server does not let go in
// time. Calling Close more than once is harmless.
func (c *Client) Close() {
	c.t.Helper()
	if !c.stopWith(websocket.StatusNormalClosure) {
		return
	}
	c.app.mu.Lock()
	others := c.app.open[c.ID] > 0
	c.app.mu.Unlock()
	if others {
		return
	}
	deadline := time.Now().Add(DefaultTimeout)
	for c.app.Server.Client(c.ID) != nil {
		if time.Now().After(deadline) {
			c.t.Fatalf("rockettest: client %s still connected to the server %v after Close", c.ID, DefaultTimeout)
			return
		}
		time.Sleep(time.Millisecond) // bounded polling: the server offers no notification
	}
}

// stop is the cleanup: close without waiting for the server.
func (c *Client) stop() { c.stopWith(websocket.StatusGoingAway) }

// stopWith closes the connection with code (once; later calls return
// false) and waits for the reader goroutine.
func (c *Client) stopWith(code websocket.StatusCode) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.mu.Unlock()
	c.app.mu.Lock()
	if c.app.open[c.ID]--; c.app.open[c.ID] <= 0 {
		delete(c.app.open, c.ID)
	}
	c.app.mu.Unlock()

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = c.ws.Close(code, "")
	}()
	select {
	case <-closed:
	case <-time.After(DefaultTimeout):
		_ = c.ws.CloseNow()
		<-closed
	}
	select {
	case <-c.done:
	case <-time.After(DefaultTimeout):
		_ = c.ws.CloseNow()
		<-c.done
	}
	return true
}
