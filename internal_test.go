package rocket

import (
	"context"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket/broker"
)

// notInstrumented lists the broker methods the server does not time, with
// why.
var notInstrumented = map[string]string{
	"Close": "called once, at shutdown, after the last observation",
}

// TestEveryBrokerMethodInstrumented calls each method of broker.Broker on
// the server's broker and checks that it was timed in
// rocket_broker_duration_seconds: a method added to the interface without
// its wrapper in metrics.go would reach the broker unobserved through the
// embedded interface, and fails here.
func TestEveryBrokerMethodInstrumented(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.broker.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.metrics.brokerDuration)
	observed := func() uint64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, f := range families {
			for _, m := range f.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
		return n
	}
	ctx := context.Background()
	ctxType := reflect.TypeFor[context.Context]()
	handlerType := reflect.TypeFor[broker.Handler]()
	b := reflect.ValueOf(s.broker)
	iface := reflect.TypeFor[broker.Broker]()
	for i := range iface.NumMethod() {
		name := iface.Method(i).Name
		if _, ok := notInstrumented[name]; ok {
			continue
		}
		m := b.MethodByName(name)
		args := make([]reflect.Value, m.Type().NumIn())
		for j := range args {
			switch in := m.Type().In(j); in {
			case ctxType:
				args[j] = reflect.ValueOf(ctx)
			case handlerType:
				args[j] = reflect.ValueOf(brokerHandler{s})
			default:
				args[j] = reflect.Zero(in)
			}
		}
		before := observed()
		m.Call(args) // errors (unknown client, empty ids) are observed too
		if got := observed() - before; got != 1 {
			t.Errorf("broker.Broker.%s: %d observations in rocket_broker_duration_seconds, want 1 (wrap it in metrics.go, or list it in notInstrumented)", name, got)
		}
	}
}

// TestDefaultConfig: DefaultConfig is what New makes of a zero Config.
func TestDefaultConfig(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got.Logger = nil
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Config{} with defaults:\n%+v\nDefaultConfig():\n%+v", got, want)
	}
	if d := DefaultConfig(); d.MaxFrameBytes != 64<<10 || d.MailboxSize != 128 || d.MaxInputBytes != 4*d.MaxFrameBytes {
		t.Fatalf("DefaultConfig() = %+v, not the documented defaults", d)
	}
}
