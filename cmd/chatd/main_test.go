package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "chatd", &testDB)) }

var listening = regexp.MustCompile(`msg="api listening" .*addr=(\S+)`)

// chatd is a run of chatd in the test process.
type chatd struct {
	addr string
	logs *logtest.Buffer
	stop func() error // cancels run's context and returns its error
}

// startChatd runs chatd with env (plus the test database, a free loopback
// port and text logs) until it listens; the test ends it with stop.
func startChatd(t *testing.T, env map[string]string) *chatd {
	t.Helper()
	full := map[string]string{
		"DATABASE_URL": testDB.URL,
		"HTTP_ADDR":    "127.0.0.1:0",
		"LOG_FORMAT":   "text",
	}
	for k, v := range env {
		full[k] = v
	}
	c := &chatd{logs: &logtest.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return full[k] }, c.logs) }()
	stopped := false
	var runErr error
	c.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("run did not return after cancel")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = c.stop() })

	// run logs the address once it listens; wait for that line.
	deadline := time.Now().Add(20 * time.Second)
	for c.addr == "" {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, c.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		if m := listening.FindStringSubmatch(c.logs.String()); m != nil {
			c.addr = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd did not start listening:\n%s", c.logs.String())
		}
	}
	return c
}

// get sends a GET to chatd with token (none when ""), and returns the
// status and body.
func (c *chatd) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+c.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestRunServesUntilCancelled runs chatd as `make run` does (development
// mode) on a free port: it says it listens on loopback only, serves, and
// returns nil once its context ends.
func TestRunServesUntilCancelled(t *testing.T) {
	c := startChatd(t, map[string]string{
		"BETTER_AUTH_SECRET": "chatd-test-secret-0123456789abcdefghij",
		"DEV_MODE":           "true",
		"DATA_DIR":           t.TempDir(), // the embedded NATS server's storage
	})
	if !strings.Contains(c.logs.String(), "loopback_only=true") {
		t.Errorf("development mode start-up does not say it listens on loopback only:\n%s", c.logs.String())
	}
	if status, _ := c.get(t, "/healthz", ""); status != http.StatusOK {
		t.Fatalf("healthz: %d", status)
	}
	if err := c.stop(); err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	if !strings.Contains(c.logs.String(), `msg=stopped`) {
		t.Errorf("no stop line in the log:\n%s", c.logs.String())
	}
}

// consoleURL matches the console URL chatd logs in development mode.
var consoleURL = regexp.MustCompile(`http://127\.0\.0\.1:\d+/#token=([A-Za-z0-9._-]+)`)

// TestDevModeConsoleURL runs chatd as a newcomer does: development mode,
// no secret. It generates one under DATA_DIR, creates the development
// user and logs one console URL whose token, in the fragment, works; the
// token is on no other log line, however it is used; after a restart the
// kept secret still accepts it.
func TestDevModeConsoleURL(t *testing.T) {
	dataDir := t.TempDir()
	env := map[string]string{"DEV_MODE": "true", "DATA_DIR": dataDir}
	c := startChatd(t, env)
	logs := c.logs.String()
	if !strings.Contains(logs, "auth_secret=\"generated, kept in "+filepath.Join(dataDir, "dev-auth-secret")+"\"") {
		t.Errorf("the start-up log does not say the secret was generated:\n%s", logs)
	}
	urls := consoleURL.FindAllStringSubmatch(logs, -1)
	if len(urls) != 1 {
		t.Fatalf("%d console URLs in the log, want 1:\n%s", len(urls), logs)
	}
	url, token := urls[0][0], urls[0][1]
	if !strings.HasPrefix(url, "http://"+c.addr+"/#token=") || strings.Contains(url, "?") {
		t.Fatalf("console URL %q: want http://%s/#token=…, nothing in a query", url, c.addr)
	}

	if status, body := c.get(t, "/", ""); status != http.StatusOK || !strings.Contains(body, "console.js") {
		t.Fatalf("GET /: %d %.200s", status, body)
	}
	status, body := c.get(t, "/api/me", token)
	if status != http.StatusOK || !strings.Contains(body, `"user_id":"dev-user"`) {
		t.Fatalf("GET /api/me with the console token: %d %s", status, body)
	}
	// The events route also takes the token in a query; the log never
	// shows it, there either.
	if status, _ := c.get(t, "/api/dev-user/conversations?access_token="+token, ""); status != http.StatusUnauthorized {
		t.Fatalf("a query token on a non-browser route: %d", status)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(c.logs.String(), token); n != 1 {
		t.Fatalf("the token is in %d log places, want only the console URL:\n%s", n, c.logs.String())
	}

	// A restart keeps the secret: the token still works, and the URL is
	// logged again, once.
	c2 := startChatd(t, env)
	if !strings.Contains(c2.logs.String(), "auth_secret=\"kept in ") {
		t.Errorf("the second start does not say it kept the secret:\n%s", c2.logs.String())
	}
	if status, body := c2.get(t, "/api/me", token); status != http.StatusOK {
		t.Fatalf("the first start's token after a restart: %d %s", status, body)
	}
	if n := len(consoleURL.FindAllString(c2.logs.String(), -1)); n != 1 {
		t.Fatalf("%d console URLs in the second start's log, want 1", n)
	}
}

func TestRunStopsOnBadConfiguration(t *testing.T) {
	var logs logtest.Buffer
	err := run(context.Background(), func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET") {
		t.Fatalf("run with no configuration: %v", err)
	}
}
