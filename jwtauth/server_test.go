package jwtauth_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/jwtauth"
	"github.com/rocket-go/rocket/rockettest"
)

// whoAmI is an action answering with what the connect hook gave the client.
func whoAmI(c *rocket.Context, _ json.RawMessage) (map[string]any, error) {
	return map[string]any{"user": c.Client().UserID(), "name": c.Client().Meta()["name"]}, nil
}

// dialWS opens a WebSocket to url with header, returning the HTTP response
// of a refused upgrade (status and body) or the open connection after its
// welcome.
func dialWS(t *testing.T, url string, header http.Header) (*websocket.Conn, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rockettest.DefaultTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(body)
	}
	t.Cleanup(func() { ws.CloseNow() })
	if _, data, err := ws.Read(ctx); err != nil || !strings.Contains(string(data), `"welcome"`) {
		t.Fatalf("welcome: %s, %v", data, err)
	}
	return ws, http.StatusSwitchingProtocols, ""
}

// call runs Who.am with a ref on ws and returns the result.
func call(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rockettest.DefaultTimeout)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ref":1,"Who.am":null}`)); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Result map[string]any
		Error  any
	}
	if err := json.Unmarshal(data, &reply); err != nil || reply.Result == nil {
		t.Fatalf("reply %s (%v)", data, err)
	}
	return reply.Result
}

// Through a real server: refused upgrades get HTTP 401 with the reason and
// leave the server serving others; accepted clients carry the token's user
// and claims into their actions.
func TestThroughServer(t *testing.T) {
	v := newVerifier(t, jwtauth.Config{
		HMACSecret:   secret,
		RSAPublicKey: &rsaKey().PublicKey,
		Issuer:       "https://auth.example.com",
		Audience:     "rocket",
		Cookie:       "rocket_token",
	})
	app := rockettest.Start(t, rocket.Config{}, func(srv *rocket.Server) {
		srv.OnConnect(v.Connect)
		srv.Handle("Who.am", rocket.Action(whoAmI))
	})

	// Ann connects with a header, and stays connected through what follows.
	ann, status, body := dialWS(t, app.URL, http.Header{"Authorization": {"Bearer " + hs256(t, claims(nil))}})
	if ann == nil {
		t.Fatalf("ann refused: %d %s", status, body)
	}
	if got := call(t, ann); got["user"] != "ann" || got["name"] != "Ann" {
		t.Fatalf("ann is %v", got)
	}

	bad := map[string]struct {
		url    string
		header http.Header
		want   string
	}{
		"no token":      {app.URL, nil, "no token"},
		"expired":       {app.URL + "/?token=" + hs256(t, claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})), nil, "expired"},
		"alg none":      {app.URL, http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))}}, `algorithm "none" not allowed`},
		"wrong issuer":  {app.URL, http.Header{"Cookie": {"rocket_token=" + rs256(t, claims(map[string]any{"iss": "https://evil.example.com"}))}}, "wrong issuer"},
		"bad signature": {app.URL + "/?token=" + url.QueryEscape(tamper(t, hs256(t, claims(nil)))), nil, "bad signature"},
	}
	for name, tc := range bad {
		ws, status, body := dialWS(t, tc.url, tc.header)
		if ws != nil {
			t.Fatalf("%s: upgrade accepted", name)
		}
		if status != http.StatusUnauthorized || !strings.Contains(body, tc.want) {
			t.Errorf("%s: HTTP %d %q, want 401 with %q", name, status, body, tc.want)
		}
	}

	// Ann is still served, and so are new clients with RS256 tokens in
	// the query or a cookie.
	if got := call(t, ann); got["user"] != "ann" {
		t.Fatalf("ann after the refusals: %v", got)
	}
	bob := claims(map[string]any{"sub": "bob", "name": "Bob"})
	for _, how := range []struct {
		url    string
		header http.Header
	}{
		{app.URL + "/?token=" + rs256(t, bob), nil},
		{app.URL, http.Header{"Cookie": {"rocket_token=" + rs256(t, bob)}}},
	} {
		ws, status, body := dialWS(t, how.url, how.header)
		if ws == nil {
			t.Fatalf("bob refused: %d %s", status, body)
		}
		if got := call(t, ws); got["user"] != "bob" || got["name"] != "Bob" {
			t.Fatalf("bob is %v", got)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	}
	ann.Close(websocket.StatusNormalClosure, "")
}
