package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, req{method: "GET", path: "/healthz"})
	wantStatus(t, r, http.StatusOK)
	if string(r.body) != `{"status":"ok"}` {
		t.Fatalf("body = %s", r.body)
	}
}

func TestReadyz(t *testing.T) {
	t.Run("all pass", func(t *testing.T) {
		e := newEnv(t)
		wantStatus(t, e.do(t, req{method: "GET", path: "/readyz"}), http.StatusOK)
	})
	t.Run("one fails", func(t *testing.T) {
		e := newEnv(t, withDeps(func(d *httpapi.Deps) {
			d.Ready = append(d.Ready, httpapi.ReadyCheck{Name: "nats", Check: func(context.Context) error {
				return errors.New("nats: no servers available at 10.1.2.3")
			}})
		}))
		r := e.do(t, req{method: "GET", path: "/readyz"})
		p := wantProblem(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		if !strings.Contains(p.Detail, "nats") || strings.Contains(p.Detail, "postgres") || strings.Contains(string(r.body), "10.1.2.3") {
			t.Fatalf("detail = %q", p.Detail)
		}
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
	})
	t.Run("a hanging check times out", func(t *testing.T) {
		e := newEnv(t,
			withConfig(func(c *httpapi.Config) { c.ReadyTimeout = 50 * time.Millisecond }),
			withDeps(func(d *httpapi.Deps) {
				d.Ready = append(d.Ready, httpapi.ReadyCheck{Name: "stuck", Check: func(ctx context.Context) error {
					<-ctx.Done()
					return ctx.Err()
				}})
			}))
		p := wantProblem(t, e.do(t, req{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		if !strings.Contains(p.Detail, "stuck") {
			t.Fatalf("detail = %q", p.Detail)
		}
	})
}

func TestCORS(t *testing.T) {
	const allowed, other = "https://app.example.com", "https://evil.example.com"
	preflight := func(origin string) req {
		return req{method: "OPTIONS", path: "/api/someone/tasks", header: map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization,content-type",
		}}
	}
	t.Run("listed origins", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *httpapi.Config) { c.CORSOrigins = []string{"https://App.Example.com/", "http://localhost:3000"} }))
		user, token := e.user(t)

		r := e.do(t, preflight(allowed))
		wantStatus(t, r, http.StatusNoContent)
		if r.header.Get("Access-Control-Allow-Origin") != allowed || r.header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("preflight headers %v", r.header)
		}
		if !strings.Contains(strings.ToLower(r.header.Get("Access-Control-Allow-Headers")), "authorization") {
			t.Fatalf("Allow-Headers = %q", r.header.Get("Access-Control-Allow-Headers"))
		}

		r = e.do(t, preflight(other))
		if r.status == http.StatusUnauthorized || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("disallowed preflight: %d %v", r.status, r.header)
		}

		r = e.do(t, req{method: "GET", path: "/api/" + user + "/tasks", token: token, header: map[string]string{"Origin": allowed}})
		wantStatus(t, r, http.StatusOK)
		if r.header.Get("Access-Control-Allow-Origin") != allowed || r.header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("GET headers %v", r.header)
		}
		if !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Fatalf("Expose-Headers = %q", r.header.Get("Access-Control-Expose-Headers"))
		}
		r = e.do(t, req{method: "GET", path: "/api/" + user + "/tasks", token: token, header: map[string]string{"Origin": other}})
		wantStatus(t, r, http.StatusOK)
		if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatalf("disallowed origin got %v", r.header)
		}
		// Errors carry CORS headers too, so browsers can read them.
		r = e.do(t, req{method: "GET", path: "/api/" + user + "/tasks", header: map[string]string{"Origin": allowed}})
		wantProblem(t, r, http.StatusUnauthorized, "UNAUTHORIZED")
		if r.header.Get("Access-Control-Allow-Origin") != allowed {
			t.Fatalf("401 without ACAO: %v", r.header)
		}
	})
	t.Run("wildcard", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *httpapi.Config) { c.CORSOrigins = []string{"*", allowed} }))
		r := e.do(t, preflight(other))
		wantStatus(t, r, http.StatusNoContent)
		if r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatalf("wildcard preflight %v", r.header)
		}
		// "*" does not admit the session cookie from any origin.
		user := dbtest.CreateUser(t, testDB.DB, "")
		sess := authtest.CreateSession(t, testDB.DB, testSecret, user, time.Now().Add(time.Hour))
		e.srv.BrowserGet("/api/:user_id/probe", whoami)
		cookie := auth.SessionCookieName + "=" + sess.Cookie
		wantProblem(t, e.do(t, req{method: "GET", path: "/api/" + user + "/probe", header: map[string]string{"Cookie": cookie, "Origin": other}}), 401, "UNAUTHORIZED")
		wantStatus(t, e.do(t, req{method: "GET", path: "/api/" + user + "/probe", header: map[string]string{"Cookie": cookie, "Origin": allowed}}), 200)
	})
	t.Run("no origins", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *httpapi.Config) { c.CORSOrigins = nil }))
		r := e.do(t, preflight(allowed))
		wantStatus(t, r, http.StatusNoContent)
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("ACAO without configured origins: %v", r.header)
		}
	})
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, in string
		echoed   bool
	}{
		{"absent", "", false},
		{"safe", "req-123_abc.DEF", true},
		{"too long", strings.Repeat("a", 65), false},
		{"unsafe characters", "abc\"; rm -rf", false},
		{"log injection", "a\nlevel=ERROR", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.in != "" {
				h["X-Request-Id"] = tc.in
			}
			r := e.do(t, req{method: "GET", path: "/healthz", header: h})
			got := r.header.Get("X-Request-Id")
			switch {
			case tc.echoed && got != tc.in:
				t.Fatalf("X-Request-Id = %q, want %q", got, tc.in)
			case !tc.echoed && (got == "" || got == tc.in || len(got) > 64):
				t.Fatalf("X-Request-Id = %q, want a new id", got)
			}
		})
	}
	// Error answers carry it too, and the log line has it.
	r := e.do(t, req{method: "GET", path: "/api/x/tasks", header: map[string]string{"X-Request-Id": "trace-me-42"}})
	wantProblem(t, r, 401, "UNAUTHORIZED")
	if r.header.Get("X-Request-Id") != "trace-me-42" || !strings.Contains(e.log.String(), "request_id=trace-me-42") {
		t.Fatalf("request id missing: header %q, log:\n%s", r.header.Get("X-Request-Id"), e.log)
	}
}

// TestLogsHoldNoCredentials sends credentials every way a client can and
// checks that none of them reaches the log, while the access log still
// records each request.
func TestLogsHoldNoCredentials(t *testing.T) {
	e := newEnv(t)
	e.srv.BrowserGet("/api/:user_id/probe", whoami)
	user, token := e.user(t)
	sess := authtest.CreateSession(t, testDB.DB, testSecret, user, time.Now().Add(time.Hour))
	jwks := e.jwks.Token(t, "EdDSA", user, time.Now())
	badToken := hs256(t, "no-such-user")
	secrets := []string{token, sess.Token, sess.Signed, sess.Cookie, jwks, badToken, "sekrit-garbage-credential"}

	for _, q := range []req{
		{method: "GET", path: "/api/" + user + "/tasks", token: token},
		{method: "GET", path: "/api/" + user + "/tasks?access_token=" + url.QueryEscape(token)},
		{method: "GET", path: "/api/" + user + "/probe?access_token=" + url.QueryEscape(token)},
		{method: "GET", path: "/api/" + user + "/probe?access_token=" + url.QueryEscape(jwks)},
		{method: "GET", path: "/api/" + user + "/probe", header: map[string]string{"Cookie": auth.SessionCookieName + "=" + sess.Cookie}},
		{method: "GET", path: "/api/" + user + "/probe", header: map[string]string{"Cookie": auth.SessionCookieName + "=" + sess.Cookie, "Origin": "https://evil.example.com"}},
		{method: "GET", path: "/api/" + user + "/tasks", token: sess.Signed},
		{method: "GET", path: "/api/" + user + "/tasks", token: badToken},
		{method: "GET", path: "/api/" + user + "/tasks", token: "sekrit-garbage-credential"},
		{method: "POST", path: "/api/" + user + "/tasks", token: token, body: `{"title":"my secret plan"}`},
	} {
		e.do(t, q)
	}
	logs := e.log.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("the log holds a credential %q:\n%s", s, logs)
		}
	}
	if strings.Contains(logs, "access_token") || strings.Contains(logs, "my secret plan") {
		t.Fatalf("the log holds a query string or a body:\n%s", logs)
	}
	if n := strings.Count(logs, "msg=request "); n != 10 {
		t.Fatalf("%d access log lines, want 10:\n%s", n, logs)
	}
	for _, want := range []string{"path=/api/" + user + "/probe ", "route=/api/:user_id/tasks ", "user_id=" + user, "status=401", "status=201"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("the log lacks %q:\n%s", want, logs)
		}
	}

	// The same holds when the verifier fails and its error is logged.
	down := newEnv(t, withAuthStore(downStore{}))
	down.do(t, req{method: "GET", path: "/api/" + user + "/tasks", token: token})
	if strings.Contains(down.log.String(), token) {
		t.Fatalf("the log holds a credential:\n%s", down.log)
	}
}

// TestErrorsDoNotLeak checks that a panic and an unexpected error become a
// bare 500 problem, logged with the request id.
func TestErrorsDoNotLeak(t *testing.T) {
	e := newEnv(t)
	e.srv.App().Get("/api/:user_id/panic", func(*fiber.Ctx) error { panic("runtime detail: table tasks") })
	e.srv.App().Get("/api/:user_id/fail", func(*fiber.Ctx) error {
		return fmt.Errorf("select task: %w", errors.New(`ERROR: relation "tasks" does not exist (SQLSTATE 42P01)`))
	})
	user, token := e.user(t)
	for _, p := range []string{"panic", "fail"} {
		t.Run(p, func(t *testing.T) {
			r := e.do(t, req{method: "GET", path: "/api/" + user + "/" + p, token: token, header: map[string]string{"X-Request-Id": "rid-" + p}})
			pr := wantProblem(t, r, http.StatusInternalServerError, "INTERNAL")
			if pr.Detail != "" || strings.Contains(string(r.body), "tasks") {
				t.Fatalf("500 leaks: %s", r.body)
			}
			if !strings.Contains(e.log.String(), "request_id=rid-"+p) {
				t.Fatalf("not logged with its request id:\n%s", e.log)
			}
		})
	}
	// The server still serves.
	wantStatus(t, e.do(t, req{method: "GET", path: "/healthz"}), http.StatusOK)
}

// serve runs the server on a real listener until the test ends.
func serve(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestBodyLimitOverTCP sends oversize bodies over real connections and
// checks that each gets a complete 413 problem, never a reset, and that the
// connection stays usable.
func TestBodyLimitOverTCP(t *testing.T) {
	e := newEnv(t) // default 64 KiB limit
	addr := serve(t, e)
	user, token := e.user(t)

	// send writes one request and returns its fully read answer.
	send := func(t *testing.T, conn net.Conn, br *bufio.Reader, body []byte) res {
		t.Helper()
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		head := fmt.Sprintf("POST /api/%s/tasks HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
			user, addr, token, len(body))
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatalf("write head: %v", err)
		}
		if _, err := conn.Write(body); err != nil {
			t.Fatalf("write body: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read response body: %v", err)
		}
		return res{status: resp.StatusCode, header: resp.Header, body: b}
	}
	oversize := func(n int) []byte {
		return []byte(`{"title":"` + strings.Repeat("x", n) + `"}`)
	}

	for i, size := range []int{64<<10 + 1, 100 << 10, 1 << 20, 4 << 20, 7 << 20, 64<<10 + 1, 2 << 20, 64 << 10, 5 << 20, 1 << 20} {
		t.Run(fmt.Sprintf("%d: %d bytes", i, size), func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			r := send(t, conn, br, oversize(size))
			wantProblem(t, r, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
			// The same connection then serves a good request.
			r = send(t, conn, br, []byte(`{"title":"after a 413"}`))
			if r.status != http.StatusCreated {
				t.Fatalf("follow-up: %d %s", r.status, r.body)
			}
		})
	}
}

// TestChunkedBodyLimit checks the limit on a body without Content-Length.
func TestChunkedBodyLimit(t *testing.T) {
	e := newEnv(t)
	addr := serve(t, e)
	user, token := e.user(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "POST /api/%s/tasks HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", user, addr, token)
	chunk := strings.Repeat("x", 16<<10)
	fmt.Fprintf(&b, "%x\r\n{\"title\":\"\r\n", len(`{"title":"`))
	for range 8 {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	fmt.Fprintf(&b, "2\r\n\"}\r\n0\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, res{status: resp.StatusCode, header: resp.Header, body: body}, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE")
}

// TestShutdown checks that Shutdown stops Serve.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("still accepting connections")
	}
}
