// Package app holds the builders the service commands in cmd/ share: load
// the configuration, open the database, build the HTTP server, serve until
// the context ends. Each command's run function calls them in visible
// steps; only commands import this package.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
)

// OpenDatabase opens the connection pool of cfg.DB and, when
// cfg.ApplySchema is set, brings the schema up to date first.
func OpenDatabase(ctx context.Context, cfg APIConfig, log *slog.Logger) (*bun.DB, error) {
	if cfg.ApplySchema {
		plan, err := dbschema.Apply(ctx, cfg.DB.URL, dbschema.Options{DevURL: cfg.AtlasDevURL})
		if err != nil {
			return nil, fmt.Errorf("apply schema: %w", err)
		}
		log.Info("schema applied", "statements", len(plan.Statements))
	}
	return pgdb.Open(ctx, cfg.DB)
}

// NewAPIServer builds the HTTP API over db: the credential verifier, the
// stores and the Fiber server.
func NewAPIServer(cfg APIConfig, db *bun.DB, log *slog.Logger) (*httpapi.Server, error) {
	verifier, err := auth.NewVerifier(cfg.Auth, authstore.NewStore(db), auth.WithLogger(log))
	if err != nil {
		return nil, err
	}
	return httpapi.New(cfg.HTTP, httpapi.Deps{
		Auth:  verifier,
		Tasks: todo.NewStore(db),
		Log:   log,
		Ready: []httpapi.ReadyCheck{{Name: "postgres", Check: db.PingContext}},
	}), nil
}

// Listen opens the API's TCP listener.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves srv on ln until ctx is done, then shuts it down: it stops
// accepting and waits for in-flight requests, at most cfg.ShutdownTimeout.
func Serve(ctx context.Context, cfg APIConfig, srv *httpapi.Server, ln net.Listener, log *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("api listening", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// LogStart writes the start-up lines: every variable read (secrets
// masked) and, in development mode, a warning that says where it listens.
func LogStart(cfg APIConfig, log *slog.Logger) {
	log.Info("starting", "config", cfg.Env)
	if cfg.DevMode {
		log.Warn("development mode (DEV_MODE=true): never use it in production",
			"http_addr", cfg.HTTPAddr, "loopback_only", isLoopback(cfg.HTTPAddr))
	}
}

// isLoopback reports whether addr listens on a loopback address only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
