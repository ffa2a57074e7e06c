package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

// redirectServer is another origin in front of a JWKSServer: its paths
// redirect as the test wires them ("{self}" in a target stands for the
// server's own host), and /api/auth/jwks proxies the real key set, so that
// jwks.Fetches counts what reached it. hits counts every request it gets.
type redirectServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newRedirectServer(t *testing.T, jwks *authtest.JWKSServer, redirects map[string]string) *redirectServer {
	t.Helper()
	target, err := url.Parse(jwks.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	rs := &redirectServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.hits.Add(1)
		if to, ok := redirects[r.URL.Path]; ok {
			http.Redirect(w, r, strings.ReplaceAll(to, "{self}", r.Host), http.StatusFound)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(rs.Close)
	return rs
}

// TestJWKSRedirects checks that JWKS fetches follow redirects only within
// the JWKS URL's origin, and only a few of them, with the default client
// and with one passed by WithHTTPClient.
func TestJWKSRedirects(t *testing.T) {
	ctx := context.Background()
	jwks := authtest.NewJWKSServer(t)
	user := dbtest.CreateUser(t, testDB.DB, "")

	// The real key set is at another origin (another port) than rs.
	rs := newRedirectServer(t, jwks, map[string]string{
		"/elsewhere":   jwks.JWKSURL(),
		"/moved":       "/api/auth/jwks",
		"/moved-twice": "/moved",
		"/absolute":    "http://{self}/api/auth/jwks",
		"/loop":        "/loop",
		"/to-https":    "https://{self}/api/auth/jwks", // same host and port, other scheme
	})
	tests := []struct {
		name      string
		path      string
		client    *http.Client // nil: the default client
		wantOK    bool
		wantInErr string
	}{
		{"redirect to another origin", "/elsewhere", nil, false, "another origin"},
		{"redirect to another origin, caller's client", "/elsewhere", &http.Client{Timeout: 5 * time.Second}, false, "another origin"},
		{"same-origin redirect", "/moved", nil, true, ""},
		{"same-origin redirect, caller's client", "/moved", &http.Client{}, true, ""},
		{"two same-origin redirects", "/moved-twice", nil, true, ""},
		{"same-origin redirect to an absolute URL", "/absolute", nil, true, ""},
		{"redirect to https on the same host and port", "/to-https", nil, false, "another origin"},
		{"endless same-origin redirects", "/loop", nil, false, "redirected more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, hitsBefore := jwks.Fetches(), rs.hits.Load()
			var opts []auth.Option
			if tc.client != nil {
				opts = append(opts, auth.WithHTTPClient(tc.client))
			}
			clock := authtest.NewClock(time.Now().UTC().Truncate(time.Second))
			opts = append(opts, auth.WithClock(clock.Now))
			v, err := auth.NewVerifier(auth.Config{BetterAuthURL: jwks.URL(), JWKSURL: rs.URL + tc.path}, authstore.NewStore(testDB.DB), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.client != nil && tc.client.CheckRedirect != nil {
				t.Fatal("WithHTTPClient changed the caller's client")
			}
			got, err := v.Verify(ctx, jwks.Token(t, "EdDSA", user, clock.Now()))
			if tc.wantOK {
				wantAccepted(t, got, err, user)
				return
			}
			if !errors.Is(err, auth.ErrUnavailable) || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("Verify = %q, %v; want ErrUnavailable saying %q", got, err, tc.wantInErr)
			}
			if n := jwks.Fetches() - before; n != 0 {
				t.Fatalf("the key set at the other origin was fetched %d times", n)
			}
			if hits := rs.hits.Load() - hitsBefore; hits > 4 {
				t.Fatalf("%d requests for one fetch, want at most 4 (3 redirects)", hits)
			}
		})
	}

	t.Run("caller's redirect policy still applies", func(t *testing.T) {
		var asked atomic.Int64
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			asked.Add(1)
			return errors.New("caller refuses redirects")
		}}
		v, err := auth.NewVerifier(auth.Config{BetterAuthURL: jwks.URL(), JWKSURL: rs.URL + "/moved"}, authstore.NewStore(testDB.DB), auth.WithHTTPClient(client))
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(ctx, jwks.Token(t, "EdDSA", user, time.Now()))
		if !errors.Is(err, auth.ErrUnavailable) || asked.Load() != 1 {
			t.Fatalf("Verify = %v, caller's CheckRedirect asked %d times; want ErrUnavailable after asking once", err, asked.Load())
		}
	})
}
