package rocket_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/internal/redistest"
)

// userHook is a connect hook that takes the user id from the query
// parameter "user" (none without it).
func userHook(e *rocket.ConnectEvent) (rocket.ConnectReply, error) {
	return rocket.ConnectReply{UserID: e.Request.URL.Query().Get("user")}, nil
}

// disconnects records the reasons the disconnect hook is given, by client
// id.
type disconnects struct {
	mu      sync.Mutex
	reasons map[string]string
}

func (d *disconnects) hook(e *rocket.DisconnectEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reasons == nil {
		d.reasons = make(map[string]string)
	}
	d.reasons[e.Client.ID()] = e.Reason
}

// expect waits until the hook has run for id, with reason.
func (d *disconnects) expect(t *testing.T, id, reason string) {
	t.Helper()
	eventually(t, func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		got, ok := d.reasons[id]
		switch {
		case !ok:
			return notYet("no disconnect hook for client %s", id)
		case got != reason:
			return fmt.Errorf("disconnect hook for client %s: reason %q, want %q", id, got, reason)
		}
		return nil
	})
}

// startUserNode starts a node whose connect hook is userHook and whose
// disconnect hook records into d.
func startUserNode(t *testing.T, cfg rocket.Config, d *disconnects) *node {
	t.Helper()
	cfg.CommandRate = -1
	return startNode(t, cfg, func(srv *rocket.Server) {
		srv.OnConnect(userHook)
		srv.OnDisconnect(d.hook)
	})
}

// dialUser connects to n as user ("" for none), resuming session if it is
// not empty.
func dialUser(t *testing.T, n *node, user, session string) *client {
	t.Helper()
	return dial(t, n.url+"/?user="+user, session)
}

// expectPush reads the next frame, which must be exactly want.
func (c *client) expectPush(want string) {
	c.t.Helper()
	if got := string(c.read()); got != want {
		c.t.Fatalf("client %s: got %s, want %s", c.welcome.Client, got, want)
	}
}

// expectUserClients checks what srv.UserClients lists for user.
func expectUserClients(t *testing.T, srv *rocket.Server, user string, want ...rocket.UserClient) {
	t.Helper()
	got, err := srv.UserClients(t.Context(), user)
	if err != nil {
		t.Fatalf("UserClients(%s): %v", user, err)
	}
	if want == nil {
		want = []rocket.UserClient{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("UserClients(%s) on server %s = %+v, want %+v", user, srv.ID(), got, want)
	}
}

// leave closes c's connection and waits until its server has let it go
// (it is away).
func leave(t *testing.T, c *client, n *node) {
	t.Helper()
	if err := c.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitGone(t, n, c.welcome.Client)
}

// expectNotResumed checks that a connection presenting old's session got a
// new client without mail: the first frame after the welcome is a push
// sent to it now.
func expectNotResumed(t *testing.T, n *node, user string, old *client) *client {
	t.Helper()
	c := dialUser(t, n, user, old.welcome.Session)
	if c.welcome.Resumed || c.welcome.Client == old.welcome.Client {
		t.Fatalf("session of client %s resumed: %+v", old.welcome.Client, c.welcome)
	}
	if err := n.srv.Send(t.Context(), c.welcome.Client, rocket.Push{Name: "Note.fresh", Value: true}); err != nil {
		t.Fatal(err)
	}
	c.expectPush(`{"Note.fresh":true}`)
	return c
}

// TestUsers: on one node, SendUser reaches every connection of a user and
// the mailbox of its away one, and no other client; DisconnectUser closes
// the user's connections with CloseUserDisconnected and forgets every
// session, so that none resumes and the kept mail is gone. A session
// resumes only for its own user.
func TestUsers(t *testing.T) {
	var hooks disconnects
	n := startUserNode(t, rocket.Config{}, &hooks)
	srv := n.srv
	ctx := t.Context()
	ann1 := dialUser(t, n, "ann", "")
	ann2 := dialUser(t, n, "ann", "")
	ann3 := dialUser(t, n, "ann", "")
	bob := dialUser(t, n, "bob", "")
	anon := dialUser(t, n, "", "")
	here := srv.ID()
	expectUserClients(t, srv, "ann",
		rocket.UserClient{Client: ann1.welcome.Client, Server: here},
		rocket.UserClient{Client: ann2.welcome.Client, Server: here},
		rocket.UserClient{Client: ann3.welcome.Client, Server: here})
	expectUserClients(t, srv, "bob", rocket.UserClient{Client: bob.welcome.Client, Server: here})
	expectUserClients(t, srv, "nobody")

	// Every connection of ann gets the message, in order with Send.
	if err := srv.Send(ctx, ann1.welcome.Client, rocket.Push{Name: "Note.first", Value: 0}); err != nil {
		t.Fatal(err)
	}
	if k, err := srv.SendUser(ctx, "ann", rocket.Push{Name: "Note.x", Value: 1}); err != nil || k != 3 {
		t.Fatalf("SendUser(ann) = %d, %v; want 3", k, err)
	}
	ann1.expectPush(`{"Note.first":0}`)
	for _, c := range []*client{ann1, ann2, ann3} {
		c.expectPush(`{"Note.x":1}`)
	}
	// bob and the client without a user got nothing: their next frame is
	// what is sent to them now.
	if k, err := srv.SendUser(ctx, "bob", rocket.Push{Name: "Note.bob", Value: 2}); err != nil || k != 1 {
		t.Fatalf("SendUser(bob) = %d, %v; want 1", k, err)
	}
	bob.expectPush(`{"Note.bob":2}`)
	if err := srv.Send(ctx, anon.welcome.Client, rocket.Push{Name: "Note.anon", Value: 3}); err != nil {
		t.Fatal(err)
	}
	anon.expectPush(`{"Note.anon":3}`)

	// An away connection keeps the message in its mailbox, as Send does.
	leave(t, ann3, n)
	expectUserClients(t, srv, "ann",
		rocket.UserClient{Client: ann1.welcome.Client, Server: here},
		rocket.UserClient{Client: ann2.welcome.Client, Server: here},
		rocket.UserClient{Client: ann3.welcome.Client})
	if k, err := srv.SendUser(ctx, "ann", rocket.Push{Name: "Note.away", Value: 4}); err != nil || k != 3 {
		t.Fatalf("SendUser(ann) with one away = %d, %v; want 3", k, err)
	}
	ann1.expectPush(`{"Note.away":4}`)
	ann2.expectPush(`{"Note.away":4}`)
	again := dialUser(t, n, "ann", ann3.welcome.Session)
	if !again.welcome.Resumed || again.welcome.Client != ann3.welcome.Client {
		t.Fatalf("ann's away session not resumed: %+v", again.welcome)
	}
	again.expectPush(`{"Note.away":4}`)
	leave(t, again, n)

	// A session resumes only for its user: eve presenting bob's token gets
	// a client of her own, and bob stays connected.
	eve := dialUser(t, n, "eve", bob.welcome.Session)
	if eve.welcome.Resumed || eve.welcome.Client == bob.welcome.Client {
		t.Fatalf("bob's session resumed by eve: %+v", eve.welcome)
	}
	if k, err := srv.SendUser(ctx, "bob", rocket.Push{Name: "Note.still", Value: 5}); err != nil || k != 1 {
		t.Fatalf("SendUser(bob) = %d, %v; want 1", k, err)
	}
	bob.expectPush(`{"Note.still":5}`)
	if _, err := srv.SendUser(ctx, "", "x"); err == nil {
		t.Fatal("SendUser with an empty user id: nil error")
	}

	// DisconnectUser closes ann's connections and forgets her sessions,
	// the away one (with its mail) included.
	if err := srv.Send(ctx, ann3.welcome.Client, rocket.Push{Name: "Note.mail", Value: 6}); err != nil {
		t.Fatal(err)
	}
	k, err := srv.DisconnectUser(ctx, "ann", "signed out everywhere")
	if err != nil || k != 3 {
		t.Fatalf("DisconnectUser(ann) = %d, %v; want 3", k, err)
	}
	for _, c := range []*client{ann1, ann2} {
		code, reason := c.expectCloseReason()
		if code != rocket.CloseUserDisconnected || reason != "signed out everywhere" {
			t.Fatalf("client %s closed with %d %q, want %d %q", c.welcome.Client, code, reason,
				rocket.CloseUserDisconnected, "signed out everywhere")
		}
		hooks.expect(t, c.welcome.Client, "signed out everywhere")
	}
	if err := srv.Send(ctx, ann1.welcome.Client, "x"); !errors.Is(err, rocket.ErrUnknownClient) {
		t.Fatalf("Send to a disconnected user's client: %v, want ErrUnknownClient", err)
	}
	fresh1 := expectNotResumed(t, n, "ann", ann1)
	fresh3 := expectNotResumed(t, n, "ann", ann3) // no Note.mail: the mailbox went too
	expectUserClients(t, srv, "ann",
		rocket.UserClient{Client: fresh1.welcome.Client, Server: here},
		rocket.UserClient{Client: fresh3.welcome.Client, Server: here})

	// Other users are untouched.
	if k, err := srv.SendUser(ctx, "bob", rocket.Push{Name: "Note.after", Value: 7}); err != nil || k != 1 {
		t.Fatalf("SendUser(bob) = %d, %v; want 1", k, err)
	}
	bob.expectPush(`{"Note.after":7}`)
	if k, err := srv.DisconnectUser(ctx, "nobody", ""); err != nil || k != 0 {
		t.Fatalf("DisconnectUser(nobody) = %d, %v; want 0", k, err)
	}
}

// TestUsersCluster: three nodes on one Redis. A user with connections on
// two nodes (and an away one) gets a SendUser from the third, and a
// DisconnectUser from the third closes both connections and forgets every
// session.
func TestUsersCluster(t *testing.T) {
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	var hooks disconnects
	var nodes []*node
	for range 3 {
		b := redisBroker(t, rs, prefix, 100*time.Millisecond)
		nodes = append(nodes, startUserNode(t, rocket.Config{Broker: b}, &hooks))
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := t.Context()
	ann1 := dialUser(t, n1, "ann", "")
	ann2 := dialUser(t, n2, "ann", "")
	annAway := dialUser(t, n1, "ann", "")
	bob := dialUser(t, n2, "bob", "")
	leave(t, annAway, n1)
	expectUserClients(t, n3.srv, "ann",
		rocket.UserClient{Client: ann1.welcome.Client, Server: n1.srv.ID()},
		rocket.UserClient{Client: ann2.welcome.Client, Server: n2.srv.ID()},
		rocket.UserClient{Client: annAway.welcome.Client})

	if k, err := n3.srv.SendUser(ctx, "ann", rocket.Push{Name: "Note.x", Value: 1}); err != nil || k != 3 {
		t.Fatalf("SendUser(ann) from node 3 = %d, %v; want 3", k, err)
	}
	ann1.expectPush(`{"Note.x":1}`)
	ann2.expectPush(`{"Note.x":1}`)
	if k, err := n3.srv.SendUser(ctx, "bob", rocket.Push{Name: "Note.bob", Value: 2}); err != nil || k != 1 {
		t.Fatalf("SendUser(bob) = %d, %v; want 1", k, err)
	}
	bob.expectPush(`{"Note.bob":2}`) // and not ann's message

	// The message is sent to ann's clients after what was sent to them
	// before; then they are closed, after it.
	if err := n3.srv.Send(ctx, ann2.welcome.Client, rocket.Push{Name: "Note.before", Value: 3}); err != nil {
		t.Fatal(err)
	}
	k, err := n3.srv.DisconnectUser(ctx, "ann", "")
	if err != nil || k != 3 {
		t.Fatalf("DisconnectUser(ann) from node 3 = %d, %v; want 3", k, err)
	}
	ann2.expectPush(`{"Note.before":3}`)
	for i, c := range []*client{ann1, ann2} {
		code, reason := c.expectCloseReason()
		if code != rocket.CloseUserDisconnected || reason != "user disconnected" {
			t.Fatalf("client %s on node %d closed with %d %q, want %d and the default reason",
				c.welcome.Client, i+1, code, reason, rocket.CloseUserDisconnected)
		}
		hooks.expect(t, c.welcome.Client, "user disconnected")
	}
	// No session resumes, on any node; the away one's mail is gone.
	fresh := expectNotResumed(t, n2, "ann", annAway)
	expectNotResumed(t, n3, "ann", ann1)
	if n1.srv.ClientCount() != 0 {
		t.Fatalf("node 1 still holds %d clients", n1.srv.ClientCount())
	}
	got, err := n1.srv.UserClients(ctx, "ann")
	if err != nil || len(got) != 2 || !slices.Contains(got, rocket.UserClient{Client: fresh.welcome.Client, Server: n2.srv.ID()}) {
		t.Fatalf("UserClients(ann) after DisconnectUser = %+v, %v; want the two new clients", got, err)
	}
	if k, err := n1.srv.SendUser(ctx, "bob", rocket.Push{Name: "Note.after", Value: 4}); err != nil || k != 1 {
		t.Fatalf("SendUser(bob) = %d, %v; want 1", k, err)
	}
	bob.expectPush(`{"Note.after":4}`)
}

// TestUsersNotStarted: the user methods of a server that is not running
// fail with ErrServerClosed.
func TestUsersNotStarted(t *testing.T) {
	srv, err := rocket.New(rocket.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := srv.SendUser(ctx, "ann", "x"); !errors.Is(err, rocket.ErrServerClosed) {
		t.Errorf("SendUser: %v", err)
	}
	if _, err := srv.DisconnectUser(ctx, "ann", ""); !errors.Is(err, rocket.ErrServerClosed) {
		t.Errorf("DisconnectUser: %v", err)
	}
	if _, err := srv.UserClients(ctx, "ann"); !errors.Is(err, rocket.ErrServerClosed) {
		t.Errorf("UserClients: %v", err)
	}
	_ = srv.Shutdown(ctx)
}
