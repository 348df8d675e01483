package rocket

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/protocol"
)

// Config configures a Server. The zero value of every field means the
// documented default, so Config{} is a working single-node configuration.
type Config struct {
	// Broker connects this server to the others of its cluster. Nil means
	// an in-memory broker private to this server (one node, no external
	// service), created with MailboxSize, MailboxBytes and MailboxTTL and closed by
	// Shutdown. A broker given here is not closed by Shutdown.
	Broker broker.Broker

	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// Metrics, when set, gets the server's Prometheus metrics registered
	// (rocket_clients, rocket_commands_total, rocket_command_duration_seconds,
	// rocket_broker_duration_seconds and the others listed in docs/design.md).
	// Nil means the metrics are not exported.
	Metrics prometheus.Registerer

	// MaxFrameBytes is the largest frame a client may send. A larger frame
	// is answered with a too_large error frame and the connection stays
	// open; a frame over 4×MaxFrameBytes closes the connection with code
	// 1009 without being read. Zero means 64 KiB.
	MaxFrameBytes int
	// MaxDepth is the deepest JSON nesting a frame may have. Zero means 32.
	MaxDepth int
	// MaxCommandsPerFrame is the most commands one frame may carry. Zero
	// means 100.
	MaxCommandsPerFrame int
	// CommandRate is the sustained number of commands per second a client
	// may send, and CommandBurst how many it may send at once above that
	// rate. Commands over the rate get a rate_limited error. Zero means 50
	// per second with a burst of 100; a negative CommandRate turns the
	// limit off.
	CommandRate  float64
	CommandBurst int
	// MaxRateLimited is how many commands in a row a client may have
	// refused for the rate limit before it is disconnected with close
	// code 1008 (reason "rate limit exceeded"): a client that keeps
	// sending far over its rate costs the node a decoding and an error
	// frame per command. A command that runs starts the count again.
	// Zero means 1000; a negative value never disconnects.
	MaxRateLimited int
	// MaxPendingBytes bounds the output buffered for a client that does not
	// read as fast as it is sent to (beyond what the kernel buffers). A
	// client over the bound is disconnected (its connection dropped: no close
	// frame can reach it) and its later messages go to its mailbox. The
	// mail a resume hands over is not held to it at once: it is written as
	// the client reads it, never more than the bound buffered, and a client
	// that takes none of it for PongTimeout is disconnected the same way,
	// with the mail not yet written kept for its next resume. Output queued
	// while a client is set up or handed its mail counts against the same
	// bound. Zero means 1 MiB.
	MaxPendingBytes int

	// PingInterval is how often the server pings each client. Zero means
	// 25 seconds.
	PingInterval time.Duration
	// PongTimeout is how long past a ping the server waits for a sign of
	// life (a pong or any frame) before it closes the connection. Zero
	// means 10 seconds.
	PongTimeout time.Duration

	// AllowedOrigins lists the origins, besides the request's own host, from
	// which browsers may connect. Each entry is matched against the Origin
	// header's host (with its port, if any) using path.Match, for example
	// "example.com", "*.example.com" or "localhost:*". An entry "*" allows
	// every origin. Requests without an Origin header (non-browser clients)
	// are allowed. Empty means same-origin only.
	AllowedOrigins []string

	// MailboxSize is how many messages are kept for an away client, the
	// oldest dropped first, and MailboxTTL how long an away client can
	// resume its session. They configure the default in-memory broker; a
	// broker given in Broker has its own settings. Zero means 128 messages
	// and 2 minutes.
	MailboxSize int
	MailboxTTL  time.Duration
	// MailboxBytes bounds the bytes kept in one client's mailbox (the sum
	// of its messages), the oldest dropped first, in the default in-memory
	// broker (give a Broker the same bound). Send and SendUser refuse a
	// message larger than MailboxBytes with a too_large *Error, wherever
	// its client is. Zero means 1 MiB (broker.DefaultMailboxBytes).
	MailboxBytes int

	// MaxInputBytes bounds the bytes read from one connection and not yet
	// handled (frames waiting for their commands to run): past it the
	// connection is not read until half of it is handled, so that TCP
	// slows the sender down. A frame still being received is bounded apart,
	// by 4×MaxFrameBytes. Zero means 4×MaxFrameBytes; a negative value is
	// invalid.
	MaxInputBytes int

	// MaxConnections caps the WebSocket connections open on this server:
	// an upgrade beyond it is refused with HTTP 503. Zero means no cap; a
	// negative value is invalid.
	MaxConnections int
	// MaxConnectionsPerIP caps the WebSocket connections open on this
	// server from one client address (see TrustedProxies): an upgrade
	// beyond it is refused with HTTP 429. Zero means no cap; a negative
	// value is invalid.
	MaxConnectionsPerIP int
	// TrustedProxies lists the proxies whose X-Forwarded-For header names
	// the client, as CIDR prefixes ("10.0.0.0/8", "fd00::/8") or single
	// addresses. A connection's client address is its TCP peer's, unless
	// the peer is in this list: then it is the right-most address of
	// X-Forwarded-For that is not itself in the list (the left-most if all
	// are; the peer's if the header is missing or unreadable). Empty means
	// no proxy is trusted and X-Forwarded-For is ignored.
	TrustedProxies []string
}

// defaults holds the default of each Config field that has one, the one
// definition of them (the field docs state them; cmd/rocket's flags take
// them from DefaultConfig). MaxInputBytes defaults to 4 × MaxFrameBytes.
var defaults = Config{
	MaxFrameBytes:       64 << 10,
	MaxDepth:            protocol.DefaultMaxDepth,
	MaxCommandsPerFrame: protocol.DefaultMaxCommands,
	CommandRate:         50,
	CommandBurst:        100,
	MaxRateLimited:      1000,
	MaxPendingBytes:     1 << 20,
	PingInterval:        25 * time.Second,
	PongTimeout:         10 * time.Second,
	MailboxSize:         broker.DefaultMailboxSize,
	MailboxBytes:        broker.DefaultMailboxBytes,
	MailboxTTL:          broker.DefaultMailboxTTL,
}

// DefaultConfig returns the values New gives to a Config's zero fields:
// every limit and interval with a default, MaxInputBytes (4 ×
// MaxFrameBytes) included. Logger and Broker are nil (New uses
// slog.Default and an in-memory broker), and the caps that default to
// none (MaxConnections, MaxConnectionsPerIP) are zero.
func DefaultConfig() Config {
	d := defaults
	d.MaxInputBytes = 4 * d.MaxFrameBytes
	return d
}

// withDefaults returns cfg with zero fields set to their defaults, or an
// error describing the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := defaults
	setDefault(&cfg.MaxFrameBytes, d.MaxFrameBytes)
	setDefault(&cfg.MaxDepth, d.MaxDepth)
	setDefault(&cfg.MaxCommandsPerFrame, d.MaxCommandsPerFrame)
	setDefault(&cfg.CommandRate, d.CommandRate)
	setDefault(&cfg.CommandBurst, d.CommandBurst)
	setDefault(&cfg.MaxRateLimited, d.MaxRateLimited)
	setDefault(&cfg.MaxPendingBytes, d.MaxPendingBytes)
	setDefault(&cfg.PingInterval, d.PingInterval)
	setDefault(&cfg.PongTimeout, d.PongTimeout)
	setDefault(&cfg.MailboxSize, d.MailboxSize)
	setDefault(&cfg.MailboxTTL, d.MailboxTTL)
	setDefault(&cfg.MailboxBytes, d.MailboxBytes)

	var errs []error
	positive := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", name, v))
		}
	}
	positive("MaxFrameBytes", int64(cfg.MaxFrameBytes))
	positive("MaxDepth", int64(cfg.MaxDepth))
	positive("MaxCommandsPerFrame", int64(cfg.MaxCommandsPerFrame))
	positive("CommandBurst", int64(cfg.CommandBurst))
	positive("MaxPendingBytes", int64(cfg.MaxPendingBytes))
	positive("PingInterval", int64(cfg.PingInterval))
	positive("PongTimeout", int64(cfg.PongTimeout))
	positive("MailboxSize", int64(cfg.MailboxSize))
	positive("MailboxTTL", int64(cfg.MailboxTTL))
	setDefault(&cfg.MaxInputBytes, 4*cfg.MaxFrameBytes)
	positive("MaxInputBytes", int64(cfg.MaxInputBytes))
	positive("MaxConnections", int64(cfg.MaxConnections))
	positive("MaxConnectionsPerIP", int64(cfg.MaxConnectionsPerIP))
	if _, err := parsePrefixes(cfg.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("TrustedProxies: %w", err))
	}
	positive("MailboxBytes", int64(cfg.MailboxBytes))
	for _, p := range cfg.AllowedOrigins {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("AllowedOrigins: bad pattern %q: %w", p, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("rocket: invalid config: %w", err)
	}
	return cfg, nil
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// originAllowed reports whether a browser on origin (the Origin header's
// value) may connect to host (the request's Host).
func originAllowed(origin, host string, patterns []string) bool {
	if origin == "" {
		return true
	}
	u := origin
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	u = strings.TrimSuffix(u, "/")
	if strings.EqualFold(u, host) {
		return true
	}
	for _, p := range patterns {
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(u)); ok {
			return true
		}
	}
	return false
}
