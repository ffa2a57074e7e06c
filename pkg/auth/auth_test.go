package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "auth", &testDB)) }

const secret = "authtest-secret-0123456789abcdef0123456789abcdef"

// setup is one verifier over the real store, with a fake clock.
type setup struct {
	v     *auth.Verifier
	clock *authtest.Clock
	store *authstore.Store
}

func newSetup(t *testing.T, cfg auth.Config) *setup {
	t.Helper()
	clock := authtest.NewClock(time.Now().UTC().Truncate(time.Second))
	store := authstore.NewStore(testDB.DB)
	v, err := auth.NewVerifier(cfg, store, auth.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return &setup{v: v, clock: clock, store: store}
}

// wantAccepted checks that err is nil and the user id is want.
func wantAccepted(t *testing.T, got string, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("rejected: %v", err)
	}
	if got != want {
		t.Fatalf("user id = %q, want %q", got, want)
	}
}

// wantUnauthorized checks that err is a rejection that does not quote the
// credential.
func wantUnauthorized(t *testing.T, got string, err error, credential string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted as %q, want ErrUnauthorized", got)
	}
	if !errors.Is(err, auth.ErrUnauthorized) || errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("error %v: want ErrUnauthorized only", err)
	}
	if got != "" {
		t.Errorf("user id %q returned with an error", got)
	}
	t.Logf("rejected: %v", err)
	if len(credential) >= 8 && strings.Contains(err.Error(), credential) {
		t.Errorf("error text contains the credential: %v", err)
	}
	for _, part := range strings.Split(credential, ".") {
		if len(part) >= 16 && strings.Contains(err.Error(), part) {
			t.Errorf("error text contains part of the credential: %v", err)
		}
	}
}

func TestVerifyAccepts(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t, authtest.Algs...)
	s := newSetup(t, auth.Config{Secret: secret, BetterAuthURL: jwks.URL()})
	withIssAud := newSetup(t, auth.Config{Secret: secret, BetterAuthURL: jwks.URL() + "/", JWTIssuer: "phaseiii-app", JWTAudience: "taskchat"})
	user := dbtest.CreateUser(t, testDB.DB, "")
	now := s.clock.Now()

	hsWithIssAud := authtest.HS256Claims(user, now)
	hsWithIssAud["iss"], hsWithIssAud["aud"] = "phaseiii-app", "taskchat"
	hsAudArray := authtest.HS256Claims(user, now)
	hsAudArray["iss"], hsAudArray["aud"] = "phaseiii-app", []string{"other", "taskchat"}
	minted, err := auth.SignHS256(secret, auth.TokenClaims{UserID: user, Email: "a@b.c", Name: "A", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	mintedIssAud, err := auth.SignHS256(secret, auth.TokenClaims{UserID: user, Issuer: "phaseiii-app", Audience: "taskchat", TTL: 7 * 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	pluginAudArray := jwks.Claims(user, now)
	pluginAudArray["aud"] = []string{"https://elsewhere.test", jwks.URL()}
	withinSkew := func(claim string, d time.Duration) map[string]any {
		c := authtest.HS256Claims(user, now)
		c[claim] = now.Add(d).Unix()
		return c
	}
	sess := authtest.CreateSession(t, testDB.DB, secret, user, now.Add(time.Hour))
	unpadded := strings.TrimRight(sess.Signed, "=")

	tests := []struct {
		name       string
		v          *setup
		credential string
	}{
		{"HS256 from the todo app", s, authtest.MintHS256(t, secret, authtest.HS256Claims(user, now))},
		{"HS256 from SignHS256", s, minted},
		{"HS256 with iss/aud the verifier ignores", s, authtest.MintHS256(t, secret, hsWithIssAud)},
		{"HS256 with configured iss and aud", withIssAud, authtest.MintHS256(t, secret, hsWithIssAud)},
		{"HS256 with aud array containing the configured one", withIssAud, authtest.MintHS256(t, secret, hsAudArray)},
		{"HS256 from SignHS256 with iss/aud, 7 day TTL", withIssAud, mintedIssAud},
		{"HS256 expired within the skew", s, authtest.MintHS256(t, secret, withinSkew("exp", -59*time.Second))},
		{"HS256 nbf within the skew", s, authtest.MintHS256(t, secret, withinSkew("nbf", 59*time.Second))},
		{"HS256 iat within the skew", s, authtest.MintHS256(t, secret, withinSkew("iat", 59*time.Second))},
		{"EdDSA plugin token", s, jwks.Token(t, "EdDSA", user, now)},
		{"ES256 plugin token", s, jwks.Token(t, "ES256", user, now)},
		{"ES512 plugin token", s, jwks.Token(t, "ES512", user, now)},
		{"RS256 plugin token", s, jwks.Token(t, "RS256", user, now)},
		{"PS256 plugin token", s, jwks.Token(t, "PS256", user, now)},
		{"plugin token with aud array", s, jwks.Sign(t, jwks.KeyID("EdDSA"), pluginAudArray)},
		{"plugin token, BETTER_AUTH_URL with trailing slash", withIssAud, jwks.Token(t, "EdDSA", user, now)},
		{"signed session token (padded)", s, sess.Signed},
		{"signed session token (unpadded)", s, unpadded},
		{"bare session token", s, sess.Token},
		{"URL-encoded signed session token (bearer plugin's set-auth-token)", s, sess.Cookie},
		{"URL-safe base64 signature", s, sess.Token + "." + strings.NewReplacer("+", "-", "/", "_").Replace(unpadded[len(sess.Token)+1:])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.v.Verify(ctx, tc.credential)
			wantAccepted(t, got, err, user)
		})
	}

	t.Run("session cookie, URL-encoded", func(t *testing.T) {
		if !strings.HasSuffix(sess.Cookie, "%3D") {
			t.Fatalf("cookie %q does not end in %%3D like Better Auth's", sess.Cookie)
		}
		got, err := s.v.VerifySessionCookie(ctx, sess.Cookie)
		wantAccepted(t, got, err, user)
	})
	t.Run("session cookie, already decoded", func(t *testing.T) {
		got, err := s.v.VerifySessionCookie(ctx, sess.Signed)
		wantAccepted(t, got, err, user)
	})
	t.Run("session cookie encoded with encodeURIComponent rules", func(t *testing.T) {
		// encodeURIComponent escapes '+' '/' '=' like QueryEscape; a
		// literal '+' must survive decoding (it is not a space here).
		got, err := s.v.VerifySessionCookie(ctx, strings.ReplaceAll(sess.Cookie, "%2B", "+"))
		wantAccepted(t, got, err, user)
	})
}

func TestVerifyRejects(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t, "EdDSA", "ES256", "PS256")
	s := newSetup(t, auth.Config{Secret: secret, BetterAuthURL: jwks.URL()})
	strict := newSetup(t, auth.Config{Secret: secret, BetterAuthURL: jwks.URL(), JWTIssuer: "phaseiii-app", JWTAudience: "taskchat", RequireSessionSignature: true})
	noSecret := newSetup(t, auth.Config{BetterAuthURL: jwks.URL()})
	noJWKS := newSetup(t, auth.Config{Secret: secret})
	user := dbtest.CreateUser(t, testDB.DB, "")
	now := s.clock.Now()

	hs := func(edit func(c map[string]any)) string {
		c := authtest.HS256Claims(user, now)
		edit(c)
		return authtest.MintHS256(t, secret, c)
	}
	plugin := func(edit func(c map[string]any)) string {
		c := jwks.Claims(user, now)
		edit(c)
		return jwks.Sign(t, jwks.KeyID("EdDSA"), c)
	}

	// alg none: an unsigned token.
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims(authtest.HS256Claims(user, now))).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// Algorithm confusion: HS256 keyed with the RSA public key's PEM.
	der, err := x509.MarshalPKIXPublicKey(jwks.PublicKey(jwks.KeyID("PS256")))
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	confused := authtest.MintHS256(t, pemKey, authtest.HS256Claims(user, now))
	confusedWithKid := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(jwks.Claims(user, now)))
		tok.Header["kid"] = jwks.KeyID("PS256")
		out, err := tok.SignedString([]byte(pemKey))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}()
	// A PS256 token relabelled RS256: the key's alg pins PS256.
	rsOnPSKey := func() string {
		parts := strings.Split(jwks.Token(t, "PS256", user, now), ".")
		return b64json(t, map[string]any{"alg": "RS256", "kid": jwks.KeyID("PS256")}) + "." + parts[1] + "." + parts[2]
	}()
	// ES256 header on an Ed25519 key's kid.
	esOnEdKid := func() string {
		c := jwks.Claims(user, now)
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(c))
		tok.Header = map[string]any{"alg": "ES256", "kid": jwks.KeyID("EdDSA")}
		// Signed with the ES256 key, announced under the EdDSA kid.
		valid := jwks.Token(t, "ES256", user, now)
		parts := strings.Split(valid, ".")
		hdr := b64json(t, tok.Header)
		return hdr + "." + parts[1] + "." + parts[2]
	}()
	hs512 := func() string {
		out, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims(authtest.HS256Claims(user, now))).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}()
	tampered := func() string {
		valid := jwks.Token(t, "EdDSA", user, now)
		parts := strings.Split(valid, ".")
		other := jwks.Claims("someone-else", now)
		return parts[0] + "." + b64json(t, other) + "." + parts[2]
	}()
	tamperedHS := func() string {
		parts := strings.Split(authtest.MintHS256(t, secret, authtest.HS256Claims(user, now)), ".")
		return parts[0] + "." + b64json(t, authtest.HS256Claims("someone-else", now)) + "." + parts[2]
	}()
	removedKid := jwks.AddKey(t, "EdDSA")
	jwks.RemoveKey(removedKid)
	unknownKid := jwks.Sign(t, removedKid, jwks.Claims(user, now))

	sess := authtest.CreateSession(t, testDB.DB, secret, user, now.Add(time.Hour))
	expiredSess := authtest.CreateSession(t, testDB.DB, secret, user, now.Add(-time.Second))
	deletedSess := authtest.CreateSession(t, testDB.DB, secret, user, now.Add(time.Hour))
	if err := s.store.DeleteSession(ctx, deletedSess.ID); err != nil {
		t.Fatal(err)
	}
	ghost := authstore.NewID() // never in "user"
	// Logged in as user where standard_conforming_strings was off.
	injection := `\')OR("userId"=$$` + user + `$$)--`

	tests := []struct {
		name       string
		v          *setup
		credential string
	}{
		{"empty", s, ""},
		{"garbage", s, "hello world"},
		{"over the length limit", s, strings.Repeat("a", auth.MaxCredentialLength+1)},
		{"three dotted garbage segments", s, "abc.def.ghi"},
		{"header without alg", s, b64json(t, map[string]any{"typ": "JWT"}) + ".e30.c2ln"},
		{"alg none", s, none},
		{"alg none with an empty signature segment", s, strings.TrimSuffix(none, ".") + "."},
		{"HS256 signed with the RSA public key PEM", s, confused},
		{"HS256 with the RSA key's kid, signed with its PEM", s, confusedWithKid},
		{"HS256 with a wrong secret", s, authtest.MintHS256(t, "another-secret-0123456789abcdef0123456789", authtest.HS256Claims(user, now))},
		{"HS512 (not pinned)", s, hs512},
		{"HS256 tampered payload", s, tamperedHS},
		{"HS256 expired beyond the skew", s, hs(func(c map[string]any) { c["exp"] = now.Add(-61 * time.Second).Unix() })},
		{"HS256 nbf in the future", s, hs(func(c map[string]any) { c["nbf"] = now.Add(61 * time.Second).Unix() })},
		{"HS256 iat in the future", s, hs(func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() })},
		{"HS256 missing exp", s, hs(func(c map[string]any) { delete(c, "exp") })},
		{"HS256 missing sub", s, hs(func(c map[string]any) { delete(c, "sub") })},
		{"HS256 non-string sub", s, hs(func(c map[string]any) { c["sub"] = 42 })},
		{"HS256 wrong iss", strict, hs(func(c map[string]any) { c["iss"], c["aud"] = "evil", "taskchat" })},
		{"HS256 missing iss when configured", strict, hs(func(c map[string]any) { c["aud"] = "taskchat" })},
		{"HS256 wrong aud", strict, hs(func(c map[string]any) { c["iss"], c["aud"] = "phaseiii-app", "other" })},
		{"HS256 without a secret configured", noSecret, hs(func(map[string]any) {})},
		{"HS256 for a user not in \"user\"", s, authtest.MintHS256(t, secret, authtest.HS256Claims(ghost, now))},
		{"plugin token tampered payload", s, tampered},
		{"plugin token unknown kid", s, unknownKid},
		{"plugin token without kid", s, func() string {
			parts := strings.Split(jwks.Token(t, "EdDSA", user, now), ".")
			return b64json(t, map[string]any{"alg": "EdDSA"}) + "." + parts[1] + "." + parts[2]
		}()},
		{"plugin token with crit header", s, func() string {
			parts := strings.Split(jwks.Token(t, "EdDSA", user, now), ".")
			return b64json(t, map[string]any{"alg": "EdDSA", "kid": jwks.KeyID("EdDSA"), "crit": []string{"b64"}}) + "." + parts[1] + "." + parts[2]
		}()},
		{"ES256 header on an Ed25519 key", s, esOnEdKid},
		{"RS256 header on a PS256 key", s, rsOnPSKey},
		{"plugin token wrong iss", s, plugin(func(c map[string]any) { c["iss"] = "https://evil.test" })},
		{"plugin token iss with trailing slash", s, plugin(func(c map[string]any) { c["iss"] = jwks.URL() + "/" })},
		{"plugin token wrong aud", s, plugin(func(c map[string]any) { c["aud"] = "https://evil.test" })},
		{"plugin token aud array without ours", s, plugin(func(c map[string]any) { c["aud"] = []string{"a", "b"} })},
		{"plugin token missing aud", s, plugin(func(c map[string]any) { delete(c, "aud") })},
		{"plugin token missing exp", s, plugin(func(c map[string]any) { delete(c, "exp") })},
		{"plugin token expired beyond the skew", s, plugin(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() })},
		{"plugin token iat in the future", s, plugin(func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() })},
		{"plugin token nbf in the future", s, plugin(func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() })},
		{"plugin token for a user not in \"user\"", s, jwks.Token(t, "EdDSA", ghost, now)},
		{"plugin token without JWKS configured", noJWKS, jwks.Token(t, "EdDSA", user, now)},
		{"expired session", s, expiredSess.Signed},
		{"expired session, bare", s, expiredSess.Token},
		{"deleted session", s, deletedSess.Signed},
		{"unknown bare token", s, authstore.NewID()},
		{"session with a wrong signature", s, authtest.CreateSession(t, testDB.DB, "other-secret-0123456789abcdef0123456789", user, now.Add(time.Hour)).Signed},
		{"session with a truncated signature", s, sess.Signed[:len(sess.Signed)-3]},
		{"session with an empty signature", s, sess.Token + "."},
		{"session signature with trailing garbage", s, sess.Signed + "AA"},
		{"session signature over another token", s, authstore.NewID() + sess.Signed[len(sess.Token):]},
		{"session id with the token's signature", s, sess.ID + "." + sess.Signed[len(sess.Token)+1:]},
		{"signed session without a secret configured", noSecret, sess.Signed},
		{"bare session when signatures are required", strict, sess.Token},
		{"bare token with a space", s, sess.Token + " x"},
		{"bad percent-encoding", s, sess.Token + "%zz"},
		{"URL-encoded bare token with a dot", s, sess.Token + "%2E"},
		{"SQL injection as a bare token", s, injection},
		{"SQL injection, URL-encoded", s, url.PathEscape(injection)},
		{"SQL injection signed with the secret", s, auth.SignSessionToken(secret, injection)},
		{"HS256 sub with a NUL", s, hs(func(c map[string]any) { c["sub"] = user + "\x00" })},
		{"HS256 sub with a newline", s, hs(func(c map[string]any) { c["sub"] = user + "\n" })},
		{"plugin token sub with a NUL", s, plugin(func(c map[string]any) { c["sub"] = user + "\x00" })},
		{"plugin token sub with DEL", s, plugin(func(c map[string]any) { c["sub"] = user + "\x7f" })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.v.Verify(ctx, tc.credential)
			wantUnauthorized(t, got, err, tc.credential)
		})
	}

	cookies := []struct {
		name, value string
	}{
		{"empty cookie", ""},
		{"bare token in a cookie", sess.Token},
		{"JWT in a cookie", jwks.Token(t, "EdDSA", user, now)},
		{"bad percent-encoding", sess.Token + ".%zz"},
		{"double URL-encoded", url.QueryEscape(sess.Cookie)},
		{"cookie with a wrong signature", url.QueryEscape(sess.Token + "." + base64.StdEncoding.EncodeToString(make([]byte, 32)))},
		{"expired session cookie", expiredSess.Cookie},
	}
	for _, tc := range cookies {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.v.VerifySessionCookie(ctx, tc.value)
			wantUnauthorized(t, got, err, tc.value)
		})
	}
}

// b64json encodes v as a JWT segment.
func b64json(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
