package rocket_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// nbio starts a worker pool of its own when its package is loaded;
	// everything started after that must be gone at the end.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

func TestEcho(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	c := dial(t, n.url, "")
	if c.welcome.Server != n.srv.ID() || c.welcome.Resumed {
		t.Fatalf("welcome %+v, want server %s, not resumed", c.welcome, n.srv.ID())
	}
	for _, args := range []string{`"hi"`, `{"a":[1,2,{"b":null}]}`, `12.5`, `null`, `"üñí\"cødé\u2028"`} {
		c.sendRaw(`{"ref":1,"Echo.echo":` + args + `}`)
		f := c.next()
		if string(f.Ref) != "1" || f.Action != "Echo.echo" || f.Error != nil {
			t.Fatalf("reply %+v", f)
		}
		var got, want any
		if err := json.Unmarshal(f.Result, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(args), &want); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("echo %s: got %s", args, f.Result)
		}
	}
	// Without a ref a successful command sends nothing back: the next
	// frame is the reply to the command after it.
	c.sendRaw(`{"Echo.echo":"quiet"}`)
	c.sendRaw(`{"ref":"x","Echo.echo":"loud"}`)
	if f := c.next(); string(f.Result) != `"loud"` {
		t.Fatalf("got %+v, want the reply to the second command only", f)
	}
}

// TestDispatchOrder checks that commands run in the order written, within
// a frame (object keys and array elements) and across frames.
func TestDispatchOrder(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]int{}
	n := startNode(t, rocket.Config{CommandRate: -1}, func(s *rocket.Server) {
		s.Handle("Log.add", rocket.Action(func(c *rocket.Context, i int) (int, error) {
			mu.Lock()
			seen[c.Client().ID()] = append(seen[c.Client().ID()], i)
			mu.Unlock()
			return i, nil
		}))
	})
	var clients []*client
	for range 3 {
		clients = append(clients, dial(t, n.url, ""))
	}
	const frames, perFrame = 20, 30
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := 0
			for f := range frames {
				var b strings.Builder
				if f%2 == 0 {
					// An object: keys in order, ref in the middle.
					b.WriteString("{")
					for k := range perFrame {
						if k == perFrame/2 {
							b.WriteString(`"ref":"o",`)
						}
						fmt.Fprintf(&b, `"Log.add":%d`, i)
						i++
						if k < perFrame-1 {
							b.WriteString(",")
						}
					}
					b.WriteString("}")
				} else {
					// An array of objects.
					b.WriteString("[")
					for k := range perFrame {
						fmt.Fprintf(&b, `{"ref":"a","Log.add":%d}`, i)
						i++
						if k < perFrame-1 {
							b.WriteString(",")
						}
					}
					b.WriteString("]")
				}
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := c.ws.Write(ctx, websocket.MessageText, []byte(b.String()))
				cancel()
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range clients {
		for want := range frames * perFrame {
			f := c.next()
			if string(f.Result) != fmt.Sprint(want) {
				t.Fatalf("client %s: reply %d is %s (%+v)", c.welcome.Client, want, f.Result, f)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range clients {
		got := seen[c.welcome.Client]
		if len(got) != frames*perFrame {
			t.Fatalf("client %s ran %d commands, want %d", c.welcome.Client, len(got), frames*perFrame)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("client %s: command %d ran as number %d", c.welcome.Client, v, i)
			}
		}
	}
}

func TestBatch(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	c := dial(t, n.url, "")
	c.sendRaw(`[{"ref":1,"Echo.echo":"a"},{"Echo.echo":"silent"},{"ref":2,"Echo.echo":"b","Chat.join":{"room":"r","name":"ann"}}]`)
	for _, want := range []string{`1 Echo.echo "a"`, `2 Echo.echo "b"`, `2 Chat.join {"room":"r","client":"` + c.welcome.Client + `","name":"ann"}`} {
		f := c.next()
		if got := fmt.Sprintf("%s %s %s", f.Ref, f.Action, f.Result); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	n := startNode(t, rocket.Config{MaxFrameBytes: 1024, MaxDepth: 8, MaxCommandsPerFrame: 5}, func(s *rocket.Server) {
		s.HandleFunc("Fail.plain", func(*rocket.Context) (any, error) { return nil, errors.New("database on fire") })
		s.HandleFunc("Fail.typed", func(*rocket.Context) (any, error) {
			return nil, rocket.Errorf(rocket.CodeUnauthorized, "admins only")
		})
		s.HandleFunc("Fail.panic", func(*rocket.Context) (any, error) { panic("boom") })
	})
	c := dial(t, n.url, "")
	cases := []struct {
		frame, code, action string
	}{
		{`{"Echo.echo":`, rocket.CodeBadFrame, ""},
		{`not json`, rocket.CodeBadFrame, ""},
		{`null`, rocket.CodeBadFrame, ""},
		{`[]`, rocket.CodeBadFrame, ""},
		{`{"oops":1}`, rocket.CodeBadFrame, ""},
		{`{"ref":{},"Echo.echo":1}`, rocket.CodeBadFrame, ""},
		{`{"ref":1,"Nope.nothing":1}`, rocket.CodeUnknownAction, "Nope.nothing"},
		{`{"Nope.nothing":1}`, rocket.CodeUnknownAction, "Nope.nothing"},
		{`{"a.b.c":1}`, rocket.CodeUnknownAction, ""},
		{`{"ref":1,"Chat.join":"not an object"}`, rocket.CodeBadArgs, "Chat.join"},
		{`{"ref":1,"Chat.join":{"room":""}}`, rocket.CodeBadArgs, "Chat.join"},
		{`{"ref":1,"Fail.plain":null}`, rocket.CodeActionFailed, "Fail.plain"},
		{`{"Fail.plain":null}`, rocket.CodeActionFailed, "Fail.plain"},
		{`{"ref":1,"Fail.panic":null}`, rocket.CodeActionFailed, "Fail.panic"},
		{`{"ref":1,"Fail.typed":null}`, rocket.CodeUnauthorized, "Fail.typed"},
		{`{"ref":1,"Chat.say":{"room":"x","text":"not a member"}}`, rocket.CodeUnauthorized, "Chat.say"},
		{`{"Echo.echo":"` + strings.Repeat("x", 1100) + `"}`, rocket.CodeTooLarge, ""},
		{`{"Echo.echo":` + strings.Repeat("[", 9) + strings.Repeat("]", 9) + `}`, rocket.CodeTooLarge, ""},
		{`{"Echo.echo":1,"Echo.echo":2,"Echo.echo":3,"Echo.echo":4,"Echo.echo":5,"Echo.echo":6}`, rocket.CodeTooLarge, ""},
	}
	for _, tc := range cases {
		c.sendRaw(tc.frame)
		f := c.expectError(tc.code)
		if tc.action != "" && f.Action != tc.action && f.Error.Action != tc.action {
			t.Errorf("%s: error %+v does not name action %s", tc.frame, f.Error, tc.action)
		}
		if strings.Contains(f.Error.Message, "fire") || strings.Contains(f.Error.Message, "goroutine") {
			t.Errorf("%s: error message leaks internals: %q", tc.frame, f.Error.Message)
		}
	}
	// Binary frames are refused with bad_frame.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, []byte(`{"Echo.echo":1}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError(rocket.CodeBadFrame)
	// After all that, the connection still works.
	var got string
	c.call("Echo.echo", "still here", &got)
	if got != "still here" {
		t.Fatalf("echo after errors: %q", got)
	}
}

func TestRateLimit(t *testing.T) {
	n := startNode(t, rocket.Config{CommandRate: 1, CommandBurst: 3}, nil)
	c := dial(t, n.url, "")
	c.sendRaw(`[{"ref":1,"Echo.echo":1},{"ref":2,"Echo.echo":2},{"ref":3,"Echo.echo":3},{"ref":4,"Echo.echo":4},{"Echo.echo":5}]`)
	for i := 1; i <= 3; i++ {
		if f := c.next(); f.Error != nil || string(f.Result) != fmt.Sprint(i) {
			t.Fatalf("command %d: %+v", i, f)
		}
	}
	if f := c.expectError(rocket.CodeRateLimited); string(f.Ref) != "4" {
		t.Fatalf("rate_limited reply carries ref %s, want 4", f.Ref)
	}
	if f := c.expectError(rocket.CodeRateLimited); f.Error.Action != "Echo.echo" {
		t.Fatalf("frame-level rate_limited error %+v does not name the action", f.Error)
	}
	// Tokens come back at the configured rate.
	eventually(t, func() error {
		c.sendRaw(`{"ref":9,"Echo.echo":9}`)
		if f := c.next(); f.Error != nil {
			return notYet("%s", f.Error.Code)
		}
		return nil
	})
}

func TestChat(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	ann, bob, cat := dial(t, n.url, ""), dial(t, n.url, ""), dial(t, n.url, "")
	ann.call("Chat.join", map[string]string{"room": "lobby", "name": "ann"}, nil)
	bob.call("Chat.join", map[string]string{"room": "lobby", "name": "bob"}, nil)
	cat.call("Chat.join", map[string]string{"room": "kitchen", "name": "cat"}, nil)

	ann.say("lobby", "hello")
	for _, c := range []*client{ann, bob} {
		f := c.next()
		if f.Message == nil || f.Message.Room != "lobby" || f.Message.From != "ann" || f.Message.Text != "hello" {
			t.Fatalf("%s got %+v, want ann's message", c.welcome.Client, f)
		}
	}
	// cat is in another room: its next frame is the reply to its own
	// command, not ann's message.
	cat.call("Echo.echo", 1, nil)

	bob.call("Chat.leave", map[string]string{"room": "lobby"}, nil)
	ann.say("lobby", "alone")
	if f := ann.next(); f.Message == nil || f.Message.Text != "alone" {
		t.Fatalf("ann got %+v", f)
	}
	bob.call("Echo.echo", 1, nil)
	if got := n.srv.RoomSize("lobby"); got != 1 {
		t.Fatalf("lobby has %d local members, want 1", got)
	}
}

func TestWhisper(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	ann, bob := dial(t, n.url, ""), dial(t, n.url, "")
	ann.call("Chat.join", map[string]string{"room": "lobby", "name": "ann"}, nil)
	ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "psst"}, nil)
	f := bob.next()
	if f.Whisper == nil || f.Whisper.From != ann.welcome.Client || f.Whisper.Name != "ann" || f.Whisper.Text != "psst" {
		t.Fatalf("bob got %+v", f)
	}
	f = ann.request("Chat.whisper", map[string]string{"to": "nobody", "text": "hi"})
	if f.Error == nil || f.Error.Code != rocket.CodeBadArgs {
		t.Fatalf("whisper to an unknown client: %+v", f)
	}
}

// TestMailboxAndResume: messages for a client that went away are kept and
// delivered in order, after the welcome, when it resumes with its session.
func TestMailboxAndResume(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	ann, bob := dial(t, n.url, ""), dial(t, n.url, "")
	bobID, bobSession := bob.welcome.Client, bob.welcome.Session
	if err := bob.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, n, bobID)
	const count = 20
	for i := range count {
		ann.call("Chat.whisper", map[string]string{"to": bobID, "text": fmt.Sprint(i)}, nil)
	}
	bob2 := dial(t, n.url, bobSession)
	if bob2.welcome.Client != bobID || !bob2.welcome.Resumed {
		t.Fatalf("resume welcome %+v, want client %s resumed", bob2.welcome, bobID)
	}
	for i := range count {
		f := bob2.next()
		if f.Whisper == nil || f.Whisper.Text != fmt.Sprint(i) {
			t.Fatalf("mail %d: got %+v", i, f)
		}
	}
	// Live messages follow the mail.
	ann.call("Chat.whisper", map[string]string{"to": bobID, "text": "live"}, nil)
	if f := bob2.next(); f.Whisper == nil || f.Whisper.Text != "live" {
		t.Fatalf("got %+v, want the live whisper", f)
	}
	// The old token still resumes (the session is the same); a wrong one
	// gives a new client.
	bad := dial(t, n.url, bobID+".wrong-secret")
	if bad.welcome.Resumed || bad.welcome.Client == bobID {
		t.Fatalf("wrong secret resumed: %+v", bad.welcome)
	}
	garbage := dial(t, n.url, "garbage")
	if garbage.welcome.Resumed {
		t.Fatalf("garbage token resumed: %+v", garbage.welcome)
	}
}

// TestMailboxLimits: an away client's mailbox keeps the newest messages up
// to its size and expires after its TTL.
func TestMailboxLimits(t *testing.T) {
	b := memory.New(memory.Config{MailboxSize: 3, MailboxTTL: 300 * time.Millisecond})
	t.Cleanup(func() { b.Close() })
	n := startNode(t, rocket.Config{Broker: b}, nil)
	ann, bob := dial(t, n.url, ""), dial(t, n.url, "")
	bobID := bob.welcome.Client
	bob.ws.Close(websocket.StatusNormalClosure, "")
	waitGone(t, n, bobID)
	for i := range 5 {
		ann.call("Chat.whisper", map[string]string{"to": bobID, "text": fmt.Sprint(i)}, nil)
	}
	bob2 := dial(t, n.url, bob.welcome.Session)
	for _, want := range []string{"2", "3", "4"} {
		if f := bob2.next(); f.Whisper == nil || f.Whisper.Text != want {
			t.Fatalf("got %+v, want whisper %s", f, want)
		}
	}
	stats, err := b.Stats(context.Background())
	if err != nil || stats.MailDropped != 2 {
		t.Fatalf("stats %+v, %v: want 2 dropped", stats, err)
	}
	bob2.ws.Close(websocket.StatusNormalClosure, "")
	waitGone(t, n, bobID)
	ann.call("Chat.whisper", map[string]string{"to": bobID, "text": "late"}, nil)
	eventually(t, func() error {
		f := ann.request("Chat.whisper", map[string]string{"to": bobID, "text": "too late"})
		if f.Error == nil {
			return notYet("bob's session has not expired")
		}
		if f.Error.Code != rocket.CodeBadArgs {
			t.Fatalf("whisper to an expired client: %+v", f.Error)
		}
		return nil
	})
	bob3 := dial(t, n.url, bob.welcome.Session)
	if bob3.welcome.Resumed || bob3.welcome.Client == bobID {
		t.Fatalf("expired session resumed: %+v", bob3.welcome)
	}
	stats, _ = b.Stats(context.Background())
	if stats.MailExpired < 1 {
		t.Fatalf("stats %+v: want the late whisper counted as expired", stats)
	}
}

// TestTwoNodes: two servers on one broker reach each other's clients.
func TestTwoNodes(t *testing.T) {
	b := memory.New(memory.Config{})
	t.Cleanup(func() { b.Close() })
	n1 := startNode(t, rocket.Config{Broker: b}, nil)
	n2 := startNode(t, rocket.Config{Broker: b}, nil)
	if n1.srv.ID() == n2.srv.ID() {
		t.Fatalf("both servers have id %s", n1.srv.ID())
	}
	ann, bob := dial(t, n1.url, ""), dial(t, n2.url, "")
	ann.call("Chat.join", map[string]string{"room": "lobby", "name": "ann"}, nil)
	bob.call("Chat.join", map[string]string{"room": "lobby", "name": "bob"}, nil)
	bob.say("lobby", "hi from node 2")
	for _, c := range []*client{ann, bob} {
		if f := c.next(); f.Message == nil || f.Message.Text != "hi from node 2" {
			t.Fatalf("got %+v", f)
		}
	}
	ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "across"}, nil)
	if f := bob.next(); f.Whisper == nil || f.Whisper.Text != "across" {
		t.Fatalf("got %+v", f)
	}
	// bob moves to node 1 and keeps his id and the mail sent meanwhile.
	bob.ws.Close(websocket.StatusGoingAway, "")
	waitGone(t, n2, bob.welcome.Client)
	ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "while away"}, nil)
	bob2 := dial(t, n1.url, bob.welcome.Session)
	if !bob2.welcome.Resumed || bob2.welcome.Client != bob.welcome.Client || bob2.welcome.Server != n1.srv.ID() {
		t.Fatalf("welcome %+v", bob2.welcome)
	}
	if f := bob2.next(); f.Whisper == nil || f.Whisper.Text != "while away" {
		t.Fatalf("got %+v", f)
	}
}

func TestSlowClientDisconnected(t *testing.T) {
	var reason atomic.Value
	reg := prometheus.NewRegistry()
	n := startNode(t, rocket.Config{MaxPendingBytes: 64 << 10, Metrics: reg}, func(s *rocket.Server) {
		s.OnDisconnect(func(e *rocket.DisconnectEvent) { reason.Store(e.Reason) })
	})
	slow := dial(t, n.url, "")
	fast := dial(t, n.url, "")
	id := slow.welcome.Client
	payload := json.RawMessage(`{"Chat.message":{"text":"` + strings.Repeat("x", 32<<10) + `"}}`)
	// The slow client never reads. Keep sending until the server gives
	// up on it; the kernel's buffers take a few MB first.
	ctx := context.Background()
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = n.srv.Send(ctx, id, payload)
		if n.srv.Client(id) == nil {
			break
		}
	}
	waitGone(t, n, id)
	eventually(t, func() error {
		if r, _ := reason.Load().(string); r != "slow client" {
			return notYet("disconnect reason %q, want slow client", r)
		}
		return nil
	})
	if v := metricValue(t, reg, "rocket_slow_client_disconnects_total"); v != 1 {
		t.Fatalf("rocket_slow_client_disconnects_total = %v, want 1", v)
	}
	// Everybody else is still served.
	var got int
	fast.call("Echo.echo", 7, &got)
	if got != 7 {
		t.Fatalf("echo: %d", got)
	}
}

func TestPanicRecovered(t *testing.T) {
	var events atomic.Int32
	reg := prometheus.NewRegistry()
	n := startNode(t, rocket.Config{Metrics: reg}, func(s *rocket.Server) {
		s.HandleFunc("Bad.nilmap", func(*rocket.Context) (any, error) {
			var m map[string]int
			m["x"] = 1
			return nil, nil
		})
		s.OnError(func(e *rocket.ErrorEvent) {
			if e.Action == "Bad.nilmap" && len(e.Stack) > 0 {
				events.Add(1)
			}
		})
	})
	c := dial(t, n.url, "")
	for range 3 {
		if f := c.request("Bad.nilmap", nil); f.Error == nil || f.Error.Code != rocket.CodeActionFailed {
			t.Fatalf("got %+v", f)
		}
	}
	if events.Load() != 3 {
		t.Fatalf("error hook saw %d panics with a stack, want 3", events.Load())
	}
	if v := metricValue(t, reg, "rocket_action_panics_total"); v != 3 {
		t.Fatalf("rocket_action_panics_total = %v, want 3", v)
	}
	var got string
	c.call("Echo.echo", "alive", &got)
}

func TestFrameTooLargeClosesPastHardLimit(t *testing.T) {
	n := startNode(t, rocket.Config{MaxFrameBytes: 1000}, nil)
	c := dial(t, n.url, "")
	c.sendRaw(`{"Echo.echo":"` + strings.Repeat("x", 1500) + `"}`)
	c.expectError(rocket.CodeTooLarge)
	c.sendRaw(`{"Echo.echo":"` + strings.Repeat("x", 5000) + `"}`)
	if code := c.expectClose(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
}

func TestGracefulShutdown(t *testing.T) {
	srv, err := rocket.New(rocket.Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var left atomic.Int32
	srv.OnDisconnect(func(*rocket.DisconnectEvent) { left.Add(1) })
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := testServer(t, srv)
	var clients []*client
	for range 5 {
		clients = append(clients, dial(t, hs, ""))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range clients {
		if code := c.expectClose(); code != websocket.StatusGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
	}
	if left.Load() != 5 {
		t.Fatalf("disconnect hook ran %d times, want 5", left.Load())
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := srv.Send(ctx, clients[0].welcome.Client, "x"); !errors.Is(err, rocket.ErrServerClosed) {
		t.Fatalf("Send after shutdown: %v", err)
	}
	status, _ := httpGet(t, strings.Replace(hs, "ws", "http", 1), nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("connect after shutdown: HTTP %d, want 503", status)
	}
}

func TestOriginCheck(t *testing.T) {
	n := startNode(t, rocket.Config{AllowedOrigins: []string{"*.example.com"}}, nil)
	host := strings.TrimPrefix(n.url, "ws://")
	for origin, want := range map[string]int{
		"http://evil.test":        http.StatusForbidden,
		"https://app.example.com": http.StatusSwitchingProtocols,
		"http://" + host:          http.StatusSwitchingProtocols,
		"":                        http.StatusSwitchingProtocols,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, resp, err := websocket.Dial(ctx, n.url, &websocket.DialOptions{HTTPHeader: h})
		cancel()
		if resp == nil {
			t.Fatalf("origin %q: no response: %v", origin, err)
		}
		if resp.StatusCode != want {
			t.Errorf("origin %q: HTTP %d, want %d", origin, resp.StatusCode, want)
		}
		if ws != nil {
			ws.CloseNow()
		}
	}
}

func TestConnectHook(t *testing.T) {
	n := startNode(t, rocket.Config{}, func(s *rocket.Server) {
		s.OnConnect(func(e *rocket.ConnectEvent) (rocket.ConnectReply, error) {
			switch tok := e.Request.URL.Query().Get("token"); tok {
			case "":
				return rocket.ConnectReply{}, rocket.Errorf(rocket.CodeUnauthorized, "token required")
			case "banned":
				return rocket.ConnectReply{}, errors.New("banned")
			default:
				return rocket.ConnectReply{UserID: "user-" + tok}, nil
			}
		})
		s.HandleFunc("Who.ami", func(c *rocket.Context) (any, error) { return c.Client().UserID(), nil })
	})
	for url, want := range map[string]int{n.url: http.StatusUnauthorized, n.url + "?token=banned": http.StatusForbidden} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, resp, err := websocket.Dial(ctx, url, nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != want {
			t.Fatalf("%s: %v, %v: want HTTP %d", url, resp, err, want)
		}
	}
	c := dial(t, n.url+"?token=7", "")
	var who string
	c.call("Who.ami", nil, &who)
	if who != "user-7" {
		t.Fatalf("user id %q", who)
	}
}

func TestRegistrationPanics(t *testing.T) {
	srv, err := rocket.New(rocket.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	h := rocket.HandlerFunc(func(*rocket.Context) (any, error) { return nil, nil })
	srv.Handle("A.b", h)
	for _, name := range []string{"A.b", "nodot", "a.b.c", ".x", "x.", "sp ace.x"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q) did not panic", name)
				}
			}()
			srv.Handle(name, h)
		}()
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := rocket.New(rocket.Config{MaxFrameBytes: -1, AllowedOrigins: []string{"["}}); err == nil ||
		!strings.Contains(err.Error(), "MaxFrameBytes") || !strings.Contains(err.Error(), "AllowedOrigins") {
		t.Fatalf("New with bad config: %v", err)
	}
}

func testServer(t *testing.T, srv *rocket.Server) string {
	hs := httptestServer(srv)
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// TestIdleTimeout: a client that answers pings stays; one that does not
// (it never reads, so it never answers) is closed after
// PingInterval+PongTimeout.
func TestIdleTimeout(t *testing.T) {
	var reason atomic.Value
	n := startNode(t, rocket.Config{PingInterval: 100 * time.Millisecond, PongTimeout: 150 * time.Millisecond}, func(s *rocket.Server) {
		s.OnDisconnect(func(e *rocket.DisconnectEvent) { reason.Store(e.Reason) })
	})
	silent := dial(t, n.url, "")
	alive := dial(t, n.url, "")
	// alive reads (and so answers pings) in the background.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			if _, _, err := alive.ws.Read(ctx); err != nil {
				return
			}
		}
	}()
	waitGone(t, n, silent.welcome.Client)
	r, _ := reason.Load().(string)
	eventually(t, func() error {
		r, _ = reason.Load().(string)
		if r != "idle timeout" {
			return notYet("reason %q", r)
		}
		return nil
	})
	// By now several ping periods have passed: the answering client is
	// still there.
	if n.srv.Client(alive.welcome.Client) == nil {
		t.Fatalf("client answering pings was disconnected")
	}
	cancel()
	<-readerDone
}

// failingBroker is a memory broker whose room and send operations fail, as
// a networked broker's do while its service is down.
type failingBroker struct {
	*memory.Broker
	down atomic.Bool
}

var errDown = errors.New("broker service down")

func (b *failingBroker) Publish(ctx context.Context, from, room string, data []byte) error {
	if b.down.Load() {
		return errDown
	}
	return b.Broker.Publish(ctx, from, room, data)
}

func (b *failingBroker) Send(ctx context.Context, id string, data []byte) error {
	if b.down.Load() {
		return errDown
	}
	return b.Broker.Send(ctx, id, data)
}

// TestBrokerDown: when the broker fails, actions that need it answer
// internal_error, and everything local keeps working.
func TestBrokerDown(t *testing.T) {
	b := &failingBroker{Broker: memory.New(memory.Config{})}
	t.Cleanup(func() { b.Close() })
	var reported atomic.Int32
	n := startNode(t, rocket.Config{Broker: b, Logger: slog.New(slog.DiscardHandler)}, func(s *rocket.Server) {
		s.OnError(func(e *rocket.ErrorEvent) {
			if errors.Is(e.Err, errDown) && errors.Is(e.Err, rocket.ErrUnavailable) {
				reported.Add(1)
			}
		})
	})
	ann := dial(t, n.url, "")
	ann.call("Chat.join", map[string]string{"room": "lobby", "name": "ann"}, nil)
	b.down.Store(true)
	// ann is a member of the room on this server: she gets her message
	// even though the other servers cannot be reached, then the error.
	ann.send(map[string]any{"ref": 1, "Chat.say": map[string]string{"room": "lobby", "text": "hi"}})
	if f := ann.next(); f.Message == nil || f.Message.Text != "hi" {
		t.Fatalf("local member with the broker down: %+v", f)
	}
	f := ann.expectError(rocket.CodeInternal)
	f2 := ann.request("Chat.whisper", map[string]string{"to": "999", "text": "hi"})
	for _, f := range []frame{f, f2} {
		if f.Error == nil || f.Error.Code != rocket.CodeInternal || strings.Contains(f.Error.Message, errDown.Error()) {
			t.Fatalf("with the broker down: %+v", f)
		}
	}
	if reported.Load() != 2 {
		t.Fatalf("error hook saw %d broker failures, want 2", reported.Load())
	}
	var got string
	ann.call("Echo.echo", "local still works", &got)
	b.down.Store(false)
	ann.say("lobby", "back")
	if f := ann.next(); f.Message == nil || f.Message.Text != "back" {
		t.Fatalf("after recovery: %+v", f)
	}
}

// TestWrongSessionCannotTakeOver: a token with a connected client's id and
// a wrong secret gives a new client and leaves the connected one alone.
func TestWrongSessionCannotTakeOver(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	ann, bob := dial(t, n.url, ""), dial(t, n.url, "")
	mallory := dial(t, n.url, bob.welcome.Client+".guessed")
	if mallory.welcome.Resumed || mallory.welcome.Client == bob.welcome.Client {
		t.Fatalf("wrong secret took over: %+v", mallory.welcome)
	}
	ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "still yours"}, nil)
	if f := bob.next(); f.Whisper == nil || f.Whisper.Text != "still yours" {
		t.Fatalf("bob got %+v", f)
	}
	// The right secret from a second connection does take over: the old
	// connection is closed with 1008.
	bob2 := dial(t, n.url, bob.welcome.Session)
	if !bob2.welcome.Resumed || bob2.welcome.Client != bob.welcome.Client {
		t.Fatalf("welcome %+v", bob2.welcome)
	}
	if code := bob.expectClose(); code != websocket.StatusPolicyViolation {
		t.Fatalf("old connection closed with %d, want 1008", code)
	}
	ann.call("Chat.whisper", map[string]string{"to": bob.welcome.Client, "text": "new home"}, nil)
	if f := bob2.next(); f.Whisper == nil || f.Whisper.Text != "new home" {
		t.Fatalf("bob2 got %+v", f)
	}
}

// TestLargeRoomFanout: a room large enough to be written to in parallel
// delivers every message to every member once, in order.
func TestLargeRoomFanout(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	const members, msgs = 600, 3
	ctx := context.Background()
	var clients []*client
	for range members {
		c := dial(t, n.url, "")
		if err := n.srv.Client(c.welcome.Client).Join(ctx, "big"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for i := range msgs {
		if err := n.srv.Publish(ctx, "big", rocket.Push{Name: "Big.news", Value: i}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		for i := range msgs {
			if got, want := string(c.read()), fmt.Sprintf(`{"Big.news":%d}`, i); got != want {
				t.Fatalf("client %s: got %s, want %s", c.welcome.Client, got, want)
			}
		}
	}
}

// Shutdown right after Start returns (the transport's pollers may not
// have started yet).
func TestShutdownRightAfterStart(t *testing.T) {
	for i := range 10 {
		srv, err := rocket.New(rocket.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = srv.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Shutdown: %v", i, err)
		}
	}
}
