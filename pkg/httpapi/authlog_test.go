package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
)

// TestRejectionReasonLogged checks that each refused credential leaves its
// reason in the debug log, and that the line holds no part of the
// credential.
func TestRejectionReasonLogged(t *testing.T) {
	e := newEnv(t)
	e.srv.BrowserGet("/api/:user_id/probe", whoami)
	user := dbtest.CreateUser(t, testDB.DB, "")
	now := time.Now()
	sess := authtest.CreateSession(t, testDB.DB, testSecret, user, now.Add(time.Hour))
	hsWith := func(edit func(map[string]any)) string {
		c := authtest.HS256Claims(user, now)
		edit(c)
		return authtest.MintHS256(t, testSecret, c)
	}

	tests := []struct {
		name       string
		q          req
		credential string // what must not be logged
		reason     string
	}{
		{"wrong secret", req{token: authtest.MintHS256(t, "another-secret-0123456789abcdef0123", authtest.HS256Claims(user, now))}, "", "HS256 token: bad signature"},
		{"expired", req{token: hsWith(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })}, "", "token expired"},
		{"exp as a string", req{token: hsWith(func(c map[string]any) { c["exp"] = "9999999999" })}, "", "must be JSON numbers"},
		{"sub with a NUL", req{token: hsWith(func(c map[string]any) { c["sub"] = user + "\x00" })}, "", "control character"},
		{"user not in the database", req{token: hs256(t, authstore.NewID())}, "", "user does not exist"},
		{"unknown bare session token", req{token: authstore.NewID()}, "", "no active session"},
		{"session signed with another secret", req{token: auth.SignSessionToken("another-secret-0123456789abcdef0123", sess.Token)}, "", "bad session token signature"},
		{"SQL injection as a session token", req{token: `\')OR("userId"=$$` + user + `$$)--`}, "", "malformed session token"},
		{"not a bearer header", req{header: map[string]string{"Authorization": "Basic dXNlcjpzZWtyaXQtcGFzc3dvcmQ="}}, "dXNlcjpzZWtyaXQtcGFzc3dvcmQ=", "Bearer <credential>"},
		{"cookie from an unlisted origin", req{path: "/api/" + user + "/probe", header: map[string]string{
			"Cookie": auth.SessionCookieName + "=" + sess.Cookie, "Origin": "https://evil.example.com",
		}}, sess.Cookie, "not accepted from this origin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.method = "GET"
			if q.path == "" {
				q.path = "/api/" + user + "/tasks"
			}
			cred := tc.credential
			if cred == "" {
				cred = q.token
			}
			before := len(e.log.String())
			wantProblem(t, e.do(t, q), http.StatusUnauthorized, "UNAUTHORIZED")
			logged := e.log.String()[before:]

			var line string
			for l := range strings.Lines(logged) {
				if strings.Contains(l, `msg="credential rejected"`) {
					line = l
				}
			}
			if !strings.Contains(line, "level=DEBUG") || !strings.Contains(line, tc.reason) {
				t.Fatalf("no debug line with the reason %q:\n%s", tc.reason, logged)
			}
			if strings.Contains(logged, cred) {
				t.Fatalf("the log holds the credential:\n%s", logged)
			}
			for _, part := range strings.FieldsFunc(cred, func(r rune) bool { return r == '.' || r == '%' }) {
				if len(part) >= 16 && strings.Contains(logged, part) {
					t.Fatalf("the log holds part of the credential %q:\n%s", part, logged)
				}
			}
		})
	}
}

// TestUnavailableLoggedAtDebug checks that a credential that cannot be
// checked is logged at debug level per request, and that while the JWKS is
// down a burst of requests gives one warning (the verifier's, per failed
// fetch), not one per request.
func TestUnavailableLoggedAtDebug(t *testing.T) {
	t.Run("store down", func(t *testing.T) {
		e := newEnv(t, withAuthStore(downStore{}))
		for range 3 {
			wantProblem(t, e.do(t, req{method: "GET", path: "/api/u1/tasks", token: hs256(t, "u1")}), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		}
		logs := e.log.String()
		if n := strings.Count(logs, `level=DEBUG msg="credential check failed"`); n != 3 {
			t.Fatalf("%d debug lines for 3 failed checks:\n%s", n, logs)
		}
		if strings.Contains(logs, "level=WARN") {
			t.Fatalf("a warning per request:\n%s", logs)
		}
	})

	t.Run("JWKS down", func(t *testing.T) {
		jwks := authtest.NewJWKSServer(t)
		clock := authtest.NewClock(time.Now())
		e := newEnv(t, withDeps(func(d *httpapi.Deps) {
			// The verifier logs to the server's log, as the service wires it.
			v, err := auth.NewVerifier(auth.Config{BetterAuthURL: jwks.URL()}, authstore.NewStore(testDB.DB),
				auth.WithClock(clock.Now), auth.WithLogger(d.Log))
			if err != nil {
				t.Fatal(err)
			}
			d.Auth = v
		}))
		user := dbtest.CreateUser(t, testDB.DB, "")
		jwks.SetFailing(true)
		const n = 5
		for range n {
			r := e.do(t, req{method: "GET", path: "/api/" + user + "/tasks", token: jwks.Token(t, "EdDSA", user, clock.Now())})
			wantProblem(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		}
		logs := e.log.String()
		if got := strings.Count(logs, "level=WARN"); got != 1 || !strings.Contains(logs, `level=WARN msg="JWKS fetch failed"`) {
			t.Fatalf("%d warnings for one failed fetch, want the verifier's one:\n%s", got, logs)
		}
		if got := strings.Count(logs, `level=DEBUG msg="credential check failed"`); got != n {
			t.Fatalf("%d debug lines for %d requests:\n%s", got, n, logs)
		}
	})
}
