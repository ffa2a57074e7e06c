package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// target is what the phases drive: the API's base URL, a pool on its
// database (users, the baseline), the secret its tokens are signed with
// and, for the async mode, a bus to hear run events on.
type target struct {
	base   string
	db     *bun.DB
	secret string
	bus    *bus.Bus
	// cfg is the in-process stack's configuration (zero for -url).
	cfg app.Config
	// describe says what runs where, for the report.
	describe string
	// streams counts the event streams open on the in-process API (nil
	// for -url).
	streams func() int
	// close stops everything the target started, in order.
	close func() error
}

// startStack starts taskchat in this process as chatd does — the API on a
// loopback listener, the workers, an embedded NATS server unless NATS_URL
// is set — on a fresh database created on DATABASE_URL's server (dropped
// by close unless keepDB). Everything else comes from the environment,
// as for chatd (DB_MAX_CONNS, WORKER_CONCURRENCY, …), but NATS_PREFIX is a
// fresh one whose streams close deletes, and BETTER_AUTH_SECRET a random
// one. Service logs go to logOut. adjust, when given, changes the loaded
// configuration before anything starts (settings without a variable).
func startStack(ctx context.Context, getenv config.Getenv, logOut, errOut io.Writer, keepDB bool, adjust ...func(*app.Config)) (_ *target, err error) {
	var closers []func() error
	cleanup := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, cleanup())
		}
	}()

	// A fresh database with the schema: load runs leave nothing behind in
	// the developer's database and always start from the same state.
	serverURL := getenv("DATABASE_URL")
	if serverURL == "" {
		return nil, errors.New("DATABASE_URL is required: the server to create the load database on (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)")
	}
	dbURL, drop, err := freshDatabase(ctx, serverURL)
	if err != nil {
		return nil, err
	}
	if keepDB {
		fmt.Fprintf(errOut, "chatload: keeping the load database: %s\n", config.MaskURL(dbURL))
	} else {
		closers = append(closers, drop)
	}

	// The stack and its tokens live only as long as the run: a secret of
	// its own (whatever BETTER_AUTH_SECRET says; the Makefile's is the
	// published development one, which the API refuses outside DEV_MODE).
	secret := randomHex(32)
	overrides := map[string]string{
		"DATABASE_URL":       dbURL,
		"BETTER_AUTH_SECRET": secret,
		"NATS_PREFIX":        "load" + randomHex(5),
		"APPLY_SCHEMA":       "false",
	}
	cfg, err := app.Load(func(k string) string {
		if v, ok := overrides[k]; ok {
			return v
		}
		return getenv(k)
	}, app.ServiceChatd)
	if err != nil {
		return nil, err
	}
	for _, a := range adjust {
		a(&cfg)
	}
	log := cfg.Log.NewLogger(logOut).With("service", "chatload")

	db, err := app.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, db.Close)

	natsURL, where := "", "NATS at "+config.MaskURL(cfg.NATS.URL)
	if cfg.NATS.URL == "" {
		dir, err := os.MkdirTemp("", "chatload-nats-")
		if err != nil {
			return nil, fmt.Errorf("nats data directory: %w", err)
		}
		closers = append(closers, func() error { return os.RemoveAll(dir) })
		cfg.DataDir = dir
		ns, err := app.StartNATS(cfg)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() error { ns.Shutdown(); return nil })
		natsURL, where = ns.ClientURL(), "embedded NATS (file storage in a temp dir)"
	}
	b, err := app.ConnectBus(ctx, cfg, natsURL, "chatload", log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() error {
		// Even after an interrupt: the streams must not outlive the run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := b.DeleteStreams(ctx)
		b.Close()
		return err
	})

	// Workers, stopped after the API.
	w, relay, err := app.NewWorkers(cfg, db, b, log)
	if err != nil {
		return nil, err
	}
	workersCtx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	workersDone := make(chan error, 1)
	go func() { workersDone <- app.RunWorkers(workersCtx, cfg, w, relay, log) }()
	closers = append(closers, func() error { stopWorkers(); return <-workersDone })

	srv, stopEvents, err := app.NewAPIServer(ctx, cfg, db, b, log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() error { stopEvents(); return nil })
	ln, err := app.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- app.Serve(serveCtx, cfg, srv, ln, log) }()
	closers = append(closers, func() error { stopServe(); return <-served })

	return &target{
		base:    "http://" + ln.Addr().String(),
		db:      db,
		secret:  secret,
		bus:     b,
		cfg:     cfg,
		streams: srv.EventStreams,
		describe: fmt.Sprintf("in process (like chatd): API on loopback, workers (WORKER_CONCURRENCY=%d), %s, one pool (DB_MAX_CONNS=%d)",
			cfg.Worker.Concurrency, where, cfg.DB.MaxConns),
		close: cleanup,
	}, nil
}

// connectTarget targets an API that runs elsewhere, at base: users are
// created in its database (DATABASE_URL) and deleted at the end, tokens
// signed with its BETTER_AUTH_SECRET; NATS_URL and NATS_PREFIX (needed for
// the async mode only) name its NATS.
func connectTarget(ctx context.Context, getenv config.Getenv, base string, async bool) (_ *target, err error) {
	r := config.NewReader(getenv)
	dbCfg := config.Database(r)
	secret := r.Secret("BETTER_AUTH_SECRET")
	natsCfg := bus.Config{URL: r.URL("NATS_URL", ""), Prefix: r.String("NATS_PREFIX", bus.DefaultPrefix), ClientName: "chatload"}
	if secret == "" {
		r.Fail("BETTER_AUTH_SECRET", "is required with -url: the API's secret, to sign the load users' tokens")
	}
	if async && natsCfg.URL == "" {
		r.Fail("NATS_URL", "is required with -url and -async: the API's NATS, to hear run events on")
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	db, err := pgdb.Open(ctx, dbCfg)
	if err != nil {
		return nil, err
	}
	t := &target{base: base, db: db, secret: secret,
		describe: fmt.Sprintf("the API at %s (the baseline on its database, DB_MAX_CONNS=%d)", base, dbCfg.MaxConns)}
	if async {
		if t.bus, err = bus.Connect(ctx, natsCfg); err != nil {
			db.Close()
			return nil, err
		}
	}
	t.close = func() error {
		if t.bus != nil {
			t.bus.Close()
		}
		return db.Close()
	}
	// The API must answer before anything is measured.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return nil, errors.Join(err, t.close())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("API at %s: %w", base, err), t.close())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.Join(fmt.Errorf("API at %s: /readyz answered %d", base, resp.StatusCode), t.close())
	}
	return t, nil
}

// freshDatabase creates a database with the schema on serverURL's server
// and returns its URL and how to drop it.
func freshDatabase(ctx context.Context, serverURL string) (string, func() error, error) {
	admin, err := pgdb.DatabaseURL(serverURL, "postgres")
	if err != nil {
		return "", nil, err
	}
	name := "taskchat_load_" + randomHex(4)
	if err := pgdb.CreateDatabase(ctx, admin, name); err != nil {
		return "", nil, err
	}
	drop := func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		return pgdb.DropDatabase(ctx, admin, name)
	}
	u, err := pgdb.DatabaseURL(serverURL, name)
	if err == nil {
		_, err = dbschema.Apply(ctx, u, dbschema.Options{})
	}
	if err != nil {
		return "", nil, errors.Join(fmt.Errorf("load database: %w", err), drop())
	}
	return u, drop, nil
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
