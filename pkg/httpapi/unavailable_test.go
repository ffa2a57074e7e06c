package httpapi_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
)

// withTaskDB serves the task routes from a store over db; authentication
// keeps the package's good database.
func withTaskDB(db bun.IDB) option {
	return withDeps(func(d *httpapi.Deps) { d.Tasks = todo.NewStore(db) })
}

// hangUpURL returns the URL of a server that accepts connections and
// closes them at once, as a Postgres that is going down may.
func hangUpURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() }) // ends the accept loop
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return fmt.Sprintf("postgres://postgres@%s/taskchat?sslmode=disable&connect_timeout=2", ln.Addr())
}

// lockTasks takes an ACCESS EXCLUSIVE lock on d's tasks table until the
// test ends, so that every task statement on d waits.
func lockTasks(t *testing.T, d *dbtest.Database) {
	t.Helper()
	ctx := context.Background()
	tx, err := d.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() }) // releases the lock; nothing was written
	if _, err := tx.ExecContext(ctx, "LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
}

// want503 checks that r is the outage answer and that the error handler
// logged it at warn with the request id, naming cause (a SQLSTATE or an
// error text), and nothing at error level.
func want503(t *testing.T, e *env, r res, requestID, cause string) {
	t.Helper()
	p := wantProblem(t, r, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	for _, leak := range []string{"SQLSTATE", "127.0.0.1", "dial", "terminat", "timeout"} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("the answer leaks %q: %s (detail %q)", leak, r.body, p.Detail)
		}
	}
	var line string
	for l := range strings.Lines(e.log.String()) {
		if strings.Contains(l, `msg="database unavailable"`) && strings.Contains(l, "request_id="+requestID+" ") {
			line = l
		}
	}
	switch {
	case line == "":
		t.Errorf("no \"database unavailable\" line for request %s in the log:\n%s", requestID, e.log)
	case !strings.Contains(line, "level=WARN"):
		t.Errorf("logged at the wrong level: %s", line)
	case !strings.Contains(line, cause):
		t.Errorf("the log line does not name the cause %q: %s", cause, line)
	}
	if strings.Contains(e.log.String(), "level=ERROR") {
		t.Errorf("an outage was logged as an error:\n%s", e.log)
	}
}

// taskRequests are one request per task route.
func taskRequests(user, token string) []req {
	base := "/api/" + user + "/tasks"
	return []req{
		{method: "GET", path: base, token: token},
		{method: "POST", path: base, token: token, body: `{"title":"t"}`},
		{method: "GET", path: base + "/1", token: token},
		{method: "PUT", path: base + "/1", token: token, body: `{"title":"t"}`},
		{method: "DELETE", path: base + "/1", token: token},
		{method: "PATCH", path: base + "/1/complete", token: token},
	}
}

// TestTaskRoutesAnswer503WhenTheDatabaseIsUnavailable checks every task
// route against a task database that cannot be reached or cannot answer in
// time. The verifier keeps the package's good database, so the requests
// are authenticated and reach the store.
func TestTaskRoutesAnswer503WhenTheDatabaseIsUnavailable(t *testing.T) {
	outage := dbtest.WithSchema(t, "httpapi_outage")
	lockTasks(t, outage)

	tests := []struct {
		name  string
		db    func(t *testing.T) bun.IDB
		cause string
	}{
		{"closed port", func(t *testing.T) bun.IDB {
			return dbtest.PoolAt(t, pgdb.Config{URL: dbtest.UnreachableURL})
		}, "connection refused"},
		{"server hangs up", func(t *testing.T) bun.IDB {
			return dbtest.PoolAt(t, pgdb.Config{URL: hangUpURL(t)})
		}, "failed to receive message"},
		{"statement timeout", func(t *testing.T) bun.IDB {
			return dbtest.PoolAt(t, pgdb.Config{URL: outage.URL, StatementTimeout: 100 * time.Millisecond})
		}, "SQLSTATE 57014"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withTaskDB(tc.db(t)))
			user, token := e.user(t)
			for i, q := range taskRequests(user, token) {
				t.Run(q.method+" "+strings.TrimPrefix(q.path, "/api/"+user), func(t *testing.T) {
					id := fmt.Sprintf("outage-%d", i)
					q.header = map[string]string{"X-Request-Id": id}
					want503(t, e, e.do(t, q), id, tc.cause)
				})
			}
		})
	}
}

// TestTaskRouteAnswers503WhenItsSessionIsTerminated ends the store's
// session with pg_terminate_backend while a request's statement runs on
// it (held there by a lock), as a failover or a restart would.
func TestTaskRouteAnswers503WhenItsSessionIsTerminated(t *testing.T) {
	outage := dbtest.WithSchema(t, "httpapi_outage")
	lockTasks(t, outage)
	appName := "taskchat_test_" + strings.ReplaceAll(outage.Name, "taskchat_test_", "")
	url := outage.URL + "&application_name=" + appName
	// The statement timeout only bounds the test should the termination
	// never come; the log check below tells the two causes apart.
	pool := dbtest.PoolAt(t, pgdb.Config{URL: url, MaxConns: 1, StatementTimeout: 30 * time.Second})
	e := newEnv(t, withTaskDB(pool))
	user, token := e.user(t)

	terminated := make(chan error, 1)
	go func() {
		terminated <- terminateWaiting(outage, appName)
	}()
	r := e.do(t, req{method: "GET", path: "/api/" + user + "/tasks", token: token, header: map[string]string{"X-Request-Id": "terminated-1"}})
	if err := <-terminated; err != nil {
		t.Fatal(err)
	}
	want503(t, e, r, "terminated-1", "SQLSTATE 57P01")
}

// terminateWaiting waits (up to 10 s) for the session named appName to wait
// on a lock in d, then terminates it and waits until it is gone.
func terminateWaiting(d *dbtest.Database, appName string) error {
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var pid int
		err := d.DB.QueryRowContext(ctx,
			"SELECT pid FROM pg_stat_activity WHERE application_name = ? AND wait_event_type = 'Lock'", appName).Scan(&pid)
		if err == nil {
			var ok bool
			// With a timeout, pg_terminate_backend returns once the backend has exited.
			if err := d.DB.QueryRowContext(ctx, "SELECT pg_terminate_backend(?, 5000)", pid).Scan(&ok); err != nil {
				return fmt.Errorf("pg_terminate_backend(%d): %w", pid, err)
			}
			if !ok {
				return fmt.Errorf("pg_terminate_backend(%d) did not end the session", pid)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no session %q waiting on the lock: %w", appName, err)
		}
		<-tick.C
	}
}
