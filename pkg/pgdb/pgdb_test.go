package pgdb_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// unpinnedDB returns a database whose own defaults turn off what ConnConfig
// pins, and checks that a connection that does not pin sees them.
func unpinnedDB(t *testing.T) *dbtest.Database {
	t.Helper()
	ctx := context.Background()
	d, err := dbtest.Create(ctx, "pgdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Drop)
	name := pgx.Identifier{d.Name}.Sanitize()
	for _, q := range []string{
		"ALTER DATABASE " + name + " SET standard_conforming_strings = off",
		"ALTER DATABASE " + name + " SET client_encoding = 'LATIN1'",
	} {
		if _, err := d.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if got := conn.PgConn().ParameterStatus("standard_conforming_strings"); got != "off" {
		t.Fatalf("a connection that does not pin sees standard_conforming_strings=%q; the test needs off", got)
	}
	return d
}

// sessionSettings is what one connection reports.
type sessionSettings struct {
	scs, encoding, appName string
}

const showSettings = "SELECT current_setting('standard_conforming_strings'), current_setting('client_encoding'), current_setting('application_name')"

func viaOpen(t *testing.T, url string) sessionSettings {
	t.Helper()
	db, err := pgdb.Open(context.Background(), pgdb.Config{URL: url, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s sessionSettings
	if err := db.QueryRowContext(context.Background(), showSettings).Scan(&s.scs, &s.encoding, &s.appName); err != nil {
		t.Fatal(err)
	}
	return s
}

func viaOpenSQL(t *testing.T, url string) sessionSettings {
	t.Helper()
	db, err := pgdb.OpenSQL(pgdb.Config{URL: url, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s sessionSettings
	if err := db.QueryRowContext(context.Background(), showSettings).Scan(&s.scs, &s.encoding, &s.appName); err != nil {
		t.Fatal(err)
	}
	return s
}

func viaConnConfig(t *testing.T, url string) sessionSettings {
	t.Helper()
	ctx := context.Background()
	pc, err := pgdb.ConnConfig(pgdb.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s sessionSettings
	if err := conn.QueryRow(ctx, showSettings).Scan(&s.scs, &s.encoding, &s.appName); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConnectionsPinSessionSettings checks that every way pgdb connects
// pins standard_conforming_strings=on and client_encoding=UTF8 over the
// database's own defaults and over settings in the URL.
func TestConnectionsPinSessionSettings(t *testing.T) {
	d := unpinnedDB(t)
	tests := []struct {
		name        string
		url         string
		wantAppName string
		connect     func(t *testing.T, url string) sessionSettings
	}{
		{"Open (the bun pool)", d.URL, pgdb.ApplicationName, viaOpen},
		{"OpenSQL (Atlas's pool)", d.URL, pgdb.ApplicationName, viaOpenSQL},
		{"ConnConfig (EnsureDatabase, CreateDatabase, DropDatabase)", d.URL, pgdb.ApplicationName, viaConnConfig},
		{"URL options turning them off", d.URL + "&options=-c%20standard_conforming_strings%3Doff%20-c%20client_encoding%3DLATIN1", pgdb.ApplicationName, viaOpen},
		{"URL parameters turning them off", d.URL + "&standard_conforming_strings=off&client_encoding=LATIN1", pgdb.ApplicationName, viaOpen},
		{"URL's own application_name is kept", d.URL + "&application_name=ops_probe", "ops_probe", viaOpen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.connect(t, tc.url)
			want := sessionSettings{scs: "on", encoding: "UTF8", appName: tc.wantAppName}
			if got != want {
				t.Fatalf("session settings = %+v, want %+v", got, want)
			}
		})
	}
}

// TestConnConfigRefusesAnUnpinnedSession checks the second line of
// defence: a session that does not report the pinned settings (as behind
// a proxy that drops startup parameters) is refused, not used.
func TestConnConfigRefusesAnUnpinnedSession(t *testing.T) {
	ctx := context.Background()
	d := unpinnedDB(t)
	pc, err := pgdb.ConnConfig(pgdb.Config{URL: d.URL})
	if err != nil {
		t.Fatal(err)
	}
	// What a parameter-dropping proxy would do to the startup packet.
	delete(pc.RuntimeParams, "standard_conforming_strings")
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a session with standard_conforming_strings=off")
	}
	if !strings.Contains(err.Error(), "standard_conforming_strings") {
		t.Fatalf("err = %v, want it to name standard_conforming_strings", err)
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
