package pgdb_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

func TestOpenSetsTimeoutsAndCapsThePool(t *testing.T) {
	ctx := context.Background()
	db, err := pgdb.Open(ctx, pgdb.Config{
		URL:              dbtest.ServerURL(),
		MaxConns:         3,
		StatementTimeout: 200 * time.Millisecond,
		IdleInTxTimeout:  7 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var idle string
	if err := db.QueryRowContext(ctx, "SHOW idle_in_transaction_session_timeout").Scan(&idle); err != nil || idle != "7s" {
		t.Fatalf("idle_in_transaction_session_timeout = %q, %v; want 7s", idle, err)
	}
	_, err = db.ExecContext(ctx, "SELECT pg_sleep(5)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("a 5 s statement under a 200 ms statement_timeout: err = %v, want SQLSTATE 57014", err)
	}
	if got := db.Stats().MaxOpenConnections; got != 3 {
		t.Fatalf("MaxOpenConnections = %d, want 3", got)
	}
}

func TestOpenReportsAnUnreachableServer(t *testing.T) {
	_, err := pgdb.Open(context.Background(), pgdb.Config{URL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
}

func TestEnsureDatabase(t *testing.T) {
	ctx := context.Background()
	d, err := dbtest.Create(ctx, "pgdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Drop)

	created, err := pgdb.EnsureDatabase(ctx, d.URL)
	if err != nil || created {
		t.Fatalf("EnsureDatabase of an existing database = %v, %v; want false, nil", created, err)
	}

	u, _ := url.Parse(d.URL)
	name := d.Name + "_ensure"
	u.Path = "/" + name
	t.Cleanup(func() { _, _ = d.DB.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	created, err = pgdb.EnsureDatabase(ctx, u.String())
	if err != nil || !created {
		t.Fatalf("EnsureDatabase of a missing database = %v, %v; want true, nil", created, err)
	}
	db, err := pgdb.Open(ctx, pgdb.Config{URL: u.String()})
	if err != nil {
		t.Fatalf("open the created database: %v", err)
	}
	db.Close()
}
