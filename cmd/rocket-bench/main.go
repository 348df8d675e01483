// Command rocket-bench is Rocket's load tool. It opens WebSocket
// connections to Rocket nodes running the demo application (cmd/rocket) on
// this machine and measures one scenario:
//
//	rocket-bench SCENARIO [flags]
//
// Scenarios:
//
//	idle     open -conns connections, hold them idle for -duration, and report
//	         the server's memory per connection from its /metrics:
//	         server_bytes_per_conn = (RSS after - RSS before) / connections
//	connect  open -conns connections as fast as possible (-rate 0) or at -rate
//	         per second; a connection counts when its welcome frame arrived;
//	         latency is connect-to-welcome; -duration bounds the run
//	echo     Echo.echo round trips with ref over -conns connections, at -rate
//	         requests per second in all (0: as fast as possible, one request
//	         outstanding per connection), for -duration after -warmup
//	fanout   -conns members join room "bench"; one more client publishes
//	         Chat.say messages (-rate per second, or 0: as fast as possible
//	         with -window messages not yet delivered to everyone); latency is
//	         the time until every member has a message; every message must
//	         reach every member once
//	direct   half the connections on the first -url each whisper
//	         (Chat.whisper) to a partner among the other half, on the second
//	         -url, through the cluster's broker (e.g. Redis), at -rate in all
//	         (0: as fast as possible, -window messages in flight per sender);
//	         latency is end to end; lost and duplicated messages are errors
//	loopback the machine's floor, no server: -conns loopback TCP connections
//	         to a peer process, raw epoll on each side; -size-byte messages
//	         ping-ponged one at a time per connection for -duration (hops
//	         per second, CPU per hop: one write and its read), then one
//	         message written to every connection, timed until the peer has
//	         them all (latency; 20 rounds); no -url is used
//
// Connections are spread over the -url nodes and over -sources source
// addresses (127.0.0.2 upward: one address gives ~28,000 ports). Above
// -per-process connections (idle and connect), the tool runs itself again
// as worker processes, each holding at most that many.
//
// The server must not limit commands per client: start it with
// ROCKET_COMMAND_RATE=-1. Commands refused with rate_limited are counted as
// errors and the summary says so.
//
// Output: a progress line about once a second and a summary on standard
// error; on standard output one JSON object, always the last line, with at
// least scenario, conns, ops, ops_per_sec, p50_ms, p90_ms, p99_ms, max_ms,
// errors, and for idle server_bytes_per_conn.
//
// Exit status: 0 when the run had no error; 3 when it ran (the JSON line is
// printed) with errors; 1 when it could not run (bad flags, server
// unreachable, connections refused during setup).
//
// Example, against `ROCKET_COMMAND_RATE=-1 rocket -ws-addr 127.0.0.1:9185
// -http-addr 127.0.0.1:9346`:
//
//	rocket-bench idle -conns 19000 -metrics http://127.0.0.1:9346/metrics
//	rocket-bench echo -conns 100 -duration 10s -rate 50000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	exitOK     = 0
	exitSetup  = 1 // nothing measured: bad flags, server unreachable...
	exitErrors = 3 // measured, with errors
)

// Defaults: cmd/rocket's addresses.
const (
	defaultURL     = "ws://127.0.0.1:9185/"
	defaultMetrics = "http://127.0.0.1:9346/metrics"
)

// scenario runs one scenario. An error means it could not run.
type scenario func(ctx context.Context, o *options) (*Result, error)

var scenarios = map[string]scenario{
	"idle":    runIdle,
	"connect": runConnect,
	"echo":    runEcho,
	"fanout":  runFanout,
	"direct":  runDirect,

	"loopback": runLoopback,
}

// options are the command line's settings.
type options struct {
	scenario    string
	urls        []string
	metrics     []string
	conns       int
	duration    time.Duration
	warmup      time.Duration
	drain       time.Duration
	rate        float64
	size        int
	window      int
	sources     int
	concurrency int
	perProcess  int
	room        string
	timeout     time.Duration
	quiet       bool
	acks        bool
	cpuProfile  string

	stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command and returns its exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr} // progress, summary and workers write to it
	if first, ok := os.LookupEnv(workerEnv); ok {
		return workerMain(ctx, first, args, stdin, stdout, stderr)
	}
	if addr, ok := os.LookupEnv(loopbackPeerEnv); ok {
		return loopbackPeerMain(addr, args, stdin, stdout, stderr)
	}
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "rocket-bench:", err)
		return exitSetup
	}
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "rocket-bench:", err)
			return exitSetup
		}
		defer stopProfile()
	}
	res, err := scenarios[o.scenario](ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "rocket-bench %s: %v\n", o.scenario, err)
		return exitSetup
	}
	res.complete(o)
	res.printSummary(stderr)
	if err := res.printJSON(stdout); err != nil {
		fmt.Fprintln(stderr, "rocket-bench:", err)
		return exitSetup
	}
	if res.Errors > 0 {
		return exitErrors
	}
	return exitOK
}

// startCPUProfile profiles this process into the file path until the
// returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

const usageHead = `usage: rocket-bench SCENARIO [flags]

scenarios:
  idle     hold -conns idle connections; report the server's memory per connection
  connect  open -conns connections; report connections per second and connect-to-welcome latency
  echo     Echo.echo round trips over -conns connections at -rate per second (0: as fast as possible)
  fanout   -conns members of one room, one publisher; time until every member has a message
  direct   whispers from clients on the first -url to partners on the second, through the broker
  loopback the machine's floor without a server: CPU per loopback message, time to write one to -conns sockets

The server must run with ROCKET_COMMAND_RATE=-1. The last line of standard
output is a JSON object with the results.

flags:
`

// newFlagSet returns the flags, bound to o.
func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rocket-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	fs.Var((*listFlag)(&o.urls), "url", "a node's WebSocket URL, repeatable: connections are spread over the nodes (default "+defaultURL+")")
	fs.Var((*listFlag)(&o.metrics), "metrics", "a node's /metrics URL, repeatable; values are summed over nodes (default "+defaultMetrics+" when no -url is given)")
	fs.IntVar(&o.conns, "conns", 100, "connections (fanout: members, plus one publisher; direct: senders + receivers)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time (idle: how long connections are held; connect: bound on the run; loopback: the ping-pong)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "echo, fanout, direct, loopback: load before the measured time, not counted")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "echo, fanout, direct: how long to wait for outstanding messages at the end (then they count as errors)")
	fs.Float64Var(&o.rate, "rate", 0, "operations per second in all (connect: connections; echo: requests; fanout: messages; direct: whispers); 0: as fast as possible")
	fs.IntVar(&o.size, "size", 64, "payload bytes (echo: a JSON string of this many characters; fanout, direct: the text, at most 4096; loopback: each message, at most 65536)")
	fs.IntVar(&o.window, "window", 0, "when -rate is 0: echo: requests outstanding per connection; fanout: messages not yet delivered to every member; direct: messages in flight per sender (0: echo 1, fanout 16, direct 64)")
	fs.IntVar(&o.sources, "sources", 8, "source addresses, 127.0.0.2 upward (0: let the kernel choose)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "connection attempts in flight")
	fs.IntVar(&o.perProcess, "per-process", 15000, "most connections one process holds; idle and connect run worker processes above it")
	fs.StringVar(&o.room, "room", "bench", "fanout: the room")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound on each connection's connect + upgrade + welcome, and on setup requests")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile (go tool pprof) to this file")
	fs.BoolVar(&o.acks, "acks", false, fmt.Sprintf("direct: receivers connect with ?acks=1 (acknowledged delivery) and acknowledge every %d whispers", ackEvery))
	return fs
}

// parseArgs reads SCENARIO [flags].
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	o := &options{stderr: stderr}
	fs := newFlagSet(o, stderr)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return nil, flag.ErrHelp
		}
		fs.Usage()
		return nil, errors.New("missing SCENARIO (idle, connect, echo, fanout, direct or loopback)")
	}
	o.scenario = args[0]
	if _, ok := scenarios[o.scenario]; !ok {
		return nil, fmt.Errorf("unknown scenario %q: want idle, connect, echo, fanout, direct or loopback", o.scenario)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(o.urls) == 0 {
		o.urls = []string{defaultURL}
		if len(o.metrics) == 0 {
			o.metrics = []string{defaultMetrics}
		}
	}
	return o, o.check()
}

// check validates the options.
func (o *options) check() error {
	var errs []error
	for _, u := range o.urls {
		errs = append(errs, checkURL(u, "ws", "wss"))
	}
	for _, u := range o.metrics {
		errs = append(errs, checkURL(u, "http", "https"))
	}
	switch {
	case o.conns < 1:
		errs = append(errs, errors.New("-conns must be at least 1"))
	case o.scenario == "direct" && o.conns < 2:
		errs = append(errs, errors.New("direct: -conns must be at least 2 (senders and receivers)"))
	}
	if o.duration <= 0 {
		errs = append(errs, errors.New("-duration must be positive"))
	}
	if o.warmup < 0 || o.drain < 0 || o.rate < 0 || o.size < 0 || o.window < 0 {
		errs = append(errs, errors.New("-warmup, -drain, -rate, -size and -window must not be negative"))
	}
	if (o.scenario == "fanout" || o.scenario == "direct") && o.size > 4096 {
		errs = append(errs, errors.New("-size: the demo's chat texts are at most 4096 characters"))
	}
	if o.sources < 0 || o.sources > 250 {
		errs = append(errs, errors.New("-sources must be between 0 and 250"))
	}
	if o.concurrency < 1 || o.perProcess < 1 || o.timeout <= 0 {
		errs = append(errs, errors.New("-concurrency, -per-process and -timeout must be positive"))
	}
	if o.scenario == "loopback" && o.size < 1 {
		errs = append(errs, errors.New("loopback: -size must be at least 1"))
	}
	if o.scenario == "loopback" && o.size > loopbackMaxSize {
		errs = append(errs, fmt.Errorf("loopback: -size must be at most %d", loopbackMaxSize))
	}
	if o.scenario == "direct" && len(o.urls) > 2 {
		errs = append(errs, errors.New("direct: give one -url for the senders' node and one for the receivers' node"))
	}
	if o.scenario == "idle" && len(o.metrics) == 0 {
		errs = append(errs, errors.New("idle: -metrics is required (the node's /metrics URL, e.g. "+defaultMetrics+")"))
	}
	return errors.Join(errs...)
}

// checkURL accepts URLs of the given schemes on this machine only: the tool
// spreads connections over 127.0.0.x source addresses, and load is only
// ever sent to a local server.
func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("URL %q: %w", raw, err)
	}
	okScheme := false
	for _, s := range schemes {
		okScheme = okScheme || u.Scheme == s
	}
	if !okScheme {
		return fmt.Errorf("URL %q: want a %s URL", raw, strings.Join(schemes, " or "))
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("URL %q: rocket-bench only loads servers on this machine (127.0.0.0/8, ::1, localhost)", raw)
	}
	return nil
}

// windowOr returns -window, or def when it is 0.
func (o *options) windowOr(def int) int {
	if o.window > 0 {
		return o.window
	}
	return def
}

// urlFor returns the node of connection i: round robin over -url.
func (o *options) urlFor(i int) string { return o.urls[i%len(o.urls)] }

// dialer returns the dialer for this run; readBuf is the read buffer of
// each connection.
func (o *options) dialer(readBuf int) dialer {
	return dialer{sources: o.sources, readBuf: readBuf, timeout: o.timeout}
}
