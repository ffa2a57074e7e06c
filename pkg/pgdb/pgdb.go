// Package pgdb owns how taskchat connects to PostgreSQL: one connection
// config for every connection the project opens (pinned session settings,
// timeouts, application name), the bun pool built on it, creating and
// dropping databases, and telling an unavailable database from other
// errors.
package pgdb

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// ApplicationName is the application_name of every connection whose URL
// does not name one; it tells taskchat's sessions apart in pg_stat_activity.
const ApplicationName = "taskchat"

// pinned are the session settings every connection sets in its startup
// packet, overriding server, database and role defaults, and checks that
// the server reports after connecting.
//
// bun writes query arguments into the SQL text, escaping a string by
// doubling its quotes only, which is correct when standard_conforming_strings
// is on. Where it is off, a backslash in an argument escapes the closing
// quote and the rest of the argument is read as SQL (a crafted session token
// then matched another user's session). pgx's own text escaping makes the
// same two assumptions.
var pinned = map[string]string{
	"standard_conforming_strings": "on",
	"client_encoding":             "UTF8",
}

// DefaultQueryExecMode is how connections send statements unless the URL
// sets default_query_exec_mode: each in one round trip as an unnamed
// statement (pgx's exec mode). bun writes every argument into the SQL
// text, so hardly two statements are alike, and pgx's own default (prepare
// and cache every statement) cost an extra round trip, a named statement
// the server parsed and kept, and a later DEALLOCATE per statement, for a
// cache that never hit: about a fifth of the CPU of a chat turn, on both
// sides (measured with cmd/chatload). Unlike the simple protocol, the exec
// mode still sends bind parameters ($1) apart from the SQL text, which
// authstore relies on to keep session tokens out of it.
const DefaultQueryExecMode = pgx.QueryExecModeExec

// ConnConfig parses cfg.URL into the connection config every taskchat
// connection uses: standard_conforming_strings=on and client_encoding=UTF8
// whatever the server, database or role defaults say, cfg's timeouts as
// session settings, ApplicationName unless the URL sets application_name,
// and DefaultQueryExecMode unless the URL sets default_query_exec_mode. A connection whose server does not report the two
// pinned settings after the handshake is refused.
// The URL's password never appears in the error.
func ConnConfig(cfg Config) (*pgx.ConnConfig, error) {
	pc, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's parse errors do not echo the password.
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	for k, v := range pinned {
		pc.RuntimeParams[k] = v
	}
	if cfg.StatementTimeout > 0 {
		pc.RuntimeParams["statement_timeout"] = ms(cfg.StatementTimeout)
	}
	if cfg.IdleInTxTimeout > 0 {
		pc.RuntimeParams["idle_in_transaction_session_timeout"] = ms(cfg.IdleInTxTimeout)
	}
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = ApplicationName
	}
	if !strings.Contains(cfg.URL, "default_query_exec_mode") {
		pc.DefaultQueryExecMode = DefaultQueryExecMode
	}
	// Keep a validator the URL asked for (target_session_attrs) and run
	// ours after it.
	prev := pc.ValidateConnect
	pc.ValidateConnect = func(ctx context.Context, conn *pgconn.PgConn) error {
		if prev != nil {
			if err := prev(ctx, conn); err != nil {
				return err
			}
		}
		return checkPinned(conn)
	}
	return pc, nil
}

// checkPinned refuses a connection whose server does not report the
// pinned settings (both are reported to the client on every change), e.g.
// behind a proxy that drops startup parameters.
func checkPinned(conn *pgconn.PgConn) error {
	for k, want := range pinned {
		if got := conn.ParameterStatus(k); got != want {
			return fmt.Errorf("the server reports %s=%q, taskchat needs %q", k, got, want)
		}
	}
	return nil
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// OpenSQL returns a database/sql pool of connections made with
// ConnConfig(cfg), capped at cfg.MaxConns (DefaultMaxConns when not
// positive). It does not connect: the first query does. Callers that speak
// bun want Open.
func OpenSQL(cfg Config) (*sql.DB, error) {
	pc, err := ConnConfig(cfg)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*pc)
	maxConns := cfg.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// Open opens a bun pool over OpenSQL(cfg) and checks that the database
// answers within 5 seconds.
func Open(ctx context.Context, cfg Config) (*bun.DB, error) {
	sqldb, err := OpenSQL(cfg)
	if err != nil {
		return nil, err
	}
	db := bun.NewDB(sqldb, pgdialect.New())
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		_ = db.Close() // nothing was opened that could fail to close
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return db, nil
}
