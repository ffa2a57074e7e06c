package pgdb_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

func TestUnavailableClassifiesErrors(t *testing.T) {
	pgErr := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("boom"), false},
		{"no rows", sql.ErrNoRows, false},
		{"unique violation", pgErr("23505"), false},
		{"check violation", pgErr("23514"), false},
		{"undefined table", pgErr("42P01"), false},
		{"syntax error", pgErr("42601"), false},
		{"serialization failure (retry, not an outage)", pgErr("40001"), false},
		{"disk full (only too_many_connections of class 53)", pgErr("53100"), false},
		{"connection failure 08006", pgErr("08006"), true},
		{"unable to connect 08001", pgErr("08001"), true},
		{"protocol violation 08P01", pgErr("08P01"), true},
		{"admin shutdown 57P01", pgErr("57P01"), true},
		{"crash shutdown 57P02", pgErr("57P02"), true},
		{"cannot connect now 57P03", pgErr("57P03"), true},
		{"too many connections 53300", pgErr("53300"), true},
		{"query canceled 57014", pgErr("57014"), true},
		{"wrapped 57P01", fmt.Errorf("list tasks: %w", pgErr("57P01")), true},
		{"wrapped unique violation", fmt.Errorf("insert: %w", pgErr("23505")), false},
		{"io.EOF", io.EOF, true},
		{"io.ErrUnexpectedEOF wrapped", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"driver.ErrBadConn", driver.ErrBadConn, true},
		{"sql.ErrConnDone", sql.ErrConnDone, true},
		{"net.OpError", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"deadline exceeded", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("get task: %w", context.DeadlineExceeded), true},
		{"caller cancelled", context.Canceled, false},
		{"caller cancelled with a broken connection", errors.Join(context.Canceled, io.ErrUnexpectedEOF), false},
		{"already marked", fmt.Errorf("op: %w", pgdb.ErrUnavailable), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pgdb.Unavailable(tc.err); got != tc.want {
				t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
			}
			marked := pgdb.MarkUnavailable(tc.err)
			if errors.Is(marked, pgdb.ErrUnavailable) != tc.want {
				t.Errorf("errors.Is(MarkUnavailable(%v), ErrUnavailable) = %v, want %v", tc.err, !tc.want, tc.want)
			}
			if tc.err != nil && !errors.Is(marked, tc.err) {
				t.Errorf("MarkUnavailable(%v) lost the original error: %v", tc.err, marked)
			}
			if tc.err == nil && marked != nil {
				t.Errorf("MarkUnavailable(nil) = %v", marked)
			}
		})
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestUnavailableOnRealErrors checks the classification against the errors
// pgx and database/sql really return.
func TestUnavailableOnRealErrors(t *testing.T) {
	ctx := context.Background()
	d := dbtest.Empty(t, "pgdb")
	if _, err := d.DB.ExecContext(ctx, "CREATE TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, cfg pgdb.Config) *sql.DB {
		t.Helper()
		db, err := pgdb.OpenSQL(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() }) // test pool; a close error changes nothing
		return db
	}
	missingDB, err := pgdb.DatabaseURL(dbtest.ServerURL(), d.Name+"_missing")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		err  func(t *testing.T) error
		want bool
	}{
		{"closed port", func(t *testing.T) error {
			return open(t, pgdb.Config{URL: dbtest.UnreachableURL}).PingContext(ctx)
		}, true},
		{"database does not exist (3D000 inside a ConnectError)", func(t *testing.T) error {
			return open(t, pgdb.Config{URL: missingDB}).PingContext(ctx)
		}, true},
		{"statement timeout", func(t *testing.T) error {
			_, err := open(t, pgdb.Config{URL: d.URL, StatementTimeout: 50 * time.Millisecond}).ExecContext(ctx, "SELECT pg_sleep(10)")
			return err
		}, true},
		{"waiting for a pooled connection past the deadline", func(t *testing.T) error {
			db := open(t, pgdb.Config{URL: d.URL, MaxConns: 1})
			held, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, err = db.ExecContext(waitCtx, "SELECT 1")
			return err
		}, true},
		{"session terminated by pg_terminate_backend", func(t *testing.T) error {
			conn, err := open(t, pgdb.Config{URL: d.URL, MaxConns: 1}).Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var pid int
			if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			// The timeout makes pg_terminate_backend wait until the backend is gone.
			var ok bool
			if err := d.DB.QueryRowContext(ctx, "SELECT pg_terminate_backend(?, 5000)", pid).Scan(&ok); err != nil || !ok {
				t.Fatalf("pg_terminate_backend = %v, %v", ok, err)
			}
			_, err = conn.ExecContext(ctx, "SELECT 1")
			return err
		}, true},
		{"unique violation", func(t *testing.T) error {
			_, err := d.DB.ExecContext(ctx, "INSERT INTO u VALUES (1)")
			return err
		}, false},
		{"caller cancels a running statement", func(t *testing.T) error {
			db := open(t, pgdb.Config{URL: d.URL, MaxConns: 1})
			qctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := db.ExecContext(qctx, "SELECT pg_sleep(30) /* cancel-me */")
				done <- err
			}()
			waitFor(t, "the statement to run", func() bool {
				var n int
				err := d.DB.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%/* cancel-me */' AND state = 'active' AND pid <> pg_backend_pid()").Scan(&n)
				return err == nil && n == 1
			})
			cancel()
			return <-done
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			if got := pgdb.Unavailable(err); got != tc.want {
				t.Fatalf("Unavailable(%v [%T]) = %v, want %v", err, err, got, tc.want)
			}
		})
	}
}
