// Package dbtest gives each test package a fresh PostgreSQL database with
// taskchat's schema applied through the same Atlas code path chatctl uses,
// and drops it afterwards.
//
// The server comes from TEST_DATABASE_URL (default: the machine's local
// server, postgres@127.0.0.1:5432).
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// DefaultServerURL is used when TEST_DATABASE_URL is unset.
const DefaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the URL of the server tests create databases on.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultServerURL
}

// Database is a fresh database created for one test package or test.
type Database struct {
	// Name is the database's name.
	Name string
	// URL connects to it.
	URL string
	// DB is a pool on it.
	DB *bun.DB

	server string // the URL it was created and is dropped through
}

// dropTimeout bounds dropping a database, which waits for its sessions to end.
const dropTimeout = time.Minute

// newName returns an unused database name made of prefix and a random suffix.
func newName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return fmt.Sprintf("taskchat_test_%s_%s", prefix, hex.EncodeToString(b))
}

// Create makes an empty database named after prefix with a random suffix.
// It does not apply the schema; most callers want New. The caller must
// Drop it.
func Create(ctx context.Context, prefix string) (*Database, error) {
	d := &Database{Name: newName(prefix), server: ServerURL()}
	if err := pgdb.CreateDatabase(ctx, d.server, d.Name); err != nil {
		return nil, fmt.Errorf("dbtest: %w (is PostgreSQL running? see README)", err)
	}
	var err error
	if d.URL, err = pgdb.DatabaseURL(d.server, d.Name); err != nil {
		return nil, errors.Join(fmt.Errorf("dbtest: %w", err), d.Drop())
	}
	d.DB, err = pgdb.Open(ctx, pgdb.Config{URL: d.URL, MaxConns: 10, StatementTimeout: time.Minute})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dbtest: %w", err), d.Drop())
	}
	return d, nil
}

// New creates a fresh database and applies the schema through dbschema.
// The caller must Drop it.
func New(ctx context.Context, prefix string) (*Database, error) {
	d, err := Create(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if _, err := dbschema.Apply(ctx, d.URL, dbschema.Options{}); err != nil {
		return nil, errors.Join(fmt.Errorf("dbtest: apply schema: %w", err), d.Drop())
	}
	return d, nil
}

// Drop closes the pool and drops the database, ending the sessions still
// connected to it.
func (d *Database) Drop() error {
	var errs []error
	if d.DB != nil {
		if err := d.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("dbtest: close %s: %w", d.Name, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	if err := pgdb.DropDatabase(ctx, d.server, d.Name); err != nil {
		errs = append(errs, fmt.Errorf("dbtest: %w", err))
	}
	return errors.Join(errs...)
}

// Empty returns a fresh database without the schema for one test, dropped
// when the test ends; a failed drop fails the test.
func Empty(t testing.TB, prefix string) *Database {
	t.Helper()
	d, err := Create(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	dropAtCleanup(t, d)
	return d
}

// WithSchema returns a fresh database with the schema applied for one
// test, dropped when the test ends; a failed drop fails the test.
func WithSchema(t testing.TB, prefix string) *Database {
	t.Helper()
	d, err := New(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	dropAtCleanup(t, d)
	return d
}

func dropAtCleanup(t testing.TB, d *Database) {
	t.Helper()
	t.Cleanup(func() {
		if err := d.Drop(); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
}

// UnusedURL returns the URL of a database on the test server that does not
// exist yet, for code that creates it; it is dropped, if it exists, when
// the test ends, and a failed drop fails the test.
func UnusedURL(t testing.TB, prefix string) string {
	t.Helper()
	name := newName(prefix)
	u, err := pgdb.DatabaseURL(ServerURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
		defer cancel()
		if err := pgdb.DropDatabase(ctx, ServerURL(), name); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return u
}

// UnreachableURL points at a port of the local machine nothing listens on.
const UnreachableURL = "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"

// PoolAt returns a pgdb pool made with cfg (pgdb.OpenSQL), closed
// when the test ends. Unlike pgdb.Open it does not check that the server
// answers, so it can stand for a database that is down.
func PoolAt(t testing.TB, cfg pgdb.Config) *bun.DB {
	t.Helper()
	sqldb, err := pgdb.OpenSQL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() { _ = db.Close() }) // nothing is left to release
	return db
}

// Run is for TestMain: it creates a fresh database with the schema, stores
// it in *db, runs the package's tests and drops the database. A database
// that cannot be dropped is reported on stderr and fails the run.
//
//	var testDB *dbtest.Database
//	func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "todo", &testDB)) }
//
// Under `go test -fuzz`, the worker processes run only the fuzz target and
// are killed at the end, so a database of theirs would leak: they get none
// (*db stays nil), and fuzz targets must not need one.
func Run(m *testing.M, prefix string, db **Database) int {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	d, err := New(ctx, prefix)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*db = d
	code := m.Run()
	if err := d.Drop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// CreateUser creates a Better Auth user with the given id (a new one when id
// is empty) through authstore's Store.CreateUser, the way the product makes
// users, and returns the id. Its email is derived from the id.
func CreateUser(t testing.TB, db bun.IDB, id string) string {
	t.Helper()
	u := authstore.User{ID: id}
	if u.ID == "" {
		u.ID = authstore.NewID()
	}
	u.Name = "Test User " + u.ID
	u.Email = u.ID + "@example.test"
	if err := authstore.NewStore(db).CreateUser(context.Background(), &u); err != nil {
		t.Fatalf("create user %q: %v", u.ID, err)
	}
	return u.ID
}
