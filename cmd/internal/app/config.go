package app

import (
	"sort"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// DevSecret is the development BETTER_AUTH_SECRET that the Makefile and
// docker-compose.yml use when none is set. It is published, so anyone can
// mint tokens with it: the services accept it only in development mode.
const DevSecret = "taskchat-local-dev-secret-do-not-use-in-production"

// Listen addresses of the API: everywhere in production, loopback only in
// development mode, where a well-known secret may be in use.
const (
	DefaultHTTPAddr    = ":8080"
	DefaultDevHTTPAddr = "127.0.0.1:8080"
)

// APIConfig is the configuration of the HTTP API service (cmd/api, and the
// API inside cmd/chatd).
type APIConfig struct {
	// Log is LOG_LEVEL and LOG_FORMAT.
	Log config.Log
	// DevMode is DEV_MODE: a developer's machine. The API then listens on
	// loopback unless HTTP_ADDR says otherwise.
	DevMode bool
	// HTTPAddr is where the API listens (HTTP_ADDR).
	HTTPAddr string
	// ShutdownTimeout bounds a graceful shutdown (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ApplySchema applies the embedded schema at start-up (APPLY_SCHEMA).
	ApplySchema bool
	// AtlasDevURL is the scratch database for schema normalisation
	// (ATLAS_DEV_URL).
	AtlasDevURL string

	DB   pgdb.Config
	Auth auth.Config
	HTTP httpapi.Config

	// Env is every variable read, for the start-up log (secrets masked).
	Env *config.Reader
}

// LoadAPI reads and validates the API's configuration; every problem is
// reported at once.
func LoadAPI(getenv config.Getenv) (APIConfig, error) {
	r := config.NewReader(getenv)
	cfg := APIConfig{
		Log:     config.Logging(r),
		DevMode: r.Bool("DEV_MODE", false),
	}
	defAddr := DefaultHTTPAddr
	if cfg.DevMode {
		defAddr = DefaultDevHTTPAddr
	}
	cfg.HTTPAddr = r.String("HTTP_ADDR", defAddr)
	cfg.ShutdownTimeout = r.Duration("SHUTDOWN_TIMEOUT", 15*time.Second)
	cfg.ApplySchema = r.Bool("APPLY_SCHEMA", false)
	cfg.AtlasDevURL = config.AtlasDevURL(r)
	cfg.DB = config.Database(r)
	cfg.Auth = config.Auth(r)
	cfg.HTTP = httpConfig(r)
	cfg.Env = r
	if cfg.Auth.Secret == DevSecret && !cfg.DevMode {
		r.Fail("BETTER_AUTH_SECRET", "is the published development secret: set your own (openssl rand -base64 32), or DEV_MODE=true on a developer's machine")
	}
	return cfg, r.Err()
}

// httpConfig reads the HTTP server's settings. It lives here, not in
// pkg/config, so that config does not link Fiber into chatctl.
func httpConfig(r *config.Reader) httpapi.Config {
	cfg := httpapi.Config{
		BodyLimit:      r.Size("HTTP_BODY_LIMIT", httpapi.DefaultBodyLimit),
		CORSOrigins:    r.List("CORS_ORIGINS"),
		TrustedProxies: r.List("HTTP_TRUSTED_PROXIES"),
		MaxConns:       r.Int("HTTP_MAX_CONNS", httpapi.DefaultMaxConns),
	}
	r.Check(cfg.Validate())
	return cfg
}

// Variables lists every environment variable the services read, sorted;
// the README and the deployment files are checked against it.
func Variables() []string {
	cfg, _ := LoadAPI(func(string) string { return "" })
	vars := cfg.Env.Vars()
	names := make([]string, 0, len(vars))
	for _, v := range vars {
		names = append(names, v.Name)
	}
	sort.Strings(names)
	return names
}
