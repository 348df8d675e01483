package rockettest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// Client is a Conn to an App for a test: each wait is bounded by its
// Timeout, and every method but Call fails the test instead of returning
// an error. It is closed by t.Cleanup if the test has not closed it.
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
	conn *Conn
}

// Connect dials the app as a new client and reads its welcome. It fails
// the test if that does not succeed within DefaultTimeout.
func (a *App) Connect(t testing.TB) *Client {
	t.Helper()
	return a.connect(t)
}

// Resume dials the app with the session token session and reads the
// welcome; mail kept while the client was away follows it, ready for Next
// and Expect. Check Resumed: with an expired or unknown token the server
// welcomes a new client instead.
func (a *App) Resume(t testing.TB, session string) *Client {
	t.Helper()
	return a.connect(t, Session(session))
}

func (a *App) connect(t testing.TB, opts ...DialOption) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	conn, err := a.Dial(ctx, opts...)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(conn.stop)
	return &Client{
		ID:       conn.ID,
		Session:  conn.Session,
		ServerID: conn.ServerID,
		Resumed:  conn.Resumed,
		t:        t,
		conn:     conn,
	}
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// context returns a context that ends after the client's timeout, with
// a cause saying so.
func (c *Client) context() (context.Context, context.CancelFunc) {
	d := c.timeout()
	return context.WithTimeoutCause(context.Background(), d, fmt.Errorf("nothing within %v: %w", d, context.DeadlineExceeded))
}

// Send sends the command {"name": args} without a ref: fire and forget,
// no reply comes (a failure arrives, if at all, as a frame-level error
// for Next). It fails the test if args cannot be encoded or the frame
// cannot be written.
func (c *Client) Send(name string, args any) {
	c.t.Helper()
	ctx, cancel := c.context()
	defer cancel()
	if err := c.conn.Send(ctx, name, args); err != nil {
		c.t.Fatalf("%v", err)
	}
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
	ctx, cancel := c.context()
	defer cancel()
	return c.conn.Call(ctx, name, args, result)
}

// Next returns the next frame that is not the reply to a Call, waiting up
// to the client's timeout. A pushed message {"Name": value} (any one-key
// object) comes back as its name and value; any other frame comes back
// whole, with an empty name. A frame-level error {"error": {...}} thus has
// the name "error". Next fails the test if nothing arrives in time or the
// connection ends.
func (c *Client) Next() (name string, value json.RawMessage) {
	c.t.Helper()
	ctx, cancel := c.context()
	defer cancel()
	name, value, err := c.conn.Next(ctx)
	if err != nil {
		c.t.Fatalf("%v", err)
		return "", nil
	}
	return name, value
}

// Expect returns the value of the next pushed message, which must be
// named name. It fails the test, saying what arrived instead, if the next
// frame is something else, or if nothing arrives within the timeout.
func (c *Client) Expect(name string) json.RawMessage {
	c.t.Helper()
	var value json.RawMessage
	if !c.expect(name, &value) {
		return nil
	}
	return value
}

// ExpectInto is Expect, decoding the message's value into v. It fails the
// test if the value does not decode.
func (c *Client) ExpectInto(name string, v any) {
	c.t.Helper()
	c.expect(name, v)
}

// expect runs Conn.Expect and fails the test on an error.
func (c *Client) expect(name string, v any) bool {
	c.t.Helper()
	ctx, cancel := c.context()
	defer cancel()
	if err := c.conn.Expect(ctx, name, v); err != nil {
		c.t.Fatalf("%v", err)
		return false
	}
	return true
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
	if err := c.conn.Close(); err != nil {
		c.t.Fatalf("%v", err)
	}
}
