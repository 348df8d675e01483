package rocket_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// TestConcurrentResumesLeaveOneConnection: connections resuming one session
// at the same moment on one node end with one of them open and recorded,
// the others closed; none stays open beside it under the same id.
func TestConcurrentResumesLeaveOneConnection(t *testing.T) {
	n := startNode(t, rocket.Config{}, nil)
	first := dial(t, n.url, "")
	session := first.welcome.Session
	first.ws.CloseNow()
	waitGone(t, n, first.welcome.Client)

	const racers = 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns := make([]*websocket.Conn, racers)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			ws, _, err := websocket.Dial(ctx, n.url+"?session="+session, nil)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			conns[i] = ws
		})
	}
	wg.Wait()
	defer func() {
		for _, ws := range conns {
			if ws != nil {
				ws.CloseNow()
			}
		}
	}()
	// Each connection either answers an echo or is closed; exactly one
	// answers.
	open := 0
	for _, ws := range conns {
		if ws == nil {
			continue
		}
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ref":1,"Echo.echo":1}`)); err != nil {
			continue
		}
		answered := false
		for {
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			_, data, err := ws.Read(rctx)
			rcancel()
			if err != nil {
				break
			}
			if string(data) == `{"ref":1,"action":"Echo.echo","result":1}` {
				answered = true
				break
			}
		}
		if answered {
			open++
		}
	}
	if open != 1 {
		t.Fatalf("%d of %d racing resumes are open and answer, want 1", open, racers)
	}
	if c := n.srv.ClientCount(); c != 1 {
		t.Fatalf("ClientCount = %d, want 1", c)
	}
}
