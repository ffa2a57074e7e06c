package pgdb

import (
	"errors"
	"fmt"
	"net/url"
)

// Bounds of Config.MaxConns.
const (
	DefaultMaxConns = 10
	// MaxMaxConns is Postgres's default max_connections: one process
	// should never want more.
	MaxMaxConns = 100
)

// Validate reports every problem of c, each naming its environment
// variable. Zero durations mean "no timeout". (Open itself also takes a
// zero MaxConns as DefaultMaxConns; a configuration must say 1 to 100.)
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required (e.g. postgres://postgres@127.0.0.1:5432/taskchat?sslmode=disable)"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		errs = append(errs, errors.New("DATABASE_URL must be a postgres:// URL"))
	}
	if c.MaxConns < 1 || c.MaxConns > MaxMaxConns {
		errs = append(errs, fmt.Errorf("DB_MAX_CONNS must be from 1 to %d, got %d", MaxMaxConns, c.MaxConns))
	}
	if c.StatementTimeout < 0 {
		errs = append(errs, fmt.Errorf("DB_STATEMENT_TIMEOUT must not be negative, got %s", c.StatementTimeout))
	}
	if c.IdleInTxTimeout < 0 {
		errs = append(errs, fmt.Errorf("DB_IDLE_IN_TX_TIMEOUT must not be negative, got %s", c.IdleInTxTimeout))
	}
	return errors.Join(errs...)
}
