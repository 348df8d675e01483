package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/rockettest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// joinRoom makes c join room under name and checks the reply.
func joinRoom(t *testing.T, c *rockettest.Client, room, name string) {
	t.Helper()
	var got JoinArgs
	if err := c.Call("Chat.join", JoinArgs{Room: room, Name: name}, &got); err != nil {
		t.Fatalf("Chat.join %s: %v", room, err)
	}
	if want := (JoinArgs{Room: strings.TrimSpace(room), Name: strings.TrimSpace(name)}); got != want {
		t.Fatalf("Chat.join = %+v, want %+v", got, want)
	}
}

// sayIn makes c say text in room.
func sayIn(t *testing.T, c *rockettest.Client, room, text string) {
	t.Helper()
	var ok bool
	if err := c.Call("Chat.say", SayArgs{Room: room, Text: text}, &ok); err != nil || !ok {
		t.Fatalf("Chat.say in %s: %v, %v", room, ok, err)
	}
}

// expectMessage checks that the next message c gets is want.
func expectMessage(t *testing.T, c *rockettest.Client, want Message) {
	t.Helper()
	var got Message
	c.ExpectInto("Chat.message", &got)
	if got != want {
		t.Fatalf("client %s got %+v, want %+v", c.ID, got, want)
	}
}

func TestRooms(t *testing.T) {
	app := rockettest.Start(t, rocket.Config{}, register)
	ann, bob, eve := app.Connect(t), app.Connect(t), app.Connect(t)
	joinRoom(t, ann, "lobby", "ann")
	joinRoom(t, bob, " lobby ", " bob ") // trimmed
	joinRoom(t, eve, "garden", "eve")

	// Both members of the lobby get ann's message, ann included.
	sayIn(t, ann, "lobby", "hello")
	hello := Message{Room: "lobby", From: "ann", Text: "hello"}
	expectMessage(t, ann, hello)
	expectMessage(t, bob, hello)

	// eve is not in the lobby: the first message she gets is from her room.
	sayIn(t, eve, "garden", "roses")
	expectMessage(t, eve, Message{Room: "garden", From: "eve", Text: "roses"})

	// bob leaves the lobby for the garden. Publishing reaches the members
	// on this server before Chat.say replies, so if bob had got ann's
	// "bye" it would come before eve's "tulips".
	var ok bool
	if err := bob.Call("Chat.leave", LeaveArgs{Room: "lobby"}, &ok); err != nil || !ok {
		t.Fatalf("Chat.leave: %v, %v", ok, err)
	}
	joinRoom(t, bob, "garden", "bob")
	sayIn(t, ann, "lobby", "bye")
	expectMessage(t, ann, Message{Room: "lobby", From: "ann", Text: "bye"})
	sayIn(t, eve, "garden", "tulips")
	tulips := Message{Room: "garden", From: "eve", Text: "tulips"}
	expectMessage(t, bob, tulips)
	expectMessage(t, eve, tulips)
}

func TestBadCommands(t *testing.T) {
	app := rockettest.Start(t, rocket.Config{}, register)
	c := app.Connect(t)
	for _, tc := range []struct {
		action string
		args   any
		code   string
	}{
		{"Chat.say", SayArgs{Room: "lobby", Text: "hi"}, rocket.CodeUnauthorized}, // not joined
		{"Chat.join", JoinArgs{Room: "lobby"}, rocket.CodeBadArgs},                // no name
		{"Chat.join", JoinArgs{Room: " ", Name: "ann"}, rocket.CodeBadArgs},       // no room
		{"Chat.join", JoinArgs{Room: strings.Repeat("r", 33), Name: "ann"}, rocket.CodeBadArgs},
		{"Chat.join", "lobby", rocket.CodeBadArgs}, // not an object
		{"Chat.say", SayArgs{Room: "lobby"}, rocket.CodeBadArgs},
	} {
		err := c.Call(tc.action, tc.args, nil)
		var re *rocket.Error
		if !errors.As(err, &re) || re.Code != tc.code {
			t.Errorf("%s %+v: err = %v, want code %s", tc.action, tc.args, err, tc.code)
		}
	}
}

// TestServes runs the whole program on a loopback listener: the page,
// rocket.js and WebSockets at /ws, then a graceful stop.
func TestServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, slog.New(slog.DiscardHandler)) }()
	base := "http://" + ln.Addr().String()

	for path, want := range map[string]string{"/": `rocket.request("Chat.say"`, "/rocket.js": "export class Rocket"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: status %d, %v, no %q in the body", path, resp.StatusCode, err, want)
		}
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	ws, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	defer ws.CloseNow()
	if _, welcome, err := ws.Read(dctx); err != nil || !strings.Contains(string(welcome), `"welcome"`) {
		t.Fatalf("first frame: %s, %v", welcome, err)
	}

	// Stop: the client is closed with 1001 (going away), and run returns.
	cancel()
	if _, _, err := ws.Read(dctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after the stop, read: %v; want close code 1001", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15s of its context's end")
	}
}
