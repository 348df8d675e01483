// Command rocket runs a Rocket server with the demo application: WebSockets
// on :9185, and on :9346 the chat page, the JavaScript client at
// /rocket.js and WebSockets at /ws.
//
// Every setting is a flag and a ROCKET_* environment variable; a flag given
// on the command line wins over the variable. Run `rocket -h` for the list.
//
// `rocket new NAME` creates a new Rocket app in the directory NAME instead;
// `rocket new -h` tells more.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/broker/redis"
	"github.com/rocket-go/rocket/client"
	"github.com/rocket-go/rocket/internal/demo"
)

//go:embed public
var publicFiles embed.FS

func main() {
	if len(os.Args) > 1 && os.Args[1] == "new" {
		os.Exit(newMain(os.Args[2:])) // rocket new NAME: see new.go
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "rocket:", err)
		os.Exit(1)
	}
}

// options are the command's settings.
type options struct {
	wsAddr, httpAddr string
	redisURL         string
	publicDir        string
	allowedOrigins   string
	logLevel         string
	logFormat        string
	shutdownTimeout  time.Duration
	heartbeat        time.Duration
	redisPrefix      string
	pprof            bool
	idleTimeout      time.Duration
	maxHeaderBytes   int
	trustedProxies   string
	cfg              rocket.Config
	sec              securityOptions // JWT and TLS (security.go)
}

// parseOptions reads flags, falling back to ROCKET_* variables from getenv,
// then to the defaults.
func parseOptions(args []string, getenv func(string) string, out io.Writer) (*options, error) {
	o := &options{}
	fset := flag.NewFlagSet("rocket", flag.ContinueOnError)
	fset.SetOutput(out)
	var errs []error
	str := func(p *string, name, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fset.StringVar(p, name, def, usage+" ("+env+")")
	}
	num := func(p *int, name, env string, def int, usage string) {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not an integer", env, v))
			}
			def = n
		}
		fset.IntVar(p, name, def, usage+" ("+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration such as 30s or 2m", env, v))
			}
			def = d
		}
		fset.DurationVar(p, name, def, usage+" ("+env+")")
	}
	float := func(p *float64, name, env string, def float64, usage string) {
		if v := getenv(env); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a number", env, v))
			}
			def = f
		}
		fset.Float64Var(p, name, def, usage+" ("+env+")")
	}
	boolean := func(p *bool, name, env string, def bool, usage string) {
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a boolean (true or false)", env, v))
			}
			def = b
		}
		fset.BoolVar(p, name, def, usage+" ("+env+")")
	}
	d := rocket.DefaultConfig() // the defaults of the server's settings, defined once
	str(&o.wsAddr, "ws-addr", "ROCKET_WS_ADDR", ":9185", "address for WebSocket connections")
	str(&o.httpAddr, "http-addr", "ROCKET_HTTP_ADDR", ":9346", "address for the static files, /rocket.js and WebSockets at /ws")
	// The URL may hold a password: its variable is read after parsing, not
	// shown as the flag's default by -h.
	fset.StringVar(&o.redisURL, "redis-url", "", "Redis URL to join a cluster, e.g. redis://127.0.0.1:6379/0; empty runs one node on the in-memory broker (ROCKET_REDIS_URL)")
	boolean(&o.pprof, "pprof", "ROCKET_PPROF", false, "serve Go's profiler at /debug/pprof/ on the HTTP port (for benchmarking; do not expose)")
	dur(&o.heartbeat, "heartbeat-interval", "ROCKET_HEARTBEAT_INTERVAL", redis.DefaultHeartbeatInterval, "with Redis: how often this node proves it is alive; a node silent for 5 intervals is declared dead and its clients' mail kept for them")
	str(&o.redisPrefix, "redis-prefix", "ROCKET_REDIS_PREFIX", redis.DefaultPrefix, "with Redis: prefix of every key and channel (one cluster per prefix)")
	str(&o.publicDir, "public-dir", "ROCKET_PUBLIC_DIR", "", "directory served on the HTTP port; empty serves the built-in chat page")
	str(&o.allowedOrigins, "allowed-origins", "ROCKET_ALLOWED_ORIGINS", "", "comma-separated origin host patterns allowed besides same-origin, e.g. example.com,*.example.com,localhost:*")
	str(&o.logLevel, "log-level", "ROCKET_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&o.logFormat, "log-format", "ROCKET_LOG_FORMAT", "text", "text or json")
	dur(&o.shutdownTimeout, "shutdown-timeout", "ROCKET_SHUTDOWN_TIMEOUT", 10*time.Second, "how long a graceful shutdown may take")
	num(&o.cfg.MaxFrameBytes, "max-frame-bytes", "ROCKET_MAX_FRAME_BYTES", d.MaxFrameBytes, "largest frame a client may send")
	num(&o.cfg.MaxDepth, "max-depth", "ROCKET_MAX_DEPTH", d.MaxDepth, "deepest JSON nesting of a frame")
	num(&o.cfg.MaxCommandsPerFrame, "max-commands", "ROCKET_MAX_COMMANDS_PER_FRAME", d.MaxCommandsPerFrame, "most commands in one frame")
	float(&o.cfg.CommandRate, "command-rate", "ROCKET_COMMAND_RATE", d.CommandRate, "commands per second per client (negative: no limit)")
	num(&o.cfg.CommandBurst, "command-burst", "ROCKET_COMMAND_BURST", d.CommandBurst, "commands a client may send at once above the rate")
	num(&o.cfg.MaxRateLimited, "max-rate-limited", "ROCKET_MAX_RATE_LIMITED", d.MaxRateLimited, "commands in a row a client may have refused for the rate limit before it is disconnected (1008); negative: never")
	num(&o.cfg.MaxPendingBytes, "max-pending-bytes", "ROCKET_MAX_PENDING_BYTES", d.MaxPendingBytes, "output buffered for a slow client before it is disconnected")
	dur(&o.cfg.PingInterval, "ping-interval", "ROCKET_PING_INTERVAL", d.PingInterval, "how often clients are pinged")
	dur(&o.cfg.PongTimeout, "pong-timeout", "ROCKET_PONG_TIMEOUT", d.PongTimeout, "how long past a ping a silent client is kept")
	num(&o.cfg.MailboxSize, "mailbox-size", "ROCKET_MAILBOX_SIZE", d.MailboxSize, "messages kept for an away client")
	num(&o.cfg.MailboxBytes, "mailbox-bytes", "ROCKET_MAILBOX_BYTES", d.MailboxBytes, "bytes kept in a client's mailbox; a larger message is refused")
	dur(&o.cfg.MailboxTTL, "mailbox-ttl", "ROCKET_MAILBOX_TTL", d.MailboxTTL, "how long an away client can resume")
	num(&o.cfg.MaxInputBytes, "max-input-bytes", "ROCKET_MAX_INPUT_BYTES", 0, "bytes read from a client and not yet handled, past which it is not read (0: 4 x max-frame-bytes)")
	num(&o.cfg.MaxConnections, "max-connections", "ROCKET_MAX_CONNECTIONS", 0, "most WebSocket connections open on this node, HTTP 503 beyond (0: no cap)")
	num(&o.cfg.MaxConnectionsPerIP, "max-connections-per-ip", "ROCKET_MAX_CONNECTIONS_PER_IP", 0, "most WebSocket connections open on this node from one client address, HTTP 429 beyond (0: no cap)")
	str(&o.trustedProxies, "trusted-proxies", "ROCKET_TRUSTED_PROXIES", "", "comma-separated CIDRs of proxies whose X-Forwarded-For names the client, e.g. 10.0.0.0/8,::1/128")
	dur(&o.idleTimeout, "http-idle-timeout", "ROCKET_HTTP_IDLE_TIMEOUT", defaultIdleTimeout, "how long an idle HTTP keep-alive connection is kept, on both ports (WebSockets are not affected)")
	num(&o.maxHeaderBytes, "max-header-bytes", "ROCKET_MAX_HEADER_BYTES", defaultMaxHeaderBytes, "largest HTTP request header, on both ports (HTTP 431 beyond)")
	// The secret's variable is not shown as the flag's default, so that -h
	// does not print it; it is read after parsing (the flag still wins).
	fset.StringVar(&o.sec.jwtHMACSecret, "jwt-hmac-secret", "", "HS256 secret (at least 32 bytes) of the JWTs clients must present; visible to ps as a flag, prefer the variable or -jwt-hmac-secret-file (ROCKET_JWT_HMAC_SECRET)")
	str(&o.sec.jwtHMACSecretFile, "jwt-hmac-secret-file", "ROCKET_JWT_HMAC_SECRET_FILE", "", "file holding the HS256 secret of the JWTs clients must present (one trailing newline ignored)")
	str(&o.sec.jwtRSAPublicKeyFile, "jwt-rsa-public-key-file", "ROCKET_JWT_RSA_PUBLIC_KEY_FILE", "", "PEM file of the RSA public key (2048 bits or more) checking RS256 JWTs clients must present")
	str(&o.sec.jwtIssuer, "jwt-issuer", "ROCKET_JWT_ISSUER", "", "with a JWT key: the iss claim tokens must carry")
	str(&o.sec.jwtAudience, "jwt-audience", "ROCKET_JWT_AUDIENCE", "", "with a JWT key: a value the aud claim of tokens must hold")
	dur(&o.sec.jwtLeeway, "jwt-leeway", "ROCKET_JWT_LEEWAY", 0, "with a JWT key: clock skew allowed when checking exp, nbf and iat")
	str(&o.sec.tlsCertFile, "tls-cert-file", "ROCKET_TLS_CERT_FILE", "", "PEM certificate (chain) to serve both ports over TLS (wss://, https://); needs -tls-key-file")
	str(&o.sec.tlsKeyFile, "tls-key-file", "ROCKET_TLS_KEY_FILE", "", "PEM private key of -tls-cert-file")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := fset.Parse(args); err != nil {
		return nil, err
	}
	if fset.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fset.Args())
	}
	if o.sec.jwtHMACSecret == "" {
		o.sec.jwtHMACSecret = getenv("ROCKET_JWT_HMAC_SECRET")
	}
	if o.redisURL == "" {
		o.redisURL = getenv("ROCKET_REDIS_URL")
	}
	o.cfg.AllowedOrigins = splitList(o.allowedOrigins)
	o.cfg.TrustedProxies = splitList(o.trustedProxies)
	// Zero means the default, as in rocket.Config: net/http would take it
	// for no limit.
	if o.idleTimeout == 0 {
		o.idleTimeout = defaultIdleTimeout
	}
	if o.maxHeaderBytes == 0 {
		o.maxHeaderBytes = defaultMaxHeaderBytes
	}
	if o.idleTimeout < 0 {
		return nil, fmt.Errorf("ROCKET_HTTP_IDLE_TIMEOUT must not be negative, got %s", o.idleTimeout)
	}
	if o.maxHeaderBytes < 0 {
		return nil, fmt.Errorf("ROCKET_MAX_HEADER_BYTES must not be negative, got %d", o.maxHeaderBytes)
	}
	return o, nil
}

// Defaults of the limits on both HTTP servers.
const (
	defaultIdleTimeout    = 60 * time.Second
	defaultMaxHeaderBytes = 64 << 10
	readHeaderTimeout     = 10 * time.Second
)

// splitList splits a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(o *options, out io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(out, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(out, hopts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", o.logFormat)
	}
}

// run runs the server until ctx ends. When ready is not nil it receives the
// two listeners' addresses once they accept connections.
func run(ctx context.Context, args []string, getenv func(string) string, logOut io.Writer, ready chan<- [2]net.Addr) error {
	o, err := parseOptions(args, getenv, logOut)
	if err != nil {
		return err
	}
	log, err := newLogger(o, logOut)
	if err != nil {
		return err
	}
	public, err := publicFS(o.publicDir)
	if err != nil {
		return err
	}
	sec, err := loadSecurity(&o.sec)
	if err != nil {
		return err
	}
	o.cfg.Logger = log
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.cfg.Metrics = registry
	if o.redisURL != "" {
		b, err := redis.New(ctx, redis.Config{
			URL:               o.redisURL,
			Prefix:            o.redisPrefix,
			MailboxSize:       o.cfg.MailboxSize,
			MailboxBytes:      o.cfg.MailboxBytes,
			MailboxTTL:        o.cfg.MailboxTTL,
			HeartbeatInterval: o.heartbeat,
			Logger:            log,
		})
		if err != nil {
			return fmt.Errorf("ROCKET_REDIS_URL: %w", err)
		}
		defer b.Close()
		o.cfg.Broker = b
		log.Info("joined cluster on Redis", "redis", redactURL(o.redisURL))
	}
	srv, err := rocket.New(o.cfg)
	if err != nil {
		return err
	}
	demo.Register(srv)
	if sec.verifier != nil {
		srv.OnConnect(sec.verifier.Connect)
		log.Info("JWT required to connect", "hs256", o.sec.jwtHMACSecret != "" || o.sec.jwtHMACSecretFile != "", "rs256", o.sec.jwtRSAPublicKeyFile != "", "issuer", o.sec.jwtIssuer, "audience", o.sec.jwtAudience)
	}
	// Listen first: a port in use is reported before anything starts.
	// (Shutdown of a server not started releases what New took.)
	wsLn, err := net.Listen("tcp", o.wsAddr)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("listen for WebSockets on %s: %w", o.wsAddr, err)
	}
	httpLn, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		wsLn.Close()
		_ = srv.Shutdown(context.Background())
		return fmt.Errorf("listen for HTTP on %s: %w", o.httpAddr, err)
	}
	if err := srv.Start(ctx); err != nil {
		wsLn.Close()
		httpLn.Close()
		return err
	}
	wsLn, httpLn = sec.listenTLS(wsLn, httpLn)
	// net/http's own errors (TLS handshakes, panics) go to the log too.
	httpLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	// The same limits on both ports. IdleTimeout closes a keep-alive
	// connection waiting for its next request; a connection upgraded to a
	// WebSocket has left net/http and is not affected by either timeout.
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       o.idleTimeout,
			MaxHeaderBytes:    o.maxHeaderBytes,
			ErrorLog:          httpLog,
		}
	}
	wsServer := newServer(srv)
	httpServer := newServer(httpMux(srv, public, promhttp.HandlerFor(registry, promhttp.HandlerOpts{}), o.pprof))
	serveErr := make(chan error, 2)
	go func() { serveErr <- wsServer.Serve(wsLn) }()
	go func() { serveErr <- httpServer.Serve(httpLn) }()
	wsScheme, httpScheme := sec.schemes()
	log.Info("rocket listening", "websocket", wsScheme+"://"+wsLn.Addr().String()+"/", "http", httpScheme+"://"+httpLn.Addr().String()+"/", "server", srv.ID())
	if ready != nil {
		ready <- [2]net.Addr{wsLn.Addr(), httpLn.Addr()}
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-serveErr:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// Stop accepting first, then close the clients with 1001.
	errs := []error{runErr}
	for _, hs := range []*http.Server{wsServer, httpServer} {
		if err := hs.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	errs = append(errs, srv.Shutdown(sctx))
	return errors.Join(errs...)
}

// httpMux serves the public directory, the JavaScript client, WebSockets
// at /ws, health checks and the Prometheus metrics.
func httpMux(srv *rocket.Server, public fs.FS, metrics http.Handler, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /ws", srv)
	clientFiles := http.FileServer(http.FS(client.Files))
	mux.Handle("GET /rocket.js", clientFiles)
	mux.Handle("GET /rocket.d.ts", clientFiles)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := srv.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /", staticFiles(public))
	return mux
}

// redactURL hides the password of a Redis URL for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
