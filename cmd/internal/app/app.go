// Package app wires taskchat's components into the services that the
// commands in cmd/ run. Only commands import it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
)

// NewLogger returns the process logger configured by LOG_LEVEL and LOG_FORMAT.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// ServeAPI runs the HTTP API on ln until ctx is done, then shuts down within
// cfg.ShutdownTimeout: stop accepting, finish in-flight requests, close the
// database.
func ServeAPI(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener) error {
	// Database.
	db, err := pgdb.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	if cfg.ApplySchema {
		plan, err := dbschema.Apply(ctx, cfg.DB.URL, dbschema.Options{DevURL: cfg.AtlasDevURL})
		if err != nil {
			return fmt.Errorf("apply schema: %w", err)
		}
		log.Info("schema applied", "statements", len(plan.Statements))
	}

	// Authentication.
	verifier, err := auth.NewVerifier(cfg.Auth, authstore.NewStore(db))
	if err != nil {
		return err
	}

	// HTTP.
	srv := httpapi.New(cfg.HTTP, httpapi.Deps{
		Auth:  verifier,
		Tasks: todo.NewStore(db),
		Log:   log,
		Ready: []httpapi.ReadyCheck{{Name: "postgres", Check: db.PingContext}},
	})
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("api listening", "addr", ln.Addr().String())

	// Shutdown.
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
	log.Info("stopped")
	return nil
}

// Listen opens the API's TCP listener.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Main is the whole of a service command's main: it runs the service until
// SIGINT or SIGTERM and exits 1 on error.
func Main(name string) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, name, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Run loads the configuration, logs it (secrets masked) and serves the API
// until ctx is done. name labels the process in logs.
func Run(ctx context.Context, name string, getenv config.Getenv, logOut io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := NewLogger(cfg, logOut).With("service", name)
	log.Info("starting", "config", cfg)
	ln, err := Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return ServeAPI(ctx, cfg, log, ln)
}
