package rocket

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
	"github.com/rocket-go/rocket/internal/protocol"
	"github.com/rocket-go/rocket/internal/transport"
)

// Server states.
const (
	stateNew int32 = iota
	stateStarting
	stateRunning
	stateStopping
	stateStopped
)

// setupTimeout bounds the broker calls made while a connection is set up.
const setupTimeout = 10 * time.Second

// Server is a Rocket node: it accepts WebSocket connections (it is an
// http.Handler), runs the commands its clients send, and exchanges messages
// with the other nodes of its cluster through its broker.
//
// Register actions and hooks, then call Start, serve it over HTTP, and call
// Shutdown at the end. Methods other than registration are safe for
// concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	broker    broker.Broker
	ownBroker bool
	acc       *transport.Acceptor
	limits    protocol.Limits
	caps      *connLimits // MaxConnections, MaxConnectionsPerIP (limits.go)

	// Set before Start, read-only afterwards.
	handlers     map[string]Handler
	middleware   []Middleware
	chain        map[string]Handler
	onConnect    func(*ConnectEvent) (ConnectReply, error)
	onDisconnect func(*DisconnectEvent)
	onError      func(*ErrorEvent)

	state atomic.Int32
	id    string

	// ctx is the parent of every client's context; cancel ends it at
	// shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	clientsMu sync.RWMutex
	clients   map[string]*Client
	// correcting counts, per client id, the deliveries correcting the
	// directory for a client no longer here (brokerHandler.Deliver); a
	// resume of that id waits for them (corrected, on clientsMu), so that
	// a correction never marks away a connection that resumed meanwhile.
	correcting map[string]int
	corrected  *sync.Cond
	conns      atomic.Int64 // open transport connections

	roomsMu sync.Mutex
	rooms   map[string]*room

	wg           sync.WaitGroup
	stopPing     chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error

	metrics *metrics

	frameBufs sync.Pool // of *[]byte: buffers replies are built in (dispatch.go)
	cmdBufs   sync.Pool // of *[]protocol.Command: a frame's commands (dispatch.go)
}

// New returns a Server for cfg, with defaults applied to its zero fields.
// It returns an error if cfg is invalid.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		broker:     cfg.Broker,
		handlers:   make(map[string]Handler),
		clients:    make(map[string]*Client),
		correcting: make(map[string]int),
		rooms:      make(map[string]*room),
		stopPing:   make(chan struct{}),
		limits:     protocol.Limits{MaxDepth: cfg.MaxDepth, MaxCommands: cfg.MaxCommandsPerFrame},
		caps:       newConnLimits(cfg),
	}
	if s.broker == nil {
		s.broker = memory.New(memory.Config{MailboxSize: cfg.MailboxSize, MailboxBytes: cfg.MailboxBytes, MailboxTTL: cfg.MailboxTTL})
		s.ownBroker = true
	}
	s.corrected = sync.NewCond(&s.clientsMu)
	s.metrics = newMetrics(s)
	s.broker = newInstrumented(s.broker, s.metrics)
	if cfg.Metrics != nil {
		if err := s.metrics.register(cfg.Metrics); err != nil {
			if s.ownBroker {
				s.broker.Close()
			}
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Handle registers the handler for the action name, written
// "Controller.action" (letters, digits and underscores on each side of one
// dot). It panics if the name is malformed or already registered, or if the
// server has started.
func (s *Server) Handle(name string, h Handler) {
	s.mustNotBeStarted("Handle")
	if _, _, ok := protocol.SplitName(name); !ok {
		panic(fmt.Sprintf("rocket: Handle: malformed action name %q (want Controller.action)", name))
	}
	if h == nil {
		panic(fmt.Sprintf("rocket: Handle: nil handler for %q", name))
	}
	if _, dup := s.handlers[name]; dup {
		panic(fmt.Sprintf("rocket: Handle: action %q registered twice", name))
	}
	s.handlers[name] = h
}

// HandleFunc registers f as the handler for the action name; see Handle.
func (s *Server) HandleFunc(name string, f func(c *Context) (any, error)) {
	s.Handle(name, HandlerFunc(f))
}

// Use adds middleware around every action. It panics if the server has
// started.
func (s *Server) Use(mw ...Middleware) {
	s.mustNotBeStarted("Use")
	s.middleware = append(s.middleware, mw...)
}

func (s *Server) mustNotBeStarted(what string) {
	if s.state.Load() != stateNew {
		panic("rocket: " + what + " called after Start")
	}
}

// Start registers the server with its broker (which gives it its
// cluster-unique id) and starts accepting connections.
func (s *Server) Start(ctx context.Context) error {
	if !s.state.CompareAndSwap(stateNew, stateStarting) {
		return errors.New("rocket: Start called twice")
	}
	s.chain = make(map[string]Handler, len(s.handlers))
	for name, h := range s.handlers {
		for i := len(s.middleware) - 1; i >= 0; i-- {
			h = s.middleware[i](h)
		}
		s.chain[name] = h
	}
	s.acc = transport.New(transport.Config{
		MaxMessageBytes: 4 * s.cfg.MaxFrameBytes,
		MaxPendingBytes: s.cfg.MaxPendingBytes,
		MaxInputBytes:   s.cfg.MaxInputBytes,
		IdleTimeout:     s.cfg.PingInterval + s.cfg.PongTimeout,
		CloseTimeout:    2 * time.Second,
		InputResumed: func(paused time.Duration) {
			s.metrics.inputPauses.Inc()
			s.metrics.inputPaused.Add(paused.Seconds())
		},
	})
	if err := s.acc.Start(); err != nil {
		s.state.Store(stateStopped)
		return fmt.Errorf("rocket: start: %w", err)
	}
	id, err := s.broker.RegisterServer(ctx, brokerHandler{s})
	if err != nil {
		s.acc.Stop()
		s.state.Store(stateStopped)
		return fmt.Errorf("rocket: register with broker: %w", err)
	}
	s.id = id
	s.wg.Add(1)
	go s.pingLoop()
	s.state.Store(stateRunning)
	s.log.Info("rocket server started", "server", id)
	return nil
}

// ID returns the server's cluster-unique id, given by the broker at Start.
func (s *Server) ID() string { return s.id }

// Ready reports whether the server accepts connections and its broker can
// record new clients (one round trip: the broker's Ready if it implements
// broker.Checker, Stats otherwise); the error says what is wrong, for
// example that Redis is out of memory (it then wraps
// broker.ErrOutOfMemory). It fails only while new connections would fail:
// clients already connected may still be served.
func (s *Server) Ready(ctx context.Context) error {
	if s.state.Load() != stateRunning {
		return ErrServerClosed
	}
	if err := s.broker.(broker.Checker).Ready(ctx); err != nil { // s.broker is instrumented
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Broker returns the broker the server uses: Config.Broker, or the
// in-memory broker New created when it was nil (which Shutdown closes),
// wrapped so that every call is timed and its failures counted in the
// server's metrics. Calls made through it are the server's own: use it to
// read (Lookup, Stats, Presence), not to change what the server relies
// on (RegisterServer, UnregisterServer, Close belong to Start and
// Shutdown).
func (s *Server) Broker() broker.Broker { return s.broker }

// ServeHTTP accepts a WebSocket connection: it checks the origin and the
// connection caps, runs the connect hook, upgrades, and welcomes the
// client. A request that carries ?session=<token> resumes that session
// when it is still valid.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.state.Load() != stateRunning {
		s.metrics.refused.WithLabelValues("not_running").Inc()
		http.Error(w, "rocket: server not running", http.StatusServiceUnavailable)
		return
	}
	if !originAllowed(r.Header.Get("Origin"), r.Host, s.cfg.AllowedOrigins) {
		s.metrics.refused.WithLabelValues("origin").Inc()
		s.log.Debug("connection refused: origin not allowed", "origin", r.Header.Get("Origin"), "host", r.Host)
		http.Error(w, "rocket: origin not allowed", http.StatusForbidden)
		return
	}
	var addr netip.Addr
	if s.caps.perAddr > 0 {
		addr = s.caps.clientAddr(r)
	}
	sl, refused := s.caps.acquire(addr)
	if refused != nil {
		s.metrics.refused.WithLabelValues(refused.reason).Inc()
		s.log.Debug("connection refused: "+refused.reason, "remote", r.RemoteAddr, "client_addr", addr)
		http.Error(w, refused.msg, refused.status)
		return
	}
	upgraded := false
	defer func() {
		if !upgraded {
			// Refused by the hook, a failed upgrade, or a panic in the
			// hook: give the place back. Once upgraded, onClose does.
			sl.release()
		}
	}()
	var reply ConnectReply
	if s.onConnect != nil {
		var err error
		reply, err = s.onConnect(&ConnectEvent{Request: r})
		if err != nil {
			s.metrics.refused.WithLabelValues("hook").Inc()
			status := http.StatusForbidden
			var re *Error
			if errors.As(err, &re) && re.Code == CodeUnauthorized {
				status = http.StatusUnauthorized
			}
			msg := err.Error()
			if re != nil {
				msg = re.Message
			}
			http.Error(w, msg, status)
			return
		}
	}
	cl := newClient(s, reply.UserID)
	cl.meta = reply.Meta
	cl.slot = sl // released by onClose
	conn, err := s.acc.Upgrade(w, r, transportHandler{cl})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	upgraded = true
	s.conns.Add(1)
	s.metrics.connections.Inc()
	cl.out.conn = conn
	s.setup(cl, parseConnectQuery(r.URL.Query()))
}

// connectQuery is what the query of a connection's URL asks for.
type connectQuery struct {
	session string // resume token
	acks    bool   // the client acknowledges (acks=1)
	ack     uint64 // number of the last message received, when resuming
}

// parseConnectQuery reads ?session=<token>&acks=1&ack=<n>. An ack that is
// not a message number counts as 0: the client then gets every message
// kept again, which it drops as duplicates.
func parseConnectQuery(q url.Values) connectQuery {
	cq := connectQuery{session: q.Get("session")}
	switch q.Get("acks") {
	case "1", "true":
		cq.acks = true
	}
	if ack, ok := protocol.ParseSeq([]byte(q.Get("ack"))); ok {
		cq.ack = ack
	}
	return cq
}

// setup gives the client its identity (new, or resumed from the session
// token), sends the welcome frame and hands over the mail kept while it
// was away, which makes it ready. It always closes cl.welcomed and
// cl.setupDone.
func (s *Server) setup(cl *Client, cq connectQuery) {
	defer close(cl.setupDone)
	welcomed := false
	defer func() {
		if !welcomed {
			close(cl.welcomed)
		}
	}()
	ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
	defer cancel()

	var mail []broker.Mail
	resumed := false
	cl.out.setAcks(cq.acks, 0)
	if id, secret, ok := parseToken(cq.session); ok && validSecret(secret) && s.takeOver(cl, id, secret) {
		if cl.leaving() {
			// Closed (by its peer or a newer connection) while it waited:
			// nothing to resume for.
			s.removeLocal(cl)
			return
		}
		cl.awaiting.Store(true)
		r, err := s.broker.Resume(ctx, id, sessionKey(secret, cl.userID), s.id, cq.ack)
		if err == nil && !r.Acked {
			r.Mail = s.awaitReturned(ctx, cl, r.From != "", r.Mail)
		}
		cl.awaiting.Store(false)
		switch {
		case err == nil:
			// A session keeps the delivery mode it was opened with.
			mail, resumed = r.Mail, true
			// The client has had everything up to its ack (the broker
			// caps it at the last number sent).
			cl.out.setAcks(r.Acked, min(cq.ack, r.Seq))
		case errors.Is(err, broker.ErrUnknownClient), errors.Is(err, broker.ErrBadSession):
			s.log.Debug("session not resumed", "client", id, "err", err)
			s.removeLocal(cl)
		default:
			s.removeLocal(cl)
			s.failSetup(cl, fmt.Errorf("resume client %s: %w", id, err))
			return
		}
	}
	if !resumed {
		id, err := s.broker.NewClientID(ctx)
		if err != nil {
			s.failSetup(cl, fmt.Errorf("allocate client id: %w", err))
			return
		}
		secret := newSecret()
		s.clientsMu.Lock()
		cl.id, cl.secret = id, secret
		s.clientsMu.Unlock()
		s.replaceLocal(cl)
		rec := broker.Client{ID: id, Server: s.id, Session: sessionKey(cl.secret, cl.userID), User: cl.userID, Acked: cq.acks}
		if err := s.broker.Connect(ctx, rec); err != nil {
			s.removeLocal(cl)
			s.failSetup(cl, fmt.Errorf("record client %s: %w", id, err))
			return
		}
	}
	cl.registered.Store(true)
	if s.state.Load() != stateRunning {
		// Shutdown began while this client was being set up and may have
		// missed it (it is recorded now, so a later Shutdown sees it):
		// its mail stays kept, for a resume on another node.
		cl.closeWith(transport.CloseGoingAway, "server shutting down")
	}
	welcome := protocol.AppendWelcome(nil, cl.id, s.id, cl.id+"."+cl.secret, resumed, cl.out.acks())
	// Commands run while the mail is handed over (their replies queue
	// behind it): the client may be slow to read a large mailbox.
	welcomed = true
	close(cl.welcomed)
	for _, q := range cl.out.handOver(cl.id, welcome, mail) {
		// Delivered for the id of a resume that failed: send it on to
		// where that client is now (away: its mailbox).
		if err := s.broker.Send(ctx, q.id, q.frame); err != nil && !errors.Is(err, broker.ErrUnknownClient) {
			s.reportError(&ErrorEvent{Err: fmt.Errorf("re-route message of a resume that failed: %w", err)})
		}
	}
}

func (s *Server) failSetup(cl *Client, err error) {
	s.reportError(&ErrorEvent{Err: err})
	cl.closeWith(transport.CloseInternal, "internal error, try again")
}

// newSecret returns a random session secret.
func newSecret() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("rocket: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// parseToken splits a session token "<client id>.<secret>".
func parseToken(token string) (id, secret string, ok bool) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 || i == len(token)-1 || len(token) > 256 {
		return "", "", false
	}
	return token[:i], token[i+1:], true
}

// replaceLocal records cl as the local client with its id. A previous local
// client with the same id (the same client reconnecting before its old
// connection was noticed closed) is closed and finished first.
//
// Several connections resuming one session at once each close the one
// they find until one of them finds none: the last one recorded stays,
// the others are closed (never left open unrecorded).
func (s *Server) replaceLocal(cl *Client) {
	for {
		s.clientsMu.Lock()
		old := s.clients[cl.id]
		if old == nil || old == cl {
			s.clients[cl.id] = cl
			s.clientsMu.Unlock()
			return
		}
		s.clientsMu.Unlock()
		old.closeWith(transport.ClosePolicy, replacedReason)
		old.finish(replacedReason)
		s.removeLocal(old)
	}
}

// takeOver records cl as the local client id for a resume presenting
// secret, closing the previous local client with that id only if it holds
// the same secret and user, so that a wrong token cannot push a connected
// client off; one whose setup is still under way (its
// session not verified by the broker yet) is waited for first. It reports
// false when a verified local client holds the id with another secret.
func (s *Server) takeOver(cl *Client, id, secret string) bool {
	for {
		if cl.leaving() {
			// Closed by its peer meanwhile: it must not close the
			// connection that holds the session now.
			return false
		}
		s.clientsMu.Lock()
		old := s.clients[id]
		if old == nil && s.correcting[id] > 0 {
			s.corrected.Wait()
			s.clientsMu.Unlock()
			continue
		}
		if old == nil {
			cl.id, cl.secret = id, secret
			s.clients[id] = cl
			s.clientsMu.Unlock()
			return true
		}
		// Read under clientsMu: a client whose resume failed takes a
		// new id and secret under it (setup).
		same := subtle.ConstantTimeCompare([]byte(old.secret), []byte(secret)) == 1 && old.userID == cl.userID
		s.clientsMu.Unlock()
		if !same {
			select {
			case <-old.welcomed:
				if old.registered.Load() && s.Client(id) == old {
					s.log.Debug("session not resumed: wrong secret for a connected client", "client", id)
					return false
				}
			case <-cl.ctx.Done():
				return false
			}
			continue
		}
		old.closeWith(transport.ClosePolicy, replacedReason)
		old.finish(replacedReason)
		s.removeLocal(old)
	}
}

// returnWait bounds how long a resume that took the client from another
// server waits for that server to hand back what it had not written.
const returnWait = 3 * time.Second

// awaitReturned waits, when wait is set and at most returnWait, until the
// server the client was taken from has handed back what it had not written
// (Returned), and takes it from the head of the client's mailbox, ahead of
// mail: so that it reaches the client before anything sent to it since,
// which is queued meanwhile. A hand-back that comes later is taken by
// Returned.
func (s *Server) awaitReturned(ctx context.Context, cl *Client, wait bool, mail []broker.Mail) []broker.Mail {
	if wait {
		t := time.NewTimer(returnWait)
		select {
		case <-cl.returned:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	select {
	case <-cl.returned:
		return append(s.handedBack(ctx, cl), mail...)
	default:
		return mail
	}
}

// handedBack takes the mail at the head of the mailbox of cl, which this
// server holds, with a Resume (which moves nothing).
func (s *Server) handedBack(ctx context.Context, cl *Client) []broker.Mail {
	r, err := s.broker.Resume(ctx, cl.id, sessionKey(cl.secret, cl.userID), s.id, 0)
	if err != nil {
		s.reportError(&ErrorEvent{Client: cl, Err: fmt.Errorf("take the mail handed back for client %s: %w", cl.id, err)})
	}
	return r.Mail
}

// Returned takes what the server the client was taken from handed back
// (broker.Returner): setup waits for it (awaitReturned); otherwise it is
// taken from the mailbox now and delivered, after what the client has had
// meanwhile.
func (h brokerHandler) Returned(clientID string) {
	s := h.s
	cl := s.Client(clientID)
	if cl == nil {
		return
	}
	cl.returnedOnce.Do(func() { close(cl.returned) })
	if !cl.awaiting.Load() {
		s.takeReturned(cl)
	}
}

// takeReturned takes, off the caller's goroutine, what is at the head of
// the mailbox of cl, which this server holds, and delivers it.
func (s *Server) takeReturned(cl *Client) {
	if cl.out.acks() || cl.leaving() {
		return
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
		defer cancel()
		for _, m := range s.handedBack(ctx, cl) {
			if !cl.out.deliver(cl.id, m.Data) {
				if err := s.broker.Send(ctx, cl.id, m.Data); err != nil && !errors.Is(err, broker.ErrUnknownClient) {
					s.reportError(&ErrorEvent{Client: cl, Err: err})
				}
			}
		}
	})
}

// replacedReason is the close reason of a connection whose session another
// connection resumed.
const replacedReason = "replaced by a newer connection"

// Replaced closes the local client clientID, whose session a newer
// connection resumed on another server (broker.Replacer), with 1008 as a
// newer connection on this server would, and finishes it at once, off the
// broker's goroutine: what reached it and was not written is sent on, and
// the directory places the client on its new server, so it goes there. A
// client that has resumed here again since (the directory names this
// server) keeps its connection.
func (h brokerHandler) Replaced(clientID string) {
	s := h.s
	cl := s.Client(clientID)
	if cl == nil {
		return
	}
	s.wg.Go(func() {
		// A connection still being set up may be resuming back here:
		// its Resume decides, then the directory says who holds it.
		<-cl.welcomed
		ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
		rec, err := s.broker.Lookup(ctx, clientID)
		cancel()
		if err == nil && rec.Server == s.id {
			return
		}
		cl.closeWith(transport.ClosePolicy, replacedReason)
		cl.finish(replacedReason)
	})
}

// Server implements what the broker may ask of it.
var (
	_ broker.Kicker   = brokerHandler{}
	_ broker.Replacer = brokerHandler{}
	_ broker.Returner = brokerHandler{}
)

// removeLocal forgets cl locally if it is still the local client with its
// id.
func (s *Server) removeLocal(cl *Client) {
	s.clientsMu.Lock()
	if s.clients[cl.id] == cl {
		delete(s.clients, cl.id)
	}
	s.clientsMu.Unlock()
}

// Client returns the client with id connected to this server, or nil.
func (s *Server) Client(id string) *Client {
	s.clientsMu.RLock()
	cl := s.clients[id]
	s.clientsMu.RUnlock()
	return cl
}

// ClientCount returns the number of clients connected to this server.
func (s *Server) ClientCount() int {
	s.clientsMu.RLock()
	n := len(s.clients)
	s.clientsMu.RUnlock()
	return n
}

// Send sends msg to the client with id clientID, wherever it is in the
// cluster. msg is sent as it is if it is a []byte or json.RawMessage
// (which must hold JSON), and encoded as JSON otherwise; use Push for the
// conventional {"Name": value} shape. If the client is away, the message is
// kept in its mailbox until it resumes. If the client acknowledges its
// messages (Client.Acks), the message is numbered and kept until the
// client acknowledges it, so that not even the death of the client's
// server loses it. Send returns ErrUnknownClient if no such client exists,
// and an error wrapping a too_large *Error (an action may return it as it
// is) if the message is larger than Config.MailboxBytes.
func (s *Server) Send(ctx context.Context, clientID string, msg any) error {
	data, err := encode(msg)
	if err != nil {
		return err
	}
	return s.sendData(ctx, clientID, data)
}

func (s *Server) sendData(ctx context.Context, clientID string, data []byte) error {
	if st := s.state.Load(); st == stateNew || st == stateStopped {
		return ErrServerClosed
	}
	if len(data) > s.cfg.MailboxBytes {
		return tooLarge("send to "+clientID, len(data), s.cfg.MailboxBytes, broker.ErrTooLarge)
	}
	// A local client is written to directly, unless it acknowledges (the
	// broker keeps its messages until then) or is being set up.
	if cl := s.Client(clientID); cl != nil && cl.out.state() == connReady && !cl.out.acks() && cl.out.deliver(clientID, data) {
		return nil
	}
	if err := s.broker.Send(ctx, clientID, data); err != nil {
		if errors.Is(err, broker.ErrUnknownClient) {
			return fmt.Errorf("send to %s: %w", clientID, ErrUnknownClient)
		}
		if errors.Is(err, broker.ErrTooLarge) {
			return tooLarge("send to "+clientID, len(data), -1, err)
		}
		return fmt.Errorf("rocket: send to %s: %w: %w", clientID, ErrUnavailable, err)
	}
	return nil
}

// brokerHandler receives what the broker delivers to this server.
type brokerHandler struct{ s *Server }

// Deliver writes a directed message to a local client, or sends it on
// through the broker when the client is no longer here. A numbered message
// (seq > 0) for a client no longer here is dropped: its mailbox keeps it
// until the client acknowledges it, wherever it resumes.
func (h brokerHandler) Deliver(clientID string, seq uint64, data []byte) {
	s := h.s
	cl := s.Client(clientID)
	switch {
	case cl != nil && seq != 0:
		cl.deliverNumbered(clientID, seq, data)
		return
	case cl != nil && cl.out.deliver(clientID, data):
		return
	case cl != nil:
		// Its connection has left this server and the directory no
		// longer names it for it (DisconnectWith ran): send it on, to
		// where the client is now. Correcting the directory here could
		// mark away a newer connection of the client that resumed on
		// this server meanwhile.
		if err := s.broker.Send(s.ctx, clientID, data); err != nil && !errors.Is(err, broker.ErrUnknownClient) {
			s.reportError(&ErrorEvent{Err: fmt.Errorf("re-route message for client %s: %w", clientID, err)})
		}
		return
	}
	// The directory may still name this server (its Disconnect failed,
	// say while the broker was down): correct it first, or the message
	// would come straight back here. A resume of the client on this
	// server waits for the correction (takeOver), or the correction waits
	// for it: a client recorded here again gets the message itself.
	s.clientsMu.Lock()
	if cl := s.clients[clientID]; cl != nil {
		s.clientsMu.Unlock()
		h.Deliver(clientID, seq, data)
		return
	}
	s.correcting[clientID]++
	s.clientsMu.Unlock()
	if err := s.broker.Disconnect(s.ctx, clientID, s.id); err != nil {
		s.reportError(&ErrorEvent{Err: fmt.Errorf("mark client %s away: %w", clientID, err)})
	}
	s.clientsMu.Lock()
	if s.correcting[clientID]--; s.correcting[clientID] == 0 {
		delete(s.correcting, clientID)
	}
	s.corrected.Broadcast()
	s.clientsMu.Unlock()
	if seq != 0 {
		return
	}
	if err := s.broker.Send(s.ctx, clientID, data); err != nil && !errors.Is(err, broker.ErrUnknownClient) {
		s.reportError(&ErrorEvent{Err: fmt.Errorf("re-route message for client %s: %w", clientID, err)})
	}
}

// DeliverRoom writes a room message to the room's local members.
func (h brokerHandler) DeliverRoom(room string, data []byte) {
	h.s.deliverRoom(room, data)
}

// pingLoop pings every client each PingInterval. A client that answers
// nothing for PingInterval+PongTimeout is closed by the transport.
func (s *Server) pingLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	var batch []*Client
	for {
		select {
		case <-s.stopPing:
			return
		case <-t.C:
		}
		batch = s.snapshotClients(batch[:0])
		for _, cl := range batch {
			cl.out.ping()
		}
		clear(batch)
	}
}

func (s *Server) snapshotClients(dst []*Client) []*Client {
	s.clientsMu.RLock()
	for _, cl := range s.clients {
		dst = append(dst, cl)
	}
	s.clientsMu.RUnlock()
	return dst
}

// Shutdown stops the server: it refuses new connections, closes every
// client with close code 1001 (going away: clients reconnect, possibly to
// another node, and resume their sessions), waits until their connections
// are closed or ctx ends, unregisters from the broker, and stops every
// goroutine it started. It is safe to call more than once; later calls
// return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	prev := s.state.Swap(stateStopping)
	if prev == stateNew || prev == stateStopped {
		s.state.Store(stateStopped)
		s.cancel()
		if s.ownBroker {
			return s.broker.Close()
		}
		return nil
	}
	var errs []error
	clients := s.snapshotClients(nil)
	for _, cl := range clients {
		cl.closeWith(transport.CloseGoingAway, "server shutting down")
	}
	for _, cl := range clients {
		cl.finish("server shutting down")
	}
	// Let the closing handshakes complete so that clients see code 1001.
	wait := time.NewTicker(10 * time.Millisecond)
waitConns:
	for s.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("rocket: shutdown: %d connections still open: %w", s.conns.Load(), ctx.Err()))
			break waitConns
		case <-wait.C:
		}
	}
	wait.Stop()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := s.broker.UnregisterServer(uctx, s.id); err != nil {
		errs = append(errs, fmt.Errorf("rocket: unregister server %s: %w", s.id, err))
	}
	cancel()
	s.cancel()
	close(s.stopPing)
	s.acc.Stop()
	s.wg.Wait()
	if s.ownBroker {
		if err := s.broker.Close(); err != nil {
			errs = append(errs, fmt.Errorf("rocket: close broker: %w", err))
		}
	}
	s.state.Store(stateStopped)
	s.log.Info("rocket server stopped", "server", s.id)
	return errors.Join(errs...)
}

// reportError logs an error the server handled itself and passes it to the
// error hook.
func (s *Server) reportError(e *ErrorEvent) {
	attrs := []any{"err", e.Err}
	if e.Client != nil {
		attrs = append(attrs, "client", e.Client.id)
	}
	if e.Action != "" {
		attrs = append(attrs, "action", e.Action)
	}
	if e.Stack != nil {
		attrs = append(attrs, "stack", string(e.Stack))
	}
	s.log.Error("rocket: error", attrs...)
	if s.onError != nil {
		s.onError(e)
	}
}
