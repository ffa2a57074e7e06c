// Package authtest mints credentials exactly as Better Auth does, for tests
// of taskchat's authentication: HS256 tokens like the todo app's
// /api/auth/token route, JWT-plugin tokens with a JWKS server, and session
// rows with their signed bearer and cookie values. It also has a fake clock.
package authtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
)

// Clock is a fake clock for auth.WithClock; it only moves when told to.
// It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// HS256TTL is the lifetime of tokens from HS256Claims.
const HS256TTL = 30 * time.Minute

// HS256Claims returns the claims the todo app's /api/auth/token route puts
// in its HS256 tokens: sub, email, name, iat and exp (now + HS256TTL).
// Change or delete entries to test other tokens.
func HS256Claims(userID string, now time.Time) map[string]any {
	return map[string]any{
		"sub":   userID,
		"email": userID + "@example.test",
		"name":  "Test " + userID,
		"iat":   now.Unix(),
		"exp":   now.Add(HS256TTL).Unix(),
	}
}

// MintHS256 signs claims with HS256 and secret, header {"alg":"HS256","typ":"JWT"}.
func MintHS256(t testing.TB, secret string, claims map[string]any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString([]byte(secret))
	if err != nil {
		t.Fatalf("sign HS256: %v", err)
	}
	return s
}

// Algs are the algorithms Better Auth's JWT plugin can sign with.
var Algs = []string{"EdDSA", "ES256", "ES512", "RS256", "PS256"}

// PluginTTL is the default lifetime of Better Auth JWT-plugin tokens.
const PluginTTL = 15 * time.Minute

type signingKey struct {
	kid    string
	alg    string
	method jwt.SigningMethod
	priv   crypto.Signer
	// removed keys still sign but are not published.
	removed bool
}

// JWKSServer plays Better Auth's JWT plugin: it serves GET /api/auth/jwks
// from an httptest server and signs tokens with its keys. It is safe for
// concurrent use.
type JWKSServer struct {
	srv *httptest.Server

	mu      sync.Mutex
	keys    []signingKey
	fetches int
	failing bool
}

// NewJWKSServer starts a JWKS server with one key per alg in algs (one
// Ed25519 key, Better Auth's default, when algs is empty). It is closed when
// the test ends.
func NewJWKSServer(t testing.TB, algs ...string) *JWKSServer {
	t.Helper()
	s := &JWKSServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.srv.Close)
	if len(algs) == 0 {
		algs = []string{"EdDSA"}
	}
	for _, alg := range algs {
		s.AddKey(t, alg)
	}
	return s
}

// URL is the server's base URL, what BETTER_AUTH_URL would be; tokens'
// iss and aud are this URL.
func (s *JWKSServer) URL() string { return s.srv.URL }

// JWKSURL is the URL of the key set.
func (s *JWKSServer) JWKSURL() string { return s.srv.URL + "/api/auth/jwks" }

// Fetches counts the requests for the key set so far.
func (s *JWKSServer) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// SetFailing makes the key set answer 503 (true) or work again (false).
func (s *JWKSServer) SetFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = failing
}

// AddKey creates a key for alg, publishes it in the key set and returns its
// kid. Later tokens for alg are signed with it (see KeyID).
func (s *JWKSServer) AddKey(t testing.TB, alg string) string {
	t.Helper()
	k := signingKey{alg: alg, kid: randomKID()}
	var err error
	switch alg {
	case "EdDSA":
		_, k.priv, err = ed25519.GenerateKey(rand.Reader)
		k.method = jwt.SigningMethodEdDSA
	case "ES256":
		k.priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k.method = jwt.SigningMethodES256
	case "ES512":
		k.priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		k.method = jwt.SigningMethodES512
	case "RS256":
		k.priv, err = rsa.GenerateKey(rand.Reader, 2048)
		k.method = jwt.SigningMethodRS256
	case "PS256":
		k.priv, err = rsa.GenerateKey(rand.Reader, 2048)
		k.method = jwt.SigningMethodPS256
	default:
		t.Fatalf("authtest: unsupported alg %q", alg)
	}
	if err != nil {
		t.Fatalf("generate %s key: %v", alg, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
	return k.kid
}

// RemoveKey takes the key kid out of the key set (tokens can still be
// signed with it, to test revocation).
func (s *JWKSServer) RemoveKey(kid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.keys {
		if s.keys[i].kid == kid {
			s.keys[i].removed = true
		}
	}
}

// KeyID returns the kid of the newest published key for alg, or "".
func (s *JWKSServer) KeyID(alg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.keys) - 1; i >= 0; i-- {
		if s.keys[i].alg == alg && !s.keys[i].removed {
			return s.keys[i].kid
		}
	}
	return ""
}

// PublicKey returns the public key of kid (nil when unknown).
func (s *JWKSServer) PublicKey(kid string) crypto.PublicKey {
	k, ok := s.key(kid)
	if !ok {
		return nil
	}
	return k.priv.Public()
}

func (s *JWKSServer) key(kid string) (signingKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.kid == kid {
			return k, true
		}
	}
	return signingKey{}, false
}

// Claims returns the claims Better Auth's JWT plugin puts in a token for
// userID issued at now: the user's fields (id, email, name, emailVerified),
// sub, iat, exp (now + PluginTTL), and iss and aud equal to URL.
func (s *JWKSServer) Claims(userID string, now time.Time) map[string]any {
	return map[string]any{
		"id":            userID,
		"email":         userID + "@example.test",
		"name":          "Test " + userID,
		"emailVerified": false,
		"sub":           userID,
		"iat":           now.Unix(),
		"exp":           now.Add(PluginTTL).Unix(),
		"iss":           s.URL(),
		"aud":           s.URL(),
	}
}

// Sign signs claims with key kid, header {"alg","kid"} only, as Better Auth
// does.
func (s *JWKSServer) Sign(t testing.TB, kid string, claims map[string]any) string {
	t.Helper()
	k, ok := s.key(kid)
	if !ok {
		t.Fatalf("authtest: unknown kid %q", kid)
	}
	tok := jwt.NewWithClaims(k.method, jwt.MapClaims(claims))
	tok.Header = map[string]any{"alg": k.method.Alg(), "kid": k.kid}
	out, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatalf("sign %s: %v", k.method.Alg(), err)
	}
	return out
}

// Token returns a token for userID signed with the newest alg key, with
// Better Auth's claims (see Claims).
func (s *JWKSServer) Token(t testing.TB, alg, userID string, now time.Time) string {
	t.Helper()
	kid := s.KeyID(alg)
	if kid == "" {
		t.Fatalf("authtest: no %s key", alg)
	}
	return s.Sign(t, kid, s.Claims(userID, now))
}

func (s *JWKSServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/api/auth/jwks" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.fetches++
	failing := s.failing
	keys := make([]map[string]string, 0, len(s.keys))
	for _, k := range s.keys {
		if jwk := publicJWK(k); jwk != nil && !k.removed {
			keys = append(keys, jwk)
		}
	}
	s.mu.Unlock()
	if failing {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// publicJWK renders k's public half as Better Auth's JWKS does.
func publicJWK(k signingKey) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := k.priv.Public().(type) {
	case ed25519.PublicKey:
		if k.alg != "EdDSA" {
			return nil
		}
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pub), "kid": k.kid, "alg": k.alg}
	case *ecdsa.PublicKey:
		if k.alg != "ES256" && k.alg != "ES512" {
			return nil
		}
		raw, _ := pub.Bytes() // 0x04 || X || Y, fixed-size coordinates
		size := (len(raw) - 1) / 2
		crv := map[string]string{"ES256": "P-256", "ES512": "P-521"}[k.alg]
		return map[string]string{"kty": "EC", "crv": crv, "x": b64(raw[1 : 1+size]), "y": b64(raw[1+size:]), "kid": k.kid, "alg": k.alg}
	case *rsa.PublicKey:
		if k.alg != "RS256" && k.alg != "PS256" {
			return nil
		}
		return map[string]string{"kty": "RSA", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()), "kid": k.kid, "alg": k.alg}
	}
	return nil
}

func randomKID() string { return authstore.NewID() }

// Session is a session row created by CreateSession, with the credential
// forms Better Auth hands out for it.
type Session struct {
	// ID is session.id; UserID its "userId".
	ID, UserID string
	// Token is the bare session.token.
	Token string
	// Signed is "<token>.<base64 HMAC>", the bearer plugin's value and the
	// cookie's decoded value.
	Signed string
	// Cookie is Signed URL-encoded, as the better-auth.session_token cookie
	// holds it.
	Cookie string
	// ExpiresAt is session."expiresAt".
	ExpiresAt time.Time
}

// CreateSession inserts a session for userID (which must exist) with a
// random 32-character token, expiring at expiresAt, and signs it with
// secret.
func CreateSession(t testing.TB, db bun.IDB, secret, userID string, expiresAt time.Time) Session {
	t.Helper()
	row := authstore.Session{UserID: userID, ExpiresAt: expiresAt}
	if err := authstore.NewStore(db).CreateSession(context.Background(), &row); err != nil {
		t.Fatalf("create session: %v", err)
	}
	signed := auth.SignSessionToken(secret, row.Token)
	return Session{
		ID: row.ID, UserID: userID, Token: row.Token, Signed: signed,
		Cookie: url.QueryEscape(signed), ExpiresAt: row.ExpiresAt,
	}
}
