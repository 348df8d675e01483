package rocket

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestDispatchOnFakeTransport: a client on a fake transport is set up (its
// welcome written), runs a batch of commands in order with their replies,
// gets error frames for an unknown action and a bad frame, and leaves when
// the transport reports the close; no network is involved.
func TestDispatchOnFakeTransport(t *testing.T) {
	ctx := context.Background()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.HandleFunc("Echo.echo", func(c *Context) (any, error) {
		var v any
		err := c.Bind(&v)
		return v, err
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)

	cl := newClient(s, "")
	fc := &fakeConn{}
	cl.out.conn = fc
	s.conns.Add(1)
	s.setup(cl, connectQuery{})
	if st := cl.out.state(); st != connReady {
		t.Fatalf("state after setup %v, want ready", st)
	}
	if s.Client(cl.ID()) != cl {
		t.Fatal("client not recorded")
	}
	cl.onMessage(true, []byte(`[{"ref":1,"Echo.echo":"a"},{"ref":2,"Echo.echo":"b"}]`))
	cl.onMessage(true, []byte(`{"ref":3,"Nope.nope":1}`))
	cl.onMessage(true, []byte(`nonsense`))
	got := fc.written()
	if len(got) != 5 {
		t.Fatalf("frames %q, want a welcome and 4 more", got)
	}
	if !strings.HasPrefix(got[0], `{"welcome":`) || !strings.Contains(got[0], `"client":"`+cl.ID()+`"`) {
		t.Errorf("first frame %q is not the client's welcome", got[0])
	}
	expectFrames(t, "replies", got[1:3],
		`{"ref":1,"action":"Echo.echo","result":"a"}`,
		`{"ref":2,"action":"Echo.echo","result":"b"}`)
	if !strings.Contains(got[3], `"ref":3`) || !strings.Contains(got[3], CodeUnknownAction) {
		t.Errorf("unknown action answered %q", got[3])
	}
	if !strings.Contains(got[4], CodeBadFrame) {
		t.Errorf("bad frame answered %q", got[4])
	}

	cl.onClose(nil)
	if s.Client(cl.ID()) != nil {
		t.Error("client still recorded after its close")
	}
	rec, err := s.broker.Lookup(ctx, cl.ID())
	if err != nil || rec.Server != "" {
		t.Errorf("directory after the close: %+v, %v; want the client away", rec, err)
	}
	if err := cl.Send("late"); !errors.Is(err, ErrUnknownClient) {
		t.Errorf("Send after the close: %v, want ErrUnknownClient", err)
	}
}
