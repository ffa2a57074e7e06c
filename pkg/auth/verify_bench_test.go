package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

// BenchmarkVerify measures one verification per credential kind against the
// real store on Postgres. HS256 is the baseline: its user-existence answer
// comes from the cache, so it is pure parsing and HMAC. The JWT-plugin kinds
// add their signature check (keys cached after the first fetch); sessions add
// a database lookup on every request.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(b, authtest.Algs...)
	store := authstore.NewStore(testDB.DB)
	v, err := auth.NewVerifier(auth.Config{Secret: secret, BetterAuthURL: jwks.URL()}, store)
	if err != nil {
		b.Fatal(err)
	}
	user := dbtest.CreateUser(b, testDB.DB, "")
	now := time.Now()
	session := authtest.CreateSession(b, testDB.DB, secret, user, now.Add(time.Hour))

	cases := []struct{ name, credential string }{
		{"HS256", authtest.MintHS256(b, secret, authtest.HS256Claims(user, now))},
	}
	for _, alg := range authtest.Algs {
		cases = append(cases, struct{ name, credential string }{alg, jwks.Token(b, alg, user, now)})
	}
	cases = append(cases,
		struct{ name, credential string }{"session-signed", session.Signed},
		struct{ name, credential string }{"session-bare", session.Token},
	)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if got, err := v.Verify(ctx, c.credential); err != nil || got != user {
				b.Fatalf("Verify = %q, %v", got, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := v.Verify(ctx, c.credential); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
