package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/httpapi"
)

// TestConfigValidate checks each rule of Config.Validate, that every
// message names the environment variable (or, without one, the field) to
// fix, and that all problems are reported at once.
func TestConfigValidate(t *testing.T) {
	cors := func(o ...string) httpapi.Config { return httpapi.Config{CORSOrigins: o} }
	proxies := func(p ...string) httpapi.Config { return httpapi.Config{TrustedProxies: p} }
	deps := newEnv(t).deps
	cases := []struct {
		name string
		cfg  httpapi.Config
		// want lists, for each expected problem, a text its message holds;
		// empty means valid.
		want []string
	}{
		{"zero values mean defaults", httpapi.Config{}, nil},
		{"the defaults", httpapi.Config{BodyLimit: httpapi.DefaultBodyLimit, MaxConns: httpapi.DefaultMaxConns}, nil},
		{"smallest body limit", httpapi.Config{BodyLimit: 1 << 10}, nil},
		{"largest body limit", httpapi.Config{BodyLimit: 4 << 20}, nil},
		{"body limit too small", httpapi.Config{BodyLimit: 1<<10 - 1}, []string{"HTTP_BODY_LIMIT"}},
		{"body limit too large", httpapi.Config{BodyLimit: 4<<20 + 1}, []string{"HTTP_BODY_LIMIT"}},
		{"negative body limit", httpapi.Config{BodyLimit: -1}, []string{"HTTP_BODY_LIMIT"}},
		{"one connection", httpapi.Config{MaxConns: 1}, nil},
		{"a million connections", httpapi.Config{MaxConns: 1 << 20}, nil},
		{"negative connections", httpapi.Config{MaxConns: -1}, []string{"HTTP_MAX_CONNS"}},
		{"too many connections", httpapi.Config{MaxConns: 1<<20 + 1}, []string{"HTTP_MAX_CONNS"}},
		{"origins", cors("*", "https://app.example.com", "http://localhost:3000", "https://App.Example.com/", "http://[::1]:8080"), nil},
		{"origin without scheme", cors("app.example.com"), []string{"CORS_ORIGINS"}},
		{"origin of another scheme", cors("ftp://files.example.com"), []string{"CORS_ORIGINS"}},
		{"origin with a path", cors("https://app.example.com/app"), []string{"CORS_ORIGINS"}},
		{"origin with a query", cors("https://app.example.com?x=1"), []string{"CORS_ORIGINS"}},
		{"origin with an empty query", cors("https://app.example.com?"), []string{"CORS_ORIGINS"}},
		{"origin with a fragment", cors("https://app.example.com#top"), []string{"CORS_ORIGINS"}},
		{"origin with an empty fragment", cors("https://app.example.com#"), []string{"CORS_ORIGINS"}},
		{"origin with a user", cors("https://user@app.example.com"), []string{"CORS_ORIGINS"}},
		{"origin with a password", cors("https://user:pw@app.example.com"), []string{"CORS_ORIGINS"}},
		{"origin without host", cors("https://:443"), []string{"CORS_ORIGINS"}},
		{"origin with a bad port", cors("https://app.example.com:https"), []string{"CORS_ORIGINS"}},
		{"empty origin", cors(""), []string{"CORS_ORIGINS"}},
		{"origin with https's default port", cors("https://app.example.com:443"), []string{"default port 443"}},
		{"origin with http's default port", cors("http://localhost:80"), []string{"default port 80"}},
		{"origin with another port", cors("https://app.example.com:8443", "http://localhost:443"), nil},
		{"wildcard origin host", cors("https://*.example.com"), []string{"wildcard"}},
		{"each bad origin", cors("https://ok.example.com", "a.example.com", "https://b.example.com/x"), []string{`"a.example.com"`, `"https://b.example.com/x"`}},
		{"proxies", proxies("10.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32"), nil},
		{"proxy host name", proxies("proxy.internal"), []string{"HTTP_TRUSTED_PROXIES"}},
		{"proxy address out of range", proxies("10.0.0.256"), []string{"HTTP_TRUSTED_PROXIES"}},
		{"proxy prefix too long", proxies("10.0.0.0/33"), []string{"HTTP_TRUSTED_PROXIES"}},
		{"proxy with space", proxies(" 10.0.0.1"), []string{"HTTP_TRUSTED_PROXIES"}},
		{"proxy with zone", proxies("fe80::1%eth0"), []string{"HTTP_TRUSTED_PROXIES"}},
		{"negative timeouts", httpapi.Config{ReadTimeout: -1, WriteTimeout: -time.Second, IdleTimeout: -1, ReadyTimeout: -1},
			[]string{"ReadTimeout", "WriteTimeout", "IdleTimeout", "ReadyTimeout"}},
		{"everything at once", httpapi.Config{BodyLimit: 512, MaxConns: -5, CORSOrigins: []string{"https://a.example.com#x"}, TrustedProxies: []string{"nope"}},
			[]string{"HTTP_BODY_LIMIT", "HTTP_MAX_CONNS", "CORS_ORIGINS", "HTTP_TRUSTED_PROXIES"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %d problems", len(tc.want))
			}
			var problems []error
			if j, ok := err.(interface{ Unwrap() []error }); ok { // errors.Join
				problems = j.Unwrap()
			} else {
				problems = []error{err}
			}
			if len(problems) != len(tc.want) {
				t.Fatalf("Validate() = %d problems, want %d:\n%v", len(problems), len(tc.want), err)
			}
			for i, want := range tc.want {
				if !strings.Contains(problems[i].Error(), want) {
					t.Errorf("problem %d = %q, want it to name %s", i, problems[i], want)
				}
			}
			// New refuses what Validate refuses.
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), tc.want[0]) {
					t.Errorf("New panicked with %v, want the problems", r)
				}
			}()
			httpapi.New(tc.cfg, deps)
		})
	}
}
