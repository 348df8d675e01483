package jwtauth_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/jwtauth"
)

// A server that only accepts clients with a token from its identity
// provider, and an action that knows who is calling.
func Example() {
	secret := []byte("an HS256 secret of at least 32 bytes, random in real life")
	v, err := jwtauth.New(jwtauth.Config{HMACSecret: secret, Issuer: "https://auth.example.com"})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := rocket.New(rocket.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	srv.OnConnect(v.Connect)
	srv.HandleFunc("Me.show", func(c *rocket.Context) (any, error) {
		return fmt.Sprintf("%s (%s)", c.Client().UserID(), c.Client().Meta()["name"]), nil
	})
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	// The identity provider issues a short-lived token.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":  "https://auth.example.com",
		"sub":  "user-42",
		"name": "Ann",
		"exp":  time.Now().Add(time.Minute).Unix(),
	}).SignedString(secret)
	if err != nil {
		log.Fatal(err)
	}

	// Without a token the upgrade is refused.
	_, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		log.Fatal("connected without a token")
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))

	// With one (here in the header; browsers put it in the URL:
	// new Rocket(url + "?token=" + token)), the client is user-42.
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // the welcome
		log.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"ref":1,"Me.show":null}`)); err != nil {
		log.Fatal(err)
	}
	_, reply, err := ws.Read(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output:
	// 401 jwtauth: no token: send it as "Authorization: Bearer <token>", or in the query parameter "token"
	// {"ref":1,"action":"Me.show","result":"user-42 (Ann)"}
}
