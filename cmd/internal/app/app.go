// Package app holds the builders the service commands in cmd/ share: load
// the configuration, open the database, start or connect to NATS, build the
// HTTP server and the workers, serve until the context ends. Each command's
// run function calls them in visible steps; only commands import this
// package.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/console"
	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/llm"
	"github.com/taskchat/taskchat/pkg/natsembed"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
	chatworker "github.com/taskchat/taskchat/workers/chat"
)

// OpenDatabase opens the connection pool of cfg.DB and, when
// cfg.ApplySchema is set, brings the schema up to date first.
func OpenDatabase(ctx context.Context, cfg Config, log *slog.Logger) (*bun.DB, error) {
	if cfg.ApplySchema {
		plan, err := dbschema.Apply(ctx, cfg.DB.URL, dbschema.Options{DevURL: cfg.AtlasDevURL})
		if err != nil {
			return nil, fmt.Errorf("apply schema: %w", err)
		}
		log.Info("schema applied", "statements", len(plan.Statements))
	}
	return pgdb.Open(ctx, cfg.DB)
}

// NewAPIServer builds the HTTP API over db and b: the credential verifier,
// the stores, the chat routes, and the process's one events follower, which
// feeds both the event streams and the requests waiting for a run's end,
// plus the subscription to conversation deletes. stop ends them; call it
// after the server has shut down.
func NewAPIServer(ctx context.Context, cfg Config, db *bun.DB, b *bus.Bus, log *slog.Logger) (srv *httpapi.Server, stop func(), err error) {
	verifier, err := auth.NewVerifier(cfg.Auth, authstore.NewStore(db), auth.WithLogger(log))
	if err != nil {
		return nil, nil, err
	}
	// One follower of the events stream feeds this process's event streams
	// and the sync requests waiting for their run's final event.
	waiter := httpapi.NewRunWaiter()
	hub := httpapi.NewEventHub(cfg.Chat.SSEBuffer)
	ctx, cancel := context.WithTimeout(ctx, cfg.NATS.PublishTimeout+5*time.Second)
	defer cancel()
	stopFollow, err := b.FollowEvents(ctx, func(ev chat.Event) {
		hub.Deliver(ev)
		waiter.Deliver(ev)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("follow run events: %w", err)
	}
	// A conversation deleted through another replica ends its streams and
	// sync requests here.
	stopDeleted, err := b.SubscribeConversationDeleted(func(conversationID string) {
		hub.EndConversation(conversationID)
		waiter.EndConversation(conversationID)
	})
	if err != nil {
		stopFollow()
		return nil, nil, fmt.Errorf("subscribe to conversation deletes: %w", err)
	}
	stop = func() { stopDeleted(); stopFollow() }
	var consoleFiles fs.FS
	if cfg.Console {
		consoleFiles = console.Files()
	}
	srv = httpapi.New(cfg.HTTP, httpapi.Deps{
		Auth:  verifier,
		Tasks: todo.NewStore(db),
		Log:   log,
		Ready: []httpapi.ReadyCheck{
			{Name: "postgres", Check: db.PingContext},
			{Name: "nats", Check: b.Ready},
		},
		Chat:    &httpapi.Chat{Config: cfg.Chat, Store: chat.NewStore(db), Bus: b, Waiter: waiter, Events: hub},
		Console: consoleFiles,
	})
	return srv, stop, nil
}

// ConnectBus connects to cfg.NATS (url overrides its URL when not empty:
// chatd's embedded server) and declares the streams and the consumer.
func ConnectBus(ctx context.Context, cfg Config, url, name string, log *slog.Logger) (*bus.Bus, error) {
	nc := cfg.NATS
	if url != "" {
		nc.URL = url
	}
	nc.ClientName = name
	b, err := bus.Connect(ctx, nc, bus.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return b, nil
}

// StartNATS starts chatd's embedded NATS server with JetStream, storing
// under cfg.DataDir, on a free loopback port (never 4222, which the
// machine's own server may hold).
func StartNATS(cfg Config) (*natsembed.Server, error) {
	srv, err := natsembed.Start(natsembed.Config{DataDir: filepath.Join(cfg.DataDir, "nats"), Port: -1})
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	return srv, nil
}

// NewWorkers builds the chat worker and the relay over db and b.
func NewWorkers(cfg Config, db *bun.DB, b *bus.Bus, log *slog.Logger) (*chatworker.Worker, *chatworker.Relay, error) {
	p, err := NewProvider(cfg.Agent)
	if err != nil {
		return nil, nil, err
	}
	a := agent.New(p, agent.WithMaxRounds(cfg.Agent.MaxToolRounds))
	return chatworker.New(cfg.Worker, db, b, a, log), chatworker.NewRelay(cfg.Relay, db, b, log), nil
}

// NewProvider returns the model cfg chooses.
func NewProvider(cfg AgentConfig) (agent.Provider, error) {
	if cfg.Provider != ProviderOpenAI {
		return agent.NewOffline(agent.WithWordDelay(cfg.OfflineDelay)), nil
	}
	p, err := llm.New(cfg.OpenAI)
	if err != nil {
		return nil, fmt.Errorf("AI provider: %w", err)
	}
	return p, nil
}

// RunWorkers runs w and the relay until ctx ends, then waits for the runs
// in flight at most cfg.ShutdownTimeout (runs still going are handed back).
func RunWorkers(ctx context.Context, cfg Config, w *chatworker.Worker, relay *chatworker.Relay, log *slog.Logger) error {
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); relay.Run(ctx) }()
	log.Info("workers running", "owner", w.Owner(), "concurrency", cfg.Worker.Concurrency,
		"ai_provider", cfg.Agent.Provider, "ai_model", w.Model())
	stop, cancel := shutdownContext(ctx, cfg.ShutdownTimeout)
	defer cancel()
	err := w.Run(ctx, stop)
	<-relayDone
	return err
}

// shutdownContext returns a context that ends timeout after ctx does.
func shutdownContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	stop, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-stop.Done():
			return
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-stop.Done():
		}
	}()
	return stop, cancel
}

// ServeHealth serves /healthz and /readyz on addr until ctx ends: the
// worker's probes (WORKER_HTTP_ADDR), with no API behind them.
func ServeHealth(ctx context.Context, addr string, checks map[string]func(context.Context) error, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		for name, check := range checks {
			if err := check(ctx); err != nil {
				log.Warn("readiness check failed", "check", name, "err", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"status":"unavailable","failed":"`+name+`"}`)
				return
			}
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	ln, err := Listen(addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdownCtx)
	}()
	log.Info("health probes listening", "addr", ln.Addr().String())
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
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

// Serve serves srv on ln until ctx is done, then shuts it down: it stops
// accepting and waits for in-flight requests, at most cfg.ShutdownTimeout.
func Serve(ctx context.Context, cfg Config, srv *httpapi.Server, ln net.Listener, log *slog.Logger) error {
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
// masked) and, in development mode, a warning that says where it listens
// and where its secret comes from.
func LogStart(cfg Config, log *slog.Logger) {
	log.Info("starting", "config", cfg.Env)
	if cfg.DevMode && cfg.Service.api() {
		secret := "BETTER_AUTH_SECRET"
		switch {
		case cfg.DevSecret.Created:
			secret = "generated, kept in " + cfg.DevSecret.Path
		case cfg.DevSecret.Path != "":
			secret = "kept in " + cfg.DevSecret.Path
		case cfg.Auth.Secret == "":
			secret = "none (JWKS only)"
		}
		log.Warn("development mode (DEV_MODE=true): never use it in production",
			"http_addr", cfg.HTTPAddr, "loopback_only", isLoopback(cfg.HTTPAddr), "auth_secret", secret)
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
