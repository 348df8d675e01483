package rocket

import (
	"context"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rocket-go/rocket/broker"
)

// brokerRoles lists the roles that broker.Broker embeds; every method of
// each is checked. A role added to Broker must be listed here (the test
// fails until it is).
var brokerRoles = []reflect.Type{
	reflect.TypeFor[broker.Servers](),
	reflect.TypeFor[broker.Directory](),
	reflect.TypeFor[broker.Delivery](),
	reflect.TypeFor[broker.Rooms](),
	reflect.TypeFor[broker.Presences](),
	reflect.TypeFor[broker.Users](),
}

// brokerOwn lists the methods that broker.Broker declares itself, beside
// its roles, and whether the server times them (with why not).
var brokerOwn = map[string]string{
	"Stats": "",
	"Close": "called once, at shutdown, after the last observation",
}

// TestEveryBrokerMethodInstrumented calls each method of each role of
// broker.Broker, and of Broker itself, on the server's broker and checks
// that it was timed in rocket_broker_duration_seconds: a wrapper in
// metrics.go that forwarded a call without timing it fails here, naming
// the role and the method. It also fails when Broker has a method that is
// neither in a role listed in brokerRoles nor in brokerOwn (a role added
// to Broker and not listed here), or when a listed role is not part of
// Broker.
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
	check := func(iface, name string) {
		t.Helper()
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
			t.Errorf("%s.%s: %d observations in rocket_broker_duration_seconds, want 1 (time it in its wrapper in metrics.go)", iface, name, got)
		}
	}

	brokerType := reflect.TypeFor[broker.Broker]()
	inRole := make(map[string]bool)
	for _, role := range brokerRoles {
		if !brokerType.Implements(role) {
			t.Errorf("%v is listed in brokerRoles but is not part of broker.Broker", role)
			continue
		}
		for i := range role.NumMethod() {
			name := role.Method(i).Name
			inRole[name] = true
			check(role.String(), name)
		}
	}
	for i := range brokerType.NumMethod() {
		name := brokerType.Method(i).Name
		if inRole[name] {
			continue
		}
		why, own := brokerOwn[name]
		switch {
		case !own:
			t.Errorf("broker.Broker.%s is in none of the roles listed in brokerRoles: list its role there (or, if Broker declares it itself, in brokerOwn)", name)
		case why == "":
			check(brokerType.String(), name)
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
