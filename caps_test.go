package rocket_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// A connection's place under the caps is given back however its upgrade
// ends before a client exists: refused by the hook, a hook that panics, a
// request that is not an upgrade; and when an upgraded one closes.
func TestConnectionCapsReleased(t *testing.T) {
	var calls atomic.Int32
	n := startNode(t, rocket.Config{MaxConnections: 1, MaxConnectionsPerIP: 1}, func(s *rocket.Server) {
		s.OnConnect(func(e *rocket.ConnectEvent) (rocket.ConnectReply, error) {
			switch calls.Add(1) {
			case 1:
				return rocket.ConnectReply{}, rocket.Errorf(rocket.CodeUnauthorized, "no")
			case 2:
				panic("hook fails")
			}
			return rocket.ConnectReply{}, nil
		})
	})
	status := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		// A fresh connection each time: net/http would retry a request
		// dropped on a reused one.
		opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
		c, resp, err := websocket.Dial(ctx, n.url, opts)
		if err == nil {
			c.CloseNow()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			return 0 // the connection was dropped (the panic)
		}
		return resp.StatusCode
	}
	if got := status(); got != http.StatusUnauthorized {
		t.Fatalf("first dial: %d, want 401", got)
	}
	if got := status(); got != 0 {
		t.Fatalf("second dial (the hook panics): %d, want a dropped connection", got)
	}
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := noKeepAlive.Get(n.hs.URL) // not an upgrade: fails in Upgrade
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET: %d, want 400", resp.StatusCode)
	}
	c := dial(t, n.url, "")
	if got := status(); got != http.StatusServiceUnavailable {
		t.Fatalf("second connection: %d, want 503", got)
	}
	c.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, func() error {
		if got := status(); got != http.StatusSwitchingProtocols {
			return fmt.Errorf("after the close: %d, want the connection accepted", got)
		}
		return nil
	})
}
