package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
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

// rawConn is one client connection to a real listener, written and read
// byte by byte: unlike net/http's client, it can send part of a body, read
// the answer, and then tell a clean close from a reset.
type rawConn struct {
	t    *testing.T
	addr string
	conn net.Conn
	br   *bufio.Reader
}

// dial opens a rawConn to addr, closed when the test ends.
func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, addr: addr, conn: conn, br: bufio.NewReader(conn)}
}

// head is the request line and headers of a request to target, with a Host
// header and then header in sorted order.
func (c *rawConn) head(method, target string, header map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, c.addr)
	for _, k := range slices.Sorted(maps.Keys(header)) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, header[k])
	}
	b.WriteString("\r\n")
	return b.String()
}

// write sends p and returns the error, for callers that expect one.
func (c *rawConn) write(p []byte) error {
	c.t.Helper()
	if err := c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	_, err := c.conn.Write(p)
	return err
}

// mustWrite sends each part in turn and fails the test if one cannot be
// written, e.g. because the server reset the connection.
func (c *rawConn) mustWrite(parts ...[]byte) {
	c.t.Helper()
	for _, p := range parts {
		if err := c.write(p); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
}

// read reads one whole response.
func (c *rawConn) read() res {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read response body: %v", err)
	}
	return res{status: resp.StatusCode, header: resp.Header, body: b, close: resp.Close}
}

// do sends one request and reads its response.
func (c *rawConn) do(method, target string, header map[string]string, body []byte) res {
	c.t.Helper()
	c.mustWrite([]byte(c.head(method, target, header)), body)
	return c.read()
}

// wantEOF checks that the server has closed the connection cleanly: the
// next read ends with EOF, not a reset and not more data.
func (c *rawConn) wantEOF() {
	c.t.Helper()
	if err := c.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	if n, err := c.br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		c.t.Fatalf("read after the answer: %d bytes, %v; want EOF", n, err)
	}
}

// padded returns a JSON body of exactly n bytes: a valid task, then
// white space.
func padded(n int) []byte {
	b := []byte(`{"title":"padded"}`)
	return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
}

// chunked encodes body in chunks of at most size bytes; last adds the
// terminating zero-length chunk.
func chunked(body []byte, size int, last bool) []byte {
	var b bytes.Buffer
	for p := range slices.Chunk(body, size) {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
	}
	if last {
		b.WriteString("0\r\n\r\n")
	}
	return b.Bytes()
}

// TestBodyLimitOverTCP sends whole bodies around Config.BodyLimit over real
// connections, with Content-Length and chunked, as most clients do: before
// reading the answer. Bodies up to the limit are served and keep the
// connection; larger ones get a complete 413 problem, then a clean close,
// never a reset, even while the client is still writing.
func TestBodyLimitOverTCP(t *testing.T) {
	e := newEnv(t) // default 64 KiB limit
	addr := serve(t, e)
	user, token := e.user(t)
	const limit = httpapi.DefaultBodyLimit
	tasks := "/api/" + user + "/tasks"
	auth := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	withLength := func(n int) map[string]string {
		h := maps.Clone(auth)
		h["Content-Length"] = strconv.Itoa(n)
		return h
	}
	withChunks := maps.Clone(auth)
	withChunks["Transfer-Encoding"] = "chunked"

	cases := []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"at the limit", limit, false, http.StatusCreated},
		{"one byte over", limit + 1, false, http.StatusRequestEntityTooLarge},
		{"100 KiB", 100 << 10, false, http.StatusRequestEntityTooLarge},
		{"1 MiB", 1 << 20, false, http.StatusRequestEntityTooLarge},
		{"4 MiB", 4 << 20, false, http.StatusRequestEntityTooLarge},
		{"7 MiB", 7 << 20, false, http.StatusRequestEntityTooLarge},
		{"chunked at the limit", limit, true, http.StatusCreated},
		{"chunked one byte over", limit + 1, true, http.StatusRequestEntityTooLarge},
		{"chunked 128 KiB", 128 << 10, true, http.StatusRequestEntityTooLarge},
		{"chunked 7 MiB", 7 << 20, true, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			h, body := withLength(tc.size), padded(tc.size)
			if tc.chunked {
				h, body = withChunks, chunked(body, 16<<10, true)
			}
			r := c.do("POST", tasks, h, body)
			if tc.status == http.StatusCreated {
				// A body read to its end leaves the connection usable.
				wantStatus(t, r, http.StatusCreated)
				if r.close {
					t.Fatal("Connection: close after a body that was read")
				}
				wantStatus(t, c.do("POST", tasks, withLength(13), []byte(`{"title":"y"}`)), http.StatusCreated)
				return
			}
			wantProblem(t, r, tc.status, "PAYLOAD_TOO_LARGE")
			if !r.close {
				t.Fatal("no Connection: close after an unread body")
			}
			c.wantEOF()
		})
	}
	// The server still serves new connections.
	wantStatus(t, dial(t, addr).do("POST", tasks, withLength(13), []byte(`{"title":"z"}`)), http.StatusCreated)
}

// TestChecksBeforeBody sends the headers of a large request and only the
// first part of its body, then reads the answer: authentication, the path
// user check, the media type, an announced size over the limit and an
// unknown route are all answered before the rest of the body is sent, in
// the API's order (401 → 403 → 415/413 → 404). The connection is then
// closed without a reset: the rest of the body can still be written, and
// the next read sees EOF.
func TestChecksBeforeBody(t *testing.T) {
	e := newEnv(t)
	addr := serve(t, e)
	user, token := e.user(t)
	other, _ := e.user(t)
	const size = 7 << 20
	// fasthttp reads up to 8 KiB of a body ahead before the handler runs,
	// so the first part is larger than that.
	const first = 16 << 10

	header := func(token, contentType string, chunked bool) map[string]string {
		h := map[string]string{"Content-Type": contentType}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		if chunked {
			h["Transfer-Encoding"] = "chunked"
		} else {
			h["Content-Length"] = strconv.Itoa(size)
		}
		return h
	}
	const js, multipart = "application/json", "multipart/form-data; boundary=xyz"
	tasks := "/api/" + user + "/tasks"
	cases := []struct {
		name         string
		method, path string
		header       map[string]string
		// firstSize overrides how much of the body is sent before the
		// answer is read.
		firstSize int
		status    int
		code      string
	}{
		{"no credential", "POST", tasks, header("", js, false), 0, 401, "UNAUTHORIZED"},
		{"no credential, chunked", "POST", tasks, header("", js, true), 0, 401, "UNAUTHORIZED"},
		{"no credential, multipart", "POST", tasks, header("", multipart, false), 0, 401, "UNAUTHORIZED"},
		{"bad credential", "PUT", tasks + "/1", header("not-a-token", js, false), 0, 401, "UNAUTHORIZED"},
		{"foreign user", "POST", "/api/" + other + "/tasks", header(token, js, false), 0, 403, "FORBIDDEN"},
		{"foreign user, not JSON", "POST", "/api/" + other + "/tasks", header(token, "text/plain", true), 0, 403, "FORBIDDEN"},
		{"not JSON", "POST", tasks, header(token, "text/plain", false), 0, 415, "UNSUPPORTED_MEDIA_TYPE"},
		{"announced over the limit", "POST", tasks, header(token, js, false), 0, 413, "PAYLOAD_TOO_LARGE"},
		{"announced over the limit, unknown task", "PUT", tasks + "/999999999", header(token, js, false), 0, 413, "PAYLOAD_TOO_LARGE"},
		{"announced over the limit, malformed id", "PUT", tasks + "/abc", header(token, js, false), 0, 413, "PAYLOAD_TOO_LARGE"},
		// Without a length, the decoder reads limit+1 bytes and stops.
		{"chunked over the limit", "POST", tasks, header(token, js, true), 80 << 10, 413, "PAYLOAD_TOO_LARGE"},
		{"unknown route", "POST", "/api/" + user + "/nothing", header(token, js, false), 0, 404, "NOT_FOUND"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := first
			if tc.firstSize > 0 {
				n = tc.firstSize
			}
			body := bytes.Repeat([]byte("x"), size)
			head, rest := body[:n], body[n:]
			if tc.header["Transfer-Encoding"] != "" {
				head, rest = chunked(head, 16<<10, false), chunked(rest, 64<<10, true)
			}
			c := dial(t, addr)
			c.mustWrite([]byte(c.head(tc.method, tc.path, tc.header)), head)
			r := c.read()
			wantProblem(t, r, tc.status, tc.code)
			if !r.close {
				t.Fatal("no Connection: close after an unread body")
			}
			c.mustWrite(rest)
			c.wantEOF()
		})
	}
	// A small body that is not read closes the connection too: fasthttp
	// alone would keep it and read the rest on the client's behalf.
	t.Run("small unread body", func(t *testing.T) {
		c := dial(t, addr)
		h := map[string]string{"Content-Type": js, "Content-Length": "100"}
		r := c.do("POST", tasks, h, bytes.Repeat([]byte("x"), 100))
		wantProblem(t, r, 401, "UNAUTHORIZED")
		if !r.close {
			t.Fatal("no Connection: close after an unread body")
		}
		c.wantEOF()
	})
}

// TestMaxConns checks that Config.MaxConns bounds open connections, idle
// keep-alive ones included: the connection past the limit is refused with
// 503 at once, before it sends anything.
func TestMaxConns(t *testing.T) {
	e := newEnv(t, withConfig(func(c *httpapi.Config) { c.MaxConns = 2 }))
	addr := serve(t, e)
	for i := range 2 {
		c := dial(t, addr)
		r := c.do("GET", "/healthz", nil, nil)
		wantStatus(t, r, http.StatusOK)
		if r.close {
			t.Fatalf("connection %d: Connection: close", i)
		}
	}
	r := dial(t, addr).read()
	wantStatus(t, r, http.StatusServiceUnavailable)
	if !r.close {
		t.Fatal("the refused connection is not closed")
	}
}

// TestUnknownMethods checks that methods Fiber does not know go through
// the middleware like any other: a problem with a request id, 401 under
// /api without a credential, 403 on another user's path, then 405 on an
// existing resource (with Allow) and 404 on a missing one. On a real
// listener: app.Test does not take them the same way.
func TestUnknownMethods(t *testing.T) {
	e := newEnv(t)
	addr := serve(t, e)
	user, token := e.user(t)
	other, _ := e.user(t)
	bearer := map[string]string{"Authorization": "Bearer " + token}
	cases := []struct {
		name, method, path string
		header             map[string]string
		status             int
		code               string
	}{
		{"FOO without credential", "FOO", "/api/" + user + "/tasks", nil, 401, "UNAUTHORIZED"},
		{"PROPFIND without credential", "PROPFIND", "/api/" + user + "/tasks/1", nil, 401, "UNAUTHORIZED"},
		{"unknown api path without credential", "FOO", "/api/nothing", nil, 401, "UNAUTHORIZED"},
		{"foreign user", "FOO", "/api/" + other + "/tasks", bearer, 403, "FORBIDDEN"},
		{"FOO on tasks", "FOO", "/api/" + user + "/tasks", bearer, 405, "METHOD_NOT_ALLOWED"},
		{"PROPFIND on a task", "PROPFIND", "/api/" + user + "/tasks/1", bearer, 405, "METHOD_NOT_ALLOWED"},
		{"lower-case get", "get", "/api/" + user + "/tasks", bearer, 405, "METHOD_NOT_ALLOWED"},
		{"the stand-in method itself", "X-TASKCHAT-UNKNOWN-METHOD", "/api/" + user + "/tasks", bearer, 405, "METHOD_NOT_ALLOWED"},
		{"unknown route", "FOO", "/api/" + user + "/nothing", bearer, 404, "NOT_FOUND"},
		{"health check", "FOO", "/healthz", nil, 405, "METHOD_NOT_ALLOWED"},
		{"unknown route outside api", "FOO", "/nothing", nil, 404, "NOT_FOUND"},
	}
	c := dial(t, addr) // one keep-alive connection serves them all
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := maps.Clone(tc.header)
			if h == nil {
				h = map[string]string{}
			}
			h["X-Request-Id"] = "unknown-method-" + strconv.Itoa(i)
			r := c.do(tc.method, tc.path, h, nil)
			wantProblem(t, r, tc.status, tc.code)
			if got := r.header.Get("X-Request-Id"); got != h["X-Request-Id"] {
				t.Fatalf("X-Request-Id = %q, want %q", got, h["X-Request-Id"])
			}
			if tc.status == 405 && !strings.Contains(r.header.Get("Allow"), "GET") {
				t.Fatalf("Allow = %q", r.header.Get("Allow"))
			}
		})
	}
	// The access log names the method the client sent.
	if !strings.Contains(e.log.String(), "method=PROPFIND ") {
		t.Fatalf("the access log lacks method=PROPFIND:\n%s", e.log)
	}
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
