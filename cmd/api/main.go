// Command api serves taskchat's HTTP API alone; run several replicas behind
// a load balancer and scale the workers (cmd/worker) separately. It needs
// NATS_URL: it hands chat messages to the workers through JetStream.
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
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

// run serves the API until ctx is done (SIGINT or SIGTERM).
func run(ctx context.Context, getenv config.Getenv, logOut io.Writer) error {
	// Configuration.
	cfg, err := app.Load(getenv, app.ServiceAPI)
	if err != nil {
		return err
	}
	log := cfg.Log.NewLogger(logOut).With("service", "api")
	app.LogStart(cfg, log)

	// Database.
	db, err := app.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()

	// NATS.
	b, err := app.ConnectBus(ctx, cfg, "", "taskchat-api", log)
	if err != nil {
		return err
	}
	defer b.Close()

	// HTTP.
	srv, stopEvents, err := app.NewAPIServer(ctx, cfg, db, b, log)
	if err != nil {
		return err
	}
	defer stopEvents()
	ln, err := app.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}

	// Serve until SIGTERM, then shut down within SHUTDOWN_TIMEOUT.
	if err := app.Serve(ctx, cfg, srv, ln, log); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
