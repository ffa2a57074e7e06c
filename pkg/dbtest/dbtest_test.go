package dbtest

import (
	"context"
	"testing"

	"github.com/taskchat/taskchat/pkg/pgdb"
)

// exists reports whether the test server has a database called name.
func exists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	db, err := pgdb.Open(ctx, pgdb.Config{URL: ServerURL(), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = ?)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestDropReportsFailure(t *testing.T) {
	d, err := Create(context.Background(), "dbtest")
	if err != nil {
		t.Fatal(err)
	}
	server := d.server
	d.server = UnreachableURL
	if err := d.Drop(); err == nil {
		t.Error("Drop through an unreachable server returned nil")
	}
	if !exists(t, d.Name) {
		t.Fatal("the database vanished although its drop failed")
	}
	d.server = server
	if err := d.Drop(); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if exists(t, d.Name) {
		t.Fatalf("database %s still exists after Drop", d.Name)
	}
}

func TestUnusedURLIsDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("creates it", func(t *testing.T) {
		u := UnusedURL(t, "dbtest")
		pc, err := pgdb.ConnConfig(pgdb.Config{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		name = pc.Database
		if exists(t, name) {
			t.Fatalf("UnusedURL named an existing database %s", name)
		}
		if _, err := pgdb.EnsureDatabase(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	})
	if exists(t, name) {
		t.Fatalf("database %s survived its test's cleanup", name)
	}
}
