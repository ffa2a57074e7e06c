package pgdb

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// maintenanceDB is the database EnsureDatabase connects to; every
// PostgreSQL server has it unless an administrator dropped it.
const maintenanceDB = "postgres"

// CreateDatabase creates the database name (an identifier, quoted as
// needed) on the server of adminURL, connecting to adminURL's database to
// run the command. It fails when the database exists.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	if name == "" {
		return errors.New("create database: empty name")
	}
	return adminExec(ctx, adminURL, func(conn *pgx.Conn) error {
		return createDatabase(ctx, conn, name)
	})
}

// DropDatabase drops the database name on the server of adminURL if it
// exists, ending the sessions still connected to it (WITH (FORCE)). It
// connects to adminURL's database, which therefore must not be name.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	if name == "" {
		return errors.New("drop database: empty name")
	}
	return adminExec(ctx, adminURL, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %q: %w", name, err)
		}
		return nil
	})
}

// EnsureDatabase creates the database named in rawURL's path when it does
// not exist, connecting to the server's "postgres" database to do so. It
// reports whether it created one.
func EnsureDatabase(ctx context.Context, rawURL string) (bool, error) {
	pc, err := ConnConfig(Config{URL: rawURL})
	if err != nil {
		return false, err
	}
	name := pc.Database
	if name == "" || name == maintenanceDB {
		return false, nil
	}
	pc.Database = maintenanceDB
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return false, fmt.Errorf("connect to the server's %s database: %w", maintenanceDB, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if err := createDatabase(ctx, conn, name); err != nil {
		return false, err
	}
	return true, nil
}

// DatabaseURL returns the postgres:// URL rawURL with its database
// replaced by name. Errors never echo the URL (it may hold a password).
func DatabaseURL(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", errors.New("the database URL is not a postgres:// URL")
	}
	u.Path, u.RawPath = "/"+name, "/"+url.PathEscape(name)
	return u.String(), nil
}

func createDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// adminExec runs f on one connection to adminURL's database.
func adminExec(ctx context.Context, adminURL string, f func(*pgx.Conn) error) error {
	pc, err := ConnConfig(Config{URL: adminURL})
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("connect to the server: %w", err)
	}
	// The caller's context may be done (a drop in a cleanup); closing must
	// still happen.
	defer conn.Close(context.WithoutCancel(ctx))
	return f(conn)
}
