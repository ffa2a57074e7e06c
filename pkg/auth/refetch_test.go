package auth_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

func wantFetches(t *testing.T, jwks *authtest.JWKSServer, want int) {
	t.Helper()
	if got := jwks.Fetches(); got != want {
		t.Fatalf("JWKS fetched %d times, want %d", got, want)
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestJWKSRefetchOnUnknownKid(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	s := newSetup(t, auth.Config{BetterAuthURL: jwks.URL()})
	user := dbtest.CreateUser(t, testDB.DB, "")
	oldKid := jwks.KeyID("EdDSA")

	got, err := s.v.Verify(ctx, jwks.Token(t, "EdDSA", user, s.clock.Now()))
	wantAccepted(t, got, err, user)
	wantFetches(t, jwks, 1)

	// A kid that is in no JWKS: one refetch once the 30 s have passed since
	// the first fetch, then throttled.
	gone := jwks.AddKey(t, "EdDSA")
	jwks.RemoveKey(gone)
	unknown := func() string { return jwks.Sign(t, gone, jwks.Claims(user, s.clock.Now())) }

	got, err = s.v.Verify(ctx, unknown())
	wantUnauthorized(t, got, err, "")
	wantFetches(t, jwks, 1) // the first fetch was just now

	s.clock.Advance(30 * time.Second)
	got, err = s.v.Verify(ctx, unknown())
	wantUnauthorized(t, got, err, "")
	wantFetches(t, jwks, 2)

	for range 5 {
		got, err = s.v.Verify(ctx, unknown())
		wantUnauthorized(t, got, err, "")
	}
	s.clock.Advance(29 * time.Second)
	got, err = s.v.Verify(ctx, unknown())
	wantUnauthorized(t, got, err, "")
	wantFetches(t, jwks, 2)

	// A rotated-in key: not seen while throttled, picked up after.
	rotated := jwks.AddKey(t, "EdDSA")
	token := func() string { return jwks.Sign(t, rotated, jwks.Claims(user, s.clock.Now())) }
	got, err = s.v.Verify(ctx, token())
	wantUnauthorized(t, got, err, "")
	wantFetches(t, jwks, 2)

	s.clock.Advance(time.Second)
	got, err = s.v.Verify(ctx, token())
	wantAccepted(t, got, err, user)
	wantFetches(t, jwks, 3)

	// Both keys are cached now: no more fetches.
	for _, kid := range []string{oldKid, rotated} {
		got, err = s.v.Verify(ctx, jwks.Sign(t, kid, jwks.Claims(user, s.clock.Now())))
		wantAccepted(t, got, err, user)
	}
	wantFetches(t, jwks, 3)
}

func TestJWKSConcurrentMissesShareOneFetch(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	s := newSetup(t, auth.Config{BetterAuthURL: jwks.URL()})
	user := dbtest.CreateUser(t, testDB.DB, "")
	token := jwks.Token(t, "EdDSA", user, s.clock.Now())

	const n = 32
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, n)
	)
	for range n {
		wg.Go(func() {
			<-start
			got, err := s.v.Verify(ctx, token)
			if err == nil && got != user {
				err = errors.New("wrong user " + got)
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	wantFetches(t, jwks, 1)
}

func TestJWKSFailedFetch(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	s := newSetup(t, auth.Config{BetterAuthURL: jwks.URL()})
	user := dbtest.CreateUser(t, testDB.DB, "")
	token := func() string { return jwks.Token(t, "EdDSA", user, s.clock.Now()) }

	wantUnavailable := func(t *testing.T) {
		t.Helper()
		_, err := s.v.Verify(ctx, token())
		if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrUnauthorized) {
			t.Fatalf("Verify with the JWKS down = %v, want ErrUnavailable only", err)
		}
	}

	jwks.SetFailing(true)
	wantUnavailable(t)
	wantFetches(t, jwks, 1)

	// Within the short back-off: no new fetch.
	s.clock.Advance(time.Second)
	wantUnavailable(t)
	wantFetches(t, jwks, 1)

	// After it (well before JWKSMinRefetch): retried.
	s.clock.Advance(2 * time.Second)
	wantUnavailable(t)
	wantFetches(t, jwks, 2)

	jwks.SetFailing(false)
	s.clock.Advance(3 * time.Second)
	got, err := s.v.Verify(ctx, token())
	wantAccepted(t, got, err, user)
	wantFetches(t, jwks, 3)
}

func TestJWKSOldKeySetIsRefreshed(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	s := newSetup(t, auth.Config{BetterAuthURL: jwks.URL()})
	user := dbtest.CreateUser(t, testDB.DB, "")
	kid := jwks.KeyID("EdDSA")
	token := func() string { return jwks.Sign(t, kid, jwks.Claims(user, s.clock.Now())) }

	got, err := s.v.Verify(ctx, token())
	wantAccepted(t, got, err, user)

	// The key is withdrawn from the JWKS. Cached keys keep working until the
	// key set is old; then the next use refreshes it in the background.
	jwks.RemoveKey(kid)
	s.clock.Advance(10 * time.Minute)
	got, err = s.v.Verify(ctx, token())
	wantAccepted(t, got, err, user)
	wantFetches(t, jwks, 1)

	s.clock.Advance(6 * time.Minute)
	got, err = s.v.Verify(ctx, token())
	wantAccepted(t, got, err, user) // served from the old set meanwhile
	eventually(t, "the withdrawn key to be rejected", func() bool {
		_, err := s.v.Verify(ctx, token())
		return errors.Is(err, auth.ErrUnauthorized)
	})
	wantFetches(t, jwks, 2)
}

func TestDeletedUserStopsWorkingAfterCacheTTL(t *testing.T) {
	ctx := context.Background()
	s := newSetup(t, auth.Config{Secret: secret})
	user := dbtest.CreateUser(t, testDB.DB, "")
	token := authtest.MintHS256(t, secret, authtest.HS256Claims(user, s.clock.Now()))

	got, err := s.v.Verify(ctx, token)
	wantAccepted(t, got, err, user)
	if err := s.store.DeleteUser(ctx, user); err != nil {
		t.Fatal(err)
	}

	s.clock.Advance(59 * time.Second)
	got, err = s.v.Verify(ctx, token)
	wantAccepted(t, got, err, user) // still cached

	s.clock.Advance(time.Second)
	got, err = s.v.Verify(ctx, token)
	wantUnauthorized(t, got, err, token)
}

func TestStoreFailureIsNotUnauthorized(t *testing.T) {
	ctx := context.Background()
	db, err := pgdb.Open(ctx, pgdb.Config{URL: testDB.URL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	user := dbtest.CreateUser(t, testDB.DB, "")
	clock := authtest.NewClock(time.Now())
	sess := authtest.CreateSession(t, testDB.DB, secret, user, clock.Now().Add(time.Hour))
	v, err := auth.NewVerifier(auth.Config{Secret: secret}, authstore.NewStore(db), auth.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	db.Close() // the database goes away

	tests := []struct {
		name   string
		verify func() (string, error)
	}{
		{"HS256 token (user lookup)", func() (string, error) {
			return v.Verify(ctx, authtest.MintHS256(t, secret, authtest.HS256Claims(user, clock.Now())))
		}},
		{"signed session token (session lookup)", func() (string, error) { return v.Verify(ctx, sess.Signed) }},
		{"bare session token", func() (string, error) { return v.Verify(ctx, sess.Token) }},
		{"session cookie", func() (string, error) { return v.VerifySessionCookie(ctx, sess.Cookie) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.verify()
			if err == nil {
				t.Fatalf("accepted as %q with the database closed", got)
			}
			if errors.Is(err, auth.ErrUnauthorized) || !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("error %v: want ErrUnavailable, not ErrUnauthorized", err)
			}
			if strings.Contains(err.Error(), sess.Token) {
				t.Errorf("error text contains the session token: %v", err)
			}
		})
	}

	// Invalid credentials are still rejected as such without touching the
	// store.
	_, err = v.Verify(ctx, "garbage.sig")
	if !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("garbage with the database closed = %v, want ErrUnauthorized", err)
	}
}

// TestJWKSErrorsHideURLCredentials checks that a failed JWKS fetch, whose
// error the HTTP layer logs, does not quote user info or a query string of
// JWKS_URL: either may hold a credential.
func TestJWKSErrorsHideURLCredentials(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	user := dbtest.CreateUser(t, testDB.DB, "")
	const pass, query = "jwks-password-123", "jwks-query-secret-456"
	withSecrets := func(base string) string {
		return strings.Replace(base, "://", "://reader:"+pass+"@", 1) + "/api/auth/jwks?key=" + query
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more
	for name, jwksURL := range map[string]string{
		"status 503":      withSecrets(jwks.URL()),
		"connect refused": withSecrets(closedURL),
	} {
		t.Run(name, func(t *testing.T) {
			jwks.SetFailing(true)
			s := newSetup(t, auth.Config{BetterAuthURL: jwks.URL(), JWKSURL: jwksURL})
			_, err := s.v.Verify(ctx, jwks.Token(t, "EdDSA", user, s.clock.Now()))
			if !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("Verify = %v, want ErrUnavailable", err)
			}
			if msg := err.Error(); strings.Contains(msg, pass) || strings.Contains(msg, query) || !strings.Contains(msg, "/api/auth/jwks") {
				t.Fatalf("error %q quotes URL credentials or does not say where", msg)
			}
		})
	}
}
