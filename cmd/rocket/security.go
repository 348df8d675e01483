package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rocket-go/rocket/jwtauth"
)

// securityOptions are the JWT and TLS settings.
type securityOptions struct {
	jwtHMACSecret       string
	jwtHMACSecretFile   string
	jwtRSAPublicKeyFile string
	jwtIssuer           string
	jwtAudience         string
	jwtLeeway           time.Duration
	tlsCertFile         string
	tlsKeyFile          string
}

// security is what the JWT and TLS settings load at startup: a nil field
// means that feature is off.
type security struct {
	verifier *jwtauth.Verifier
	tls      *tls.Config
}

// loadSecurity reads the JWT keys and the TLS certificate named by o, so
// that a missing or bad file stops the command before it serves anything.
func loadSecurity(o *securityOptions) (*security, error) {
	var sec security
	var errs []error
	v, err := loadVerifier(o)
	if err != nil {
		errs = append(errs, err)
	}
	sec.verifier = v
	c, err := loadTLS(o)
	if err != nil {
		errs = append(errs, err)
	}
	sec.tls = c
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &sec, nil
}

// loadVerifier returns the JWT verifier, or nil when no key is set.
func loadVerifier(o *securityOptions) (*jwtauth.Verifier, error) {
	var cfg jwtauth.Config
	switch {
	case o.jwtHMACSecret != "" && o.jwtHMACSecretFile != "":
		return nil, errors.New("ROCKET_JWT_HMAC_SECRET and ROCKET_JWT_HMAC_SECRET_FILE are both set: set one of them")
	case o.jwtHMACSecret != "":
		cfg.HMACSecret = []byte(o.jwtHMACSecret)
		if err := checkSecret("ROCKET_JWT_HMAC_SECRET", cfg.HMACSecret); err != nil {
			return nil, err
		}
	case o.jwtHMACSecretFile != "":
		data, err := os.ReadFile(o.jwtHMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("ROCKET_JWT_HMAC_SECRET_FILE: %w", err)
		}
		// One trailing line break, as editors and `echo` leave, is not
		// part of the secret.
		data = []byte(strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r"))
		if err := checkSecret("ROCKET_JWT_HMAC_SECRET_FILE", data); err != nil {
			return nil, fmt.Errorf("%w (file %s)", err, o.jwtHMACSecretFile)
		}
		cfg.HMACSecret = data
	}
	if f := o.jwtRSAPublicKeyFile; f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("ROCKET_JWT_RSA_PUBLIC_KEY_FILE: %w", err)
		}
		k, err := jwtauth.ParseRSAPublicKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("ROCKET_JWT_RSA_PUBLIC_KEY_FILE: %s: want a PEM \"PUBLIC KEY\", \"RSA PUBLIC KEY\" or \"CERTIFICATE\" block: %w", f, err)
		}
		if bits := k.N.BitLen(); bits < 2048 {
			return nil, fmt.Errorf("ROCKET_JWT_RSA_PUBLIC_KEY_FILE: %s: the key has %d bits; RS256 needs at least 2048", f, bits)
		}
		cfg.RSAPublicKey = k
	}
	if cfg.HMACSecret == nil && cfg.RSAPublicKey == nil {
		for env, v := range map[string]string{"ROCKET_JWT_ISSUER": o.jwtIssuer, "ROCKET_JWT_AUDIENCE": o.jwtAudience} {
			if v != "" {
				return nil, fmt.Errorf("%s is set but no JWT key is: set ROCKET_JWT_HMAC_SECRET, ROCKET_JWT_HMAC_SECRET_FILE or ROCKET_JWT_RSA_PUBLIC_KEY_FILE", env)
			}
		}
		return nil, nil
	}
	cfg.Issuer = o.jwtIssuer
	cfg.Audience = o.jwtAudience
	cfg.Leeway = o.jwtLeeway
	v, err := jwtauth.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("JWT settings: %w", err)
	}
	return v, nil
}

// checkSecret refuses an HMAC secret shorter than RFC 7518 allows for HS256.
func checkSecret(env string, secret []byte) error {
	if len(secret) < 32 {
		return fmt.Errorf("%s: the secret is %d bytes; HS256 needs at least 32 (generate one with: openssl rand -base64 48)", env, len(secret))
	}
	return nil
}

// loadTLS returns the TLS configuration of both listeners, or nil when no
// certificate is set.
func loadTLS(o *securityOptions) (*tls.Config, error) {
	switch {
	case o.tlsCertFile == "" && o.tlsKeyFile == "":
		return nil, nil
	case o.tlsKeyFile == "":
		return nil, errors.New("ROCKET_TLS_CERT_FILE is set but ROCKET_TLS_KEY_FILE is not: set both to serve TLS, or neither")
	case o.tlsCertFile == "":
		return nil, errors.New("ROCKET_TLS_KEY_FILE is set but ROCKET_TLS_CERT_FILE is not: set both to serve TLS, or neither")
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCertFile, o.tlsKeyFile)
	if err != nil {
		return nil, fmt.Errorf("ROCKET_TLS_CERT_FILE=%s, ROCKET_TLS_KEY_FILE=%s: %w", o.tlsCertFile, o.tlsKeyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// listenTLS wraps the two listeners in TLS when sec has a certificate. The
// WebSocket port speaks HTTP/1.1 only (WebSockets are upgraded from it);
// the HTTP port also offers HTTP/2 for its pages.
func (sec *security) listenTLS(wsLn, httpLn net.Listener) (net.Listener, net.Listener) {
	if sec.tls == nil {
		return wsLn, httpLn
	}
	wsCfg := sec.tls.Clone()
	wsCfg.NextProtos = []string{"http/1.1"}
	httpCfg := sec.tls.Clone()
	httpCfg.NextProtos = []string{"h2", "http/1.1"}
	return tls.NewListener(wsLn, wsCfg), tls.NewListener(httpLn, httpCfg)
}

// schemes returns the URL schemes of the two ports, for the logs.
func (sec *security) schemes() (ws, web string) {
	if sec.tls == nil {
		return "ws", "http"
	}
	return "wss", "https"
}
