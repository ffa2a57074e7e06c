package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// maxJWKSSize caps a JWKS response body.
	maxJWKSSize = 1 << 20
	// jwksFailureBackoff is how soon a failed JWKS fetch may be retried
	// (when shorter than JWKSMinRefetch).
	jwksFailureBackoff = 3 * time.Second
	// jwksMaxAge is how old a fetched key set may get before a lookup
	// refreshes it in the background, so that keys removed from the JWKS
	// stop working; if the refresh fails the old keys keep working.
	jwksMaxAge = 15 * time.Minute
	// minRSABits is the smallest RSA modulus accepted (Better Auth's default
	// is 2048).
	minRSABits = 2048
	// maxJWKSRedirects bounds the same-origin redirects one fetch follows.
	maxJWKSRedirects = 3
)

// jwksVerifier checks Better Auth JWT-plugin tokens against the JWKS.
type jwksVerifier struct {
	parser *jwt.Parser
	keys   *keySet
}

func newJWKSVerifier(cfg Config, client *http.Client, now func() time.Time, log *slog.Logger) *jwksVerifier {
	methods := make([]string, 0, len(asymmetricAlgs))
	for alg := range asymmetricAlgs {
		methods = append(methods, alg)
	}
	opts := append(parserOptions(methods, cfg.ClockSkew, now),
		jwt.WithIssuer(cfg.JWKSIssuer),
		jwt.WithAudience(cfg.JWKSAudience),
	)
	backoff := min(jwksFailureBackoff, cfg.JWKSMinRefetch)
	return &jwksVerifier{
		parser: jwt.NewParser(opts...),
		keys: &keySet{
			url: cfg.JWKSURL, client: client, timeout: cfg.JWKSTimeout,
			minRefetch: cfg.JWKSMinRefetch, backoff: backoff, now: now, log: log,
		},
	}
}

func (j *jwksVerifier) verify(ctx context.Context, token string) (string, error) {
	var c claims
	_, err := j.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if err := checkHeader(t); err != nil {
			return nil, err
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errNoKid
		}
		k, err := j.keys.lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		if k.alg != t.Method.Alg() {
			return nil, errKeyAlg
		}
		return k.pub, nil
	})
	if err != nil {
		return "", jwtRejection(j.kindOf(token), err)
	}
	return checkSubject(c.Subject)
}

func (j *jwksVerifier) kindOf(token string) string {
	if alg, ok := jwtAlg(token); ok && asymmetricAlgs[alg] {
		return alg
	}
	return "JWT"
}

// publicKey is one usable key of the JWKS.
type publicKey struct {
	alg string // the one JWS algorithm it verifies
	pub crypto.PublicKey
}

// keySet caches the JWKS by kid. Unknown kids cause a refetch at most every
// minRefetch (sooner, after backoff, when the last fetch failed); concurrent
// lookups share one fetch.
type keySet struct {
	url        string
	client     *http.Client
	timeout    time.Duration
	minRefetch time.Duration
	backoff    time.Duration
	now        func() time.Time
	// log gets one line per failed fetch, not per lookup: while the JWKS
	// is down, every token with an unknown kid fails, and the back-off
	// already bounds how often a fetch runs.
	log *slog.Logger

	mu        sync.Mutex
	keys      map[string]publicKey
	fetchedAt time.Time // last successful fetch
	triedAt   time.Time // last fetch attempt
	lastErr   error     // of the last attempt
	failures  int       // fetches failed in a row
	inflight  *fetchCall
}

// fetchCall is one JWKS fetch in flight; done closes when its result
// (keys or lastErr) is published.
type fetchCall struct {
	done chan struct{}
}

func (s *keySet) lookup(ctx context.Context, kid string) (publicKey, error) {
	refreshed := false
	for {
		s.mu.Lock()
		now := s.now()
		if k, found := s.keys[kid]; found {
			if now.Sub(s.fetchedAt) >= jwksMaxAge && s.inflight == nil && s.mayFetch(now) {
				// Refresh an old key set in the background; until then (and
				// if the refresh fails) its keys keep working.
				s.startFetch(ctx, now)
			}
			s.mu.Unlock()
			return k, nil
		}
		if refreshed || !s.mayFetch(now) {
			lastErr := s.lastErr
			s.mu.Unlock()
			if lastErr != nil {
				return publicKey{}, fmt.Errorf("%w: JWKS: %w", ErrUnavailable, lastErr)
			}
			return publicKey{}, errUnknownKid
		}
		call := s.inflight
		if call == nil {
			call = s.startFetch(ctx, now)
		}
		s.mu.Unlock()

		select {
		case <-call.done:
		case <-ctx.Done():
			return publicKey{}, fmt.Errorf("%w: JWKS: %w", ErrUnavailable, ctx.Err())
		}
		refreshed = true
	}
}

// startFetch starts a fetch that other lookups can join. s.mu is held. The
// fetch does not inherit ctx's cancellation: other lookups may wait on it.
func (s *keySet) startFetch(ctx context.Context, now time.Time) *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	s.inflight = call
	s.triedAt = now
	go s.fetch(context.WithoutCancel(ctx), call)
	return call
}

// mayFetch reports whether a fetch may start now (or one is running, to be
// joined). s.mu is held.
func (s *keySet) mayFetch(now time.Time) bool {
	switch {
	case s.inflight != nil:
		return true
	case s.triedAt.IsZero():
		return true
	case s.lastErr != nil:
		return now.Sub(s.triedAt) >= s.backoff
	default:
		return now.Sub(s.triedAt) >= s.minRefetch
	}
}

// fetch runs one JWKS request and publishes its result.
func (s *keySet) fetch(ctx context.Context, call *fetchCall) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	keys, err := s.get(ctx)

	s.mu.Lock()
	s.lastErr = err
	failedBefore := s.failures
	if err == nil {
		s.keys = keys
		s.fetchedAt = s.now()
		s.failures = 0
	} else {
		s.failures++
	}
	failures := s.failures
	s.inflight = nil
	s.mu.Unlock()

	// Logged before done closes, so that whoever waited on this fetch
	// finds it in the log. get's errors name the URL redacted.
	if err != nil {
		s.log.WarnContext(ctx, "JWKS fetch failed", "url", redactURL(s.url), "err", err, "failures_in_a_row", failures)
	} else if failedBefore > 0 {
		s.log.InfoContext(ctx, "JWKS fetch recovered", "url", redactURL(s.url), "failed_fetches", failedBefore)
	}
	close(call.done)
}

func (s *keySet) get(ctx context.Context) (map[string]publicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		// Its text would quote the whole URL, credentials included.
		return nil, fmt.Errorf("GET %s: invalid request URL", redactURL(s.url))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		// net/http's error quotes the URL with its query; say only where.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET %s: %w", redactURL(s.url), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", redactURL(s.url), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSSize)
	}
	return parseJWKS(body)
}

// jwk is a JSON Web Key as Better Auth serves it.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// parseJWKS parses a JWKS document. Keys that are not usable signature
// keys of a supported type are skipped; a key without alg is kept for the
// algorithm its type implies when that is unambiguous (OKP, EC).
func parseJWKS(body []byte) (map[string]publicKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("decode JWKS: no keys member")
	}
	keys := make(map[string]publicKey, len(doc.Keys))
	for _, k := range doc.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, dup := keys[k.Kid]; dup {
			continue
		}
		pk, err := k.publicKey()
		if err != nil {
			continue
		}
		keys[k.Kid] = pk
	}
	return keys, nil
}

func (k jwk) publicKey() (publicKey, error) {
	switch k.Kty {
	case "OKP":
		if k.Crv != "Ed25519" || (k.Alg != "" && k.Alg != "EdDSA") {
			return publicKey{}, errors.New("unsupported OKP key")
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, errors.New("bad Ed25519 x")
		}
		return publicKey{alg: "EdDSA", pub: ed25519.PublicKey(x)}, nil
	case "EC":
		var (
			curve elliptic.Curve
			alg   string
		)
		switch k.Crv {
		case "P-256":
			curve, alg = elliptic.P256(), "ES256"
		case "P-521":
			curve, alg = elliptic.P521(), "ES512"
		default:
			return publicKey{}, errors.New("unsupported EC curve")
		}
		if k.Alg != "" && k.Alg != alg {
			return publicKey{}, errors.New("EC key alg does not match its curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		x, errX := b64(k.X)
		y, errY := b64(k.Y)
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return publicKey{}, errors.New("bad EC coordinates")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return publicKey{}, err
		}
		return publicKey{alg: alg, pub: pub}, nil
	case "RSA":
		// An RSA key verifies RS256 or PS256; only its alg says which.
		if k.Alg != "RS256" && k.Alg != "PS256" {
			return publicKey{}, errors.New("RSA key without a supported alg")
		}
		n, errN := b64(k.N)
		e, errE := b64(k.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return publicKey{}, errors.New("bad RSA key")
		}
		exp := new(big.Int).SetBytes(e).Int64()
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
		if pub.N.BitLen() < minRSABits || exp < 3 || exp%2 == 0 {
			return publicKey{}, errors.New("weak RSA key")
		}
		return publicKey{alg: k.Alg, pub: pub}, nil
	default:
		return publicKey{}, errors.New("unsupported key type")
	}
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.Strict().DecodeString(s) }

// sameOriginRedirects returns a copy of c (the caller's client is left as
// it is) that follows a redirect only to the origin of the JWKS URL, and at
// most maxJWKSRedirects of them; c's own CheckRedirect, if any, is asked
// after that. The key set decides whose tokens are accepted: a redirect
// elsewhere (an open redirect on Better Auth's host, a compromised proxy)
// must not hand that choice to another server.
func sameOriginRedirects(c *http.Client) *http.Client {
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxJWKSRedirects {
			return fmt.Errorf("JWKS redirected more than %d times", maxJWKSRedirects)
		}
		if !sameOrigin(via[0].URL, req.URL) {
			return fmt.Errorf("JWKS redirect to another origin (%s) refused", origin(req.URL))
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &cc
}

// sameOrigin compares scheme, host and port (a missing port is the
// scheme's default).
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		effectivePort(a) == effectivePort(b)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// origin is u's scheme://host[:port], without user info, path or query.
func origin(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// redactURL is raw without user info, query and fragment, for errors that
// reach the logs: a JWKS URL may carry credentials in either.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(JWKS URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
