package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// testSecret is an HS256 secret of the minimum length.
const testSecret = "0123456789abcdef0123456789abcdef"

func hsToken(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims(changes map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "ann", "iss": "https://auth.example.com", "aud": "chat", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range changes {
		c[k] = v
	}
	return c
}

// tryDial opens a WebSocket to url; it returns the connection (after the
// welcome) or the status and body of the refused upgrade.
func tryDial(t *testing.T, url string, opts *websocket.DialOptions) (*websocket.Conn, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(body)
	}
	t.Cleanup(func() { c.CloseNow() })
	var w struct{ Welcome struct{ Client string } }
	readJSON(t, c, &w)
	if w.Welcome.Client == "" {
		t.Fatalf("no welcome from %s", url)
	}
	return c, http.StatusSwitchingProtocols, ""
}

// expectAuth dials url: with want empty, the connection must be accepted
// and serve an echo; otherwise refused with 401 and a body containing want.
func expectAuth(t *testing.T, url string, opts *websocket.DialOptions, want string) {
	t.Helper()
	c, status, body := tryDial(t, url, opts)
	if want == "" {
		if c == nil {
			t.Fatalf("refused: HTTP %d %s", status, body)
		}
		echo(t, c)
		c.Close(websocket.StatusNormalClosure, "")
		return
	}
	if c != nil || status != http.StatusUnauthorized || !strings.Contains(body, want) {
		t.Fatalf("HTTP %d %q, want 401 with %q", status, body, want)
	}
}

// echo runs Echo.echo on c and checks the reply.
func echo(t *testing.T, c *websocket.Conn) {
	t.Helper()
	write(t, c, `{"ref":7,"Echo.echo":"hi"}`)
	var reply struct {
		Ref    int
		Result string
	}
	readJSON(t, c, &reply)
	if reply.Ref != 7 || reply.Result != "hi" {
		t.Fatalf("echo reply %+v", reply)
	}
}

func TestJWTRequiredWhenASecretIsSet(t *testing.T) {
	ws, web, _ := startRocket(t, map[string]string{
		"ROCKET_JWT_HMAC_SECRET": testSecret,
		"ROCKET_JWT_ISSUER":      "https://auth.example.com",
		"ROCKET_JWT_AUDIENCE":    "chat",
	})
	good := hsToken(t, testSecret, validClaims(nil))
	for name, tc := range map[string]struct {
		url  string
		opts *websocket.DialOptions
		want string // "" when accepted, else part of the 401 body
	}{
		"no token":          {url: "ws://" + ws + "/", want: "no token"},
		"no token on /ws":   {url: "ws://" + web + "/ws", want: "no token"},
		"query":             {url: "ws://" + ws + "/?token=" + good},
		"query on /ws":      {url: "ws://" + web + "/ws?token=" + good},
		"header":            {url: "ws://" + ws + "/", opts: &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + good}}}},
		"other secret":      {url: "ws://" + ws + "/?token=" + hsToken(t, strings.ToUpper(testSecret), validClaims(nil)), want: "bad signature"},
		"expired":           {url: "ws://" + ws + "/?token=" + hsToken(t, testSecret, validClaims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})), want: "expired"},
		"wrong issuer":      {url: "ws://" + ws + "/?token=" + hsToken(t, testSecret, validClaims(map[string]any{"iss": "someone"})), want: "wrong issuer"},
		"wrong audience":    {url: "ws://" + ws + "/?token=" + hsToken(t, testSecret, validClaims(map[string]any{"aud": "billing"})), want: "wrong audience"},
		"garbage":           {url: "ws://" + ws + "/?token=garbage", want: "malformed"},
		"resume, no token":  {url: "ws://" + ws + "/?session=1.abc", want: "no token"},
		"resume with token": {url: "ws://" + ws + "/?session=1.abc&token=" + good},
	} {
		t.Run(name, func(t *testing.T) {
			expectAuth(t, tc.url, tc.opts, tc.want)
		})
	}
	// The HTTP port's pages and health checks need no token.
	resp, err := noKeepAlive.Get("http://" + web + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: HTTP %d", resp.StatusCode)
	}
	// Refusals are counted.
	resp, err = noKeepAlive.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `rocket_connections_refused_total{reason="hook"} 8`) {
		t.Errorf("/metrics does not count 8 refused connections:\n%s", grepLines(string(metrics), "refused"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func TestJWTKeysFromFiles(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "jwt.pub")
	secretFile := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ws, _, _ := startRocket(t, map[string]string{
		"ROCKET_JWT_HMAC_SECRET_FILE":    secretFile,
		"ROCKET_JWT_RSA_PUBLIC_KEY_FILE": pubFile,
	})
	rs, err := jwt.NewWithClaims(jwt.SigningMethodRS256, validClaims(nil)).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ token, want string }{
		"RS256":               {token: rs},
		"HS256":               {token: hsToken(t, testSecret, validClaims(nil))},
		"HS256 with newline":  {token: hsToken(t, testSecret+"\n", validClaims(nil)), want: "bad signature"},
		"HS256 with the PEM":  {token: hsToken(t, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), validClaims(nil)), want: "bad signature"},
		"no sub":              {token: hsToken(t, testSecret, jwt.MapClaims{"exp": time.Now().Add(time.Minute).Unix()}), want: `no "sub" claim`},
		"no expiry":           {token: hsToken(t, testSecret, jwt.MapClaims{"sub": "ann"}), want: `no "exp" claim`},
		"issuer not required": {token: hsToken(t, testSecret, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Minute).Unix()})},
	} {
		t.Run(name, func(t *testing.T) {
			expectAuth(t, "ws://"+ws+"/?token="+tc.token, nil, tc.want)
		})
	}
}

func TestBadSecurityConfiguration(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	certFile, keyFile, _ := selfSignedCert(t)
	unreadable := filepath.Join(dir, "missing")
	for name, tc := range map[string]struct {
		env  map[string]string
		want []string
	}{
		"short secret":            {map[string]string{"ROCKET_JWT_HMAC_SECRET": "hunter2"}, []string{"ROCKET_JWT_HMAC_SECRET", "7 bytes", "at least 32"}},
		"short secret file":       {map[string]string{"ROCKET_JWT_HMAC_SECRET_FILE": file("short", "hunter2\n")}, []string{"ROCKET_JWT_HMAC_SECRET_FILE", "7 bytes"}},
		"empty secret file":       {map[string]string{"ROCKET_JWT_HMAC_SECRET_FILE": file("empty", "")}, []string{"ROCKET_JWT_HMAC_SECRET_FILE", "0 bytes"}},
		"missing secret file":     {map[string]string{"ROCKET_JWT_HMAC_SECRET_FILE": unreadable}, []string{"ROCKET_JWT_HMAC_SECRET_FILE", "no such file"}},
		"secret twice":            {map[string]string{"ROCKET_JWT_HMAC_SECRET": testSecret, "ROCKET_JWT_HMAC_SECRET_FILE": file("s", testSecret)}, []string{"both set"}},
		"missing RSA key file":    {map[string]string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE": unreadable}, []string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE", "no such file"}},
		"RSA key file not PEM":    {map[string]string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE": file("k.pub", "ssh-rsa AAAAB3Nza")}, []string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE", "want a PEM"}},
		"RSA key file, EC key":    {map[string]string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE": keyFile}, []string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE", "want a PEM"}},
		"RSA key too small":       {map[string]string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE": file("small.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: smallDER})))}, []string{"ROCKET_JWT_RSA_PUBLIC_KEY_FILE", "1024 bits"}},
		"issuer without key":      {map[string]string{"ROCKET_JWT_ISSUER": "https://auth.example.com"}, []string{"ROCKET_JWT_ISSUER is set but no JWT key is"}},
		"audience without key":    {map[string]string{"ROCKET_JWT_AUDIENCE": "chat"}, []string{"ROCKET_JWT_AUDIENCE is set but no JWT key is"}},
		"certificate without key": {map[string]string{"ROCKET_TLS_CERT_FILE": certFile}, []string{"ROCKET_TLS_CERT_FILE is set but ROCKET_TLS_KEY_FILE is not"}},
		"key without certificate": {map[string]string{"ROCKET_TLS_KEY_FILE": keyFile}, []string{"ROCKET_TLS_KEY_FILE is set but ROCKET_TLS_CERT_FILE is not"}},
		"missing certificate":     {map[string]string{"ROCKET_TLS_CERT_FILE": unreadable, "ROCKET_TLS_KEY_FILE": keyFile}, []string{"ROCKET_TLS_CERT_FILE", "no such file"}},
		"certificate is a key":    {map[string]string{"ROCKET_TLS_CERT_FILE": keyFile, "ROCKET_TLS_KEY_FILE": keyFile}, []string{"ROCKET_TLS_CERT_FILE", "ROCKET_TLS_KEY_FILE"}},
		"key is a certificate":    {map[string]string{"ROCKET_TLS_CERT_FILE": certFile, "ROCKET_TLS_KEY_FILE": certFile}, []string{"ROCKET_TLS_KEY_FILE"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), nil, func(k string) string { return tc.env[k] }, io.Discard, nil)
			if err == nil {
				t.Fatal("run accepted a bad configuration")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}

func TestHelpDoesNotShowTheSecret(t *testing.T) {
	var out bytes.Buffer
	env := map[string]string{"ROCKET_JWT_HMAC_SECRET": testSecret, "ROCKET_JWT_ISSUER": "https://auth.example.com", "ROCKET_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
	_, err := parseOptions([]string{"-h"}, func(k string) string { return env[k] }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseOptions -h: %v", err)
	}
	help := out.String()
	if strings.Contains(help, testSecret) || strings.Contains(help, "hunter2") {
		t.Fatalf("-h shows a secret:\n%s", help)
	}
	for _, name := range []string{"ROCKET_JWT_HMAC_SECRET)", "ROCKET_JWT_HMAC_SECRET_FILE", "ROCKET_JWT_RSA_PUBLIC_KEY_FILE", "ROCKET_JWT_ISSUER", "ROCKET_JWT_AUDIENCE", "ROCKET_TLS_CERT_FILE", "ROCKET_TLS_KEY_FILE", "-tls-cert-file", "-tls-key-file", "https://auth.example.com"} {
		if !strings.Contains(help, name) {
			t.Errorf("-h lacks %q", name)
		}
	}
	// The flag wins over the variable.
	o, err := parseOptions([]string{"-jwt-hmac-secret", "from-flag"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || o.sec.jwtHMACSecret != "from-flag" {
		t.Fatalf("flag: %v, %q", err, o.sec.jwtHMACSecret)
	}
	o, err = parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || o.sec.jwtHMACSecret != testSecret || o.redisURL != env["ROCKET_REDIS_URL"] {
		t.Fatalf("variable: %v", err)
	}
	o, err = parseOptions([]string{"-redis-url", "redis://127.0.0.1:2/0", "-jwt-leeway", "3s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || o.redisURL != "redis://127.0.0.1:2/0" || o.sec.jwtLeeway != 3*time.Second {
		t.Fatalf("flags: %v, %q, %v", err, o.redisURL, o.sec.jwtLeeway)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to a
// temporary directory, and returns their paths and a pool trusting it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rocket test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSOnBothPorts(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	ws, web, stop := startRocket(t, map[string]string{
		"ROCKET_TLS_CERT_FILE":   certFile,
		"ROCKET_TLS_KEY_FILE":    keyFile,
		"ROCKET_JWT_HMAC_SECRET": testSecret,
	})
	trusting := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true, ForceAttemptHTTP2: true}
	t.Cleanup(trusting.CloseIdleConnections)
	t.Cleanup(h2.CloseIdleConnections)

	// HTTPS on the HTTP port, HTTP/2 included; no plain HTTP.
	for _, tr := range []*http.Transport{trusting, h2} {
		resp, err := (&http.Client{Transport: tr}).Get("https://" + web + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Fatalf("GET /healthz over %s: %d %q", resp.Proto, resp.StatusCode, body)
		}
		if tr == h2 && resp.Proto != "HTTP/2.0" {
			t.Errorf("with HTTP/2 offered, got %s", resp.Proto)
		}
	}
	resp, err := noKeepAlive.Get("http://" + web + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
	// An untrusting client refuses the self-signed certificate: TLS is
	// really served, with this certificate.
	if resp, err := noKeepAlive.Get("https://" + web + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a client that does not trust the certificate connected")
	}
	// TLS 1.1 and older are refused on both ports.
	for _, addr := range []string{ws, web} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11})
		if err == nil {
			c.Close()
			t.Fatalf("%s accepted TLS 1.1", addr)
		}
		c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("%s refused TLS 1.2: %v", addr, err)
		}
		c.Close()
	}

	// wss:// on both ports, with a token; Echo.echo and a whisper from
	// one to the other.
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: trusting}}
	token := hsToken(t, testSecret, validClaims(nil))
	a, status, body := tryDial(t, "wss://"+ws+"/?token="+token, opts)
	if a == nil {
		t.Fatalf("wss on the WebSocket port: HTTP %d %s", status, body)
	}
	b, status, body := tryDial(t, "wss://"+web+"/ws?token="+token, opts)
	if b == nil {
		t.Fatalf("wss on the HTTP port: HTTP %d %s", status, body)
	}
	echo(t, a)
	echo(t, b)
	write(t, b, `{"ref":1,"Echo.echo":{"big":"`+strings.Repeat("x", 24<<10)+`"}}`)
	var big struct{ Result struct{ Big string } }
	readJSON(t, b, &big)
	if len(big.Result.Big) != 24<<10 {
		t.Fatalf("big echo: %d bytes", len(big.Result.Big))
	}
	var ids [2]string
	for i, c := range []*websocket.Conn{a, b} {
		write(t, c, `{"ref":1,"Chat.join":{"room":"tls","name":"n`+string(rune('0'+i))+`"}}`)
		var joined struct{ Result struct{ Client string } }
		readJSON(t, c, &joined)
		ids[i] = joined.Result.Client
	}
	write(t, a, `{"Chat.whisper":{"to":"`+ids[1]+`","text":"over tls"}}`)
	var whisper struct {
		W map[string]string `json:"Chat.whisper"`
	}
	readJSON(t, b, &whisper)
	if whisper.W["text"] != "over tls" || whisper.W["from"] != ids[0] {
		t.Fatalf("whisper %v", whisper)
	}
	// Without a token, refused with 401 over TLS too.
	if c, status, _ := tryDial(t, "wss://"+ws+"/", opts); c != nil || status != http.StatusUnauthorized {
		t.Fatalf("no token over wss: HTTP %d", status)
	}

	// Graceful shutdown closes wss clients with 1001 too.
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	expectGoingAway(t, a, b)
}
