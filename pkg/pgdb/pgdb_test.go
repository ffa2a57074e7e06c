package pgdb_test

import (
	"context"
	"errors"
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
	_, err := pgdb.Open(context.Background(), pgdb.Config{URL: dbtest.UnreachableURL})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if !pgdb.Unavailable(err) {
		t.Fatalf("Unavailable(%v) = false, want true", err)
	}
}

// unpinnedDB returns a database whose own defaults turn off what ConnConfig
// pins, and checks that a connection that does not pin sees them.
func unpinnedDB(t *testing.T) *dbtest.Database {
	t.Helper()
	ctx := context.Background()
	d := dbtest.Empty(t, "pgdb")
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
	d := dbtest.Empty(t, "pgdb")

	created, err := pgdb.EnsureDatabase(ctx, d.URL)
	if err != nil || created {
		t.Fatalf("EnsureDatabase of an existing database = %v, %v; want false, nil", created, err)
	}

	missing := dbtest.UnusedURL(t, "pgdb")
	created, err = pgdb.EnsureDatabase(ctx, missing)
	if err != nil || !created {
		t.Fatalf("EnsureDatabase of a missing database = %v, %v; want true, nil", created, err)
	}
	db, err := pgdb.Open(ctx, pgdb.Config{URL: missing})
	if err != nil {
		t.Fatalf("open the created database: %v", err)
	}
	db.Close()
}

func databaseExists(t *testing.T, d *dbtest.Database, name string) bool {
	t.Helper()
	var ok bool
	if err := d.DB.QueryRowContext(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = ?)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestCreateAndDropDatabase checks that names are quoted, that drops end
// the sessions still connected, and that every failure is returned.
func TestCreateAndDropDatabase(t *testing.T) {
	ctx := context.Background()
	admin := dbtest.Empty(t, "pgdb")
	// Upper case, a space, a quote and a semicolon: only a quoted
	// identifier keeps this name (and its owner's intent) intact.
	name := admin.Name + `_Odd "x"; y`
	t.Cleanup(func() {
		if err := pgdb.DropDatabase(context.Background(), dbtest.ServerURL(), name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	if err := pgdb.CreateDatabase(ctx, dbtest.ServerURL(), name); err != nil {
		t.Fatalf("CreateDatabase: %v", err)
	}
	if !databaseExists(t, admin, name) {
		t.Fatalf("database %q not created", name)
	}
	if err := pgdb.CreateDatabase(ctx, dbtest.ServerURL(), name); err == nil {
		t.Fatal("creating an existing database succeeded")
	}

	// A session still connected must not stop the drop.
	url, err := pgdb.DatabaseURL(dbtest.ServerURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	held, err := pgdb.Open(ctx, pgdb.Config{URL: url, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := pgdb.DropDatabase(ctx, dbtest.ServerURL(), name); err != nil {
		t.Fatalf("DropDatabase with a session connected: %v", err)
	}
	if databaseExists(t, admin, name) {
		t.Fatalf("database %q still exists", name)
	}
	if err := pgdb.DropDatabase(ctx, dbtest.ServerURL(), name); err != nil {
		t.Fatalf("dropping a missing database: %v, want nil", err)
	}

	failures := []struct {
		name string
		err  error
	}{
		{"create with an empty name", pgdb.CreateDatabase(ctx, dbtest.ServerURL(), "")},
		{"drop with an empty name", pgdb.DropDatabase(ctx, dbtest.ServerURL(), "")},
		{"drop the database connected to", pgdb.DropDatabase(ctx, admin.URL, admin.Name)},
		{"drop through an unreachable server", pgdb.DropDatabase(ctx, dbtest.UnreachableURL, "x")},
		{"create through a malformed URL", pgdb.CreateDatabase(ctx, "postgres://%zz", "x")},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestDatabaseURL(t *testing.T) {
	tests := []struct {
		name, url, db, want string
		wantErr             bool
	}{
		{"replaces the path and keeps the rest", "postgres://u:p@h:5/old?sslmode=disable", "new", "postgres://u:p@h:5/new?sslmode=disable", false},
		{"no path", "postgresql://h", "new", "postgresql://h/new", false},
		{"escapes the name", "postgres://h/old", "a b/c", "postgres://h/a%20b%2Fc", false},
		{"key=value strings are not URLs", "host=h dbname=old", "new", "", true},
		{"malformed URL without echoing the password", "postgres://u:secret@h:x/old", "new", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pgdb.DatabaseURL(tc.url, tc.db)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("DatabaseURL = %q, want an error", got)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error echoes the password: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DatabaseURL = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
