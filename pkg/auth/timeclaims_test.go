package auth_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

// TestTimeClaimsMustBeNumbers checks that exp, nbf and iat are accepted as
// JSON numbers only, for both JWT kinds. golang-jwt's NumericDate decodes
// through json.Number, which also takes a string holding a number; each
// string below is a value that would pass as a number.
func TestTimeClaimsMustBeNumbers(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	s := newSetup(t, auth.Config{Secret: secret, BetterAuthURL: jwks.URL()})
	user := dbtest.CreateUser(t, testDB.DB, "")
	now := s.clock.Now()
	past := strconv.FormatInt(now.Unix()-10, 10)

	kinds := []struct {
		name string
		mint func(edit func(map[string]any)) string
	}{
		{"HS256", func(edit func(map[string]any)) string {
			c := authtest.HS256Claims(user, now)
			edit(c)
			return authtest.MintHS256(t, secret, c)
		}},
		{"plugin", func(edit func(map[string]any)) string {
			c := jwks.Claims(user, now)
			edit(c)
			return jwks.Sign(t, jwks.KeyID("EdDSA"), c)
		}},
	}
	rejected := []struct {
		name  string
		claim string
		value any
	}{
		{"exp as a string", "exp", "9999999999"},
		{"nbf as a string", "nbf", past},
		{"iat as a string", "iat", past},
		{"exp as a string with a fraction", "exp", "9999999999.5"},
		{"iat as a boolean", "iat", true},
		{"nbf as an object", "nbf", map[string]any{"n": 1}},
	}
	accepted := []struct {
		name  string
		claim string
		value any
	}{
		{"exp as a float", "exp", float64(now.Unix()) + 600.5},
		{"nbf as a number", "nbf", now.Unix() - 10},
		{"nbf null (absent)", "nbf", nil},
		{"iat null (absent)", "iat", nil},
	}
	for _, k := range kinds {
		for _, tc := range rejected {
			t.Run(k.name+" "+tc.name, func(t *testing.T) {
				tok := k.mint(func(c map[string]any) { c[tc.claim] = tc.value })
				got, err := s.v.Verify(ctx, tok)
				wantUnauthorized(t, got, err, tok)
				if !strings.Contains(err.Error(), "must be JSON numbers") {
					t.Errorf("reason %q does not say why", err)
				}
			})
		}
		for _, tc := range accepted {
			t.Run(k.name+" "+tc.name, func(t *testing.T) {
				tok := k.mint(func(c map[string]any) { c[tc.claim] = tc.value })
				got, err := s.v.Verify(ctx, tok)
				wantAccepted(t, got, err, user)
			})
		}
		t.Run(k.name+" exp null is a missing exp", func(t *testing.T) {
			tok := k.mint(func(c map[string]any) { c["exp"] = nil })
			got, err := s.v.Verify(ctx, tok)
			wantUnauthorized(t, got, err, tok)
		})
	}
}
