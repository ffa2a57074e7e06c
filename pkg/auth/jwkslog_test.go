package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
)

// TestJWKSFailuresLoggedOncePerFetch checks that while the JWKS is down,
// each failed fetch is logged once however many tokens are refused, that
// recovery is logged once, and that neither quotes URL credentials or
// tokens.
func TestJWKSFailuresLoggedOncePerFetch(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	user := dbtest.CreateUser(t, testDB.DB, "")
	const pass, query = "jwks-log-password-123", "jwks-log-query-456"
	jwksURL := strings.Replace(jwks.URL(), "://", "://reader:"+pass+"@", 1) + "/api/auth/jwks?key=" + query

	buf := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := authtest.NewClock(time.Now().UTC().Truncate(time.Second))
	v, err := auth.NewVerifier(auth.Config{BetterAuthURL: jwks.URL(), JWKSURL: jwksURL}, authstore.NewStore(testDB.DB),
		auth.WithClock(clock.Now), auth.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	verify := func(t *testing.T, times int) error {
		t.Helper()
		var err error
		for range times {
			tok := jwks.Token(t, "EdDSA", user, clock.Now())
			tokens = append(tokens, tok)
			_, err = v.Verify(ctx, tok)
		}
		return err
	}
	wantLines := func(t *testing.T, msg string, want int) {
		t.Helper()
		if got := strings.Count(buf.String(), `msg="`+msg+`"`); got != want {
			t.Fatalf("%d %q lines, want %d:\n%s", got, msg, want, buf)
		}
	}

	jwks.SetFailing(true)
	if err := verify(t, 5); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Verify with the JWKS down = %v, want ErrUnavailable", err)
	}
	wantFetches(t, jwks, 1)
	wantLines(t, "JWKS fetch failed", 1)

	clock.Advance(3 * time.Second) // past the back-off: one more fetch
	if err := verify(t, 5); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Verify with the JWKS down = %v, want ErrUnavailable", err)
	}
	wantFetches(t, jwks, 2)
	wantLines(t, "JWKS fetch failed", 2)
	wantLines(t, "JWKS fetch recovered", 0)

	jwks.SetFailing(false)
	clock.Advance(3 * time.Second)
	if err := verify(t, 3); err != nil {
		t.Fatalf("Verify after recovery: %v", err)
	}
	wantLines(t, "JWKS fetch recovered", 1)

	// A later successful fetch (a new key) is not a recovery.
	clock.Advance(auth.DefaultJWKSMinRefetch)
	kid := jwks.AddKey(t, "EdDSA")
	if _, err := v.Verify(ctx, jwks.Sign(t, kid, jwks.Claims(user, clock.Now()))); err != nil {
		t.Fatalf("Verify with a new key: %v", err)
	}
	wantFetches(t, jwks, 4)
	wantLines(t, "JWKS fetch failed", 2)
	wantLines(t, "JWKS fetch recovered", 1)

	logs := buf.String()
	for _, want := range []string{"level=WARN", "level=INFO", "failed_fetches=2", "/api/auth/jwks", "status 503"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	for _, secret := range append([]string{pass, query}, tokens...) {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds a credential %q:\n%s", secret, logs)
		}
	}
}
