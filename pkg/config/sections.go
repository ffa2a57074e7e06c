package config

import (
	"io"
	"log/slog"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// Database reads the connection pool's settings: DATABASE_URL,
// DB_MAX_CONNS, DB_STATEMENT_TIMEOUT, DB_IDLE_IN_TX_TIMEOUT.
func Database(r *Reader) pgdb.Config {
	cfg := pgdb.Config{
		URL:              r.URL("DATABASE_URL", ""),
		MaxConns:         r.Int("DB_MAX_CONNS", pgdb.DefaultMaxConns),
		StatementTimeout: r.Duration("DB_STATEMENT_TIMEOUT", 15*time.Second),
		IdleInTxTimeout:  r.Duration("DB_IDLE_IN_TX_TIMEOUT", 30*time.Second),
	}
	r.Check(cfg.Validate())
	return cfg
}

// NATS reads where NATS is and how taskchat's streams and consumer are
// declared: NATS_URL, NATS_PREFIX, NATS_STREAM_REPLICAS, EVENTS_MAX_AGE,
// RUN_ACK_WAIT, RUN_MAX_DELIVER. An unset NATS_URL stays empty: the caller
// decides whether it is required (the API and the workers) or not (chatd
// then embeds a server; chatctl does not publish). Every other setting is
// checked either way.
func NATS(r *Reader) bus.Config {
	cfg := bus.Config{
		URL:            r.URL("NATS_URL", ""),
		Prefix:         r.String("NATS_PREFIX", bus.DefaultPrefix),
		Replicas:       r.Int("NATS_STREAM_REPLICAS", bus.DefaultReplicas),
		EventsMaxAge:   r.Duration("EVENTS_MAX_AGE", bus.DefaultEventsMaxAge),
		EventsMaxBytes: int64(r.Size("EVENTS_MAX_BYTES", bus.DefaultEventsMaxBytes)),
		RunsMaxMsgs:    int64(r.Int("RUNS_MAX_MSGS", bus.DefaultRunsMaxMsgs)),
		AckWait:        r.Duration("RUN_ACK_WAIT", bus.DefaultAckWait),
		MaxDeliver:     r.Int("RUN_MAX_DELIVER", bus.DefaultMaxDeliver),
	}
	check := cfg
	if check.URL == "" {
		check.URL = "nats://unset" // reported by the caller, if required
	}
	r.Check(check.Validate())
	return cfg
}

// AtlasDevURL reads ATLAS_DEV_URL, the optional scratch database the
// schema is normalised in.
func AtlasDevURL(r *Reader) string { return r.URL("ATLAS_DEV_URL", "") }

// Auth reads how credentials are verified: BETTER_AUTH_SECRET,
// BETTER_AUTH_URL, JWKS_URL, BETTER_AUTH_JWT_ISSUER/_AUDIENCE,
// JWT_ISSUER/_AUDIENCE, AUTH_SESSION_REQUIRE_SIGNATURE,
// AUTH_USER_CACHE_TTL, JWKS_TIMEOUT. The clock skew (60 s) and the JWKS
// refetch interval (30 s) are fixed by the API contract.
func Auth(r *Reader) auth.Config {
	cfg := auth.Config{
		Secret:                  r.Secret("BETTER_AUTH_SECRET"),
		BetterAuthURL:           r.URL("BETTER_AUTH_URL", ""),
		JWKSURL:                 r.URL("JWKS_URL", ""),
		JWKSIssuer:              r.String("BETTER_AUTH_JWT_ISSUER", ""),
		JWKSAudience:            r.String("BETTER_AUTH_JWT_AUDIENCE", ""),
		JWTIssuer:               r.String("JWT_ISSUER", ""),
		JWTAudience:             r.String("JWT_AUDIENCE", ""),
		RequireSessionSignature: r.Bool("AUTH_SESSION_REQUIRE_SIGNATURE", false),
		ClockSkew:               auth.DefaultClockSkew,
		UserCacheTTL:            r.Duration("AUTH_USER_CACHE_TTL", auth.DefaultUserCacheTTL),
		JWKSMinRefetch:          auth.DefaultJWKSMinRefetch,
		JWKSTimeout:             r.Duration("JWKS_TIMEOUT", auth.DefaultJWKSTimeout),
	}
	r.Check(cfg.Validate())
	return cfg
}

// Log is how a process logs.
type Log struct {
	// Level is debug, info, warn or error (LOG_LEVEL).
	Level slog.Level
	// Format is json or text (LOG_FORMAT).
	Format string
}

// Logging reads LOG_LEVEL and LOG_FORMAT.
func Logging(r *Reader) Log {
	return Log{
		Level:  r.Level("LOG_LEVEL", slog.LevelInfo),
		Format: r.OneOf("LOG_FORMAT", "json", "json", "text"),
	}
}

// NewLogger returns a logger writing to w at l's level in l's format.
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
