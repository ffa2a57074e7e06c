package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
)

// fakeStore is a tiny in-memory auth.Store. It is used only where the
// credential parser is under test (the fuzz target, constructor checks);
// everything about the database is tested against the real authstore
// store.
type fakeStore struct {
	users    map[string]bool
	sessions map[string]string // token -> user id
}

func (f fakeStore) UserExists(_ context.Context, id string) (bool, error) { return f.users[id], nil }

func (f fakeStore) SessionUser(_ context.Context, token string, _ time.Time) (string, error) {
	return f.sessions[token], nil
}

// FuzzVerify feeds arbitrary credentials to Verify and VerifySessionCookie.
// Invariants: no panic; success only ever names the one known user; every
// failure wraps ErrUnauthorized (the fake store never fails and the JWKS
// server is up) and never quotes the credential.
func FuzzVerify(f *testing.F) {
	const user = "fuzzUser0123456789abcdefghijklmn"
	const token = "fuzzSession0123456789abcdefghijk"
	now := time.Unix(1_900_000_000, 0)
	clock := authtest.NewClock(now)
	jwks := authtest.NewJWKSServer(f, "EdDSA", "ES256")
	store := fakeStore{users: map[string]bool{user: true}, sessions: map[string]string{token: user}}
	v, err := auth.NewVerifier(auth.Config{Secret: secret, BetterAuthURL: jwks.URL()}, store, auth.WithClock(clock.Now))
	if err != nil {
		f.Fatal(err)
	}

	signed := auth.SignSessionToken(secret, token)
	hs := authtest.MintHS256(f, secret, authtest.HS256Claims(user, now))
	for _, seed := range []string{
		hs,
		jwks.Token(f, "EdDSA", user, now),
		jwks.Token(f, "ES256", user, now),
		signed,
		strings.TrimRight(signed, "="),
		token,
		"",
		".",
		"..",
		"a.b.c",
		"eyJhbGciOiJub25lIn0.e30.",
		"eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
		"eyJhbGciOiJFZERTQSIsImtpZCI6IngifQ.e30.AAAA",
		hs[:len(hs)-2],
		hs + ".x",
		token + ".%3D",
		token + "%2E" + signed[len(token)+1:],
		"Bearer " + hs,
		strings.Repeat("A", auth.MaxCredentialLength+1),
		"\x00\xff.\x00",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, credential string) {
		for name, verify := range map[string]func(context.Context, string) (string, error){
			"Verify":              v.Verify,
			"VerifySessionCookie": v.VerifySessionCookie,
		} {
			got, err := verify(context.Background(), credential)
			if err == nil {
				if got != user {
					t.Fatalf("%s accepted %q as user %q", name, credential, got)
				}
				continue
			}
			if got != "" {
				t.Fatalf("%s returned user %q with error %v", name, got, err)
			}
			if !errors.Is(err, auth.ErrUnauthorized) {
				t.Fatalf("%s(%q) = %v, want ErrUnauthorized", name, credential, err)
			}
			if len(credential) >= 12 && strings.Contains(err.Error(), credential) {
				t.Fatalf("%s error quotes the credential: %v", name, err)
			}
		}
	})
}
