package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/broker"
)

// Defaults used for zero Config fields.
const (
	// DefaultPrefix is the key and channel prefix when Config.Prefix is
	// empty.
	DefaultPrefix = "rocket:"
	// DefaultMailboxSize is the number of messages kept per away client
	// when Config.MailboxSize is zero.
	DefaultMailboxSize = broker.DefaultMailboxSize
	// DefaultMailboxBytes is the bound on the bytes kept per client when
	// Config.MailboxBytes is zero.
	DefaultMailboxBytes = broker.DefaultMailboxBytes
	// DefaultMailboxTTL is how long an away client can resume when
	// Config.MailboxTTL is zero.
	DefaultMailboxTTL = broker.DefaultMailboxTTL
	// DefaultHeartbeatInterval is how often servers refresh their heartbeat
	// when Config.HeartbeatInterval is zero.
	DefaultHeartbeatInterval = time.Second
	// DefaultInboxBatch is the most inbox messages read per round trip when
	// Config.InboxBatch is zero.
	DefaultInboxBatch = 512
)

const (
	// blockTimeout bounds each blocking pop of an inbox, so that a consumer
	// whose wake-up was lost still notices UnregisterServer or Close.
	blockTimeout = time.Second
	// opTimeout bounds each command of the background goroutines.
	opTimeout = 5 * time.Second
	// wakeTimeout bounds the wake-ups sent by UnregisterServer and Close.
	wakeTimeout = time.Second
	// wakeTTL is how long an unread wake-up is kept.
	wakeTTL = time.Minute
	// callGrace is how long a call waits for the answer to a command
	// already sent after its context ended.
	callGrace = 100 * time.Millisecond

	minBackoff       = 50 * time.Millisecond
	maxBackoff       = 2 * time.Second
	minSweepInterval = 10 * time.Millisecond

	sweepLimit   = 1000 // away clients expired per script run
	sweepRounds  = 16   // script runs per sweep at most
	reapLimit    = 100  // dead servers looked at per reaper round
	reclaimBatch = 512  // reclaim scripts per round trip
	subBatch     = 512  // channels per SUBSCRIBE or UNSUBSCRIBE
	roomQueue    = 1024 // room messages queued between Redis and the handlers
)

// Config configures a Broker. URL is required; the zero value of every other
// field means its default.
type Config struct {
	// URL locates the Redis server, e.g. redis://127.0.0.1:6379/0 (see
	// rueidis.ParseURL: rediss:// for TLS, user and password, database).
	URL string
	// Prefix is prepended to every key and channel; brokers that share a
	// prefix form one cluster. Empty means DefaultPrefix.
	Prefix string
	// MailboxSize is the number of messages kept per away client; when a
	// mailbox is full the oldest message is dropped and counted. Zero
	// means DefaultMailboxSize.
	MailboxSize int
	// MailboxBytes bounds the bytes of the messages kept per client
	// (their data, the sum over the mailbox): the oldest are dropped and
	// counted, as for MailboxSize, and Send and SendUser refuse a message
	// larger than the bound with an error wrapping broker.ErrTooLarge.
	// Zero means DefaultMailboxBytes.
	MailboxBytes int
	// MailboxTTL is how long an away client can resume. Zero means
	// DefaultMailboxTTL.
	MailboxTTL time.Duration
	// HeartbeatInterval is how often each registered server refreshes its
	// heartbeat and how often the reaper looks for dead servers. Zero means
	// DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// DeadAfter is the age of the last heartbeat after which a server is
	// dead and cleaned up. It must exceed HeartbeatInterval. Zero means 5
	// times HeartbeatInterval.
	DeadAfter time.Duration
	// InboxBatch is the most inbox messages read per round trip. Zero means
	// DefaultInboxBatch.
	InboxBatch int
	// Logger receives the broker's logs: outages and recoveries of Redis,
	// dead servers cleaned up, clients reclaimed. Nil means slog.Default().
	Logger *slog.Logger
}

// withDefaults returns cfg with its zero fields filled in, or an error if
// it is invalid.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.URL == "" {
		return cfg, errors.New("redis: config: URL is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MailboxSize == 0 {
		cfg.MailboxSize = DefaultMailboxSize
	}
	if cfg.MailboxBytes == 0 {
		cfg.MailboxBytes = DefaultMailboxBytes
	}
	if cfg.MailboxTTL == 0 {
		cfg.MailboxTTL = DefaultMailboxTTL
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = 5 * cfg.HeartbeatInterval
	}
	if cfg.InboxBatch == 0 {
		cfg.InboxBatch = DefaultInboxBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.MailboxSize < 0:
		return cfg, fmt.Errorf("redis: config: negative MailboxSize %d", cfg.MailboxSize)
	case cfg.MailboxBytes < 0:
		return cfg, fmt.Errorf("redis: config: negative MailboxBytes %d", cfg.MailboxBytes)
	case cfg.MailboxTTL < time.Millisecond:
		return cfg, fmt.Errorf("redis: config: MailboxTTL %v is under a millisecond", cfg.MailboxTTL)
	case cfg.HeartbeatInterval < time.Millisecond:
		return cfg, fmt.Errorf("redis: config: HeartbeatInterval %v is under a millisecond", cfg.HeartbeatInterval)
	case cfg.DeadAfter <= cfg.HeartbeatInterval:
		return cfg, fmt.Errorf("redis: config: DeadAfter %v must exceed HeartbeatInterval %v", cfg.DeadAfter, cfg.HeartbeatInterval)
	case cfg.InboxBatch < 0:
		return cfg, fmt.Errorf("redis: config: negative InboxBatch %d", cfg.InboxBatch)
	}
	return cfg, nil
}

// sweepInterval is how often the sweeper runs: HeartbeatInterval or
// MailboxTTL/4, whichever is smaller, and at least minSweepInterval.
func (cfg Config) sweepInterval() time.Duration {
	return max(min(cfg.HeartbeatInterval, cfg.MailboxTTL/4), minSweepInterval)
}

// Broker is a broker.Broker on a Redis server, shared by the Rocket nodes
// of a cluster. Create it with New and release it with Close. All methods
// are safe for concurrent use.
type Broker struct {
	cfg Config
	log *slog.Logger
	rdb rueidis.Client
	// pdb carries the inbox pops only: its connections have no read or
	// write deadline (dead peers are found by TCP keep-alive), so that a
	// node paused past any timeout still reads the entries Redis popped
	// for it (see pop).
	pdb rueidis.Client
	lua *scripts

	// Keys and script arguments used on every call.
	roomPrefix, inboxPrefix, wakePrefix     string
	statsKeys                               []string
	sizeArg, bytesArg, ttlArg, deadAfterArg string
	// liveArg is how recent a server's heartbeat must be for a Resume to
	// count on it handing back what it had not written (Resumed.From):
	// two heartbeat intervals.
	liveArg string

	ctx       context.Context // background work; canceled by Close
	cancel    context.CancelFunc
	stop      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool // set under mu

	// Highest server id issued or seen, the floor of the server id counter.
	serverFloor atomic.Uint64

	mu      sync.Mutex
	servers map[string]*server // registered on this Broker
	rooms   map[string]*room   // rooms wanted by local servers
	// Pub/sub state, guarded by mu.
	subGen     uint64        // generation of the newest room added to rooms
	subSynced  uint64        // every room of generation <= subSynced is subscribed
	subDown    bool          // the pub/sub connection is down: Subscribe does not wait
	subChanged chan struct{} // closed and replaced when subSynced or subDown change

	sends sendQueue // Send's messages waiting for the sender (send.go)

	subKick  chan struct{} // wakes the subscriber to reconcile (capacity 1)
	roomMsgs chan rueidis.PubSubMessage

	// For tests.
	consumerRetries   atomic.Int64 // failed inbox reads
	subscriberRetries atomic.Int64 // failed pub/sub connections
	heartbeatPaused   atomic.Bool  // heartbeats are skipped

	oomErrors atomic.Uint64 // Redis calls refused with OOM (Stats.OutOfMemory)
	// The reaper cleans up other servers only while this Broker's own
	// heartbeats succeed (see mayReap): beatFailing counts its servers
	// whose last heartbeat failed, lastBeat is the time (unix ns) of the
	// last heartbeat written, and reapHold the time until which reaping
	// waits after heartbeats recovered.
	beatFailing atomic.Int32
	lastBeat    atomic.Int64
	reapHold    atomic.Int64
}

var (
	_ broker.Broker  = (*Broker)(nil)
	_ broker.Checker = (*Broker)(nil)
)

// server is a server registered on this Broker.
type server struct {
	id      string
	h       broker.Handler
	stop    chan struct{} // closed by UnregisterServer or Close
	done    chan struct{} // closed when its goroutines have returned
	running atomic.Int32  // its goroutines still running

	// Guarded by Broker.mu.
	clients map[string]held // clients held, kept to reclaim them
	rooms   map[string]struct{}
}

// held is what a server keeps of a client it holds, to reclaim it.
type held struct {
	hash  string // of the session secret
	user  string // the client's user id, if any
	acked bool   // the client acknowledges
	seq   uint64 // number of the last message delivered to it (acked)
}

// room is the set of local servers subscribed to a room.
type room struct {
	subs map[string]*server
	// list holds subs. It is replaced, never modified in place, so that
	// the dispatcher can use it after releasing the lock.
	list []*server
	gen  uint64 // value of subGen when the room was added
}

func (r *room) rebuild() {
	list := make([]*server, 0, len(r.subs))
	for _, s := range r.subs {
		list = append(list, s)
	}
	r.list = list
}

// New validates cfg, connects to Redis (failing if it is unreachable or
// older than 6.2), loads the Lua scripts and starts the Broker's
// goroutines: the reaper of dead servers, the sweeper of expired clients,
// the pub/sub subscriber and the room dispatcher.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := rueidis.ParseURL(cfg.URL)
	if err != nil {
		if uerr, ok := errors.AsType[*url.Error](err); ok {
			err = uerr.Err // its message would quote the URL, password included
		}
		return nil, fmt.Errorf("redis: config: URL: %w", err)
	}
	opt.ForceSingleClient = true // standalone Redis
	opt.DisableRetry = true      // calls fail fast; the goroutines retry with backoff
	opt.DisableCache = true
	opt.ClientName = "rocket"
	addr := strings.Join(opt.InitAddress, ",")
	rdb, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis: connect to %s: %w", addr, err)
	}
	popt := opt
	popt.ConnWriteTimeout = -1 // no deadline: see Broker.pdb
	popt.ClientName = "rocket-inbox"
	pdb, err := rueidis.NewClient(popt)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis: connect to %s: %w", addr, err)
	}
	lua, srcs := newScripts()
	if err := prepare(ctx, rdb, srcs); err != nil {
		rdb.Close()
		pdb.Close()
		return nil, fmt.Errorf("redis: connect to %s: %w", addr, err)
	}
	b := &Broker{
		cfg:          cfg,
		log:          cfg.Logger,
		rdb:          rdb,
		pdb:          pdb,
		lua:          lua,
		roomPrefix:   cfg.Prefix + "room:",
		inboxPrefix:  cfg.Prefix + "inbox:",
		wakePrefix:   cfg.Prefix + "wake:",
		statsKeys:    []string{cfg.Prefix + "stats:mail_dropped", cfg.Prefix + "stats:mail_expired"},
		sizeArg:      strconv.Itoa(cfg.MailboxSize),
		bytesArg:     strconv.Itoa(cfg.MailboxBytes),
		ttlArg:       ms(cfg.MailboxTTL),
		deadAfterArg: ms(cfg.DeadAfter),
		liveArg:      ms(2 * cfg.HeartbeatInterval),
		stop:         make(chan struct{}),
		servers:      make(map[string]*server),
		rooms:        make(map[string]*room),
		subChanged:   make(chan struct{}),
		subKick:      make(chan struct{}, 1),
		roomMsgs:     make(chan rueidis.PubSubMessage, roomQueue),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.sends.start(b)
	b.spawn(b.subscriber)
	b.spawn(b.dispatchRooms)
	b.spawn(b.reaper)
	b.spawn(b.sweeper)
	return b, nil
}

// prepare checks the server's version and loads the scripts (which also
// checks that they compile).
func prepare(ctx context.Context, rdb rueidis.Client, srcs []string) error {
	info, err := rdb.Do(ctx, rdb.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return err
	}
	if v := infoField(info, "redis_version"); !versionAtLeast(v, 6, 2) {
		return fmt.Errorf("redis %s is too old: 6.2 or newer is required", v)
	}
	cmds := make(rueidis.Commands, len(srcs))
	for i, src := range srcs {
		cmds[i] = rdb.B().ScriptLoad().Script(src).Build()
	}
	for _, r := range rdb.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("load scripts: %w", err)
		}
	}
	return nil
}

// infoField returns the value of a field of an INFO reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// versionAtLeast reports whether the version v (like "7.0.15") is at least
// major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// spawn runs fn in a goroutine that Close waits for.
func (b *Broker) spawn(fn func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
}

// enter returns an error if the broker is closed or ctx is done.
func (b *Broker) enter(ctx context.Context, op string) error {
	if b.closed.Load() {
		return fmt.Errorf("redis: %s: %w", op, broker.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	return nil
}

// fail wraps an error of a Redis call.
func (b *Broker) fail(op string, err error) error {
	if b.closed.Load() && errors.Is(err, rueidis.ErrClosing) {
		err = broker.ErrClosed
	}
	if b.noteOOM(err) {
		return fmt.Errorf("redis: %s: Redis is out of memory (maxmemory reached): %w: %w", op, broker.ErrOutOfMemory, err)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// isOOM reports whether err is Redis refusing a command because it is at
// maxmemory ("OOM command not allowed when used memory > 'maxmemory'",
// also inside scripts).
func isOOM(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), "OOM ")
}

// noteOOM counts err if it is an OOM error, and reports whether it is.
func (b *Broker) noteOOM(err error) bool {
	if err == nil || !isOOM(err) {
		return false
	}
	b.oomErrors.Add(1)
	return true
}

// Ready reports whether a server on this Broker can accept new clients:
// Redis answers and takes writes (a new client is recorded with writes, so
// the check writes a small key of its own, which expires). When Redis is
// at maxmemory it returns an error wrapping broker.ErrOutOfMemory that
// says so.
func (b *Broker) Ready(ctx context.Context) error {
	const op = "ready"
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	cmd := b.rdb.B().Set().Key(b.cfg.Prefix + "ready").Value("1").Px(time.Minute).Build()
	if err := b.do(ctx, cmd).Error(); err != nil {
		if b.noteOOM(err) {
			return fmt.Errorf("redis: Redis is out of memory (maxmemory reached), new clients cannot connect: %w: %w", broker.ErrOutOfMemory, err)
		}
		return b.fail(op, err)
	}
	return nil
}

// exec executes a script for the Broker's goroutines.
func (b *Broker) exec(ctx context.Context, s *rueidis.Lua, args ...string) rueidis.RedisResult {
	return s.Exec(ctx, b.rdb, nil, args)
}

// run executes a script for a caller whose context is ctx (see callContext).
func (b *Broker) run(ctx context.Context, s *rueidis.Lua, args ...string) rueidis.RedisResult {
	cctx, done := callContext(ctx)
	defer done()
	return callResult(ctx, s.Exec(cctx, b.rdb, nil, args))
}

// do runs a command for a caller whose context is ctx (see callContext).
func (b *Broker) do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	cctx, done := callContext(ctx)
	defer done()
	return callResult(ctx, b.rdb.Do(cctx, cmd))
}

// callContext returns the context of a Redis call made for ctx: it ends
// callGrace after ctx. A command that Redis has already carried out when
// ctx ends is then still reported as done (its answer is normally under
// way), rather than as failed with its effect in place, which would invite
// a caller to repeat it.
func callContext(ctx context.Context) (context.Context, func()) {
	if ctx.Done() == nil {
		return ctx, func() {}
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(callGrace, cancel)
		context.AfterFunc(cctx, func() { t.Stop() })
	})
	return cctx, func() {
		stop()
		cancel()
	}
}

// callResult replaces the error of a call cut short by the end of ctx with
// ctx's error.
func callResult(ctx context.Context, r rueidis.RedisResult) rueidis.RedisResult {
	if r.Error() != nil && ctx.Err() != nil && r.NonRedisError() != nil {
		return rueidis.NewErrorResult(ctx.Err())
	}
	return r
}

// local returns the local server id, or nil.
func (b *Broker) local(id string) *server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.servers[id]
}

func unknownServer(op, id string) error {
	return fmt.Errorf("redis: %s: server %q: %w", op, id, broker.ErrUnknownServer)
}

// sessionHash is what is stored of a session secret.
func sessionHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// raise makes floor at least the number of server id id (serverNumber);
// other ids are ignored.
func raise(floor *atomic.Uint64, id string) {
	n, ok := serverNumber(id)
	if !ok {
		return
	}
	for {
		cur := floor.Load()
		if cur >= n || floor.CompareAndSwap(cur, n) {
			return
		}
	}
}

// ms formats d in milliseconds, for scripts.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// RegisterServer allocates a server id (INCR of the server_ids counter,
// never at or below an id this Broker issued or saw), records the server's
// first heartbeat and starts its inbox consumer and heartbeat goroutines.
func (b *Broker) RegisterServer(ctx context.Context, h broker.Handler) (string, error) {
	const op = "register server"
	if h == nil {
		return "", errors.New("redis: register server: nil handler")
	}
	if err := b.enter(ctx, op); err != nil {
		return "", err
	}
	id, err := b.run(ctx, b.lua.register, b.cfg.Prefix, strconv.FormatUint(b.serverFloor.Load(), 10)).ToString()
	if err != nil {
		return "", b.fail(op, err)
	}
	raise(&b.serverFloor, id)
	b.lastBeat.Store(time.Now().UnixNano()) // the register script wrote its heartbeat
	s := &server{
		id:      id,
		h:       h,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		clients: make(map[string]held),
		rooms:   make(map[string]struct{}),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		// Registered in Redis but never served: the reapers remove it.
		return "", fmt.Errorf("redis: %s: %w", op, broker.ErrClosed)
	}
	b.servers[id] = s
	goroutines := []func(*server){b.consume, b.heartbeat}
	s.running.Store(int32(len(goroutines)))
	for _, fn := range goroutines {
		b.spawn(func() {
			defer func() {
				if s.running.Add(-1) == 0 {
					close(s.done)
				}
			}()
			fn(s)
		})
	}
	return id, nil
}

// UnregisterServer stops the server's goroutines (waiting, within ctx, for
// the delivery under way), drops its room subscriptions, then runs the
// cleanup script: every client of the server goes away, the messages left
// in its inbox move to where their clients are now, its presence entries
// are removed (their leave messages published), its inbox and client set
// are deleted and it leaves the servers set.
//
// The server is forgotten locally even when the script fails (Redis down,
// ctx done); its heartbeat has stopped, so the reapers clean it up after
// DeadAfter. UnregisterServer must not be called from the server's own
// Handler, whose return it waits for.
func (b *Broker) UnregisterServer(ctx context.Context, serverID string) error {
	const op = "unregister server"
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	b.mu.Lock()
	s := b.servers[serverID]
	if s == nil {
		b.mu.Unlock()
		return unknownServer(op, serverID)
	}
	delete(b.servers, serverID)
	kick := false
	for name := range s.rooms {
		kick = b.leaveLocked(s, name) || kick
	}
	s.clients = nil
	close(s.stop)
	b.mu.Unlock()
	if kick {
		b.kickSubscriber()
	}

	b.wake(ctx, serverID)
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("redis: %s %s: waiting for its consumer: %w", op, serverID, ctx.Err())
	}
	err := b.run(ctx, b.lua.cleanup, b.cfg.Prefix, serverID, "unregister", "0",
		b.ttlArg, b.sizeArg, b.bytesArg).Error()
	if err != nil {
		return b.fail(op+" "+serverID, err)
	}
	return nil
}

// wake pushes a wake-up to the consumers of the servers so that they leave
// their blocking pop at once. Errors are ignored: a consumer that misses
// its wake-up notices within blockTimeout.
func (b *Broker) wake(ctx context.Context, serverIDs ...string) {
	if len(serverIDs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wakeTimeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, 2*len(serverIDs))
	for _, id := range serverIDs {
		key := b.wakePrefix + id
		cmds = append(cmds,
			b.rdb.B().Rpush().Key(key).Element("1").Build(),
			b.rdb.B().Pexpire().Key(key).Milliseconds(wakeTTL.Milliseconds()).Build())
	}
	b.rdb.DoMulti(ctx, cmds...)
}

// NewClientID allocates a client id, "<epoch>-<n>": the epoch of the
// cluster's client_seq hash and its counter n, incremented (a new random
// epoch when the hash is missing: Redis lost its data).
func (b *Broker) NewClientID(ctx context.Context) (string, error) {
	const op = "new client id"
	if err := b.enter(ctx, op); err != nil {
		return "", err
	}
	id, err := b.run(ctx, b.lua.nextClientID, b.cfg.Prefix, broker.NewEpoch()).ToString()
	if err != nil {
		return "", b.fail(op, err)
	}
	return id, nil
}

// Connect records c on c.Server, which must be registered on this Broker.
// A record already present under c.ID is replaced and its mail dropped.
// Client ids must not contain spaces or '#'.
func (b *Broker) Connect(ctx context.Context, c broker.Client) error {
	op := "connect " + c.ID
	if c.ID == "" || strings.ContainsAny(c.ID, " #") {
		return fmt.Errorf("redis: connect: invalid client id %q", c.ID)
	}
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	s := b.local(c.Server)
	if s == nil {
		return unknownServer(op, c.Server)
	}
	hash := sessionHash(c.Session)
	if err := b.run(ctx, b.lua.connect, b.cfg.Prefix, c.ID, c.Server, hash, c.User, flag(c.Acked)).Error(); err != nil {
		return b.fail(op, err)
	}
	b.hold(s, c.ID, held{hash: hash, user: c.User, acked: c.Acked})
	return nil
}

// hold records locally that s holds the client, for reclaim.
func (b *Broker) hold(s *server, clientID string, h held) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range b.servers {
		if o != s {
			delete(o.clients, clientID)
		}
	}
	if b.servers[s.id] == s {
		s.clients[clientID] = h
	}
}

// flag is a boolean as the scripts take it.
func flag(b bool) string {
	if b {
		return "1"
	}
	return ""
}

// Resume moves the client to serverID, which must be registered on this
// Broker, if the SHA-256 of session matches the one recorded, and returns
// its mail oldest first. When another server held the client, the same
// script appends a replaced entry to that server's inbox, after what was
// there, if the server reads version 1 entries (see doc.go, "Inbox
// entries"); its consumer calls the Handler's Replaced (if it implements
// broker.Replacer).
func (b *Broker) Resume(ctx context.Context, clientID, session, serverID string, ack uint64) (broker.Resumed, error) {
	op := "resume " + clientID
	if err := b.enter(ctx, op); err != nil {
		return broker.Resumed{}, err
	}
	s := b.local(serverID)
	if s == nil {
		return broker.Resumed{}, unknownServer(op, serverID)
	}
	hash := sessionHash(session)
	res, err := b.run(ctx, b.lua.resume, b.cfg.Prefix, clientID, serverID, hash, strconv.FormatUint(ack, 10), b.liveArg).ToArray()
	if err != nil {
		return broker.Resumed{}, b.fail(op, err)
	}
	status, err := res[0].AsInt64()
	if err != nil {
		return broker.Resumed{}, b.fail(op, err)
	}
	switch status {
	case 0:
		return broker.Resumed{}, fmt.Errorf("redis: %s: %w", op, broker.ErrUnknownClient)
	case 1:
		return broker.Resumed{}, fmt.Errorf("redis: %s: %w", op, broker.ErrBadSession)
	}
	var user, acked, last string
	var msgs []string
	for i, dst := range []*string{&user, &acked, &last} {
		if *dst, err = res[3+i].ToString(); err != nil {
			return broker.Resumed{}, b.fail(op, err)
		}
	}
	if msgs, err = res[2].AsStrSlice(); err != nil {
		return broker.Resumed{}, b.fail(op, err)
	}
	seq, err := strconv.ParseUint(last, 10, 64)
	if err != nil {
		return broker.Resumed{}, b.fail(op, fmt.Errorf("last seq %q: %w", last, err))
	}
	r := broker.Resumed{Acked: acked == "1"}
	if from, err := res[6].ToString(); err == nil {
		r.From = from // told through its inbox (entry_replaced), and alive
	}
	if r.Acked {
		r.Seq = seq
	}
	if len(msgs) > 0 {
		r.Mail = make([]broker.Mail, len(msgs))
		for i, m := range msgs {
			if !r.Acked {
				r.Mail[i].Data = []byte(m)
				continue
			}
			if r.Mail[i], err = parseMail(m); err != nil {
				return broker.Resumed{}, b.fail(op, err)
			}
		}
	}
	b.hold(s, clientID, held{hash: hash, user: user, acked: r.Acked, seq: seq})
	return r, nil
}

// parseMail parses "<seq> <data>", an entry of the mailbox of a client that
// acknowledges.
func parseMail(e string) (broker.Mail, error) {
	n, data, ok := strings.Cut(e, " ")
	seq, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil {
		return broker.Mail{}, fmt.Errorf("malformed mailbox entry %.40q", e)
	}
	return broker.Mail{Seq: seq, Data: []byte(data)}, nil
}

// Ack drops the messages numbered up to seq from the mailbox of the client,
// if it acknowledges.
func (b *Broker) Ack(ctx context.Context, clientID string, seq uint64) error {
	op := "ack " + clientID
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	if err := b.run(ctx, b.lua.ack, b.cfg.Prefix, clientID, strconv.FormatUint(seq, 10)).Error(); err != nil {
		return b.fail(op, err)
	}
	return nil
}

// Disconnect marks the client away if the directory still places it on
// serverID: its session and mailbox then live for MailboxTTL.
func (b *Broker) Disconnect(ctx context.Context, clientID, serverID string) error {
	return b.disconnect(ctx, clientID, serverID, b.lua.disconnect, b.cfg.Prefix, clientID, serverID, b.ttlArg)
}

// DisconnectWith is Disconnect for a server that took the messages unsent
// for the client and did not write them: in one script, the client goes
// away and they are pushed back at the head of its mailbox (or, for a
// client that moved, at the head of its mailbox with a returned entry in
// its new server's inbox).
func (b *Broker) DisconnectWith(ctx context.Context, clientID, serverID string, unsent [][]byte) error {
	args := make([]string, 0, 6+len(unsent))
	args = append(args, b.cfg.Prefix, clientID, serverID, b.ttlArg, b.sizeArg, b.bytesArg)
	for _, d := range unsent {
		args = append(args, string(d))
	}
	return b.disconnect(ctx, clientID, serverID, b.lua.disconnectWith, args...)
}

// disconnect forgets the client locally for serverID and runs script.
func (b *Broker) disconnect(ctx context.Context, clientID, serverID string, script *rueidis.Lua, args ...string) error {
	op := "disconnect " + clientID
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	b.mu.Lock()
	if s := b.servers[serverID]; s != nil {
		delete(s.clients, clientID)
	}
	b.mu.Unlock()
	if err := b.run(ctx, script, args...).Error(); err != nil {
		return b.fail(op, err)
	}
	return nil
}

// Forget removes the client with its session and mail. Forgetting an
// unknown client does nothing.
func (b *Broker) Forget(ctx context.Context, clientID string) error {
	op := "forget " + clientID
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	b.mu.Lock()
	for _, s := range b.servers {
		delete(s.clients, clientID)
	}
	b.mu.Unlock()
	if err := b.run(ctx, b.lua.forget, b.cfg.Prefix, clientID).Error(); err != nil {
		return b.fail(op, err)
	}
	return nil
}

// Lookup returns the client's record without its session, or
// ErrUnknownClient.
func (b *Broker) Lookup(ctx context.Context, clientID string) (broker.Client, error) {
	op := "lookup " + clientID
	if err := b.enter(ctx, op); err != nil {
		return broker.Client{}, err
	}
	res, err := b.run(ctx, b.lua.lookup, b.cfg.Prefix, clientID).ToArray()
	if err != nil {
		return broker.Client{}, b.fail(op, err)
	}
	if found, _ := res[0].AsInt64(); found == 0 {
		return broker.Client{}, fmt.Errorf("redis: %s: %w", op, broker.ErrUnknownClient)
	}
	srv, err := res[1].ToString()
	if err != nil {
		return broker.Client{}, b.fail(op, err)
	}
	user, err := res[2].ToString()
	if err != nil {
		return broker.Client{}, b.fail(op, err)
	}
	acked, err := res[3].ToString()
	if err != nil {
		return broker.Client{}, b.fail(op, err)
	}
	return broker.Client{ID: clientID, Server: srv, User: user, Acked: acked == "1"}, nil
}

// Send appends data to the inbox of the server holding the client, whose
// consumer delivers it, or to the client's mailbox when it is away. A nil
// error means Redis accepted the message.
//
// Concurrent Sends are carried to Redis together: while batches are under
// way (up to sendWorkers at once), those that arrive meanwhile wait and go
// in the next, as one script call (up to maxSendBatch messages), so that
// Redis does the work of one call for many messages. A Send alone goes at
// once.
func (b *Broker) Send(ctx context.Context, clientID string, data []byte) error {
	if err := b.enter(ctx, "send"); err != nil {
		return err
	}
	if err := b.fits("send to "+clientID, data); err != nil {
		return err
	}
	return b.sends.send(ctx, clientID, data)
}

// fits returns an error wrapping broker.ErrTooLarge when data is larger
// than the mailbox bytes bound.
func (b *Broker) fits(op string, data []byte) error {
	if len(data) > b.cfg.MailboxBytes {
		return fmt.Errorf("redis: %s: %d bytes, over the mailbox bound of %d: %w",
			op, len(data), b.cfg.MailboxBytes, broker.ErrTooLarge)
	}
	return nil
}

// Subscribe makes the server, which must be registered on this Broker,
// receive what is published to room. The Broker subscribes to the room's
// channel when its first local server does; Subscribe then returns once
// Redis has confirmed the subscription. When the pub/sub connection is down
// Subscribe records the server's wish and returns nil: the subscriber
// goroutine subscribes when Redis is back.
func (b *Broker) Subscribe(ctx context.Context, serverID, name string) error {
	op := "subscribe to " + name
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	b.mu.Lock()
	s := b.servers[serverID]
	if s == nil {
		b.mu.Unlock()
		return unknownServer(op, serverID)
	}
	r := b.rooms[name]
	if r == nil {
		b.subGen++
		r = &room{subs: make(map[string]*server), gen: b.subGen}
		b.rooms[name] = r
		b.kickSubscriber()
	}
	if _, ok := s.rooms[name]; !ok {
		s.rooms[name] = struct{}{}
		r.subs[serverID] = s
		r.rebuild()
	}
	// Wait until the subscriber has subscribed the room, unless Redis is
	// down.
	for !b.subDown && b.subSynced < r.gen {
		ch := b.subChanged
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("redis: %s: %w", op, ctx.Err())
		case <-b.stop:
			return fmt.Errorf("redis: %s: %w", op, broker.ErrClosed)
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	return nil
}

// Unsubscribe stops the server, which must be registered on this Broker,
// receiving what is published to room. Delivery stops at once; the channel
// is unsubscribed in the background when no local server wants it.
func (b *Broker) Unsubscribe(ctx context.Context, serverID, name string) error {
	op := "unsubscribe from " + name
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	b.mu.Lock()
	s := b.servers[serverID]
	if s == nil {
		b.mu.Unlock()
		return unknownServer(op, serverID)
	}
	kick := b.leaveLocked(s, name)
	b.mu.Unlock()
	if kick {
		b.kickSubscriber()
	}
	return nil
}

// leaveLocked removes s from room name. It reports whether the room has no
// local server any more. b.mu must be held.
func (b *Broker) leaveLocked(s *server, name string) bool {
	if _, ok := s.rooms[name]; !ok {
		return false
	}
	delete(s.rooms, name)
	r := b.rooms[name]
	delete(r.subs, s.id)
	if len(r.subs) == 0 {
		delete(b.rooms, name)
		return true
	}
	r.rebuild()
	return false
}

// Publish publishes "<from> <data>" on the room's channel; every Broker
// with local servers subscribed to the room delivers data to them, except
// to from.
func (b *Broker) Publish(ctx context.Context, from, name string, data []byte) error {
	op := "publish to " + name
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	payload := make([]byte, 0, len(from)+1+len(data))
	payload = append(payload, from...)
	payload = append(payload, ' ')
	payload = append(payload, data...)
	cmd := b.rdb.B().Publish().Channel(b.roomPrefix + name).Message(string(payload)).Build()
	if err := b.do(ctx, cmd).Error(); err != nil {
		return b.fail(op, err)
	}
	return nil
}

// Stats returns the cluster-wide counters of the Broker's prefix.
func (b *Broker) Stats(ctx context.Context) (broker.Stats, error) {
	const op = "stats"
	if err := b.enter(ctx, op); err != nil {
		return broker.Stats{}, err
	}
	vals, err := b.do(ctx, b.rdb.B().Mget().Key(b.statsKeys...).Build()).ToArray()
	if err != nil {
		return broker.Stats{}, b.fail(op, err)
	}
	var n [2]uint64
	for i := range n {
		if vals[i].IsNil() {
			continue
		}
		if n[i], err = vals[i].AsUint64(); err != nil {
			return broker.Stats{}, b.fail(op, err)
		}
	}
	return broker.Stats{MailDropped: n[0], MailExpired: n[1], OutOfMemory: b.oomErrors.Load()}, nil
}

// Close stops every goroutine of the Broker, waits for them (and so for
// the deliveries under way) and closes its connections. It does not
// unregister the servers: to Redis, a closed Broker looks like a crashed
// node, whose servers the other nodes' reapers clean up after DeadAfter;
// call UnregisterServer first for a graceful stop. Later calls of other
// methods return ErrClosed. Close is idempotent. It must not be called from
// a Handler.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed.Store(true)
		ids := make([]string, 0, len(b.servers))
		for id, s := range b.servers {
			ids = append(ids, id)
			close(s.stop)
		}
		b.servers = map[string]*server{}
		b.rooms = map[string]*room{}
		b.mu.Unlock()
		close(b.stop)
		b.cancel()
		b.wake(context.Background(), ids...)
		// The consumers' pops have no deadline (see pop): if Redis does
		// not answer them, their connections are closed after a while.
		waited := make(chan struct{})
		go func() {
			b.wg.Wait()
			close(waited)
		}()
		select {
		case <-waited:
		case <-time.After(blockTimeout + opTimeout):
			b.pdb.Close()
			<-waited
		}
		b.pdb.Close()
		// The sender stops last: Sends made by the goroutines above
		// while they stopped are still carried.
		b.sends.stop()
		b.rdb.Close()
	})
	return nil
}
