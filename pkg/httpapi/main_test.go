package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/logtest"
	"github.com/taskchat/taskchat/pkg/todo"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "httpapi", &testDB)) }

const testSecret = "httpapi-test-secret-0123456789abcdef"

// env is one server wired to the real verifier and todo store over the
// package's test database, with its log captured.
type env struct {
	srv   *httpapi.Server
	deps  httpapi.Deps // what srv was built with
	tasks *todo.Store
	jwks  *authtest.JWKSServer
	log   *logtest.Buffer
}

// option adjusts an env's config or dependencies before New.
type option func(*httpapi.Config, *httpapi.Deps)

func withConfig(f func(*httpapi.Config)) option {
	return func(c *httpapi.Config, _ *httpapi.Deps) { f(c) }
}

func withDeps(f func(*httpapi.Deps)) option {
	return func(_ *httpapi.Config, d *httpapi.Deps) { f(d) }
}

// authStore is the verifier's store: the real authstore store by default.
func withAuthStore(st auth.Store) option {
	return withDeps(func(d *httpapi.Deps) {
		v, err := auth.NewVerifier(auth.Config{Secret: testSecret}, st)
		if err != nil {
			panic(err)
		}
		d.Auth = v
	})
}

func newEnv(t *testing.T, opts ...option) *env {
	t.Helper()
	e := &env{tasks: todo.NewStore(testDB.DB), jwks: authtest.NewJWKSServer(t), log: &logtest.Buffer{}}
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret, BetterAuthURL: e.jwks.URL()}, authstore.NewStore(testDB.DB))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	cfg := httpapi.Config{CORSOrigins: []string{"https://app.example.com"}}
	deps := httpapi.Deps{
		Auth:  v,
		Tasks: e.tasks,
		Log:   slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ready: []httpapi.ReadyCheck{{Name: "postgres", Check: testDB.DB.PingContext}},
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	e.srv, e.deps = httpapi.New(cfg, deps), deps
	return e
}

// user creates a user and returns its id and an HS256 bearer token for it.
func (e *env) user(t *testing.T) (id, token string) {
	t.Helper()
	id = dbtest.CreateUser(t, testDB.DB, "")
	return id, hs256(t, id)
}

func hs256(t *testing.T, userID string) string {
	t.Helper()
	return authtest.MintHS256(t, testSecret, authtest.HS256Claims(userID, time.Now()))
}

// req describes one request.
type req struct {
	method, path string
	body         string
	token        string            // sent as Authorization: Bearer
	header       map[string]string // more headers; "Content-Type" defaults to application/json when body is set
}

// res is a fully read response.
type res struct {
	status int
	header http.Header
	body   []byte
	close  bool // the server announced it closes the connection (rawConn only)
}

func (r res) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (e *env) do(t *testing.T, q req) res {
	t.Helper()
	var body io.Reader = http.NoBody
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	target, opaque := q.path, ""
	if _, err := url.ParseRequestURI(q.path); err != nil {
		// A path net/url refuses (a malformed escape) is sent as is.
		target, opaque = "/", q.path
	}
	r := httptest.NewRequest(q.method, target, body)
	if opaque != "" {
		r.URL.Opaque, r.RequestURI = opaque, opaque
	}
	if q.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if q.token != "" {
		r.Header.Set("Authorization", "Bearer "+q.token)
	}
	for k, v := range q.header {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	resp, err := e.srv.App().Test(r, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res{status: resp.StatusCode, header: resp.Header, body: b}
}

// problem is the error body of the API (docs/api.md).
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// wantProblem checks r is an application/problem+json error with status and
// code, and returns it.
func wantProblem(t *testing.T, r res, status int, code string) problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", r.header.Get("Content-Type"))
	}
	var p problem
	r.json(t, &p)
	if p.Status != status || p.Code != code || p.Type == "" || p.Title == "" {
		t.Fatalf("problem = %+v, want status %d code %s", p, status, code)
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("WWW-Authenticate = %q, want Bearer", r.header.Get("WWW-Authenticate"))
	}
	return p
}

// wantStatus checks a success status.
func wantStatus(t *testing.T, r res, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
}

// downStore is an auth store whose database is unreachable.
type downStore struct{}

var errDown = errors.New("dial tcp 10.9.8.7:5432: connect: connection refused")

func (downStore) UserExists(context.Context, string) (bool, error) { return false, errDown }
func (downStore) SessionUser(context.Context, string, time.Time) (string, error) {
	return "", errDown
}
