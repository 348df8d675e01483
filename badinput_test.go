package rocket_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/jwtauth"
)

// The bad-input matrix: every kind of bad input a client can send, each
// with the exact outcome docs/security.md ("What happens on each bad
// input") and docs/protocol.md promise: an error frame with a code, a close
// with a code, an HTTP status before the upgrade, or a new client instead of
// a resumed one. After each case, a well-behaved client (the bystander)
// connected to the same node before the case must still be served.
//
// The nodes use small limits so that the whole matrix takes a few seconds.
const (
	badMaxFrame    = 16 << 10 // MaxFrameBytes; the hard limit is 4× this
	badMaxDepth    = 8
	badMaxCommands = 10
	badRate        = 20 // commands per second
	badBurst       = 60 // more than the bystander sends in the whole matrix
	badMaxPending  = 64 << 10
	badMailboxTTL  = 200 * time.Millisecond
	badPing        = 150 * time.Millisecond // keepalive node
	badPongTimeout = 250 * time.Millisecond // keepalive node
)

// badJWTSecret is the HS256 secret of the JWT node.
var badJWTSecret = []byte("bad-input-matrix-hs256-secret-0123456789")

// badNode is a node of the matrix and its bystander.
type badNode struct {
	*node
	reg       *prometheus.Registry
	bystander *bystander
	header    http.Header // what a client needs to be let in (the JWT node)

	reasons sync.Map // client id -> disconnect reason, from the disconnect hook
}

// startBadNode starts a node for cfg with the demo app, an action Num.int
// taking an int, and a disconnect hook recording reasons; then connects
// its bystander.
func startBadNode(t *testing.T, cfg rocket.Config, header http.Header, setup func(*rocket.Server)) *badNode {
	t.Helper()
	n := &badNode{reg: prometheus.NewRegistry(), header: header}
	cfg.Metrics = n.reg
	n.node = startNode(t, cfg, func(s *rocket.Server) {
		s.Handle("Num.int", rocket.Action(func(_ *rocket.Context, i int) (int, error) { return i, nil }))
		s.OnDisconnect(func(e *rocket.DisconnectEvent) { n.reasons.Store(e.Client.ID(), e.Reason) })
		if setup != nil {
			setup(s)
		}
	})
	n.bystander = connectBystander(t, n.url, header)
	return n
}

// waitGone waits until the client id has left the node and returns the
// reason its disconnect hook was given.
func (n *badNode) waitGone(t *testing.T, id string) string {
	t.Helper()
	var reason string
	eventually(t, func() error {
		r, ok := n.reasons.Load(id)
		if !ok || n.srv.Client(id) != nil {
			return notYet("client %s still connected", id)
		}
		reason = r.(string)
		return nil
	})
	return reason
}

// bystander is a well-behaved client: a goroutine reads everything the
// server sends (so it answers pings), and echo checks it is still served.
type bystander struct {
	ws     *websocket.Conn
	id     string
	frames chan []byte
	quit   chan struct{}
	done   chan struct{}
	calls  int
}

func connectBystander(t *testing.T, url string, header http.Header) *bystander {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatalf("bystander: dial %s: %v", url, err)
	}
	b := &bystander{ws: ws, frames: make(chan []byte, 16), quit: make(chan struct{}), done: make(chan struct{})}
	go b.read()
	t.Cleanup(func() {
		close(b.quit)
		_ = ws.Close(websocket.StatusNormalClosure, "")
		<-b.done
	})
	var w struct {
		Welcome *welcome `json:"welcome"`
	}
	if err := json.Unmarshal(b.next(t), &w); err != nil || w.Welcome == nil {
		t.Fatalf("bystander: no welcome (%v)", err)
	}
	b.id = w.Welcome.Client
	return b
}

func (b *bystander) read() {
	defer close(b.done)
	defer close(b.frames)
	for {
		_, data, err := b.ws.Read(context.Background())
		if err != nil {
			return
		}
		select {
		case b.frames <- data:
		case <-b.quit:
			return
		}
	}
}

func (b *bystander) next(t *testing.T) []byte {
	t.Helper()
	select {
	case data, ok := <-b.frames:
		if !ok {
			t.Fatalf("bystander %s: connection ended", b.id)
		}
		return data
	case <-time.After(wait):
		t.Fatalf("bystander %s: nothing within %v", b.id, wait)
		return nil
	}
}

// echo checks that the bystander is still connected and served: an
// Echo.echo with a ref gets its reply (the bystander receives nothing
// else).
func (b *bystander) echo(t *testing.T) {
	t.Helper()
	b.calls++
	want := fmt.Sprintf(`"still served %d"`, b.calls)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := b.ws.Write(ctx, websocket.MessageText, []byte(`{"ref":"by","Echo.echo":`+want+`}`)); err != nil {
		t.Fatalf("bystander %s: write: %v", b.id, err)
	}
	var f frame
	if data := b.next(t); json.Unmarshal(data, &f) != nil || string(f.Ref) != `"by"` || f.Error != nil || string(f.Result) != want {
		t.Fatalf("bystander %s: got %s, want the echo of %s", b.id, data, want)
	}
}

// badCase is one row of the matrix.
type badCase struct {
	name    string
	node    string // "main", "keepalive" or "jwt"
	outcome string // the documented outcome, which run asserts
	run     func(t *testing.T, n *badNode)
}

func TestBadInput(t *testing.T) {
	nodes := map[string]*badNode{
		"main": startBadNode(t, rocket.Config{
			MaxFrameBytes:       badMaxFrame,
			MaxDepth:            badMaxDepth,
			MaxCommandsPerFrame: badMaxCommands,
			CommandRate:         badRate,
			CommandBurst:        badBurst,
			MaxPendingBytes:     badMaxPending,
			MailboxTTL:          badMailboxTTL,
		}, nil, nil),
		"keepalive": startBadNode(t, rocket.Config{PingInterval: badPing, PongTimeout: badPongTimeout}, nil, nil),
		"jwt":       startJWTNode(t),
	}
	for _, tc := range badCases() {
		n := nodes[tc.node]
		ok := t.Run(tc.name, func(t *testing.T) {
			tc.run(t, n)
			if n.srv.Client(n.bystander.id) == nil {
				t.Fatalf("bystander %s no longer connected", n.bystander.id)
			}
			n.bystander.echo(t)
		})
		if !ok {
			t.Logf("%s: documented outcome: %s", tc.name, tc.outcome)
		}
	}
}

func startJWTNode(t *testing.T) *badNode {
	v, err := jwtauth.New(jwtauth.Config{HMACSecret: badJWTSecret})
	if err != nil {
		t.Fatal(err)
	}
	header := http.Header{"Authorization": {"Bearer " + signJWT(jwt.SigningMethodHS256, badJWTSecret, nil)}}
	return startBadNode(t, rocket.Config{}, header, func(s *rocket.Server) { s.OnConnect(v.Connect) })
}

func badCases() []badCase {
	// A frame answered by an error frame or error reply with code, naming
	// action (if not empty); the connection stays open and nothing of the
	// frame ran: the next frame is the reply to the command after it.
	refused := func(frame, code, action string) func(*testing.T, *badNode) {
		return func(t *testing.T, n *badNode) {
			c := dial(t, n.url, "")
			c.sendRaw(frame)
			f := c.expectError(code)
			if action != "" && f.Action != action && f.Error.Action != action {
				t.Fatalf("error %+v does not name the action %s", f.Error, action)
			}
			// The message quotes little of the input, however large.
			if len(f.Error.Message) > 300 {
				t.Fatalf("error message of %d bytes: %.80s…", len(f.Error.Message), f.Error.Message)
			}
			var got string
			c.call("Echo.echo", "after", &got)
		}
	}
	// A frame answered by closing the connection with code and a reason
	// containing reason.
	closed := func(typ websocket.MessageType, frame string, code websocket.StatusCode, reason string) func(*testing.T, *badNode) {
		return func(t *testing.T, n *badNode) {
			c := dial(t, n.url, "")
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := c.ws.Write(ctx, typ, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			if got, why := c.expectCloseReason(); got != code || !strings.Contains(why, reason) {
				t.Fatalf("closed with %d %q, want close %d with %q", got, why, code, reason)
			}
			n.waitGone(t, c.welcome.Client)
		}
	}
	// An upgrade refused with an HTTP status and a body containing want.
	httpRefused := func(url func(*badNode) string, header http.Header, status int, want string) func(*testing.T, *badNode) {
		return func(t *testing.T, n *badNode) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, url(n), &websocket.DialOptions{HTTPHeader: header})
			if err == nil {
				ws.CloseNow()
				t.Fatal("upgrade accepted")
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != status || !strings.Contains(string(body), want) {
				t.Fatalf("HTTP %d %q, want %d with %q", resp.StatusCode, body, status, want)
			}
		}
	}
	// A resume with token that opens a new client instead.
	notResumed := func(token func(t *testing.T, n *badNode) (oldID, token string)) func(*testing.T, *badNode) {
		return func(t *testing.T, n *badNode) {
			oldID, tok := token(t, n)
			c := dial(t, n.url, tok)
			if c.welcome.Resumed || c.welcome.Client == oldID || c.welcome.Client == "" {
				t.Fatalf("welcome %+v, want a new client (not %s), not resumed", c.welcome, oldID)
			}
			var got string
			c.call("Echo.echo", "new client works", &got)
		}
	}
	nodeURL := func(n *badNode) string { return n.url }
	digits := strings.Repeat("1234567890", 1000)
	// Array elements of 10 commands (the frame limit) with refs.
	var flood strings.Builder
	flood.WriteString("[")
	for i := range badMaxCommands {
		if i > 0 {
			flood.WriteString(",")
		}
		fmt.Fprintf(&flood, `{"ref":%d,"Echo.echo":%d}`, i, i)
	}
	flood.WriteString("]")

	return []badCase{
		// Frames that are not JSON commands.
		{"invalid JSON", "main", "bad_frame error frame, nothing runs, stays open",
			refused(`{"ref":1,"Echo.echo":1,}`, rocket.CodeBadFrame, "")},
		{"truncated JSON", "main", "bad_frame", refused(`{"ref":1,"Echo.echo":`, rocket.CodeBadFrame, "")},
		{"trailing data", "main", "bad_frame", refused(`{"ref":1,"Echo.echo":1} {}`, rocket.CodeBadFrame, "")},
		{"invalid UTF-8 in a text frame", "main", "close 1007 by the WebSocket layer, before Rocket sees the frame",
			closed(websocket.MessageText, "{\"ref\":1,\"Echo.echo\":\"\xff\xfe\"}", websocket.StatusInvalidFramePayloadData, "invalid UTF-8 bytes")},
		{"JSON escape of a lone surrogate", "main", "bad_frame (the only invalid UTF-8 that reaches the decoder)",
			refused(`{"ref":1,"Echo.echo":"\ud800"}`, rocket.CodeBadFrame, "")},
		{"binary frame", "main", "bad_frame, stays open", func(t *testing.T, n *badNode) {
			c := dial(t, n.url, "")
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := c.ws.Write(ctx, websocket.MessageBinary, []byte(`{"ref":1,"Echo.echo":1}`)); err != nil {
				t.Fatal(err)
			}
			c.expectError(rocket.CodeBadFrame)
			c.call("Echo.echo", "after", nil)
		}},
		{"null", "main", "bad_frame", refused(`null`, rocket.CodeBadFrame, "")},
		{"number", "main", "bad_frame", refused(`42`, rocket.CodeBadFrame, "")},
		{"empty array", "main", "bad_frame", refused(`[]`, rocket.CodeBadFrame, "")},
		{"empty object", "main", "bad_frame", refused(`{}`, rocket.CodeBadFrame, "")},
		{"array of a non-object", "main", "bad_frame", refused(`[{"ref":1,"Echo.echo":1},2]`, rocket.CodeBadFrame, "")},
		{"name without a dot", "main", "bad_frame (unknown reserved key)", refused(`{"ref":1,"echo":1}`, rocket.CodeBadFrame, "")},
		{"ref of the wrong type", "main", "bad_frame", refused(`{"ref":[1],"Echo.echo":1}`, rocket.CodeBadFrame, "")},

		// Limits.
		{"frame over MaxFrameBytes", "main", "too_large, stays open",
			refused(`{"ref":1,"Echo.echo":"`+strings.Repeat("x", badMaxFrame)+`"}`, rocket.CodeTooLarge, "")},
		{"frame over 4×MaxFrameBytes", "main", "close 1009, the frame is not read", func(t *testing.T, n *badNode) {
			// A raw client sends only the frame's header: the server
			// closes on seeing the length, without waiting for the
			// payload. (A client writing the whole frame may see its
			// write fail, the server having closed meanwhile.)
			rc := dialRaw(t, n.url)
			rc.writeFrameHeader(t, 0x1, 4*badMaxFrame+1)
			code, reason := rc.readClose(t)
			if code != int(websocket.StatusMessageTooBig) {
				t.Fatalf("close code %d (%q), want 1009", code, reason)
			}
			n.waitGone(t, rc.id)
		}},
		{"nesting past MaxDepth", "main", "too_large, nothing runs",
			refused(`{"ref":1,"Echo.echo":`+strings.Repeat("[", badMaxDepth)+strings.Repeat("]", badMaxDepth)+`}`, rocket.CodeTooLarge, "")},
		{"more commands than MaxCommandsPerFrame", "main", "too_large, nothing runs",
			refused(`{"ref":1`+strings.Repeat(`,"Echo.echo":1`, badMaxCommands+1)+`}`, rocket.CodeTooLarge, "")},
		{"flood over the command rate", "main", "rate_limited for each command over the rate, the others run, stays open",
			func(t *testing.T, n *badNode) {
				c := dial(t, n.url, "")
				const frames = 16 // 160 commands: over burst+rate unless sending takes 5 s
				for range frames {
					c.sendRaw(flood.String())
				}
				ok, limited := 0, 0
				for i := range frames * badMaxCommands {
					f := c.next()
					if string(f.Ref) != fmt.Sprint(i%badMaxCommands) || f.Action != "Echo.echo" {
						t.Fatalf("reply %d: %+v", i, f)
					}
					switch {
					case f.Error == nil:
						if string(f.Result) != fmt.Sprint(i%badMaxCommands) {
							t.Fatalf("reply %d: %+v", i, f)
						}
						ok++
					case f.Error.Code == rocket.CodeRateLimited:
						limited++
					default:
						t.Fatalf("reply %d: error %+v, want rate_limited", i, f.Error)
					}
					if i < badBurst && f.Error != nil {
						t.Fatalf("command %d refused within the burst: %+v", i, f.Error)
					}
				}
				if limited == 0 {
					t.Fatalf("%d commands ran, none was rate limited", ok)
				}
				if n.srv.Client(c.welcome.Client) == nil {
					t.Fatal("flooding client disconnected, want it to stay")
				}
			}},

		// Commands that decode but do not fit.
		{"unknown action with ref", "main", "unknown_action reply naming the action",
			refused(`{"ref":1,"Nope.nothing":1}`, rocket.CodeUnknownAction, "Nope.nothing")},
		{"unknown action without ref", "main", "unknown_action error frame naming the action",
			refused(`{"Nope.nothing":1}`, rocket.CodeUnknownAction, "Nope.nothing")},
		{"malformed action name", "main", "unknown_action, nothing of the frame runs",
			refused(`{"ref":1,"Echo.echo":1,"a.b.c":1}`, rocket.CodeUnknownAction, "")},
		{"object where a string is expected", "main", "bad_args",
			refused(`{"ref":1,"Chat.join":{"room":{"no":1}}}`, rocket.CodeBadArgs, "Chat.join")},
		{"string where an object is expected", "main", "bad_args",
			refused(`{"ref":1,"Chat.join":"lobby"}`, rocket.CodeBadArgs, "Chat.join")},
		{"string where an int is expected", "main", "bad_args",
			refused(`{"ref":1,"Num.int":"seven"}`, rocket.CodeBadArgs, "Num.int")},
		{"1e400 where an int is expected", "main", "bad_args",
			refused(`{"ref":1,"Num.int":1e400}`, rocket.CodeBadArgs, "Num.int")},
		{"10,000-digit integer where an int is expected", "main", "bad_args",
			refused(`{"ref":1,"Num.int":`+digits+`}`, rocket.CodeBadArgs, "Num.int")},
		{"huge numbers as raw arguments", "main", "accepted as valid JSON: Echo.echo returns them unchanged",
			func(t *testing.T, n *badNode) {
				c := dial(t, n.url, "")
				for _, num := range []string{"1e400", "-1e400", digits} {
					f := c.request("Echo.echo", json.RawMessage(num))
					if f.Error != nil || string(f.Result) != num {
						t.Fatalf("echo of %.20s…: %+v", num, f.Error)
					}
				}
			}},

		// Clients that do not keep up.
		{"client that never reads", "main", "dropped once its output is over MaxPendingBytes (1006 on its side), counted",
			func(t *testing.T, n *badNode) {
				slowBefore := metricValue(t, n.reg, "rocket_slow_client_disconnects_total")
				c := dial(t, n.url, "")
				id := c.welcome.Client
				payload := json.RawMessage(`{"Big.push":"` + strings.Repeat("x", 16<<10) + `"}`)
				// The kernel's socket buffers take a few MB first.
				for i := 0; i < 20000 && n.srv.Client(id) != nil; i++ {
					if err := n.srv.Send(context.Background(), id, payload); err != nil {
						t.Fatalf("Send: %v", err)
					}
				}
				if r := n.waitGone(t, id); r != "slow client" {
					t.Fatalf("disconnect reason %q, want slow client", r)
				}
				if d := metricValue(t, n.reg, "rocket_slow_client_disconnects_total") - slowBefore; d != 1 {
					t.Fatalf("rocket_slow_client_disconnects_total grew by %v, want 1", d)
				}
				// The client reads what reached it, then the connection
				// ends without a close frame.
				if code := c.expectClose(); code != -1 {
					t.Fatalf("close code %d, want none (1006)", code)
				}
			}},
		{"client that never answers pings", "keepalive", "dropped after PingInterval+PongTimeout (1006 on its side)",
			func(t *testing.T, n *badNode) {
				start := time.Now()
				c := dial(t, n.url, "") // reads the welcome, then nothing
				if r := n.waitGone(t, c.welcome.Client); r != "idle timeout" {
					t.Fatalf("disconnect reason %q, want idle timeout", r)
				}
				if d := time.Since(start); d < badPing+badPongTimeout {
					t.Fatalf("dropped after %v, before PingInterval+PongTimeout", d)
				}
				if code := c.expectClose(); code != -1 {
					t.Fatalf("close code %d, want none (1006)", code)
				}
			}},
		{"half-open TCP connection", "keepalive", "dropped after PingInterval+PongTimeout of silence",
			func(t *testing.T, n *badNode) {
				p := startBlackholeProxy(t, strings.TrimPrefix(n.url, "ws://"))
				c := dial(t, "ws://"+p.addr(), "")
				c.call("Echo.echo", "through the proxy", nil)
				// The peer vanishes: nothing goes through any more, in
				// either direction, and nothing is closed.
				p.blackhole()
				if r := n.waitGone(t, c.welcome.Client); r != "idle timeout" {
					t.Fatalf("disconnect reason %q, want idle timeout", r)
				}
			}},

		// Before the upgrade, and sessions.
		{"wrong origin", "main", "HTTP 403 before the upgrade",
			httpRefused(nodeURL, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden, "rocket: origin not allowed")},
		{"garbage session token", "main", "a new client, not resumed",
			notResumed(func(*testing.T, *badNode) (string, string) { return "", "garbage" })},
		{"wrong secret for a connected client", "main", "a new client; the connected one is not disturbed",
			notResumed(func(_ *testing.T, n *badNode) (string, string) {
				return n.bystander.id, n.bystander.id + ".guessedsecret"
			})},
		{"over-long session token", "main", "a new client (tokens over 256 bytes are ignored)",
			notResumed(func(_ *testing.T, n *badNode) (string, string) {
				return n.bystander.id, n.bystander.id + "." + strings.Repeat("s", 300)
			})},
		{"expired session token", "main", "a new client, not resumed",
			notResumed(func(t *testing.T, n *badNode) (string, string) {
				c := dial(t, n.url, "")
				id := c.welcome.Client
				if err := c.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
					t.Fatal(err)
				}
				n.waitGone(t, id)
				eventually(t, func() error {
					if _, err := n.srv.Broker().Lookup(context.Background(), id); !errors.Is(err, broker.ErrUnknownClient) {
						return notYet("session of %s not expired: %v", id, err)
					}
					return nil
				})
				return id, c.welcome.Session
			})},
		{"JWT: no token", "jwt", "HTTP 401 before the upgrade",
			httpRefused(nodeURL, nil, http.StatusUnauthorized, "jwtauth: no token")},
		{"JWT: malformed", "jwt", "HTTP 401",
			httpRefused(nodeURL, http.Header{"Authorization": {"Bearer not.a.jwt"}}, http.StatusUnauthorized, "jwtauth: invalid token: malformed")},
		{"JWT: bad signature", "jwt", "HTTP 401",
			httpRefused(func(n *badNode) string {
				return n.url + "/?token=" + signJWT(jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes!!"), nil)
			}, nil, http.StatusUnauthorized, "jwtauth: invalid token: bad signature")},
		{"JWT: expired", "jwt", "HTTP 401",
			httpRefused(func(n *badNode) string {
				return n.url + "/?token=" + signJWT(jwt.SigningMethodHS256, badJWTSecret, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()})
			}, nil, http.StatusUnauthorized, "jwtauth: invalid token: expired")},
		{"JWT: algorithm none", "jwt", "HTTP 401",
			httpRefused(func(n *badNode) string {
				return n.url + "/?token=" + signJWT(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil)
			}, nil, http.StatusUnauthorized, `jwtauth: invalid token: algorithm "none" not allowed`)},
	}
}

// signJWT returns a token for user "ann", valid for an hour, with changes
// applied to its claims. It panics on failure, which cannot happen with
// the keys used here.
func signJWT(m jwt.SigningMethod, key any, changes jwt.MapClaims) string {
	c := jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range changes {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// blackholeProxy forwards TCP connections to a target until blackhole is
// called; from then on it reads and drops everything, in both directions,
// and closes nothing: to both ends, the other has vanished without a FIN
// or a RST, as when a network path dies.
type blackholeProxy struct {
	ln     net.Listener
	target string
	holed  atomic.Bool
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func startBlackholeProxy(t *testing.T, target string) *blackholeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blackholeProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *blackholeProxy) addr() string { return p.ln.Addr().String() }

func (p *blackholeProxy) blackhole() { p.holed.Store(true) }

func (p *blackholeProxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(up, down) })
		p.wg.Go(func() { p.pipe(down, up) })
	}
}

// pipe copies src to dst until src fails, dropping what it reads once the
// proxy is blackholed. It never closes either side.
func (p *blackholeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.holed.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// rawClient is a WebSocket client written by hand, to send what a
// well-behaved library would not: the header of a frame without its
// payload.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	id   string
}

// dialRaw opens a WebSocket to url (ws://host:port) and reads the welcome.
func dialRaw(t *testing.T, url string) *rawClient {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	conn, err := net.DialTimeout("tcp", host, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", host, key)
	rc := &rawClient{conn: conn, r: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		t.Fatalf("raw upgrade: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("raw upgrade: HTTP %d", resp.StatusCode)
	}
	op, payload := rc.readFrame(t)
	var w struct {
		Welcome *welcome `json:"welcome"`
	}
	if op != 0x1 || json.Unmarshal(payload, &w) != nil || w.Welcome == nil {
		t.Fatalf("raw client: first frame (opcode %d) is not a welcome: %s", op, payload)
	}
	rc.id = w.Welcome.Client
	return rc
}

// writeFrameHeader writes the header of a final, masked frame of opcode
// announcing size bytes of payload, and no payload.
func (rc *rawClient) writeFrameHeader(t *testing.T, opcode byte, size uint64) {
	t.Helper()
	h := []byte{0x80 | opcode, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, size)
	h = append(h, 1, 2, 3, 4) // masking key
	if _, err := rc.conn.Write(h); err != nil {
		t.Fatal(err)
	}
}

// readFrame reads one unfragmented frame from the server.
func (rc *rawClient) readFrame(t *testing.T) (opcode byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(rc.r, h[:]); err != nil {
		t.Fatalf("raw client: read frame: %v", err)
	}
	size := uint64(h[1] & 0x7f)
	switch size {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.r, b[:]); err != nil {
			t.Fatal(err)
		}
		size = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(rc.r, b[:]); err != nil {
			t.Fatal(err)
		}
		size = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 || size > 1<<20 {
		t.Fatalf("raw client: bad frame from the server: % x, %d bytes", h, size)
	}
	payload = make([]byte, size)
	if _, err := io.ReadFull(rc.r, payload); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0f, payload
}

// readClose reads frames until a close frame and returns its code and
// reason.
func (rc *rawClient) readClose(t *testing.T) (int, string) {
	t.Helper()
	for {
		op, payload := rc.readFrame(t)
		if op != 0x8 {
			continue
		}
		if len(payload) < 2 {
			t.Fatalf("close frame without a code: % x", payload)
		}
		return int(binary.BigEndian.Uint16(payload)), string(payload[2:])
	}
}
