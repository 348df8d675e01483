package rocket_test

// The soak test: clients connect and disconnect without pause (cleanly or
// by dropping their TCP connection, new or resuming their session), join
// rooms (with and without presence), chat and whisper, while a few clients
// stay connected throughout. It checks that
//
//   - every message the server accepted (its sender got an ok reply) for a
//     client that stayed connected reached that client exactly once, and
//     the whispers of one connection in the order sent;
//   - once every client is gone (and every session expired), the number of
//     goroutines and the live heap are back where they were before, within
//     a small tolerance: nothing leaks per connection.
//
// It runs on two nodes sharing a memory broker, then (for half as long) on
// two nodes sharing a Redis server started by internal/redistest.
//
// The duration is ROCKET_SOAK (a Go duration, e.g. ROCKET_SOAK=60s), 8s by
// default. A churner connection dropped by the server fails it (see
// dropped):
//
//	ROCKET_SOAK=60s go test -race -run TestSoak -v .

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/internal/redistest"
)

const (
	soakDefault    = 8 * time.Second
	soakChurners   = 8
	soakStayers    = 3
	soakMailboxTTL = 500 * time.Millisecond
	soakRoom       = "soak"
	// Tolerances of the final check.
	soakGoroutineSlack = 5
	soakHeapSlack      = 2 << 20
)

// soakConfig is the nodes' configuration: no rate limit, and the default
// keep-alive, so that a connection closed on a write error (a client gone
// while the node writes to it, common under churn) must let go of its
// read-deadline timer at once for the final check to pass.
var soakConfig = rocket.Config{CommandRate: -1}

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("ROCKET_SOAK")
	if v == "" {
		return soakDefault
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("ROCKET_SOAK=%q: want a positive duration such as 60s", v)
	}
	return d
}

func TestSoakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test skipped in -short mode")
	}
	b := memory.New(memory.Config{MailboxTTL: soakMailboxTTL})
	t.Cleanup(func() { b.Close() }) // after the nodes' shutdown
	cfg := soakConfig
	cfg.Broker = b
	soak(t, []*node{startNode(t, cfg, nil), startNode(t, cfg, nil)}, soakDuration(t))
}

func TestSoakRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test skipped in -short mode")
	}
	rs := redistest.Start(t)
	prefix := clusterPrefix(t)
	cfg := soakConfig
	cfg.MailboxTTL = soakMailboxTTL
	soak(t, []*node{startRedisNode(t, rs, prefix, cfg), startRedisNode(t, rs, prefix, cfg)}, soakDuration(t)/2)
}

// soak runs a short round to warm up (pools, lazily started goroutines),
// takes the baseline, runs the real round, and compares.
func soak(t *testing.T, nodes []*node, d time.Duration) {
	soakRoundGone(t, nodes, min(d/8, time.Second))
	if t.Failed() {
		return
	}
	baseG, baseHeap := sample()
	clients := soakRoundGone(t, nodes, d)
	var g int
	var heap uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, heap = sample()
		if g <= baseG+soakGoroutineSlack && heap <= baseHeap+soakHeapSlack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the soak: %d goroutines (baseline %d), %d KiB of live heap (baseline %d KiB)\n%s",
				g, baseG, heap>>10, baseHeap>>10, goroutineDump())
		}
		time.Sleep(50 * time.Millisecond) // polling: goroutines wind down asynchronously
	}
	t.Logf("%d clients over %v; goroutines %d -> %d, live heap %d KiB -> %d KiB", clients, d, baseG, g, baseHeap>>10, heap>>10)
}

// soakRoundGone runs a round, waits until every session of it has
// expired, and returns the number of clients it had.
func soakRoundGone(t *testing.T, nodes []*node, d time.Duration) int {
	ids := soakRound(t, nodes, d)
	waitExpired(t, nodes[0], ids)
	return len(ids)
}

// sample returns the number of goroutines and the live heap after a full
// garbage collection (twice: sync.Pools keep a victim cache for one cycle).
func sample() (goroutines int, heap uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// waitExpired waits until no client of ids is known to the cluster: every
// session has expired.
func waitExpired(t *testing.T, n *node, ids []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			_, err := n.srv.Broker().Lookup(context.Background(), id)
			if errors.Is(err, broker.ErrUnknownClient) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session of client %s not expired: %v", id, err)
			}
			time.Sleep(10 * time.Millisecond) // polling: expiry has no notification
		}
	}
}

// ledger records what churners sent and what the server accepted.
type ledger struct {
	mu       sync.Mutex
	whispers map[string]string // accepted whisper text -> the stayer it is for
	says     map[string]bool   // accepted Chat.say texts
	sent     map[string]bool   // every text sent, accepted or not
	ids      map[string]bool   // every client id seen
	conns    atomic.Int64
	dropped  atomic.Int64 // churner connections the server dropped
}

// dropped reports whether err means that the server dropped the
// connection (no close frame, EOF or reset), which it must never do to a
// churner: they read what they are sent, answer pings and send nothing
// wrong. (The transport's poller once applied an epoll event of a closed
// socket to a new connection with the same descriptor; see
// TestChurnNoEarlyClose.)
func dropped(err error) bool {
	return err != nil && websocket.CloseStatus(err) == -1 &&
		(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET))
}

func (l *ledger) record(m map[string]bool, text string) {
	l.mu.Lock()
	m[text] = true
	l.mu.Unlock()
}

// soakRound runs stayers and churners for d, checks what the stayers
// received, and closes everything. It returns every client id used.
func soakRound(t *testing.T, nodes []*node, d time.Duration) []string {
	l := &ledger{whispers: map[string]string{}, says: map[string]bool{}, sent: map[string]bool{}, ids: map[string]bool{}}
	var stayers []*stayer
	for i := range soakStayers {
		s := startStayer(t, nodes[i%len(nodes)].url, i == 0)
		l.ids[s.id] = true
		stayers = append(stayers, s)
	}
	stayerIDs := make([]string, len(stayers))
	for i, s := range stayers {
		stayerIDs[i] = s.id
	}

	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := range soakChurners {
		wg.Go(func() {
			if err := churn(c, nodes, stayerIDs, l, deadline); err != nil {
				t.Errorf("churner %d: %v", c, err)
			}
		})
	}
	wg.Wait()

	// Every accepted message reaches the stayers.
	for _, s := range stayers {
		eventually(t, func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			l.mu.Lock()
			defer l.mu.Unlock()
			missing := 0
			for text, to := range l.whispers {
				if to == s.id && s.whispers[text] == 0 {
					missing++
				}
			}
			for text := range l.says {
				if s.says[text] == 0 {
					missing++
				}
			}
			if missing > 0 {
				return notYet("stayer %s: %d accepted messages not received", s.id, missing)
			}
			return nil
		})
	}
	accepted := 0
	for _, s := range stayers {
		s.close(t)
		s.mu.Lock()
		l.mu.Lock()
		for text, n := range s.whispers {
			if n != 1 || !l.sent[text] || (l.whispers[text] != "" && l.whispers[text] != s.id) {
				t.Errorf("stayer %s got whisper %s %d times (sent: %v, for %q)", s.id, text, n, l.sent[text], l.whispers[text])
			}
		}
		for text, n := range s.says {
			if n != 1 || !l.sent[text] {
				t.Errorf("stayer %s got message %s %d times (sent: %v)", s.id, text, n, l.sent[text])
			}
		}
		for _, e := range s.disorder {
			t.Errorf("stayer %s: %s", s.id, e)
		}
		accepted += len(s.whispers) + len(s.says)
		// Let go of what was counted: the stayer is referenced by its
		// cleanup until the end of the test.
		s.whispers, s.says, s.last = nil, nil, nil
		l.mu.Unlock()
		s.mu.Unlock()
	}
	for _, n := range nodes {
		eventually(t, func() error {
			if c := n.srv.ClientCount(); c > 0 {
				return notYet("node %s still has %d clients", n.srv.ID(), c)
			}
			return nil
		})
	}
	t.Logf("round of %v: %d connections, %d clients, %d messages delivered to the stayers, %d whispers and %d room messages accepted",
		d, l.conns.Load(), len(l.ids), accepted, len(l.whispers), len(l.says))
	if n := l.dropped.Load(); n > 0 {
		t.Errorf("%d churner connections dropped by the server (see dropped)", n)
	}
	ids := make([]string, 0, len(l.ids))
	for id := range l.ids {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// churn connects and disconnects until deadline, with traffic in between.
func churn(c int, nodes []*node, stayers []string, l *ledger, deadline time.Time) error {
	rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
	session := ""
	var others []string // ids of clients seen, to whisper to
	for conn := 0; time.Now().Before(deadline); conn++ {
		if rng.IntN(2) == 0 {
			session = "" // a new client; otherwise resume the last one
		}
		sc, err := soakDial(nodes[rng.IntN(len(nodes))].url, session)
		if dropped(err) {
			l.dropped.Add(1)
			continue
		}
		if err != nil {
			return err
		}
		l.conns.Add(1)
		l.mu.Lock()
		l.ids[sc.id] = true
		l.mu.Unlock()
		session = sc.session
		others = append(others, sc.id)
		if err := sc.traffic(rng, fmt.Sprintf("%d.%d", c, conn), stayers, others, l); err != nil {
			sc.ws.CloseNow()
			if dropped(err) {
				l.dropped.Add(1)
				continue
			}
			return err
		}
		if rng.IntN(2) == 0 {
			sc.ws.CloseNow() // abruptly: the TCP connection is dropped
		} else if err := sc.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
			return fmt.Errorf("close: %w", err)
		}
	}
	return nil
}

// soakConn is a churner's connection: commands are sent one at a time and
// the frames that are not their replies are skipped.
type soakConn struct {
	ws          *websocket.Conn
	id, session string
	ref         int
}

func soakDial(url, session string) (*soakConn, error) {
	if session != "" {
		url += "?session=" + session
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	ws.SetReadLimit(1 << 20)
	_, data, err := ws.Read(ctx)
	var w struct {
		Welcome *welcome `json:"welcome"`
	}
	if err == nil {
		err = json.Unmarshal(data, &w)
	}
	if err != nil || w.Welcome == nil {
		ws.CloseNow()
		return nil, fmt.Errorf("welcome %s: %w", data, err)
	}
	return &soakConn{ws: ws, id: w.Welcome.Client, session: w.Welcome.Session}, nil
}

// call sends one command with a ref and returns its reply.
func (sc *soakConn) call(name string, args any) (frame, error) {
	sc.ref++
	ref := fmt.Sprint(sc.ref)
	b, err := json.Marshal(map[string]any{"ref": ref, name: args})
	if err != nil {
		return frame{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := sc.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return frame{}, fmt.Errorf("%s: write: %w", name, err)
	}
	for {
		_, data, err := sc.ws.Read(ctx)
		if err != nil {
			return frame{}, fmt.Errorf("%s: no reply: %w", name, err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			return frame{}, fmt.Errorf("%s: decode %s: %w", name, data, err)
		}
		if f.Action == name && string(f.Ref) == `"`+ref+`"` {
			return f, nil
		}
	}
}

// traffic runs a few random commands on one connection.
func (sc *soakConn) traffic(rng *rand.Rand, tag string, stayers, others []string, l *ledger) error {
	f, err := sc.call("Chat.join", map[string]any{"room": soakRoom, "name": "c" + tag, "presence": rng.IntN(2) == 0})
	if err == nil && f.Error != nil {
		err = fmt.Errorf("Chat.join: %s", f.Error.Code)
	}
	if err != nil {
		return err
	}
	if rng.IntN(3) == 0 {
		if f, err := sc.call("Chat.join", map[string]any{"room": "side" + fmt.Sprint(rng.IntN(4)), "presence": true}); err != nil || f.Error != nil {
			return fmt.Errorf("Chat.join: %+v, %v", f.Error, err)
		}
	}
	for seq := range 1 + rng.IntN(6) {
		text := fmt.Sprintf("%s.%d", tag, seq)
		switch rng.IntN(4) {
		case 0: // to the room the stayers are in
			text = "s" + text
			l.record(l.sent, text)
			f, err := sc.call("Chat.say", map[string]string{"room": soakRoom, "text": text})
			if err != nil {
				return err
			}
			if f.Error != nil {
				return fmt.Errorf("Chat.say: %s: %s", f.Error.Code, f.Error.Message)
			}
			l.record(l.says, text)
		case 1: // to a stayer
			text = "w" + text
			to := stayers[rng.IntN(len(stayers))]
			l.record(l.sent, text)
			f, err := sc.call("Chat.whisper", map[string]string{"to": to, "text": text})
			if err != nil {
				return err
			}
			if f.Error != nil {
				return fmt.Errorf("Chat.whisper to stayer %s: %s: %s", to, f.Error.Code, f.Error.Message)
			}
			l.mu.Lock()
			l.whispers[text] = to
			l.mu.Unlock()
		case 2: // to a churner, connected, away or expired
			to := others[rng.IntN(len(others))]
			f, err := sc.call("Chat.whisper", map[string]string{"to": to, "text": "x" + text})
			if err != nil {
				return err
			}
			if f.Error != nil && f.Error.Code != rocket.CodeBadArgs {
				return fmt.Errorf("Chat.whisper to churner %s: %s: %s", to, f.Error.Code, f.Error.Message)
			}
		default:
			f, err := sc.call("Echo.echo", text)
			if err != nil {
				return err
			}
			if f.Error != nil || string(f.Result) != `"`+text+`"` {
				return fmt.Errorf("Echo.echo %s: %+v %s", text, f.Error, f.Result)
			}
		}
	}
	return nil
}

// stayer is a client connected for a whole round, a member of the soak
// room, that counts what it receives.
type stayer struct {
	ws   *websocket.Conn
	id   string
	done chan struct{}

	mu       sync.Mutex
	whispers map[string]int
	says     map[string]int
	last     map[string]int // whisper sender connection -> last seq received
	disorder []string
}

func startStayer(t *testing.T, url string, presence bool) *stayer {
	t.Helper()
	sc, err := soakDial(url, "")
	if err != nil {
		t.Fatal(err)
	}
	if f, err := sc.call("Chat.join", map[string]any{"room": soakRoom, "name": "stayer", "presence": presence}); err != nil || f.Error != nil {
		t.Fatalf("stayer join: %+v, %v", f.Error, err)
	}
	s := &stayer{ws: sc.ws, id: sc.id, done: make(chan struct{}),
		whispers: map[string]int{}, says: map[string]int{}, last: map[string]int{}}
	go s.read()
	t.Cleanup(func() { s.ws.CloseNow(); <-s.done })
	return s
}

func (s *stayer) read() {
	defer close(s.done)
	for {
		_, data, err := s.ws.Read(context.Background())
		if err != nil {
			return
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		s.mu.Lock()
		switch {
		case f.Whisper != nil:
			s.whispers[f.Whisper.Text]++
			// Texts are w<churner>.<connection>.<seq>: the whispers of
			// one connection arrive in order.
			if i := strings.LastIndexByte(f.Whisper.Text, '.'); i > 0 {
				conn := f.Whisper.Text[:i]
				var seq int
				fmt.Sscan(f.Whisper.Text[i+1:], &seq)
				if last, ok := s.last[conn]; ok && seq <= last {
					s.disorder = append(s.disorder, fmt.Sprintf("whisper %s after seq %d", f.Whisper.Text, last))
				}
				s.last[conn] = seq
			}
		case f.Message != nil && f.Message.Room == soakRoom:
			s.says[f.Message.Text]++
		}
		s.mu.Unlock()
	}
}

// close closes the stayer's connection cleanly and waits for its reader.
func (s *stayer) close(t *testing.T) {
	t.Helper()
	if err := s.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("stayer %s: close: %v", s.id, err)
	}
	<-s.done
}
