package auth_test

import (
	"context"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
)

// countingStore is a fakeStore that counts the lookups it answers, to show
// that a credential was refused before any query.
type countingStore struct {
	fakeStore
	calls atomic.Int64
}

func (c *countingStore) UserExists(ctx context.Context, id string) (bool, error) {
	c.calls.Add(1)
	return c.fakeStore.UserExists(ctx, id)
}

func (c *countingStore) SessionUser(ctx context.Context, token string, now time.Time) (string, error) {
	c.calls.Add(1)
	return c.fakeStore.SessionUser(ctx, token, now)
}

// newCountingSetup is a verifier (HS256 secret and a JWKS) over a counting
// store that knows user, and maps every token in sessions to user: were a
// malformed token looked up, the store would accept it.
func newCountingSetup(t *testing.T, user string, sessions ...string) (*auth.Verifier, *countingStore, *authtest.JWKSServer, *authtest.Clock) {
	t.Helper()
	jwks := authtest.NewJWKSServer(t)
	clock := authtest.NewClock(time.Unix(1_900_000_000, 0))
	store := &countingStore{fakeStore: fakeStore{users: map[string]bool{user: true}, sessions: map[string]string{}}}
	for _, s := range sessions {
		store.sessions[s] = user
	}
	v, err := auth.NewVerifier(auth.Config{Secret: secret, BetterAuthURL: jwks.URL()}, store, auth.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v, store, jwks, clock
}

// wantNoLookup checks that err is a rejection and that the store was not
// asked.
func wantNoLookup(t *testing.T, store *countingStore, got string, err error, credential string) {
	t.Helper()
	wantUnauthorized(t, got, err, credential)
	if n := store.calls.Load(); n != 0 {
		t.Fatalf("the store was queried %d times for a malformed credential", n)
	}
}

// TestMalformedSessionTokenNeverQueried checks that a session token outside
// the id alphabet [A-Za-z0-9_-] is refused before the store is asked, bare
// or signed (with the right secret), as a bearer value or a cookie. The
// first case is the credential that logged in as another user on a server
// with standard_conforming_strings off.
func TestMalformedSessionTokenNeverQueried(t *testing.T) {
	ctx := context.Background()
	const user = "victimUser0123456789abcdefghijkl"
	injection := `\')OR("userId"=$$` + user + `$$)--`
	tokens := []struct {
		name, token string
	}{
		{"SQL injection through backslash and quote", injection},
		{"single quote", "abc'def"},
		{"double quote", `abc"def`},
		{"backslash", `abc\def`},
		{"parentheses", "abc(def)"},
		{"dollar quoting", "abc$$def"},
		{"semicolon", "abc;def"},
		{"percent", "abc%def"},
		{"plus", "abc+def"},
		{"slash", "abc/def"},
		{"equals", "abc=def"},
		{"space", "abc def"},
		{"tab", "abc\tdef"},
		{"NUL", "abc\x00def"},
		{"DEL", "abc\x7fdef"},
		{"newline", "abc\ndef"},
		{"non-ASCII letter", "abcédef"},
		{"invalid UTF-8", "abc\xffdef"},
	}
	for _, tc := range tokens {
		signed := auth.SignSessionToken(secret, tc.token)
		forms := []struct {
			name   string
			verify func(v *auth.Verifier) (string, error)
			cred   string
		}{
			{"bare", nil, tc.token},
			{"bare, URL-encoded", nil, url.PathEscape(tc.token)},
			{"signed", nil, signed},
			{"signed, URL-encoded", nil, url.QueryEscape(signed)},
			{"cookie", func(v *auth.Verifier) (string, error) {
				return v.VerifySessionCookie(ctx, url.QueryEscape(signed))
			}, url.QueryEscape(signed)},
		}
		for _, f := range forms {
			t.Run(tc.name+"/"+f.name, func(t *testing.T) {
				v, store, _, _ := newCountingSetup(t, user, tc.token)
				var (
					got string
					err error
				)
				if f.verify != nil {
					got, err = f.verify(v)
				} else {
					got, err = v.Verify(ctx, f.cred)
				}
				wantNoLookup(t, store, got, err, f.cred)
			})
		}
	}

	// The alphabet is not narrower than the id generators': Better Auth's
	// own tokens and nanoid/base64url ones are looked up and accepted.
	for _, tok := range []string{"AbcXyz0123456789abcdefghijklmnop", "nanoid-style_token-0123456789AB"} {
		t.Run("accepted "+tok, func(t *testing.T) {
			v, store, _, _ := newCountingSetup(t, user, tok)
			for _, cred := range []string{tok, auth.SignSessionToken(secret, tok)} {
				got, err := v.Verify(ctx, cred)
				wantAccepted(t, got, err, user)
			}
			if store.calls.Load() == 0 {
				t.Fatal("the store was never asked")
			}
		})
	}
}

// TestControlCharactersInSubNeverQueried checks that a sub holding a control
// character is refused, for HS256 and JWT-plugin tokens, before the user is
// looked up (Postgres would fail the query on a NUL, which looked like an
// outage: 503).
func TestControlCharactersInSubNeverQueried(t *testing.T) {
	ctx := context.Background()
	const user = "knownUser0123456789abcdefghijklm"
	subs := []struct {
		name, sub string
	}{
		{"NUL", user + "\x00"},
		{"NUL alone", "\x00"},
		{"SOH", "a\x01b"},
		{"newline", "a\nb"},
		{"carriage return", "a\rb"},
		{"unit separator 0x1f", "a\x1fb"},
		{"DEL", "a\x7fb"},
		{"C1 control U+0085", "a\u0085b"},
	}
	for _, tc := range subs {
		t.Run("HS256 "+tc.name, func(t *testing.T) {
			v, store, _, clock := newCountingSetup(t, user)
			store.users[tc.sub] = true // were it looked up, it would be found
			tok := authtest.MintHS256(t, secret, authtest.HS256Claims(tc.sub, clock.Now()))
			got, err := v.Verify(ctx, tok)
			wantNoLookup(t, store, got, err, tok)
		})
		t.Run("plugin "+tc.name, func(t *testing.T) {
			v, store, jwks, clock := newCountingSetup(t, user)
			store.users[tc.sub] = true
			tok := jwks.Token(t, "EdDSA", tc.sub, clock.Now())
			got, err := v.Verify(ctx, tok)
			wantNoLookup(t, store, got, err, tok)
		})
	}

	// Ordinary text in a sub is still an opaque id: it is looked up.
	t.Run("accepted: spaces and non-ASCII", func(t *testing.T) {
		odd := "odd user/ä+1"
		v, store, _, clock := newCountingSetup(t, odd)
		got, err := v.Verify(ctx, authtest.MintHS256(t, secret, authtest.HS256Claims(odd, clock.Now())))
		wantAccepted(t, got, err, odd)
		if store.calls.Load() != 1 {
			t.Fatalf("store calls = %d, want 1", store.calls.Load())
		}
	})
}
