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
	"flag"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

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

// Database is a fresh database created for one test package.
type Database struct {
	// Name is the database's name.
	Name string
	// URL connects to it.
	URL string
	// DB is a pool on it.
	DB *bun.DB

	admin *bun.DB
}

// Create makes an empty database named after prefix with a random suffix.
// It does not apply the schema; most callers want New.
func Create(ctx context.Context, prefix string) (*Database, error) {
	admin, err := pgdb.Open(ctx, pgdb.Config{URL: ServerURL(), MaxConns: 2})
	if err != nil {
		return nil, fmt.Errorf("dbtest: %w (is PostgreSQL running? see README)", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("taskchat_test_%s_%s", prefix, hex.EncodeToString(b))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return nil, fmt.Errorf("dbtest: create database: %w", err)
	}
	u, err := url.Parse(ServerURL())
	if err != nil {
		admin.Close()
		return nil, err
	}
	u.Path = "/" + name
	d := &Database{Name: name, URL: u.String(), admin: admin}
	d.DB, err = pgdb.Open(ctx, pgdb.Config{URL: d.URL, MaxConns: 10, StatementTimeout: time.Minute})
	if err != nil {
		d.Drop()
		return nil, err
	}
	return d, nil
}

// New creates a fresh database and applies the schema through dbschema.
func New(ctx context.Context, prefix string) (*Database, error) {
	d, err := Create(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if _, err := dbschema.Apply(ctx, d.URL, dbschema.Options{}); err != nil {
		d.Drop()
		return nil, fmt.Errorf("dbtest: apply schema: %w", err)
	}
	return d, nil
}

// Drop closes the pool and drops the database.
func (d *Database) Drop() {
	if d.DB != nil {
		d.DB.Close()
	}
	_, _ = d.admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+d.Name+" WITH (FORCE)")
	d.admin.Close()
}

// Run is for TestMain: it creates a fresh database with the schema, stores
// it in *db, runs the package's tests and drops the database.
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
	defer d.Drop()
	*db = d
	return m.Run()
}

var userSeq struct {
	sync.Mutex
	n int
}

// CreateUser inserts a Better Auth "user" row with the given id (a random one
// when id is empty) and returns the id.
func CreateUser(t testing.TB, db bun.IDB, id string) string {
	t.Helper()
	if id == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	userSeq.Lock()
	userSeq.n++
	n := userSeq.n
	userSeq.Unlock()
	_, err := db.NewRaw(`INSERT INTO "user" (id, name, email, "emailVerified", "createdAt", "updatedAt")
		VALUES (?, ?, ?, false, now(), now())`, id, fmt.Sprintf("Test User %d", n), fmt.Sprintf("%s-%d@example.test", id, n)).
		Exec(context.Background())
	if err != nil {
		t.Fatalf("create user %q: %v", id, err)
	}
	return id
}
