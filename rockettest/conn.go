package rockettest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// A DialOption configures Dial and App.Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	session string
	header  http.Header
	acks    bool
	ack     uint64
}

// Session makes the connection resume the session with the token token
// (a Conn's Session): the server welcomes the client of that session, if
// it is still valid, and then sends the mail it kept while the client
// was away. Check Conn.Resumed: with an expired or unknown token the
// server welcomes a new client instead.
func Session(token string) DialOption {
	return func(o *dialOptions) { o.session = token }
}

// Acks makes the connection acknowledge its directed messages (?acks=1;
// see "Acknowledged delivery" in docs/protocol.md): the server then keeps
// each message sent to the client until the Conn acknowledges it, which it
// does as soon as it receives it. last is the number of the last message
// received on an earlier connection of the session resumed (Conn.Seq), 0
// for none: the server sends the kept messages after it. The Conn unwraps
// numbered messages, so Next and Expect see them as any pushed message,
// and drops those it has had already on this Conn.
func Acks(last uint64) DialOption {
	return func(o *dialOptions) { o.acks, o.ack = true, last }
}

// Header adds h to the headers of the WebSocket handshake request, for
// example an Authorization header for the server's connect hook.
func Header(h http.Header) DialOption {
	return func(o *dialOptions) { o.header = h }
}

// Conn is a WebSocket client of a Rocket server (github.com/coder/websocket
// underneath). A goroutine started by Dial reads every frame the server
// sends: replies go to the Call waiting for them, anything else is queued
// for Next and Expect. Close stops the goroutine and waits for it. The
// methods of a Conn may be called from any goroutine.
type Conn struct {
	// ID is the client id the server gave in its welcome.
	ID string
	// Session is the session token, to resume with (see Session).
	Session string
	// ServerID is the id of the server that welcomed the client.
	ServerID string
	// Resumed reports whether the welcome said the session was resumed.
	Resumed bool
	// Acks reports whether the welcome said the connection's directed
	// messages are numbered (see Acks).
	Acks bool

	app  *App // the App dialed, or nil
	ws   *websocket.Conn
	done chan struct{} // closed when the reader goroutine has returned
	refs atomic.Uint64

	closeOnce sync.Once

	mu      sync.Mutex
	changed chan struct{}              // closed and replaced when the state below changes
	queue   []json.RawMessage          // frames that are not awaited replies, in order
	pending map[string]json.RawMessage // awaited ref -> reply (nil until it arrives)
	readErr error                      // why the reader stopped, once it has
	seq     uint64                     // number of the last numbered message received
}

// Dial connects to the Rocket server at url (ws://, wss://, http:// or
// https://, with the path the server is served at) and reads the welcome.
// ctx bounds the handshake and the wait for the welcome; the Conn outlives
// it. Dial works with any Rocket server, in this process or not; for an
// App, App.Dial does more.
func Dial(ctx context.Context, url string, opts ...DialOption) (*Conn, error) {
	return dial(ctx, nil, url, opts)
}

func dial(ctx context.Context, app *App, rawURL string, opts []DialOption) (*Conn, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("rockettest: Dial: %w", err)
	}
	if o.session != "" || o.acks {
		q := u.Query()
		if o.session != "" {
			q.Set("session", o.session)
		}
		if o.acks {
			q.Set("acks", "1")
			q.Set("ack", strconv.FormatUint(o.ack, 10))
		}
		u.RawQuery = q.Encode()
	}
	ws, _, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: o.header})
	if err != nil {
		return nil, fmt.Errorf("rockettest: Dial %s: %w", u.Redacted(), err)
	}
	ws.SetReadLimit(16 << 20)
	typ, data, err := ws.Read(ctx)
	if err == nil && typ != websocket.MessageText {
		err = fmt.Errorf("got a %v frame", typ)
	}
	if err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("rockettest: Dial %s: reading the welcome: %w", u.Redacted(), err)
	}
	var w struct {
		Welcome *struct {
			Client  string `json:"client"`
			Server  string `json:"server"`
			Session string `json:"session"`
			Resumed bool   `json:"resumed"`
			Acks    bool   `json:"acks"`
		} `json:"welcome"`
	}
	if err := json.Unmarshal(data, &w); err != nil || w.Welcome == nil || w.Welcome.Client == "" {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("rockettest: Dial %s: first frame is not a welcome: %s", u.Redacted(), data)
	}
	c := &Conn{
		ID:       w.Welcome.Client,
		Session:  w.Welcome.Session,
		ServerID: w.Welcome.Server,
		Resumed:  w.Welcome.Resumed,
		Acks:     w.Welcome.Acks,
		app:      app,
		ws:       ws,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
		pending:  make(map[string]json.RawMessage),
	}
	if app != nil {
		if err := app.add(c); err != nil {
			_ = ws.CloseNow()
			return nil, fmt.Errorf("rockettest: Dial: %w", err)
		}
	}
	if c.Acks && c.Resumed {
		c.seq = o.ack
	}
	go c.read()
	return c, nil
}

// read is the reader goroutine: it files every frame until the connection
// ends.
func (c *Conn) read() {
	defer close(c.done)
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err == nil && typ != websocket.MessageText {
			err = fmt.Errorf("got a %v frame, want text", typ)
			_ = c.ws.CloseNow()
		}
		var ack uint64
		c.mu.Lock()
		if err != nil {
			c.readErr = err
		} else if ref, ok := replyRef(data); ok && c.isPending(ref) {
			c.pending[ref] = data
		} else if seq, msg, ok := numbered(data); ok && c.Acks {
			if seq > c.seq {
				c.seq = seq
				c.queue = append(c.queue, msg)
			}
			ack = c.seq
		} else {
			c.queue = append(c.queue, data)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
		if ack != 0 {
			c.ack(ack)
		}
	}
}

// numbered unwraps {"seq": N, "message": m}.
func numbered(data []byte) (seq uint64, msg json.RawMessage, ok bool) {
	var f struct {
		Seq     *uint64         `json:"seq"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(data, &f) != nil || f.Seq == nil || f.Message == nil {
		return 0, nil, false
	}
	return *f.Seq, f.Message, true
}

// ack acknowledges the messages numbered up to seq. A failure means the
// connection is ending, which the reader reports.
func (c *Conn) ack(seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, []byte(`{"ack":`+strconv.FormatUint(seq, 10)+`}`))
}

// Seq returns the number of the last numbered message received (see
// Acks), to resume with: Acks(c.Seq()).
func (c *Conn) Seq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// isPending reports whether a Call waits for ref and has no reply yet.
// c.mu must be held.
func (c *Conn) isPending(ref string) bool {
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

// wait calls ready with c.mu held until it returns true, the connection
// ends (returns the reader's error) or ctx is done (returns its cause).
func (c *Conn) wait(ctx context.Context, ready func() bool) error {
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
		case <-ctx.Done():
			return context.Cause(ctx)
		}
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

// Send sends the command {"action": args} without a ref: fire and forget,
// no reply comes (a failure arrives, if at all, as a frame-level error
// {"error": {...}} for Next). ctx bounds the write; if it ends during the
// write, the connection is closed.
func (c *Conn) Send(ctx context.Context, action string, args any) error {
	frame, err := command(action, args, "")
	if err == nil {
		err = c.ws.Write(ctx, websocket.MessageText, frame)
	}
	if err != nil {
		return fmt.Errorf("rockettest: Send %s: %w", action, err)
	}
	return nil
}

// Call sends the command {"action": args} with a fresh ref and waits,
// until ctx is done, for the reply with that ref. A successful reply's
// result is decoded into result (unless result is nil); an error reply is
// returned as a *rocket.Error with its code and message. Frames that
// arrive meanwhile are kept, in order, for Next and Expect; a reply that
// arrives after its Call gave up is queued like a pushed message. Any
// other failure (encoding, writing, ctx done, connection ended) is
// returned as an error too; if ctx ends during the write, the connection
// is closed.
func (c *Conn) Call(ctx context.Context, action string, args any, result any) error {
	ref := fmt.Sprintf("rockettest-%d", c.refs.Add(1))
	frame, err := command(action, args, ref)
	if err != nil {
		return fmt.Errorf("rockettest: Call %s: %w", action, err)
	}
	c.mu.Lock()
	c.pending[ref] = nil
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
	}()
	if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
		return fmt.Errorf("rockettest: Call %s: write: %w", action, err)
	}
	var reply json.RawMessage
	if err := c.wait(ctx, func() bool { reply = c.pending[ref]; return reply != nil }); err != nil {
		return fmt.Errorf("rockettest: Call %s: no reply: %w", action, err)
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return fmt.Errorf("rockettest: Call %s: decode reply %s: %w", action, reply, err)
	}
	if r.Error != nil {
		return &rocket.Error{Code: r.Error.Code, Message: r.Error.Message}
	}
	if result != nil {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return fmt.Errorf("rockettest: Call %s: decode result %s: %w", action, r.Result, err)
		}
	}
	return nil
}

// Next returns the next frame that is not the reply to a Call, waiting
// until one arrives, ctx is done or the connection ends. A pushed message
// {"Name": value} (any one-key object) comes back as its name and value;
// any other frame comes back whole, with an empty name. A frame-level
// error {"error": {...}} thus has the name "error". Frames that arrived
// before the connection ended are returned before the error saying it
// ended.
func (c *Conn) Next(ctx context.Context) (name string, value json.RawMessage, err error) {
	frame, err := c.pop(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("rockettest: client %s: no pushed message: %w", c.ID, err)
	}
	name, value = split(frame)
	return name, value, nil
}

// Expect reads the next frame as Next does; it must be a pushed message
// named name, whose value is decoded into v (unless v is nil). Expect
// returns an error saying what arrived instead if the next frame is
// something else.
func (c *Conn) Expect(ctx context.Context, name string, v any) error {
	frame, err := c.pop(ctx)
	if err != nil {
		return fmt.Errorf("rockettest: client %s: expected %s, got nothing: %w", c.ID, name, err)
	}
	got, value := split(frame)
	if got != name {
		return fmt.Errorf("rockettest: client %s: expected %s, got %s", c.ID, name, frame)
	}
	if v != nil {
		if err := json.Unmarshal(value, v); err != nil {
			return fmt.Errorf("rockettest: client %s: decode %s %s: %w", c.ID, name, value, err)
		}
	}
	return nil
}

// pop removes and returns the first queued frame, waiting for one.
func (c *Conn) pop(ctx context.Context) (json.RawMessage, error) {
	var frame json.RawMessage
	err := c.wait(ctx, func() bool {
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

// Close closes the connection normally (close code 1000) and waits for
// the reader goroutine. For a Conn from App.Dial it then waits, bounded by
// DefaultTimeout, until the server has let the client go
// (Server.Client(ID) is nil): from then on the client is away, and what
// is sent to it is kept for a connection that resumes its Session. That
// wait is skipped while another open Conn of the app has the same client
// id. Close returns an error if the server does not let go in time.
// Calling Close more than once is harmless.
func (c *Conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.shut(websocket.StatusNormalClosure)
	})
	if !first || c.app == nil {
		return nil
	}
	if c.app.remove(c) {
		return nil
	}
	deadline := time.Now().Add(DefaultTimeout)
	for c.app.Server.Client(c.ID) != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("rockettest: client %s still connected to the server %v after Close", c.ID, DefaultTimeout)
		}
		time.Sleep(time.Millisecond) // bounded polling: the server offers no notification
	}
	return nil
}

// stop closes the connection with close code 1001 (going away), without
// waiting for the server; it does nothing after Close.
func (c *Conn) stop() {
	c.closeOnce.Do(func() {
		if c.app != nil {
			c.app.remove(c)
		}
		c.shut(websocket.StatusGoingAway)
	})
}

// shut closes the connection with code, bounded by DefaultTimeout, and
// waits for the reader goroutine.
func (c *Conn) shut(code websocket.StatusCode) {
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
}
