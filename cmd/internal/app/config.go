package app

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/llm"
	"github.com/taskchat/taskchat/pkg/pgdb"
	chatworker "github.com/taskchat/taskchat/workers/chat"
)

// DevSecret is the development BETTER_AUTH_SECRET that docker-compose.yml
// uses when none is set. It is published, so anyone can mint tokens with
// it: the services accept it only in development mode. (chatd in
// development mode generates a secret of its own instead: DevSecretFile.)
const DevSecret = "taskchat-local-dev-secret-do-not-use-in-production"

// Listen addresses of the API: everywhere in production, loopback only in
// development mode, where a well-known secret may be in use.
const (
	DefaultHTTPAddr    = ":8080"
	DefaultDevHTTPAddr = "127.0.0.1:8080"
)

// Service names which service a configuration is for: each reads the
// variables of its parts.
type Service int

// The services.
const (
	// ServiceAPI is cmd/api: the HTTP API; NATS_URL is required.
	ServiceAPI Service = iota
	// ServiceWorker is cmd/worker: the chat workers and the relay;
	// NATS_URL is required.
	ServiceWorker
	// ServiceChatd is cmd/chatd: the API, the workers and, unless NATS_URL
	// is set, an embedded NATS server.
	ServiceChatd
)

func (s Service) api() bool    { return s == ServiceAPI || s == ServiceChatd }
func (s Service) worker() bool { return s == ServiceWorker || s == ServiceChatd }

// Config is the configuration of a service. Parts a service does not run
// keep their zero values.
type Config struct {
	// Service is what the configuration was loaded for.
	Service Service
	// Log is LOG_LEVEL and LOG_FORMAT.
	Log config.Log
	// DevMode is DEV_MODE: a developer's machine. The API then listens on
	// loopback unless HTTP_ADDR says otherwise.
	DevMode bool
	// ShutdownTimeout bounds a graceful shutdown (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
	// ApplySchema applies the embedded schema at start-up (APPLY_SCHEMA).
	ApplySchema bool
	// AtlasDevURL is the scratch database for schema normalisation
	// (ATLAS_DEV_URL).
	AtlasDevURL string
	// DataDir holds the embedded NATS server's storage (DATA_DIR; chatd
	// without NATS_URL only).
	DataDir string
	// DevSecret is where chatd in development mode keeps the secret it
	// generated because no credential setting was given; empty otherwise.
	// Auth.Secret holds the secret.
	DevSecret DevSecretSource

	DB   pgdb.Config
	NATS bus.Config

	// The API's parts.
	HTTPAddr string
	Auth     auth.Config
	HTTP     httpapi.Config
	Chat     httpapi.ChatConfig

	// Console serves the web console at "/" (DEV_CONSOLE; chatd's default
	// is true, the API's false).
	Console bool

	// The workers' parts.
	Worker chatworker.Config
	Relay  chatworker.RelayConfig
	Agent  AgentConfig
	// WorkerHTTPAddr, when set, serves /healthz and /readyz for cmd/worker
	// (WORKER_HTTP_ADDR).
	WorkerHTTPAddr string

	// Env is every variable read, for the start-up log (secrets masked).
	Env *config.Reader
}

// Providers of AgentConfig.
const (
	ProviderOffline = "offline"
	ProviderOpenAI  = "openai"
)

// AgentConfig chooses and bounds the assistant.
type AgentConfig struct {
	// Provider is ProviderOffline (the built-in agent) or ProviderOpenAI
	// (any OpenAI-compatible server) (AI_PROVIDER; openai by default when
	// OPENAI_API_KEY or OPENAI_BASE_URL is set).
	Provider string
	// MaxToolRounds caps the tool rounds of one run (AI_MAX_TOOL_ROUNDS).
	MaxToolRounds int
	// OpenAI is the model's server and settings, for ProviderOpenAI.
	OpenAI llm.Config
	// OfflineDelay slows the offline agent: a pause before each word it
	// streams (AI_OFFLINE_DELAY; for tests and demos, 0 otherwise).
	OfflineDelay time.Duration
}

// DevSecretSource says where chatd's development secret comes from.
type DevSecretSource struct {
	// Path is the file that keeps it (DATA_DIR/DevSecretFile).
	Path string
	// Created is set when this start generated it.
	Created bool
}

// Load reads and validates the configuration of service; every problem is
// reported at once. chatd in development mode without any credential
// setting reads its secret from DATA_DIR (see DevSecretFile), generating
// it on first use: the only file Load writes.
func Load(getenv config.Getenv, service Service) (Config, error) {
	// The reader sees a development secret as BETTER_AUTH_SECRET, so that
	// it is checked, and masked in the log, like a configured one.
	devSecretValue := ""
	r := config.NewReader(func(k string) string {
		if v := getenv(k); v != "" || k != "BETTER_AUTH_SECRET" {
			return v
		}
		return devSecretValue
	})
	cfg := Config{
		Service:         service,
		Log:             config.Logging(r),
		DevMode:         r.Bool("DEV_MODE", false),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		ApplySchema:     r.Bool("APPLY_SCHEMA", false),
		AtlasDevURL:     config.AtlasDevURL(r),
		DB:              config.Database(r),
		Env:             r,
	}
	cfg.NATS = natsConfig(r, service)
	if service == ServiceChatd {
		cfg.DataDir = r.String("DATA_DIR", "./data")
	}
	if service.api() {
		defAddr := DefaultHTTPAddr
		if cfg.DevMode {
			defAddr = DefaultDevHTTPAddr
		}
		cfg.HTTPAddr = r.String("HTTP_ADDR", defAddr)
		cfg.Console = r.Bool("DEV_CONSOLE", service == ServiceChatd)
		if service == ServiceChatd && cfg.DevMode && noAuthSettings(getenv) {
			cfg.DevSecret.Path = filepath.Join(cfg.DataDir, DevSecretFile)
			var err error
			if devSecretValue, cfg.DevSecret.Created, err = devSecret(cfg.DevSecret.Path); err != nil {
				r.Fail("DATA_DIR", err.Error())
			}
		}
		cfg.Auth = config.Auth(r)
		cfg.HTTP = httpConfig(r)
		cfg.Chat = httpapi.ChatConfig{
			SyncTimeout:          r.Duration("CHAT_SYNC_TIMEOUT", httpapi.DefaultSyncTimeout),
			MaxQueuedRunsPerUser: r.Int("MAX_QUEUED_RUNS_PER_USER", httpapi.DefaultMaxQueuedRunsPerUser),
			SSEMaxStreamsPerUser: r.Int("SSE_MAX_STREAMS_PER_USER", httpapi.DefaultSSEMaxStreamsPerUser),
			SSEPingInterval:      r.Duration("SSE_PING_INTERVAL", httpapi.DefaultSSEPingInterval),
		}
		if cfg.Chat.SSEMaxStreamsPerUser == 0 {
			r.Fail("SSE_MAX_STREAMS_PER_USER", "must be at least 1")
		}
		if cfg.Chat.MaxQueuedRunsPerUser == 0 {
			r.Fail("MAX_QUEUED_RUNS_PER_USER", "must be at least 1")
		}
		r.Check(cfg.Chat.Validate())
		if cfg.Auth.Secret == DevSecret && !cfg.DevMode {
			r.Fail("BETTER_AUTH_SECRET", "is the published development secret: set your own (openssl rand -base64 32), or DEV_MODE=true on a developer's machine")
		}
	}
	if service.worker() {
		cfg.Worker, cfg.Relay = workerConfig(r)
		// Workers renew a run's lease, and keep its request from being
		// redelivered, every third of the lease.
		if ack := cfg.NATS.AckWait; ack > 0 && ack <= cfg.Worker.Lease/3 {
			r.Fail("RUN_ACK_WAIT", fmt.Sprintf("must be longer than a sixth of RUN_RESUME_AFTER (%s), got %s", cfg.Worker.Lease/3, ack))
		}
		cfg.Agent = agentConfig(r)
		if service == ServiceWorker {
			cfg.WorkerHTTPAddr = r.String("WORKER_HTTP_ADDR", "")
		}
	}
	return cfg, r.Err()
}

// agentConfig reads the assistant's settings: which provider, and the
// model's server for the openai one. Every OPENAI_* setting is read here
// and passed on; the SDK reads none by itself.
func agentConfig(r *config.Reader) AgentConfig {
	key := r.Secret("OPENAI_API_KEY")
	base := r.URL("OPENAI_BASE_URL", "")
	def := ProviderOffline
	if key != "" || base != "" {
		def = ProviderOpenAI
	}
	cfg := AgentConfig{
		Provider:      r.OneOf("AI_PROVIDER", def, ProviderOffline, ProviderOpenAI),
		MaxToolRounds: r.Int("AI_MAX_TOOL_ROUNDS", agent.DefaultMaxRounds),
		OpenAI: llm.Config{
			BaseURL:     base,
			APIKey:      key,
			Model:       r.String("AI_MODEL", llm.DefaultModel),
			Temperature: r.OptionalFloat("AI_TEMPERATURE"),
			Timeout:     r.Duration("AI_TIMEOUT", llm.DefaultTimeout),
			MaxRetries:  r.Int("AI_MAX_RETRIES", llm.DefaultMaxRetries),
		},
	}
	if cfg.MaxToolRounds < 1 || cfg.MaxToolRounds > 50 {
		r.Fail("AI_MAX_TOOL_ROUNDS", "must be from 1 to 50")
	}
	cfg.OfflineDelay = r.Duration("AI_OFFLINE_DELAY", 0)
	if cfg.OfflineDelay > agent.MaxOfflineWordDelay {
		r.Fail("AI_OFFLINE_DELAY", fmt.Sprintf("must be at most %s, got %s", agent.MaxOfflineWordDelay, cfg.OfflineDelay))
	}
	if cfg.OpenAI.MaxRetries < 0 {
		r.Fail("AI_MAX_RETRIES", "must be from 0 to 10")
	}
	if cfg.Provider == ProviderOpenAI {
		if key == "" && base == "" {
			r.Fail("AI_PROVIDER", "is openai but neither OPENAI_API_KEY (for api.openai.com) nor OPENAI_BASE_URL (for another server, e.g. http://127.0.0.1:11434/v1 for Ollama) is set")
		}
		r.Check(cfg.OpenAI.Validate())
	}
	return cfg
}

// natsConfig reads the bus settings (config.NATS). NATS_URL is required
// but for chatd, which embeds a server when it is unset.
func natsConfig(r *config.Reader, service Service) bus.Config {
	cfg := config.NATS(r)
	if cfg.URL == "" && service != ServiceChatd {
		r.Fail("NATS_URL", "is required (e.g. nats://127.0.0.1:4222); only chatd embeds a server without it")
	}
	return cfg
}

// workerConfig reads the workers' and the relay's settings. RUN_RESUME_AFTER
// bounds how long a dead worker's run waits: the lease is half of it and
// the relay looks every quarter (at most every 5 s).
func workerConfig(r *config.Reader) (chatworker.Config, chatworker.RelayConfig) {
	resume := r.Duration("RUN_RESUME_AFTER", 60*time.Second)
	if resume < 4*time.Second {
		r.Fail("RUN_RESUME_AFTER", "must be at least 4s")
		resume = 60 * time.Second
	}
	w := chatworker.Config{
		Concurrency:     r.Int("WORKER_CONCURRENCY", chatworker.DefaultConcurrency),
		Lease:           resume / 2,
		MaxAttempts:     r.Int("RUN_MAX_ATTEMPTS", chatworker.DefaultMaxAttempts),
		HistoryMessages: r.Int("AI_HISTORY_MESSAGES", chatworker.DefaultHistoryMessages),
		RunTimeout:      r.Duration("AI_RUN_TIMEOUT", chatworker.DefaultRunTimeout),
	}
	// Zero would mean "the default" to the worker; in the environment it is
	// a mistake.
	for _, v := range []struct {
		name  string
		value int
	}{{"WORKER_CONCURRENCY", w.Concurrency}, {"RUN_MAX_ATTEMPTS", w.MaxAttempts}, {"AI_HISTORY_MESSAGES", w.HistoryMessages}} {
		if v.value == 0 {
			r.Fail(v.name, "must be at least 1")
		}
	}
	r.Check(w.Validate())
	relay := chatworker.RelayConfig{
		Interval:    min(chatworker.DefaultRelayInterval, resume/4),
		QueuedAfter: r.Duration("RELAY_QUEUED_AFTER", chatworker.DefaultRelayQueuedAfter),
	}
	return w, relay
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
	seen := map[string]bool{}
	for _, s := range []Service{ServiceAPI, ServiceWorker, ServiceChatd} {
		cfg, _ := Load(func(string) string { return "" }, s)
		for _, v := range cfg.Env.Vars() {
			seen[v.Name] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
