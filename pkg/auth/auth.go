// Package auth verifies the credentials Better Auth issues and returns the
// caller's user id. It accepts three kinds of credential:
//
//   - HS256 JWTs signed with BETTER_AUTH_SECRET (the todo app's own
//     /api/auth/token route);
//   - Better Auth JWT-plugin tokens (EdDSA, ES256, ES512, RS256, PS256),
//     verified with public keys fetched from Better Auth's JWKS;
//   - Better Auth session tokens, signed ("<token>.<base64 HMAC>") or bare,
//     looked up in the shared session table.
//
// Every rejection wraps ErrUnauthorized. Failures to reach the database or
// the JWKS wrap ErrUnavailable instead, so the HTTP layer can answer 503
// rather than 401. Error texts give a reason for debug logs but never
// contain the credential.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Names of Better Auth's session cookie (the second is used over https).
const (
	SessionCookieName       = "better-auth.session_token"
	SecureSessionCookieName = "__Secure-better-auth.session_token"
)

// MaxCredentialLength bounds a credential's length in bytes; longer ones are
// rejected before any parsing.
const MaxCredentialLength = 8 << 10

// MinSecretLength is the shortest BETTER_AUTH_SECRET accepted, in bytes.
// HS256 tokens and session-token signatures made with a shorter secret can
// be brute-forced offline from a single token; Better Auth itself asks for
// at least 32 characters.
const MinSecretLength = 32

// Defaults and limits of Config's durations.
const (
	DefaultClockSkew      = 60 * time.Second
	DefaultUserCacheTTL   = 60 * time.Second
	MaxUserCacheTTL       = 60 * time.Second
	DefaultJWKSMinRefetch = 30 * time.Second
	DefaultJWKSTimeout    = 5 * time.Second
)

var (
	// ErrUnauthorized is wrapped by every rejection of a credential.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable is wrapped when a credential could not be checked
	// because the user/session store or the JWKS did not answer. It never
	// comes together with ErrUnauthorized.
	ErrUnavailable = errors.New("authentication unavailable")
)

// Config configures a Verifier. The zero value of each duration means its
// default; Validate reports what is wrong.
type Config struct {
	// Secret is BETTER_AUTH_SECRET: it verifies HS256 JWTs and
	// session-token signatures.
	Secret string
	// BetterAuthURL is BETTER_AUTH_URL, Better Auth's base URL.
	BetterAuthURL string
	// JWKSURL is JWKS_URL (default BetterAuthURL + "/api/auth/jwks").
	JWKSURL string
	// JWKSIssuer and JWKSAudience are what JWT-plugin tokens' iss must equal
	// and aud must contain (BETTER_AUTH_JWT_ISSUER / _AUDIENCE; default
	// BetterAuthURL without a trailing slash).
	JWKSIssuer, JWKSAudience string
	// JWTIssuer and JWTAudience are checked on HS256 tokens only when set
	// (JWT_ISSUER / JWT_AUDIENCE).
	JWTIssuer, JWTAudience string
	// RequireSessionSignature rejects bare session tokens
	// (AUTH_SESSION_REQUIRE_SIGNATURE).
	RequireSessionSignature bool
	// ClockSkew is the leeway on exp, nbf and iat (default 60s).
	ClockSkew time.Duration
	// UserCacheTTL is how long a user is known to exist without asking the
	// store again (default and maximum 60s).
	UserCacheTTL time.Duration
	// JWKSMinRefetch is the least time between JWKS fetches caused by
	// unknown key ids (default 30s).
	JWKSMinRefetch time.Duration
	// JWKSTimeout bounds one JWKS fetch (default 5s).
	JWKSTimeout time.Duration
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Secret == "" && c.BetterAuthURL == "" && c.JWKSURL == "" {
		errs = append(errs, errors.New("no credential can be verified: set BETTER_AUTH_SECRET or BETTER_AUTH_URL/JWKS_URL"))
	}
	if c.Secret != "" {
		if err := checkSecret(c.Secret); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range []struct{ name, value string }{{"BETTER_AUTH_URL", c.BetterAuthURL}, {"JWKS_URL", c.JWKSURL}} {
		if u.value == "" {
			continue
		}
		if err := checkHTTPURL(u.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.name, err))
		}
	}
	if c.JWKSURL != "" && c.BetterAuthURL == "" && (c.JWKSIssuer == "" || c.JWKSAudience == "") {
		errs = append(errs, errors.New("JWKS_URL without BETTER_AUTH_URL: set BETTER_AUTH_JWT_ISSUER and BETTER_AUTH_JWT_AUDIENCE"))
	}
	if c.RequireSessionSignature && c.Secret == "" {
		errs = append(errs, errors.New("AUTH_SESSION_REQUIRE_SIGNATURE needs BETTER_AUTH_SECRET to check signatures"))
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"clock skew", c.ClockSkew},
		{"user cache TTL", c.UserCacheTTL},
		{"JWKS min refetch", c.JWKSMinRefetch},
		{"JWKS timeout", c.JWKSTimeout},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %s)", d.name, d.value))
		}
	}
	if c.UserCacheTTL > MaxUserCacheTTL {
		errs = append(errs, fmt.Errorf("user cache TTL %s is over %s: a deleted user's tokens must stop working within that", c.UserCacheTTL, MaxUserCacheTTL))
	}
	if len(errs) > 0 {
		return fmt.Errorf("auth config: %w", errors.Join(errs...))
	}
	return nil
}

// checkSecret refuses a secret shorter than MinSecretLength. The message
// gives its length, never the secret.
func checkSecret(secret string) error {
	if len(secret) < MinSecretLength {
		return fmt.Errorf("BETTER_AUTH_SECRET is %d bytes, it must be at least %d: "+
			"HS256 tokens and session signatures made with a shorter secret can be brute-forced offline "+
			"(Better Auth itself asks for %d; openssl rand -base64 32 makes one)",
			len(secret), MinSecretLength, MinSecretLength)
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// withDefaults fills in every unset field that has a default.
func (c Config) withDefaults() Config {
	base := strings.TrimRight(c.BetterAuthURL, "/")
	if c.JWKSURL == "" && base != "" {
		c.JWKSURL = base + "/api/auth/jwks"
	}
	if c.JWKSIssuer == "" {
		c.JWKSIssuer = base
	}
	if c.JWKSAudience == "" {
		c.JWKSAudience = base
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.UserCacheTTL == 0 {
		c.UserCacheTTL = DefaultUserCacheTTL
	}
	if c.JWKSMinRefetch == 0 {
		c.JWKSMinRefetch = DefaultJWKSMinRefetch
	}
	if c.JWKSTimeout == 0 {
		c.JWKSTimeout = DefaultJWKSTimeout
	}
	return c
}

// Store is what the Verifier needs from Better Auth's tables
// (authstore.Store implements it). Implementations must be safe for
// concurrent use.
type Store interface {
	// UserExists reports whether the "user" row id exists: (false, nil) when
	// it does not; a non-nil error only when the store could not answer.
	UserExists(ctx context.Context, id string) (bool, error)
	// SessionUser returns the "userId" of the session with this token whose
	// "expiresAt" is after now: ("", nil) when there is none; a non-nil
	// error only when the store could not answer.
	SessionUser(ctx context.Context, token string, now time.Time) (userID string, err error)
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithClock makes the Verifier read the time from now (tests use a fake
// clock). It covers token time claims, session expiry, the user cache and
// JWKS refetch throttling.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithHTTPClient sets the client JWKS fetches use (default: a client with
// Config.JWKSTimeout). Each fetch is bounded by JWKSTimeout either way, and
// follows redirects only within the JWKS URL's origin: the Verifier uses a
// copy of c with that policy in front of c's own CheckRedirect; c itself is
// not changed.
func WithHTTPClient(c *http.Client) Option { return func(v *Verifier) { v.httpClient = c } }

// WithLogger sets where the Verifier reports what no single request should:
// one Warn per failed JWKS fetch, one Info when fetching works again after
// failures (default: nothing is logged). Entries hold the JWKS URL without
// user info or query, never a credential.
func WithLogger(l *slog.Logger) Option { return func(v *Verifier) { v.log = l } }

// Verifier checks credentials. It is safe for concurrent use.
type Verifier struct {
	cfg        Config
	store      Store
	now        func() time.Time
	log        *slog.Logger
	httpClient *http.Client
	hs256      *hs256Verifier // nil without a secret
	jwks       *jwksVerifier  // nil without a JWKS URL
	users      *userCache
}

// NewVerifier validates cfg and returns a Verifier reading sessions and
// users from store.
func NewVerifier(cfg Config, store Store, opts ...Option) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("auth: nil store")
	}
	v := &Verifier{cfg: cfg.withDefaults(), store: store, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.httpClient == nil {
		v.httpClient = &http.Client{Timeout: v.cfg.JWKSTimeout}
	}
	v.httpClient = sameOriginRedirects(v.httpClient)
	if v.cfg.Secret != "" {
		v.hs256 = newHS256Verifier(v.cfg, v.now)
	}
	if v.cfg.JWKSURL != "" {
		v.jwks = newJWKSVerifier(v.cfg, v.httpClient, v.now, v.log)
	}
	v.users = newUserCache(v.cfg.UserCacheTTL, v.now)
	return v, nil
}

// Verify checks a bearer credential (the Authorization: Bearer value, or an
// access_token query value) of any of the three kinds and returns the user
// id. Rejections wrap ErrUnauthorized; store and JWKS failures wrap
// ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, credential string) (string, error) {
	if err := checkLength(credential); err != nil {
		return "", err
	}
	var (
		userID string
		err    error
	)
	if alg, ok := jwtAlg(credential); ok {
		userID, err = v.verifyJWT(ctx, alg, credential)
	} else {
		userID, err = v.verifyBearerSession(ctx, credential)
	}
	if err != nil {
		return "", err
	}
	return v.checkUser(ctx, userID)
}

// VerifySessionCookie checks the raw value of Better Auth's session cookie,
// still URL-encoded as the browser sent it (fasthttp does not decode
// cookies), and returns the user id. Only signed session tokens are
// accepted here, as Better Auth itself accepts only signed cookies; JWTs
// never come in cookies.
func (v *Verifier) VerifySessionCookie(ctx context.Context, cookieValue string) (string, error) {
	if err := checkLength(cookieValue); err != nil {
		return "", err
	}
	// PathUnescape, not QueryUnescape: Better Auth encodes with
	// encodeURIComponent, and a literal '+' (a base64 character) must not
	// turn into a space.
	value, err := url.PathUnescape(cookieValue)
	if err != nil {
		return "", unauthorized("session cookie is not URL-encoded")
	}
	if value == "" {
		return "", unauthorized("empty session cookie")
	}
	userID, err := v.verifySession(ctx, value, true)
	if err != nil {
		return "", err
	}
	return v.checkUser(ctx, userID)
}

// verifyBearerSession checks a session credential sent as a bearer value.
// Better Auth's bearer plugin hands out the cookie value still URL-encoded
// (set-auth-token ends in %3D) and decodes it on the way back in; do the same.
// Neither tokens nor base64 contain '%', so this cannot change a valid value.
func (v *Verifier) verifyBearerSession(ctx context.Context, credential string) (string, error) {
	if strings.Contains(credential, "%") {
		decoded, err := url.PathUnescape(credential)
		if err != nil {
			return "", unauthorized("session token is not URL-encoded")
		}
		credential = decoded
	}
	return v.verifySession(ctx, credential, v.cfg.RequireSessionSignature)
}

func (v *Verifier) verifyJWT(ctx context.Context, alg, token string) (string, error) {
	switch {
	case alg == "HS256":
		if v.hs256 == nil {
			return "", unauthorized("HS256 token but no BETTER_AUTH_SECRET configured")
		}
		return v.hs256.verify(token)
	case asymmetricAlgs[alg]:
		if v.jwks == nil {
			return "", unauthorized("%s token but no JWKS configured", alg)
		}
		return v.jwks.verify(ctx, token)
	default:
		// alg is attacker-controlled: do not echo it.
		return "", unauthorized("unsupported JWT algorithm")
	}
}

// checkUser makes sure the verified user still exists.
func (v *Verifier) checkUser(ctx context.Context, userID string) (string, error) {
	if v.users.fresh(userID) {
		return userID, nil
	}
	ok, err := v.store.UserExists(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("%w: user lookup: %w", ErrUnavailable, err)
	}
	if !ok {
		return "", unauthorized("user does not exist")
	}
	v.users.add(userID)
	return userID, nil
}

func checkLength(credential string) error {
	if credential == "" {
		return unauthorized("empty credential")
	}
	if len(credential) > MaxCredentialLength {
		return unauthorized("credential longer than %d bytes", MaxCredentialLength)
	}
	return nil
}

// unauthorized returns a rejection; reason must never include the credential.
func unauthorized(reason string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthorized, fmt.Sprintf(reason, args...))
}

// maxUserIDLength bounds a sub claim; Better Auth ids are 32 characters.
const maxUserIDLength = 255

// checkSubject rejects a sub no user id can be, before it is looked up:
// Postgres refuses NUL in text and invalid UTF-8 in any string (a query with
// either fails, which would look like an outage), and no id generator makes
// control characters. Unlike session tokens, ids are otherwise opaque text
// (other id generators exist), so nothing else is refused. The reasons never
// quote the sub.
func checkSubject(sub string) (string, error) {
	if err := ValidUserID(sub); err != nil {
		return "", unauthorized("token sub %v", err)
	}
	return sub, nil
}

// ValidUserID reports why id can never be a verified caller: it is empty,
// longer than 255 bytes, not UTF-8, or holds a control character. The
// Verifier refuses such a sub; chatctl checks ids with it before minting a
// token the API would refuse.
func ValidUserID(id string) error {
	switch {
	case id == "":
		return errors.New("is empty")
	case len(id) > maxUserIDLength:
		return fmt.Errorf("is longer than %d bytes", maxUserIDLength)
	case !utf8.ValidString(id):
		return errors.New("is not valid UTF-8")
	case strings.ContainsFunc(id, unicode.IsControl):
		return errors.New("contains a control character")
	}
	return nil
}
