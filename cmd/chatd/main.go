// Command chatd is taskchat all in one process: an embedded NATS server
// with JetStream (unless NATS_URL names one), the HTTP API and the chat
// workers, on one database pool, and the web console at /. `make run`
// starts it in development mode (DEV_MODE=true: loopback only, a secret of
// its own under DATA_DIR when none is set, a development user and a
// console URL in the log), with the built-in offline assistant.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/uptrace/bun"

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

// logConsoleURL logs, once, the URL that opens the console signed in as
// the development user (created if missing). It is the one line that
// holds a credential, on purpose: development mode only, on the
// developer's own terminal, and in the URL's fragment, which the browser
// never sends on.
func logConsoleURL(ctx context.Context, cfg app.Config, db *bun.DB, ln net.Listener, log *slog.Logger) {
	url, err := app.DevConsoleURL(ctx, cfg, db, ln.Addr())
	if err != nil {
		log.Warn("development console: no sign-in URL; sign in with a token from make token", "err", err)
		return
	}
	log.Info("development console: open this URL to sign in as "+app.DevUserID, "url", url)
}

// run starts every part of taskchat in this process and stops them in
// order when ctx is done (SIGINT or SIGTERM): HTTP first (no new
// messages), then the workers (runs in flight finish or are handed back),
// then NATS and the database.
func run(ctx context.Context, getenv config.Getenv, logOut io.Writer) error {
	// Configuration.
	cfg, err := app.Load(getenv, app.ServiceChatd)
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

	// NATS: the configured server, or an embedded one.
	natsURL := ""
	if cfg.NATS.URL == "" {
		ns, err := app.StartNATS(cfg)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		natsURL = ns.ClientURL()
		log.Info("embedded NATS running", "url", natsURL, "data_dir", cfg.DataDir)
	}
	b, err := app.ConnectBus(ctx, cfg, natsURL, "taskchat-chatd", log)
	if err != nil {
		return err
	}
	defer b.Close()

	// Workers.
	w, relay, err := app.NewWorkers(cfg, db, b, log)
	if err != nil {
		return err
	}
	workersDone := make(chan error, 1)
	workersCtx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	go func() { workersDone <- app.RunWorkers(workersCtx, cfg, w, relay, log) }()
	abortWorkers := func() {
		stopWorkers()
		if err := <-workersDone; err != nil {
			log.Warn("workers", "err", err)
		}
	}

	// HTTP API.
	srv, stopEvents, err := app.NewAPIServer(ctx, cfg, db, b, log)
	if err != nil {
		abortWorkers()
		return err
	}
	defer stopEvents()
	ln, err := app.Listen(cfg.HTTPAddr)
	if err != nil {
		abortWorkers()
		return err
	}
	if cfg.DevMode && cfg.Console {
		logConsoleURL(ctx, cfg, db, ln, log)
	}

	// Serve until SIGTERM; then the HTTP server stops, then the workers.
	serveErr := app.Serve(ctx, cfg, srv, ln, log)
	stopWorkers()
	if err := <-workersDone; err != nil && serveErr == nil {
		serveErr = err
	}
	if serveErr != nil {
		return serveErr
	}
	log.Info("stopped")
	return nil
}
