package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
)

// whoami answers the caller's user id as UserID reports it, and 401 when
// UserID says the request is not authenticated for this route.
func whoami(c *fiber.Ctx) error {
	id := httpapi.UserID(c)
	if id == "" {
		return fiber.ErrUnauthorized
	}
	return c.SendString(id)
}

// TestBearerCredentials checks every credential kind through the real
// verifier on an ordinary route, and the 401 variants.
func TestBearerCredentials(t *testing.T) {
	e := newEnv(t)
	user := dbtest.CreateUser(t, testDB.DB, "")
	now := time.Now()
	sess := authtest.CreateSession(t, testDB.DB, testSecret, user, now.Add(time.Hour))
	expired := authtest.CreateSession(t, testDB.DB, testSecret, user, now.Add(-time.Minute))
	tasks := "/api/" + user + "/tasks"

	good := []struct {
		name, credential string
	}{
		{"HS256 JWT", hs256(t, user)},
		{"JWKS EdDSA JWT", e.jwks.Token(t, "EdDSA", user, now)},
		{"signed session token", sess.Signed},
		{"bare session token", sess.Token},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, req{method: "GET", path: tasks, token: tc.credential})
			wantStatus(t, r, http.StatusOK)
		})
	}

	badClaims := authtest.HS256Claims(user, now.Add(-2*time.Hour)) // expired long ago
	bad := []struct {
		name   string
		header string // the whole Authorization header; "" sends none
	}{
		{"no credential", ""},
		{"basic scheme", "Basic dXNlcjpwYXNz"},
		{"bearer without credential", "Bearer "},
		{"two credentials", "Bearer a b"},
		{"garbage", "Bearer not-a-token"},
		{"wrong HS256 secret", "Bearer " + authtest.MintHS256(t, "another-secret-0123456789abcdef0123", authtest.HS256Claims(user, now))},
		{"expired HS256", "Bearer " + authtest.MintHS256(t, testSecret, badClaims)},
		{"expired session", "Bearer " + expired.Signed},
		{"unknown user", "Bearer " + hs256(t, "no-such-user")},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.header != "" {
				h["Authorization"] = tc.header
			}
			wantProblem(t, e.do(t, req{method: "GET", path: tasks, header: h}), http.StatusUnauthorized, "UNAUTHORIZED")
		})
	}

	t.Run("unknown api route", func(t *testing.T) {
		for _, p := range []string{"/api", "/api/nothing/here", "/api/" + user + "/nothing", "/apix"} {
			wantProblem(t, e.do(t, req{method: "GET", path: p}), http.StatusUnauthorized, "UNAUTHORIZED")
		}
		wantProblem(t, e.do(t, req{method: "GET", path: "/api/" + user + "/nothing", token: hs256(t, user)}), http.StatusNotFound, "NOT_FOUND")
		wantProblem(t, e.do(t, req{method: "DELETE", path: "/api/" + user + "/tasks/1/nothing", token: hs256(t, user)}), http.StatusNotFound, "NOT_FOUND")
		wantProblem(t, e.do(t, req{method: "GET", path: "/api", token: hs256(t, user)}), http.StatusNotFound, "NOT_FOUND")
		// Under /api/{user_id}/ the path user is checked first, whatever follows.
		wantProblem(t, e.do(t, req{method: "GET", path: "/api/nothing/here", token: hs256(t, user)}), http.StatusForbidden, "FORBIDDEN")
	})
	t.Run("unknown route outside api", func(t *testing.T) {
		wantProblem(t, e.do(t, req{method: "GET", path: "/nothing"}), http.StatusNotFound, "NOT_FOUND")
	})
	t.Run("method not allowed", func(t *testing.T) {
		wantProblem(t, e.do(t, req{method: "PATCH", path: tasks, token: hs256(t, user)}), http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED")
	})
}

// TestVerifierUnavailable checks that a verifier that cannot reach its
// store answers 503 with Retry-After, without leaking why.
func TestVerifierUnavailable(t *testing.T) {
	e := newEnv(t, withAuthStore(downStore{}))
	r := e.do(t, req{method: "GET", path: "/api/u1/tasks", token: hs256(t, "u1")})
	p := wantProblem(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if strings.Contains(string(r.body), "10.9.8.7") || strings.Contains(p.Detail, "refused") {
		t.Errorf("503 leaks the cause: %s", r.body)
	}
	if !strings.Contains(e.log.String(), "credential check failed") {
		t.Errorf("the failure is not logged:\n%s", e.log)
	}
}

// TestBrowserCredentials checks that the session cookie (with its Origin
// rule) and ?access_token= work on a BrowserGet route and nowhere else.
func TestBrowserCredentials(t *testing.T) {
	e := newEnv(t)
	e.srv.App().Get("/api/:user_id/plain", whoami)
	// A normal route registered first whose pattern also matches the browser
	// route's paths: Fiber dispatches to it, so browser credentials must not
	// reach it even though the path matches a BrowserGet pattern.
	e.srv.App().Get("/api/:user_id/overlap/:x", whoami)
	e.srv.BrowserGet("/api/:user_id/probe", whoami)
	e.srv.BrowserGet("/api/:user_id/overlap/events", whoami)

	user := dbtest.CreateUser(t, testDB.DB, "")
	other := dbtest.CreateUser(t, testDB.DB, "")
	sess := authtest.CreateSession(t, testDB.DB, testSecret, user, time.Now().Add(time.Hour))
	otherSess := authtest.CreateSession(t, testDB.DB, testSecret, other, time.Now().Add(time.Hour))
	hs := hs256(t, user)
	probe, plain := "/api/"+user+"/probe", "/api/"+user+"/plain"

	cookie := func(name, value string) map[string]string {
		return map[string]string{"Cookie": name + "=" + value}
	}
	withOrigin := func(h map[string]string, origin string) map[string]string {
		h["Origin"] = origin
		return h
	}
	cases := []struct {
		name   string
		q      req
		status int // 200 means the body must be user
	}{
		{"bearer on browser route", req{method: "GET", path: probe, token: hs}, 200},
		{"cookie without Origin", req{method: "GET", path: probe, header: cookie(auth.SessionCookieName, sess.Cookie)}, 200},
		{"secure cookie", req{method: "GET", path: probe, header: cookie(auth.SecureSessionCookieName, sess.Cookie)}, 200},
		{"cookie with listed Origin", req{method: "GET", path: probe, header: withOrigin(cookie(auth.SessionCookieName, sess.Cookie), "https://app.example.com")}, 200},
		{"cookie with unlisted Origin", req{method: "GET", path: probe, header: withOrigin(cookie(auth.SessionCookieName, sess.Cookie), "https://evil.example.com")}, 401},
		{"cookie with null Origin", req{method: "GET", path: probe, header: withOrigin(cookie(auth.SessionCookieName, sess.Cookie), "null")}, 401},
		{"cookie of unknown session", req{method: "GET", path: probe, header: cookie(auth.SessionCookieName, "nope.nope")}, 401},
		{"access_token HS256", req{method: "GET", path: probe + "?access_token=" + url.QueryEscape(hs)}, 200},
		{"access_token JWKS", req{method: "GET", path: probe + "?access_token=" + url.QueryEscape(e.jwks.Token(t, "EdDSA", user, time.Now()))}, 200},
		{"access_token session", req{method: "GET", path: probe + "?access_token=" + url.QueryEscape(sess.Signed)}, 200},
		{"invalid access_token", req{method: "GET", path: probe + "?access_token=junk"}, 401},
		{"no credential on browser route", req{method: "GET", path: probe}, 401},
		{"cookie of another user", req{method: "GET", path: probe, header: cookie(auth.SessionCookieName, otherSess.Cookie)}, 403},
		{"cookie on normal route", req{method: "GET", path: plain, header: cookie(auth.SessionCookieName, sess.Cookie)}, 401},
		{"access_token on normal route", req{method: "GET", path: plain + "?access_token=" + url.QueryEscape(hs)}, 401},
		{"cookie on tasks route", req{method: "GET", path: "/api/" + user + "/tasks", header: cookie(auth.SessionCookieName, sess.Cookie)}, 401},
		{"access_token on tasks route", req{method: "GET", path: "/api/" + user + "/tasks?access_token=" + url.QueryEscape(hs)}, 401},
		{"access_token on POST", req{method: "POST", path: "/api/" + user + "/tasks?access_token=" + url.QueryEscape(hs), body: `{"title":"x"}`}, 401},
		{"cookie on overlapping normal route", req{method: "GET", path: "/api/" + user + "/overlap/events", header: cookie(auth.SessionCookieName, sess.Cookie)}, 401},
		{"bearer on normal route", req{method: "GET", path: plain, token: hs}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.q)
			switch tc.status {
			case 200:
				wantStatus(t, r, 200)
				if string(r.body) != user {
					t.Fatalf("user = %q, want %q", r.body, user)
				}
			case 401:
				wantProblem(t, r, 401, "UNAUTHORIZED")
			case 403:
				wantProblem(t, r, 403, "FORBIDDEN")
			}
		})
	}
}

// TestPathUser checks the 403 for another user's path, URL-decoding of the
// path's user id, and that 403 comes before any body check.
func TestPathUser(t *testing.T) {
	e := newEnv(t)
	odd := dbtest.CreateUser(t, testDB.DB, fmt.Sprintf("odd user/ä+%d", time.Now().UnixNano()))
	oddToken := hs256(t, odd)
	_, token := e.user(t)

	t.Run("encoded user id", func(t *testing.T) {
		r := e.do(t, req{method: "POST", path: "/api/" + url.PathEscape(odd) + "/tasks", token: oddToken, body: `{"title":"encoded"}`})
		wantStatus(t, r, http.StatusCreated)
		if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "/api/"+url.PathEscape(odd)+"/tasks/") {
			t.Fatalf("Location = %q", loc)
		}
		wantStatus(t, e.do(t, req{method: "GET", path: r.header.Get("Location"), token: oddToken}), http.StatusOK)
	})
	for _, tc := range []struct{ name, method, path, body string }{
		{"list", "GET", "/api/" + url.PathEscape(odd) + "/tasks", ""},
		{"create with a bad body", "POST", "/api/" + url.PathEscape(odd) + "/tasks", "{not json"},
		{"update with an unknown id", "PUT", "/api/" + url.PathEscape(odd) + "/tasks/abc", `{"title":"x"}`},
		{"unknown route", "GET", "/api/" + url.PathEscape(odd) + "/nothing", ""},
		{"malformed escape", "GET", "/api/%zz/tasks", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, e.do(t, req{method: tc.method, path: tc.path, token: token, body: tc.body}), http.StatusForbidden, "FORBIDDEN")
		})
	}
}

// TestLongHeaders checks that long credentials and cookies fit in the
// header buffer, and that larger headers get a 431 problem (on a real
// listener: app.Test returns fasthttp's error instead of the answer). The
// server answers 431 as soon as its buffer is full and closes while the
// client may still be writing the header, so the client tolerates a write
// error and reads the answer anyway, over raw TCP: net/http's client would
// report the write error instead.
func TestLongHeaders(t *testing.T) {
	e := newEnv(t)
	addr := serve(t, e)
	user, token := e.user(t)
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"12 KiB fits", 12 << 10, http.StatusOK},
		{"20 KiB is too large", 20 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			_ = c.write([]byte(c.head("GET", "/api/"+user+"/tasks", map[string]string{
				"Authorization": "Bearer " + token,
				"Cookie":        "junk=" + strings.Repeat("c", tc.size),
			})))
			r := c.read()
			if tc.status == http.StatusOK {
				wantStatus(t, r, http.StatusOK)
			} else {
				wantProblem(t, r, tc.status, "HEADERS_TOO_LARGE")
			}
		})
	}
}
