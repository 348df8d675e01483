package rocket

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket/broker"
)

// metrics are the server's Prometheus metrics. They are registered with
// Config.Metrics when it is set; otherwise they are kept but not exported.
type metrics struct {
	clients              prometheus.GaugeFunc
	connections          prometheus.Counter
	refused              *prometheus.CounterVec
	commands             *prometheus.CounterVec
	commandDuration      *prometheus.HistogramVec
	messagesSent         prometheus.Counter
	slowClients          prometheus.Counter
	dropped              *prometheus.CounterVec
	droppedSlow          prometheus.Counter // dropped, reason slow_client
	panics               prometheus.Counter
	brokerErrors         *prometheus.CounterVec
	brokerDuration       *prometheus.HistogramVec
	mailbox              *mailboxCollector
	inputPauses          prometheus.Counter
	rateLimitDisconnects prometheus.Counter
	inputPaused          prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		clients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rocket_clients", Help: "Clients connected to this server.",
		}, func() float64 { return float64(s.ClientCount()) }),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_connections_total", Help: "WebSocket connections accepted (upgraded).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocket_connections_refused_total", Help: "Connections refused before the upgrade, by reason (origin, max_connections, max_connections_per_ip, hook, not_running).",
		}, []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocket_commands_total", Help: "Commands run, by action and outcome (ok or the error code).",
		}, []string{"action", "outcome"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rocket_command_duration_seconds",
			Help:    "Time spent running actions (middleware included), by action.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"action"}),
		messagesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_messages_sent_total", Help: "Frames handed to the transport for clients (welcomes, replies, errors, pushes, room and directed messages).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocket_messages_dropped_total", Help: "Frames for clients dropped for a bound, by reason (slow_client: queued or written for a client disconnected for not reading its output; directed messages are kept for the client's mailbox instead, and counted by rocket_mailbox_dropped_total if it overflows).",
		}, []string{"reason"}),
		slowClients: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_slow_client_disconnects_total", Help: "Clients disconnected because they did not read their output.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_action_panics_total", Help: "Panics recovered in actions.",
		}),
		brokerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rocket_broker_errors_total", Help: "Broker calls that failed, by operation (unknown clients, bad sessions and messages over the mailbox bound are not errors).",
		}, []string{"op"}),
		brokerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rocket_broker_duration_seconds",
			Help:    "Latency of broker calls, by operation.",
			Buckets: []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 2},
		}, []string{"op"}),
		rateLimitDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_rate_limit_disconnects_total", Help: "Clients disconnected (1008) after MaxRateLimited commands in a row refused for the rate limit.",
		}),
		inputPauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_input_pauses_total", Help: "Times a connection was not read because its unhandled input was over MaxInputBytes (counted when reading resumes).",
		}),
		inputPaused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rocket_input_paused_seconds_total", Help: "Time connections spent not read because their unhandled input was over MaxInputBytes (counted when reading resumes).",
		}),
		mailbox: &mailboxCollector{s: s,
			dropped: prometheus.NewDesc("rocket_mailbox_dropped_total", "Messages dropped from mailboxes over their bound in count or bytes, oldest first (broker-wide).", nil, nil),
			expired: prometheus.NewDesc("rocket_mailbox_expired_total", "Messages dropped with away clients whose session expired (broker-wide).", nil, nil),
			oom:     prometheus.NewDesc("rocket_broker_oom_errors_total", "Calls of this node's broker that its store (Redis at maxmemory) refused for want of memory, its own goroutines' (heartbeats...) included.", nil, nil),
		},
	}
	m.droppedSlow = m.dropped.WithLabelValues("slow_client")
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.clients, m.connections, m.refused, m.commands, m.commandDuration,
		m.messagesSent, m.slowClients, m.dropped, m.panics, m.brokerErrors, m.brokerDuration, m.mailbox,
		m.inputPauses, m.inputPaused, m.rateLimitDisconnects} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("rocket: register metrics: %w", err)
		}
	}
	return nil
}

// mailboxCollector reads the broker's mailbox counters at scrape time.
type mailboxCollector struct {
	s                     *Server
	dropped, expired, oom *prometheus.Desc
}

func (c *mailboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.dropped
	ch <- c.expired
	ch <- c.oom
}

func (c *mailboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.s.broker.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.dropped, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.MailDropped))
	ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(st.MailExpired))
	ch <- prometheus.MustNewConstMetric(c.oom, prometheus.CounterValue, float64(st.OutOfMemory))
}

// instrumented wraps a broker to count its failures and time its calls.
type instrumented struct {
	broker.Broker
	m *metrics
}

func (b instrumented) observe(op string, start time.Time, err error) {
	b.m.brokerDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, broker.ErrUnknownClient) && !errors.Is(err, broker.ErrBadSession) && !errors.Is(err, broker.ErrTooLarge) {
		b.m.brokerErrors.WithLabelValues(op).Inc()
	}
}

// Server.Ready relies on the wrapped broker always being a Checker.
var _ broker.Checker = instrumented{}

// Ready asks the broker whether new clients can connect (broker.Checker),
// or makes one Stats round trip for brokers that cannot tell.
func (b instrumented) Ready(ctx context.Context) error {
	start := time.Now()
	var err error
	if c, ok := b.Broker.(broker.Checker); ok {
		err = c.Ready(ctx)
	} else {
		_, err = b.Broker.Stats(ctx)
	}
	b.observe("ready", start, err)
	return err
}

func (b instrumented) Send(ctx context.Context, clientID string, data []byte) error {
	start := time.Now()
	err := b.Broker.Send(ctx, clientID, data)
	b.observe("send", start, err)
	return err
}

func (b instrumented) Publish(ctx context.Context, from, room string, data []byte) error {
	start := time.Now()
	err := b.Broker.Publish(ctx, from, room, data)
	b.observe("publish", start, err)
	return err
}

func (b instrumented) Connect(ctx context.Context, c broker.Client) error {
	start := time.Now()
	err := b.Broker.Connect(ctx, c)
	b.observe("connect", start, err)
	return err
}

func (b instrumented) Resume(ctx context.Context, clientID, session, serverID string, ack uint64) (broker.Resumed, error) {
	start := time.Now()
	r, err := b.Broker.Resume(ctx, clientID, session, serverID, ack)
	b.observe("resume", start, err)
	return r, err
}

func (b instrumented) Ack(ctx context.Context, clientID string, seq uint64) error {
	start := time.Now()
	err := b.Broker.Ack(ctx, clientID, seq)
	b.observe("ack", start, err)
	return err
}

func (b instrumented) Disconnect(ctx context.Context, clientID, serverID string) error {
	start := time.Now()
	err := b.Broker.Disconnect(ctx, clientID, serverID)
	b.observe("disconnect", start, err)
	return err
}

func (b instrumented) DisconnectWith(ctx context.Context, clientID, serverID string, unsent [][]byte) error {
	start := time.Now()
	err := b.Broker.DisconnectWith(ctx, clientID, serverID, unsent)
	b.observe("disconnect_with", start, err)
	return err
}

func (b instrumented) NewClientID(ctx context.Context) (string, error) {
	start := time.Now()
	id, err := b.Broker.NewClientID(ctx)
	b.observe("new_client_id", start, err)
	return id, err
}

func (b instrumented) Subscribe(ctx context.Context, serverID, room string) error {
	start := time.Now()
	err := b.Broker.Subscribe(ctx, serverID, room)
	b.observe("subscribe", start, err)
	return err
}

func (b instrumented) Unsubscribe(ctx context.Context, serverID, room string) error {
	start := time.Now()
	err := b.Broker.Unsubscribe(ctx, serverID, room)
	b.observe("unsubscribe", start, err)
	return err
}

func (b instrumented) PresenceAdd(ctx context.Context, room string, m broker.Member) error {
	start := time.Now()
	err := b.Broker.PresenceAdd(ctx, room, m)
	b.observe("presence_add", start, err)
	return err
}

func (b instrumented) PresenceRemove(ctx context.Context, room, clientID, serverID string) (bool, error) {
	start := time.Now()
	removed, err := b.Broker.PresenceRemove(ctx, room, clientID, serverID)
	b.observe("presence_remove", start, err)
	return removed, err
}

func (b instrumented) Presence(ctx context.Context, room string) ([]broker.Member, error) {
	start := time.Now()
	members, err := b.Broker.Presence(ctx, room)
	b.observe("presence", start, err)
	return members, err
}

func (b instrumented) UserClients(ctx context.Context, userID string) ([]broker.Client, error) {
	start := time.Now()
	clients, err := b.Broker.UserClients(ctx, userID)
	b.observe("user_clients", start, err)
	return clients, err
}

func (b instrumented) SendUser(ctx context.Context, from, userID string, data []byte) ([]broker.Client, error) {
	start := time.Now()
	clients, err := b.Broker.SendUser(ctx, from, userID, data)
	b.observe("send_user", start, err)
	return clients, err
}

func (b instrumented) ForgetUser(ctx context.Context, userID, reason string) ([]broker.Client, error) {
	start := time.Now()
	clients, err := b.Broker.ForgetUser(ctx, userID, reason)
	b.observe("forget_user", start, err)
	return clients, err
}

func (b instrumented) RegisterServer(ctx context.Context, h broker.Handler) (string, error) {
	start := time.Now()
	id, err := b.Broker.RegisterServer(ctx, h)
	b.observe("register_server", start, err)
	return id, err
}

func (b instrumented) UnregisterServer(ctx context.Context, serverID string) error {
	start := time.Now()
	err := b.Broker.UnregisterServer(ctx, serverID)
	b.observe("unregister_server", start, err)
	return err
}

func (b instrumented) Forget(ctx context.Context, clientID string) error {
	start := time.Now()
	err := b.Broker.Forget(ctx, clientID)
	b.observe("forget", start, err)
	return err
}

func (b instrumented) Lookup(ctx context.Context, clientID string) (broker.Client, error) {
	start := time.Now()
	c, err := b.Broker.Lookup(ctx, clientID)
	b.observe("lookup", start, err)
	return c, err
}

func (b instrumented) Stats(ctx context.Context) (broker.Stats, error) {
	start := time.Now()
	st, err := b.Broker.Stats(ctx)
	b.observe("stats", start, err)
	return st, err
}
