// Package jwtauth authenticates Rocket connections with JSON Web Tokens.
//
// A Verifier checks the token a client presents when it opens its
// WebSocket, before the upgrade, and gives the connection its user: the
// token's user claim ("sub" by default) becomes Client.UserID and all of its
// claims become Client.Meta. A connection without a valid token is refused
// with HTTP 401 and no WebSocket is opened:
//
//	v, err := jwtauth.New(jwtauth.Config{HMACSecret: secret, Issuer: "https://auth.example.com"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv.OnConnect(v.Connect)
//
// # Algorithms
//
// Tokens signed with HS256 (a shared secret, Config.HMACSecret) and RS256
// (an RSA key pair, Config.RSAPublicKey) are accepted, each only when its
// key is configured: a token naming any other algorithm, "none" included,
// is refused before its signature is looked at, and a token is always
// checked with the key of the algorithm it names. So an HS256 token "signed"
// with the RSA public key (the classic key-confusion attack) is refused when
// only RS256 is configured, and checked against the HMAC secret, never the
// public key, when both are.
//
// # Claims
//
// exp is required: a token without an expiry is refused. nbf and iat, when
// present, are honoured (a token used before nbf, or issued in the future,
// is refused). Each time check allows Config.Leeway of clock skew. iss and
// aud are checked when Config.Issuer and Config.Audience are set; the claim
// is then required.
//
// # Where the token comes from
//
// Browsers cannot set headers on a WebSocket handshake, so besides the
// standard header the token may come in the query string or a cookie. The
// Verifier looks, in this order, at:
//
//  1. the Authorization header, "Bearer <token>": for programs (Go, Node,
//     mobile apps) and proxies that add it. Nothing leaks into URLs.
//  2. the query parameter Config.QueryParam ("token" by default):
//     new Rocket("wss://example.com/ws?token=" + token) in a browser. Works
//     across sites and needs nothing but the page's script, but the URL, and
//     the token with it, can end up in the access logs of the server, of
//     reverse proxies and load balancers, and in the browser's history
//     tools. Give such tokens a short lifetime (a minute is enough to
//     connect; reconnecting fetches a fresh one) and keep those logs
//     private. Set QueryParam to "-" to turn it off.
//  3. the cookie Config.Cookie (none by default): the token travels as any
//     cookie of the site, stays out of URLs and can be HttpOnly (out of
//     reach of the page's scripts). Browsers send cookies with WebSocket
//     handshakes from any site, so a page elsewhere could open a connection
//     with the user's cookie (cross-site WebSocket hijacking): keep Rocket's
//     origin check on (Config.AllowedOrigins lists the sites you trust, not
//     "*") and set the cookie SameSite=Lax or Strict, Secure.
//
// The first place that holds a token decides: a bad token in the header is
// refused even if the query holds a good one.
//
// Tokens are checked once, when the connection opens. A connection outlives
// its token's expiry; close it from the application if that matters.
package jwtauth

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rocket-go/rocket"
)

// Errors returned by Verify and Token; test with errors.Is. Connect turns
// them into an *rocket.Error with code rocket.CodeUnauthorized carrying the
// same message, which Rocket sends as the body of its HTTP 401 answer.
var (
	// ErrNoToken: the request carries no token where the Verifier looks.
	ErrNoToken = errors.New("jwtauth: no token")
	// ErrInvalidToken: the token is malformed, badly signed, expired, not
	// yet valid, for another issuer or audience, or lacks the user claim.
	// The error wrapping it says which; it never holds key material.
	ErrInvalidToken = errors.New("jwtauth: invalid token")
)

// Config configures a Verifier. At least one key must be set.
type Config struct {
	// HMACSecret, when set, accepts tokens signed with HS256 and this
	// secret. RFC 7518 requires at least 32 bytes (256 bits); New refuses
	// a shorter secret. Use random bytes, not a password.
	HMACSecret []byte
	// RSAPublicKey, when set, accepts tokens signed with RS256 by the
	// matching private key. It must have at least 2048 bits.
	// ParseRSAPublicKeyPEM reads one from PEM.
	RSAPublicKey *rsa.PublicKey

	// Issuer, when set, is the iss claim every token must carry.
	Issuer string
	// Audience, when set, must be one of the token's aud claim.
	Audience string
	// Leeway is the clock skew allowed when checking exp, nbf and iat.
	// Zero means none.
	Leeway time.Duration

	// UserClaim names the claim holding the user id; it must be a
	// non-empty string in every token. Empty means "sub".
	UserClaim string
	// QueryParam names the query parameter a token may come in. Empty
	// means "token"; "-" means tokens are not taken from the query.
	QueryParam string
	// Cookie names the cookie a token may come in. Empty means tokens are
	// not taken from cookies.
	Cookie string
}

// Verifier checks JWTs against a Config. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	algs   []string // allowed algorithms, in the order of cfg's keys
	parser *jwt.Parser
}

// New returns a Verifier for cfg, or an error saying what is wrong with
// cfg: no key, or a key too weak for its algorithm.
func New(cfg Config) (*Verifier, error) {
	var algs []string
	var errs []error
	if cfg.HMACSecret != nil {
		if n := len(cfg.HMACSecret); n < 32 {
			errs = append(errs, fmt.Errorf("HMACSecret is %d bytes; HS256 needs at least 32 (RFC 7518)", n))
		}
		algs = append(algs, jwt.SigningMethodHS256.Alg())
	}
	if cfg.RSAPublicKey != nil {
		if cfg.RSAPublicKey.N == nil {
			errs = append(errs, errors.New("RSAPublicKey has no modulus"))
		} else if bits := cfg.RSAPublicKey.N.BitLen(); bits < 2048 {
			errs = append(errs, fmt.Errorf("RSAPublicKey has %d bits; RS256 needs at least 2048 (RFC 7518)", bits))
		}
		algs = append(algs, jwt.SigningMethodRS256.Alg())
	}
	if len(algs) == 0 {
		errs = append(errs, errors.New("no key: set HMACSecret (HS256), RSAPublicKey (RS256) or both"))
	}
	if cfg.Leeway < 0 {
		errs = append(errs, fmt.Errorf("Leeway must not be negative, got %v", cfg.Leeway))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("jwtauth: invalid config: %w", err)
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.QueryParam == "" {
		cfg.QueryParam = "token"
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{cfg: cfg, algs: algs, parser: jwt.NewParser(opts...)}, nil
}

// Connect is a connect hook for rocket.Server.OnConnect: it takes the
// token from the upgrade request (see Token), verifies it, and accepts the
// connection with the token's user as ConnectReply.UserID and its claims
// as ConnectReply.Meta. Without a valid token it returns an *rocket.Error
// with code rocket.CodeUnauthorized, so that the upgrade is refused with
// HTTP 401 and a message saying why.
func (v *Verifier) Connect(e *rocket.ConnectEvent) (rocket.ConnectReply, error) {
	raw, err := v.Token(e.Request)
	if err != nil {
		return rocket.ConnectReply{}, &rocket.Error{Code: rocket.CodeUnauthorized, Message: err.Error()}
	}
	user, claims, err := v.Verify(raw)
	if err != nil {
		return rocket.ConnectReply{}, &rocket.Error{Code: rocket.CodeUnauthorized, Message: err.Error()}
	}
	return rocket.ConnectReply{UserID: user, Meta: claims}, nil
}

// Token returns the token r carries: from its Authorization header
// ("Bearer <token>"), else from the query parameter, else from the cookie,
// as configured. It returns an error wrapping ErrNoToken when there is
// none.
func (v *Verifier) Token(r *http.Request) (string, error) {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok, nil
		}
	}
	if v.cfg.QueryParam != "-" {
		if tok := r.URL.Query().Get(v.cfg.QueryParam); tok != "" {
			return tok, nil
		}
	}
	if v.cfg.Cookie != "" {
		if c, err := r.Cookie(v.cfg.Cookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("%w: send it as \"Authorization: Bearer <token>\"%s", ErrNoToken, v.alternatives())
}

// alternatives lists the other places a token is taken from, for the
// message of a missing token.
func (v *Verifier) alternatives() string {
	var alt []string
	if v.cfg.QueryParam != "-" {
		alt = append(alt, fmt.Sprintf("the query parameter %q", v.cfg.QueryParam))
	}
	if v.cfg.Cookie != "" {
		alt = append(alt, fmt.Sprintf("the cookie %q", v.cfg.Cookie))
	}
	if len(alt) == 0 {
		return ""
	}
	return ", or in " + strings.Join(alt, " or ")
}

// Verify checks the signature and claims of the token raw and returns its
// user (the value of the user claim) and all its claims, as decoded from
// JSON (numbers are float64). An invalid token gives an error wrapping
// ErrInvalidToken that says why.
func (v *Verifier) Verify(raw string) (user string, claims map[string]any, err error) {
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(raw, mc, v.key)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s", ErrInvalidToken, v.reason(tok, mc, err))
	}
	u := mc[v.cfg.UserClaim]
	if u == nil {
		return "", nil, fmt.Errorf("%w: no %q claim (the user id)", ErrInvalidToken, v.cfg.UserClaim)
	}
	user, ok := u.(string)
	if !ok || user == "" {
		return "", nil, fmt.Errorf("%w: the %q claim (the user id) is not a non-empty string", ErrInvalidToken, v.cfg.UserClaim)
	}
	return user, map[string]any(mc), nil
}

// key gives the parser the key for the algorithm the token names. The
// parser has already refused algorithms not configured; checking again
// here keeps a token from ever being verified with another algorithm's key.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method {
	case jwt.SigningMethodHS256:
		if v.cfg.HMACSecret != nil {
			return v.cfg.HMACSecret, nil
		}
	case jwt.SigningMethodRS256:
		if v.cfg.RSAPublicKey != nil {
			return v.cfg.RSAPublicKey, nil
		}
	}
	return nil, errAlgorithm
}

var errAlgorithm = errors.New("algorithm not allowed")

// reason turns a parse error into a short explanation for the client and
// the operator. It names claims and algorithms, never keys.
func (v *Verifier) reason(t *jwt.Token, mc jwt.MapClaims, err error) string {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return "malformed (want three base64url parts: header.claims.signature)"
	}
	if t != nil {
		alg, _ := t.Header["alg"].(string)
		if !slices.Contains(v.algs, alg) {
			if len(alg) > 16 {
				alg = alg[:16] + "…"
			}
			return fmt.Sprintf("algorithm %q not allowed (allowed: %s)", alg, strings.Join(v.algs, ", "))
		}
	}
	switch {
	case errors.Is(err, errAlgorithm):
		return fmt.Sprintf("algorithm not allowed (allowed: %s)", strings.Join(v.algs, ", "))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "cannot be verified"
	case errors.Is(err, jwt.ErrInvalidType):
		return "a time, issuer or audience claim has the wrong type"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		for _, c := range []struct {
			name string
			want bool
		}{{"exp", true}, {"iss", v.cfg.Issuer != ""}, {"aud", v.cfg.Audience != ""}} {
			if c.want && mc[c.name] == nil {
				return fmt.Sprintf("no %q claim", c.name)
			}
		}
		return "a required claim is missing"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "not valid yet (nbf is in the future)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	default:
		return "rejected"
	}
}

// ParseRSAPublicKeyPEM reads an RSA public key from PEM: a "PUBLIC KEY"
// (PKIX), "RSA PUBLIC KEY" (PKCS #1) or "CERTIFICATE" block.
func ParseRSAPublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	k, err := jwt.ParseRSAPublicKeyFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jwtauth: RSA public key: %w", err)
	}
	return k, nil
}
