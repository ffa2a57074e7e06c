package pgdb

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// maintenanceDB is the database EnsureDatabase connects to; every
// PostgreSQL server has it unless an administrator dropped it.
const maintenanceDB = "postgres"

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

func createDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}
