// Command worker runs taskchat's chat workers alone: it pulls run requests
// from NATS JetStream, runs the assistant and publishes the answers. Run as
// many as the load needs; they share one durable consumer. It listens on no
// port unless WORKER_HTTP_ADDR is set (then /healthz and /readyz).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// run works on chat runs until ctx is done (SIGINT or SIGTERM), then stops
// pulling and finishes or hands back the runs in flight.
func run(ctx context.Context, getenv config.Getenv, logOut io.Writer) error {
	// Configuration.
	cfg, err := app.Load(getenv, app.ServiceWorker)
	if err != nil {
		return err
	}
	log := cfg.Log.NewLogger(logOut).With("service", "worker")
	app.LogStart(cfg, log)

	// Database.
	db, err := app.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()

	// NATS.
	b, err := app.ConnectBus(ctx, cfg, "", "taskchat-worker", log)
	if err != nil {
		return err
	}
	defer b.Close()

	w, relay, err := app.NewWorkers(cfg, db, b, log)
	if err != nil {
		return err
	}

	// Probes, when asked for.
	var wg sync.WaitGroup
	if cfg.WorkerHTTPAddr != "" {
		checks := map[string]func(context.Context) error{"postgres": db.PingContext, "nats": b.Ready}
		wg.Go(func() {
			if err := app.ServeHealth(ctx, cfg.WorkerHTTPAddr, checks, log); err != nil {
				log.Error("health probes", "err", err)
			}
		})
	}

	// Work until SIGTERM; then stop pulling and wait for the runs in
	// flight, at most SHUTDOWN_TIMEOUT.
	err = app.RunWorkers(ctx, cfg, w, relay, log)
	wg.Wait()
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
