// Package pgdb opens taskchat's PostgreSQL connection pool as a bun database:
// capped pool size, per-session statement and idle-in-transaction timeouts.
package pgdb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Config is the database part of the service configuration.
type Config struct {
	// URL is a PostgreSQL connection URL (DATABASE_URL).
	URL string
	// MaxConns caps open connections (DB_MAX_CONNS); Postgres allows 100
	// here, shared by every replica.
	MaxConns int
	// StatementTimeout cancels any statement running longer (DB_STATEMENT_TIMEOUT).
	StatementTimeout time.Duration
	// IdleInTxTimeout ends sessions idle inside a transaction (DB_IDLE_IN_TX_TIMEOUT).
	IdleInTxTimeout time.Duration
}

// Open opens a pool and checks that the database answers.
func Open(ctx context.Context, cfg Config) (*bun.DB, error) {
	pc, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's parse errors do not echo the password.
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	if cfg.StatementTimeout > 0 {
		pc.RuntimeParams["statement_timeout"] = ms(cfg.StatementTimeout)
	}
	if cfg.IdleInTxTimeout > 0 {
		pc.RuntimeParams["idle_in_transaction_session_timeout"] = ms(cfg.IdleInTxTimeout)
	}
	pc.RuntimeParams["application_name"] = "taskchat"

	sqldb := stdlib.OpenDB(*pc)
	maxConns := cfg.MaxConns
	if maxConns <= 0 {
		maxConns = 10
	}
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)

	db := bun.NewDB(sqldb, pgdialect.New())
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return db, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%d", d.Milliseconds()) }

// EnsureDatabase creates the database named in url's path when it does not
// exist, connecting to the server's "postgres" database to do so. It
// reports whether it created one.
func EnsureDatabase(ctx context.Context, rawURL string) (bool, error) {
	pc, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return false, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	name := pc.Database
	if name == "" || name == "postgres" {
		return false, nil
	}
	pc.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return false, fmt.Errorf("connect to the server's postgres database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return false, fmt.Errorf("create database %q: %w", name, err)
	}
	return true, nil
}
