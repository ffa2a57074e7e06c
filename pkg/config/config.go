// Package config loads taskchat's configuration from the environment, once,
// into one typed struct. Other packages receive the typed sections; none of
// them reads the environment.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// Config is the configuration of the API (cmd/api, cmd/chatd).
type Config struct {
	// HTTPAddr is where the API listens (HTTP_ADDR).
	HTTPAddr string
	// LogLevel is debug, info, warn or error (LOG_LEVEL).
	LogLevel slog.Level
	// LogFormat is json or text (LOG_FORMAT).
	LogFormat string
	// ShutdownTimeout bounds a graceful shutdown (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ApplySchema applies the embedded schema at start-up (APPLY_SCHEMA).
	ApplySchema bool
	// AtlasDevURL is the scratch database for schema normalisation (ATLAS_DEV_URL).
	AtlasDevURL string

	DB   pgdb.Config
	Auth auth.Config
	HTTP httpapi.Config
}

// Getenv looks a variable up; os.Getenv fits, and tests pass a map's lookup.
type Getenv func(key string) string

// Load reads and validates the API's configuration. All problems are
// reported together.
func Load(getenv Getenv) (Config, error) {
	r := reader{getenv: getenv}
	cfg := Config{
		HTTPAddr:        r.str("HTTP_ADDR", ":8080"),
		LogLevel:        r.level("LOG_LEVEL", slog.LevelInfo),
		LogFormat:       r.oneOf("LOG_FORMAT", "json", "json", "text"),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		ApplySchema:     r.boolean("APPLY_SCHEMA", false),
		AtlasDevURL:     r.str("ATLAS_DEV_URL", ""),
		DB:              r.database(),
		Auth: auth.Config{
			Secret:                  r.str("BETTER_AUTH_SECRET", ""),
			BetterAuthURL:           r.str("BETTER_AUTH_URL", ""),
			JWKSURL:                 r.str("JWKS_URL", ""),
			JWKSIssuer:              r.str("BETTER_AUTH_JWT_ISSUER", ""),
			JWKSAudience:            r.str("BETTER_AUTH_JWT_AUDIENCE", ""),
			JWTIssuer:               r.str("JWT_ISSUER", ""),
			JWTAudience:             r.str("JWT_AUDIENCE", ""),
			RequireSessionSignature: r.boolean("AUTH_SESSION_REQUIRE_SIGNATURE", false),
			ClockSkew:               60 * time.Second,
			UserCacheTTL:            r.duration("AUTH_USER_CACHE_TTL", 60*time.Second),
			JWKSMinRefetch:          30 * time.Second,
			JWKSTimeout:             r.duration("JWKS_TIMEOUT", 5*time.Second),
		},
		HTTP: httpapi.Config{
			BodyLimit:      r.size("HTTP_BODY_LIMIT", 64<<10),
			CORSOrigins:    r.list("CORS_ORIGINS"),
			TrustedProxies: r.list("HTTP_TRUSTED_PROXIES"),
		},
	}
	for _, p := range cfg.HTTP.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				r.fail("HTTP_TRUSTED_PROXIES", fmt.Sprintf("%q is not an IP address or CIDR", p))
			}
		}
	}
	if err := cfg.HTTP.Validate(); err != nil {
		r.errs = append(r.errs, err)
	}
	if cfg.Auth.UserCacheTTL > 60*time.Second {
		r.fail("AUTH_USER_CACHE_TTL", "must be at most 60s (a deleted user's token must stop working within a minute)")
	}
	if err := cfg.Auth.Validate(); err != nil {
		r.errs = append(r.errs, err)
	}
	if cfg.HTTP.BodyLimit < 1024 || cfg.HTTP.BodyLimit > 4<<20 {
		r.fail("HTTP_BODY_LIMIT", "must be between 1KiB and 4MiB")
	}
	for _, o := range cfg.HTTP.CORSOrigins {
		if o != "*" && !validOrigin(o) {
			r.fail("CORS_ORIGINS", fmt.Sprintf("%q is not an origin like https://app.example.com", o))
		}
	}
	return cfg, r.err()
}

// Variables lists every environment variable Load reads, sorted; the
// deployment files are checked against it.
func Variables() []string {
	seen := map[string]bool{}
	_, _ = Load(func(key string) string {
		seen[key] = true
		return ""
	})
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// LoadDatabase reads only what chatctl's database commands need.
func LoadDatabase(getenv Getenv) (pgdb.Config, string, error) {
	r := reader{getenv: getenv}
	db := r.database()
	dev := r.str("ATLAS_DEV_URL", "")
	return db, dev, r.err()
}

// LogValue renders the configuration for the start-up log with every secret
// masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("database_url", MaskURL(c.DB.URL)),
		slog.String("atlas_dev_url", MaskURL(c.AtlasDevURL)),
		slog.Int("db_max_conns", c.DB.MaxConns),
		slog.Duration("db_statement_timeout", c.DB.StatementTimeout),
		slog.String("better_auth_secret", mask(c.Auth.Secret)),
		slog.String("better_auth_url", MaskURL(c.Auth.BetterAuthURL)),
		slog.String("jwks_url", MaskURL(c.Auth.JWKSURL)),
		slog.String("jwt_issuer", c.Auth.JWTIssuer),
		slog.String("jwt_audience", c.Auth.JWTAudience),
		slog.Bool("auth_session_require_signature", c.Auth.RequireSessionSignature),
		slog.Int("http_body_limit", c.HTTP.BodyLimit),
		slog.String("cors_origins", strings.Join(c.HTTP.CORSOrigins, ",")),
		slog.Bool("apply_schema", c.ApplySchema),
	)
}

// MaskURL hides the credentials of a URL: the password, and the password,
// sslpassword and token-like query parameters. A value that is not a URL
// with a scheme and host (a keyword/value connection string, say) is hidden
// whole, since it may hold a password anywhere.
func MaskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(hidden: not a URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	}
	q := u.Query()
	masked := false
	for k := range q {
		switch strings.ToLower(k) {
		case "password", "sslpassword", "token", "access_token", "secret", "key":
			q.Set(k, "redacted")
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "set (" + strconv.Itoa(len(secret)) + " bytes)"
}

func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && (u.Path == "" || u.Path == "/") && u.RawQuery == ""
}

// reader parses variables and collects every problem.
type reader struct {
	getenv Getenv
	errs   []error
}

func (r *reader) fail(key, msg string) {
	r.errs = append(r.errs, fmt.Errorf("%s %s", key, msg))
}

func (r *reader) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %w", errors.Join(r.errs...))
}

func (r *reader) str(key, def string) string {
	if v := strings.TrimSpace(r.getenv(key)); v != "" {
		return v
	}
	return def
}

func (r *reader) database() pgdb.Config {
	cfg := pgdb.Config{
		URL:              r.str("DATABASE_URL", ""),
		MaxConns:         r.integer("DB_MAX_CONNS", 10, 1, 100),
		StatementTimeout: r.duration("DB_STATEMENT_TIMEOUT", 15*time.Second),
		IdleInTxTimeout:  r.duration("DB_IDLE_IN_TX_TIMEOUT", 30*time.Second),
	}
	if cfg.URL == "" {
		r.fail("DATABASE_URL", "is required (e.g. postgres://postgres@127.0.0.1:5432/taskchat?sslmode=disable)")
	} else if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		r.fail("DATABASE_URL", "must be a postgres:// URL")
	}
	return cfg
}

func (r *reader) integer(key string, def, lo, hi int) int {
	v := r.getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		r.fail(key, fmt.Sprintf("must be an integer from %d to %d, got %q", lo, hi, v))
		return def
	}
	return n
}

func (r *reader) duration(key string, def time.Duration) time.Duration {
	v := r.getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		r.fail(key, fmt.Sprintf("must be a positive duration like 30s, got %q", v))
		return def
	}
	return d
}

func (r *reader) boolean(key string, def bool) bool {
	v := r.getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		r.fail(key, fmt.Sprintf("must be true or false, got %q", v))
		return def
	}
	return b
}

func (r *reader) level(key string, def slog.Level) slog.Level {
	v := r.getenv(key)
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(v))); err != nil {
		r.fail(key, fmt.Sprintf("must be debug, info, warn or error, got %q", v))
		return def
	}
	return l
}

func (r *reader) oneOf(key, def string, allowed ...string) string {
	v := strings.ToLower(r.str(key, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(key, fmt.Sprintf("must be one of %s, got %q", strings.Join(allowed, ", "), v))
	return def
}

// size parses a byte count: 65536, 64KiB, 1MiB (also KB/MB/k/m as binary).
func (r *reader) size(key string, def int) int {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return def
	}
	mult := 1
	lower := strings.ToLower(v)
	for _, s := range []struct {
		suffix string
		mult   int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}} {
		if strings.HasSuffix(lower, s.suffix) {
			lower, mult = strings.TrimSpace(strings.TrimSuffix(lower, s.suffix)), s.mult
			break
		}
	}
	n, err := strconv.Atoi(lower)
	if err != nil || n <= 0 {
		r.fail(key, fmt.Sprintf("must be a size like 65536 or 64KiB, got %q", v))
		return def
	}
	return n * mult
}

func (r *reader) list(key string) []string {
	var out []string
	for _, p := range strings.Split(r.getenv(key), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.TrimSuffix(p, "/"))
		}
	}
	return out
}
