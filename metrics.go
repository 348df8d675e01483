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
// It is made of one wrapper per role of broker.Broker, each holding its
// role as a field, not embedded: a method added to a role has no
// implementation here until it is written, timed, in its role's wrapper,
// and the server does not compile without it. TestEveryBrokerMethodInstrumented
// checks that each wrapper times what it forwards.
type instrumented struct {
	timedServers
	timedDirectory
	timedDelivery
	timedRooms
	timedPresences
	timedUsers
	b broker.Broker
	m *metrics
}

func newInstrumented(b broker.Broker, m *metrics) instrumented {
	return instrumented{
		timedServers:   timedServers{b, m},
		timedDirectory: timedDirectory{b, m},
		timedDelivery:  timedDelivery{b, m},
		timedRooms:     timedRooms{b, m},
		timedPresences: timedPresences{b, m},
		timedUsers:     timedUsers{b, m},
		b:              b,
		m:              m,
	}
}

var (
	_ broker.Broker    = instrumented{}
	_ broker.Servers   = timedServers{}
	_ broker.Directory = timedDirectory{}
	_ broker.Delivery  = timedDelivery{}
	_ broker.Rooms     = timedRooms{}
	_ broker.Presences = timedPresences{}
	_ broker.Users     = timedUsers{}
	// Server.Ready relies on the wrapped broker always being a Checker.
	_ broker.Checker = instrumented{}
)

// observeBroker records a broker call of op that started at start and
// returned err.
func (m *metrics) observeBroker(op string, start time.Time, err error) {
	m.brokerDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, broker.ErrUnknownClient) && !errors.Is(err, broker.ErrBadSession) && !errors.Is(err, broker.ErrTooLarge) {
		m.brokerErrors.WithLabelValues(op).Inc()
	}
}

// timed calls f, a broker call of op, and observes it.
func timed[T any](m *metrics, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	m.observeBroker(op, start, err)
	return v, err
}

// timedErr is timed for a broker call that returns only an error.
func timedErr(m *metrics, op string, f func() error) error {
	start := time.Now()
	err := f()
	m.observeBroker(op, start, err)
	return err
}

// Ready asks the broker whether new clients can connect (broker.Checker),
// or makes one Stats round trip for brokers that cannot tell.
func (b instrumented) Ready(ctx context.Context) error {
	return timedErr(b.m, "ready", func() error {
		if c, ok := b.b.(broker.Checker); ok {
			return c.Ready(ctx)
		}
		_, err := b.b.Stats(ctx)
		return err
	})
}

func (b instrumented) Stats(ctx context.Context) (broker.Stats, error) {
	return timed(b.m, "stats", func() (broker.Stats, error) { return b.b.Stats(ctx) })
}

// Close is not timed: it is called once, at shutdown, after the last
// observation.
func (b instrumented) Close() error { return b.b.Close() }

// timedServers times the calls of broker.Servers.
type timedServers struct {
	b broker.Servers
	m *metrics
}

func (w timedServers) RegisterServer(ctx context.Context, h broker.Handler) (string, error) {
	return timed(w.m, "register_server", func() (string, error) { return w.b.RegisterServer(ctx, h) })
}

func (w timedServers) UnregisterServer(ctx context.Context, serverID string) error {
	return timedErr(w.m, "unregister_server", func() error { return w.b.UnregisterServer(ctx, serverID) })
}

// timedDirectory times the calls of broker.Directory.
type timedDirectory struct {
	b broker.Directory
	m *metrics
}

func (w timedDirectory) NewClientID(ctx context.Context) (string, error) {
	return timed(w.m, "new_client_id", func() (string, error) { return w.b.NewClientID(ctx) })
}

func (w timedDirectory) Connect(ctx context.Context, c broker.Client) error {
	return timedErr(w.m, "connect", func() error { return w.b.Connect(ctx, c) })
}

func (w timedDirectory) Resume(ctx context.Context, clientID, session, serverID string, ack uint64) (broker.Resumed, error) {
	return timed(w.m, "resume", func() (broker.Resumed, error) { return w.b.Resume(ctx, clientID, session, serverID, ack) })
}

func (w timedDirectory) Disconnect(ctx context.Context, clientID, serverID string) error {
	return timedErr(w.m, "disconnect", func() error { return w.b.Disconnect(ctx, clientID, serverID) })
}

func (w timedDirectory) DisconnectWith(ctx context.Context, clientID, serverID string, unsent [][]byte) error {
	return timedErr(w.m, "disconnect_with", func() error { return w.b.DisconnectWith(ctx, clientID, serverID, unsent) })
}

func (w timedDirectory) Forget(ctx context.Context, clientID string) error {
	return timedErr(w.m, "forget", func() error { return w.b.Forget(ctx, clientID) })
}

func (w timedDirectory) Lookup(ctx context.Context, clientID string) (broker.Client, error) {
	return timed(w.m, "lookup", func() (broker.Client, error) { return w.b.Lookup(ctx, clientID) })
}

// timedDelivery times the calls of broker.Delivery.
type timedDelivery struct {
	b broker.Delivery
	m *metrics
}

func (w timedDelivery) Send(ctx context.Context, clientID string, data []byte) error {
	return timedErr(w.m, "send", func() error { return w.b.Send(ctx, clientID, data) })
}

func (w timedDelivery) Ack(ctx context.Context, clientID string, seq uint64) error {
	return timedErr(w.m, "ack", func() error { return w.b.Ack(ctx, clientID, seq) })
}

// timedRooms times the calls of broker.Rooms.
type timedRooms struct {
	b broker.Rooms
	m *metrics
}

func (w timedRooms) Subscribe(ctx context.Context, serverID, room string) error {
	return timedErr(w.m, "subscribe", func() error { return w.b.Subscribe(ctx, serverID, room) })
}

func (w timedRooms) Unsubscribe(ctx context.Context, serverID, room string) error {
	return timedErr(w.m, "unsubscribe", func() error { return w.b.Unsubscribe(ctx, serverID, room) })
}

func (w timedRooms) Publish(ctx context.Context, from, room string, data []byte) error {
	return timedErr(w.m, "publish", func() error { return w.b.Publish(ctx, from, room, data) })
}

// timedPresences times the calls of broker.Presences.
type timedPresences struct {
	b broker.Presences
	m *metrics
}

func (w timedPresences) PresenceAdd(ctx context.Context, room string, m broker.Member) error {
	return timedErr(w.m, "presence_add", func() error { return w.b.PresenceAdd(ctx, room, m) })
}

func (w timedPresences) PresenceRemove(ctx context.Context, room, clientID, serverID string) (bool, error) {
	return timed(w.m, "presence_remove", func() (bool, error) { return w.b.PresenceRemove(ctx, room, clientID, serverID) })
}

func (w timedPresences) Presence(ctx context.Context, room string) ([]broker.Member, error) {
	return timed(w.m, "presence", func() ([]broker.Member, error) { return w.b.Presence(ctx, room) })
}

// timedUsers times the calls of broker.Users.
type timedUsers struct {
	b broker.Users
	m *metrics
}

func (w timedUsers) UserClients(ctx context.Context, userID string) ([]broker.Client, error) {
	return timed(w.m, "user_clients", func() ([]broker.Client, error) { return w.b.UserClients(ctx, userID) })
}

func (w timedUsers) SendUser(ctx context.Context, from, userID string, data []byte) ([]broker.Client, error) {
	return timed(w.m, "send_user", func() ([]broker.Client, error) { return w.b.SendUser(ctx, from, userID, data) })
}

func (w timedUsers) ForgetUser(ctx context.Context, userID, reason string) ([]broker.Client, error) {
	return timed(w.m, "forget_user", func() ([]broker.Client, error) { return w.b.ForgetUser(ctx, userID, reason) })
}
