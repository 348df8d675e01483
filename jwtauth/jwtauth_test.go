package jwtauth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/jwtauth"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent()) // nbio starts its default engine's pool at init
}

var (
	secret      = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
	// RSA keys take a while to generate: once per test binary.
	rsaKey      = sync.OnceValue(func() *rsa.PrivateKey { return genRSA(2048) })
	otherRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return genRSA(2048) })
)

func genRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// claims returns valid claims for user ann, expiring in an hour, with
// changes applied (a nil value deletes the claim).
func claims(changes map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub":  "ann",
		"name": "Ann",
		"iss":  "https://auth.example.com",
		"aud":  "rocket",
		"iat":  now.Unix(),
		"exp":  now.Add(time.Hour).Unix(),
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func hs256(t testing.TB, c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, c) }
func rs256(t testing.TB, c jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodRS256, rsaKey(), c)
}

func publicPEM(t testing.TB, k *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func newVerifier(t testing.TB, cfg jwtauth.Config) *jwtauth.Verifier {
	t.Helper()
	v, err := jwtauth.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  jwtauth.Config
		want string
	}{
		"no key":         {jwtauth.Config{Issuer: "x"}, "no key"},
		"short secret":   {jwtauth.Config{HMACSecret: []byte("password")}, "HMACSecret is 8 bytes"},
		"empty secret":   {jwtauth.Config{HMACSecret: []byte{}}, "HMACSecret is 0 bytes"},
		"small RSA key":  {jwtauth.Config{RSAPublicKey: &genRSA(1024).PublicKey}, "1024 bits"},
		"empty RSA key":  {jwtauth.Config{RSAPublicKey: &rsa.PublicKey{}}, "no modulus"},
		"negative skew":  {jwtauth.Config{HMACSecret: secret, Leeway: -time.Second}, "Leeway"},
		"two at a time":  {jwtauth.Config{HMACSecret: []byte("short"), RSAPublicKey: &genRSA(1024).PublicKey}, "1024 bits"},
		"secret, no key": {jwtauth.Config{Audience: "rocket"}, "no key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := jwtauth.New(tc.cfg)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "jwtauth: invalid config: ") {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	hsOnly := newVerifier(t, jwtauth.Config{HMACSecret: secret, Issuer: "https://auth.example.com", Audience: "rocket"})
	rsOnly := newVerifier(t, jwtauth.Config{RSAPublicKey: &rsaKey().PublicKey, Issuer: "https://auth.example.com", Audience: "rocket"})
	both := newVerifier(t, jwtauth.Config{HMACSecret: secret, RSAPublicKey: &rsaKey().PublicKey})
	lenient := newVerifier(t, jwtauth.Config{HMACSecret: secret, Leeway: time.Minute})
	byEmail := newVerifier(t, jwtauth.Config{HMACSecret: secret, UserClaim: "email"})
	plain := newVerifier(t, jwtauth.Config{HMACSecret: secret})
	now := time.Now()
	// The RSA public key, PEM-encoded, used as an HMAC secret: what an
	// attacker who knows the public key signs with in the key-confusion
	// attack.
	confused := sign(t, jwt.SigningMethodHS256, publicPEM(t, &rsaKey().PublicKey), claims(nil))
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))

	for name, tc := range map[string]struct {
		v     *jwtauth.Verifier
		token string
		want  string // "" for a valid token, else part of the error
		user  string
	}{
		"HS256":                 {v: hsOnly, token: hs256(t, claims(nil)), user: "ann"},
		"RS256":                 {v: rsOnly, token: rs256(t, claims(nil)), user: "ann"},
		"HS256 with both keys":  {v: both, token: hs256(t, claims(nil)), user: "ann"},
		"RS256 with both keys":  {v: both, token: rs256(t, claims(nil)), user: "ann"},
		"audience in a list":    {v: hsOnly, token: hs256(t, claims(map[string]any{"aud": []string{"other", "rocket"}})), user: "ann"},
		"other user claim":      {v: byEmail, token: hs256(t, claims(map[string]any{"email": "ann@example.com"})), user: "ann@example.com"},
		"expired":               {v: hsOnly, token: hs256(t, claims(map[string]any{"exp": now.Add(-time.Minute).Unix()})), want: "expired"},
		"expired within leeway": {v: lenient, token: hs256(t, claims(map[string]any{"exp": now.Add(-30 * time.Second).Unix()})), user: "ann"},
		"expired past leeway":   {v: lenient, token: hs256(t, claims(map[string]any{"exp": now.Add(-2 * time.Minute).Unix()})), want: "expired"},
		"no expiry":             {v: hsOnly, token: hs256(t, claims(map[string]any{"exp": nil})), want: `no "exp" claim`},
		"expiry not a number":   {v: hsOnly, token: hs256(t, claims(map[string]any{"exp": "tomorrow"})), want: "wrong type"},
		"not yet valid":         {v: hsOnly, token: hs256(t, claims(map[string]any{"nbf": now.Add(time.Hour).Unix()})), want: "not valid yet"},
		"nbf within leeway":     {v: lenient, token: hs256(t, claims(map[string]any{"nbf": now.Add(30 * time.Second).Unix()})), user: "ann"},
		"nbf passed":            {v: hsOnly, token: hs256(t, claims(map[string]any{"nbf": now.Add(-time.Minute).Unix()})), user: "ann"},
		"issued in the future":  {v: hsOnly, token: hs256(t, claims(map[string]any{"iat": now.Add(time.Hour).Unix()})), want: "issued in the future"},
		"wrong HMAC secret":     {v: hsOnly, token: sign(t, jwt.SigningMethodHS256, otherSecret, claims(nil)), want: "bad signature"},
		"wrong RSA key":         {v: rsOnly, token: sign(t, jwt.SigningMethodRS256, otherRSAKey(), claims(nil)), want: "bad signature"},
		"tampered claims":       {v: hsOnly, token: tamper(t, hs256(t, claims(nil))), want: "bad signature"},
		"alg none":              {v: hsOnly, token: none, want: `algorithm "none" not allowed`},
		"alg none, both keys":   {v: both, token: none, want: `algorithm "none" not allowed`},
		"HS256 when RS256 only": {v: rsOnly, token: confused, want: `algorithm "HS256" not allowed (allowed: RS256)`},
		"key confusion, both":   {v: both, token: confused, want: "bad signature"},
		"RS256 when HS256 only": {v: hsOnly, token: rs256(t, claims(nil)), want: `algorithm "RS256" not allowed (allowed: HS256)`},
		"HS512":                 {v: hsOnly, token: sign(t, jwt.SigningMethodHS512, secret, claims(nil)), want: `algorithm "HS512" not allowed`},
		"RS384":                 {v: rsOnly, token: sign(t, jwt.SigningMethodRS384, rsaKey(), claims(nil)), want: `algorithm "RS384" not allowed`},
		"unknown alg":           {v: hsOnly, token: withHeader(`{"alg":"XX999","typ":"JWT"}`, hs256(t, claims(nil))), want: `algorithm "XX999" not allowed`},
		"no alg":                {v: hsOnly, token: withHeader(`{"typ":"JWT"}`, hs256(t, claims(nil))), want: `algorithm "" not allowed`},
		"wrong issuer":          {v: hsOnly, token: hs256(t, claims(map[string]any{"iss": "https://evil.example.com"})), want: "wrong issuer"},
		"no issuer":             {v: hsOnly, token: hs256(t, claims(map[string]any{"iss": nil})), want: `no "iss" claim`},
		"wrong audience":        {v: hsOnly, token: hs256(t, claims(map[string]any{"aud": "chat"})), want: "wrong audience"},
		"no audience":           {v: hsOnly, token: hs256(t, claims(map[string]any{"aud": nil})), want: `no "aud" claim`},
		"issuer not checked":    {v: plain, token: hs256(t, claims(map[string]any{"iss": "anyone", "aud": "anything"})), user: "ann"},
		"no sub":                {v: hsOnly, token: hs256(t, claims(map[string]any{"sub": nil})), want: `no "sub" claim`},
		"empty sub":             {v: hsOnly, token: hs256(t, claims(map[string]any{"sub": ""})), want: `"sub" claim (the user id) is not a non-empty string`},
		"numeric sub":           {v: plain, token: hs256(t, claims(map[string]any{"sub": 42})), want: `is not a non-empty string`},
		"no email":              {v: byEmail, token: hs256(t, claims(nil)), want: `no "email" claim`},
		"empty":                 {v: hsOnly, token: "", want: "malformed"},
		"one part":              {v: hsOnly, token: "abc", want: "malformed"},
		"two parts":             {v: hsOnly, token: "abc.def", want: "malformed"},
		"not base64":            {v: hsOnly, token: "!!!.???.***", want: "malformed"},
		"header not JSON":       {v: hsOnly, token: "bm90IGpzb24.e30.c2ln", want: "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			user, got, err := tc.v.Verify(tc.token)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if user != tc.user || got["name"] != "Ann" || got["sub"] == nil {
					t.Fatalf("user %q, claims %v", user, got)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted the token (user %q)", user)
			}
			if !errors.Is(err, jwtauth.ErrInvalidToken) {
				t.Errorf("error %q does not wrap ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if user != "" || got != nil {
				t.Errorf("an invalid token gave user %q, claims %v", user, got)
			}
			// No key material in messages.
			for _, k := range [][]byte{secret, otherSecret, publicPEM(t, &rsaKey().PublicKey)} {
				if strings.Contains(err.Error(), string(k)) {
					t.Errorf("error %q holds key material", err)
				}
			}
			if strings.Contains(err.Error(), rsaKey().N.String()[:20]) {
				t.Errorf("error %q holds the RSA modulus", err)
			}
		})
	}
}

// tamper changes the user in a signed token, keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	p := jwt.NewParser()
	mc := jwt.MapClaims{}
	if _, _, err := p.ParseUnverified(token, mc); err != nil {
		t.Fatal(err)
	}
	mc["sub"] = "admin"
	forged := sign(t, jwt.SigningMethodHS256, otherSecret, mc)
	return parts[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
}

// withHeader replaces the header of a token with the JSON header.
func withHeader(header, token string) string {
	_, rest, _ := strings.Cut(token, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + rest
}

func TestToken(t *testing.T) {
	cookie := newVerifier(t, jwtauth.Config{HMACSecret: secret, Cookie: "rocket_token"})
	noQuery := newVerifier(t, jwtauth.Config{HMACSecret: secret, QueryParam: "-"})
	custom := newVerifier(t, jwtauth.Config{HMACSecret: secret, QueryParam: "access_token"})
	for name, tc := range map[string]struct {
		v      *jwtauth.Verifier
		target string
		header map[string]string
		want   string // token, or "" for ErrNoToken
	}{
		"header":                  {v: cookie, target: "/", header: map[string]string{"Authorization": "Bearer h.h.h"}, want: "h.h.h"},
		"header, lower case":      {v: cookie, target: "/", header: map[string]string{"Authorization": "bearer h.h.h"}, want: "h.h.h"},
		"query":                   {v: cookie, target: "/?token=q.q.q", want: "q.q.q"},
		"query with session":      {v: cookie, target: "/ws?session=1.x&token=q.q.q", want: "q.q.q"},
		"cookie":                  {v: cookie, target: "/", header: map[string]string{"Cookie": "a=b; rocket_token=c.c.c"}, want: "c.c.c"},
		"header before query":     {v: cookie, target: "/?token=q.q.q", header: map[string]string{"Authorization": "Bearer h.h.h", "Cookie": "rocket_token=c.c.c"}, want: "h.h.h"},
		"query before cookie":     {v: cookie, target: "/?token=q.q.q", header: map[string]string{"Cookie": "rocket_token=c.c.c"}, want: "q.q.q"},
		"basic auth is not ours":  {v: cookie, target: "/?token=q.q.q", header: map[string]string{"Authorization": "Basic YTpi"}, want: "q.q.q"},
		"empty bearer":            {v: cookie, target: "/", header: map[string]string{"Authorization": "Bearer "}},
		"nothing":                 {v: cookie, target: "/"},
		"empty query":             {v: cookie, target: "/?token="},
		"cookie not configured":   {v: noQuery, target: "/", header: map[string]string{"Cookie": "token=c.c.c"}},
		"query turned off":        {v: noQuery, target: "/?token=q.q.q"},
		"query turned off, head":  {v: noQuery, target: "/?token=q.q.q", header: map[string]string{"Authorization": "Bearer h.h.h"}, want: "h.h.h"},
		"custom query parameter":  {v: custom, target: "/?access_token=q.q.q", want: "q.q.q"},
		"custom, default ignored": {v: custom, target: "/?token=q.q.q"},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			got, err := tc.v.Token(r)
			if tc.want == "" {
				if !errors.Is(err, jwtauth.ErrNoToken) {
					t.Fatalf("Token = %q, %v; want ErrNoToken", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Token = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestNoTokenMessageSaysWhereToPutIt(t *testing.T) {
	for _, tc := range []struct {
		cfg  jwtauth.Config
		want []string
	}{
		{jwtauth.Config{HMACSecret: secret}, []string{"Authorization: Bearer <token>", `query parameter "token"`}},
		{jwtauth.Config{HMACSecret: secret, Cookie: "jwt"}, []string{"Authorization: Bearer <token>", `query parameter "token"`, `cookie "jwt"`}},
		{jwtauth.Config{HMACSecret: secret, QueryParam: "-"}, []string{"Authorization: Bearer <token>"}},
	} {
		_, err := newVerifier(t, tc.cfg).Token(httptest.NewRequest(http.MethodGet, "/", nil))
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", tc.cfg, err, w)
			}
		}
		if tc.cfg.QueryParam == "-" && strings.Contains(err.Error(), "query") {
			t.Errorf("error %q mentions the query, which is off", err)
		}
	}
}

func TestConnect(t *testing.T) {
	v := newVerifier(t, jwtauth.Config{HMACSecret: secret})
	connect := func(header http.Header, target string) (rocket.ConnectReply, error) {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		maps := r.Header
		for k, vs := range header {
			maps[k] = vs
		}
		return v.Connect(&rocket.ConnectEvent{Request: r})
	}

	reply, err := connect(http.Header{"Authorization": {"Bearer " + hs256(t, claims(map[string]any{"roles": []string{"admin"}}))}}, "/")
	if err != nil {
		t.Fatal(err)
	}
	if reply.UserID != "ann" || reply.Meta["name"] != "Ann" || reply.Meta["iss"] != "https://auth.example.com" {
		t.Fatalf("reply %+v", reply)
	}
	if roles, _ := reply.Meta["roles"].([]any); len(roles) != 1 || roles[0] != "admin" {
		t.Fatalf("roles claim %#v", reply.Meta["roles"])
	}

	for target, want := range map[string]string{
		"/":             "no token",
		"/?token=x.y.z": "malformed",
		"/?token=" + hs256(t, claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})): "expired",
	} {
		reply, err := connect(nil, target)
		var re *rocket.Error
		if !errors.As(err, &re) || re.Code != rocket.CodeUnauthorized {
			t.Fatalf("%s: error %#v, want an *rocket.Error with code unauthorized", target, err)
		}
		if !strings.Contains(re.Message, want) || reply.UserID != "" || reply.Meta != nil {
			t.Errorf("%s: message %q (want %q), reply %+v", target, re.Message, want, reply)
		}
	}
}

func TestParseRSAPublicKeyPEM(t *testing.T) {
	k, err := jwtauth.ParseRSAPublicKeyPEM(publicPEM(t, &rsaKey().PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(&rsaKey().PublicKey) {
		t.Fatal("parsed key differs")
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)})
	if k, err := jwtauth.ParseRSAPublicKeyPEM(pkcs1); err != nil || !k.Equal(&rsaKey().PublicKey) {
		t.Fatalf("PKCS #1: %v", err)
	}
	for name, data := range map[string][]byte{
		"not PEM":     []byte("ssh-rsa AAAA..."),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey())}),
		"garbage":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("nope")}),
	} {
		if _, err := jwtauth.ParseRSAPublicKeyPEM(data); err == nil || !strings.HasPrefix(err.Error(), "jwtauth: RSA public key: ") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}
