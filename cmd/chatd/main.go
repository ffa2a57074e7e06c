// Command chatd is taskchat all in one process: today the HTTP API (tasks);
// the chat pipeline (an embedded NATS JetStream server and the workers)
// joins it next, sharing its database pool. `make run` starts it in
// development mode (DEV_MODE=true: loopback only).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

// run starts every part of taskchat in this process and stops them in
// order when ctx is done (SIGINT or SIGTERM).
func run(ctx context.Context, getenv config.Getenv, logOut io.Writer) error {
	// Configuration.
	cfg, err := app.LoadAPI(getenv)
	if err != nil {
		return err
	}
	log := cfg.Log.NewLogger(logOut).With("service", "chatd")
	app.LogStart(cfg, log)

	// Database: one pool for every part of the process.
	db, err := app.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()

	// HTTP API.
	srv, err := app.NewAPIServer(cfg, db, log)
	if err != nil {
		return err
	}
	ln, err := app.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}

	// Serve until SIGTERM; the HTTP server stops first, then the pool
	// closes (deferred above).
	if err := app.Serve(ctx, cfg, srv, ln, log); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
