package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "app", &testDB)) }

const secret = "app-test-secret-0123456789abcdefghij"

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// loadAPI loads the API's configuration from m, with a NATS_URL unless m
// has one (the API needs one; nothing here connects to it).
func loadAPI(m map[string]string) (app.Config, error) {
	if _, ok := m["NATS_URL"]; !ok {
		m["NATS_URL"] = "nats://127.0.0.1:4222"
	}
	return app.Load(env(m), app.ServiceAPI)
}

// TestBuildersServeTasksAndShutDown runs the builders the way api and
// chatd do, on a real listener: a token as chatctl mints it works end to
// end, and cancelling the context (SIGTERM) returns cleanly.
func TestBuildersServeTasksAndShutDown(t *testing.T) {
	cfg, err := loadAPI((map[string]string{
		"DATABASE_URL":       testDB.URL,
		"BETTER_AUTH_SECRET": secret,
		"APPLY_SCHEMA":       "true",
		"SHUTDOWN_TIMEOUT":   "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	log := cfg.Log.NewLogger(&logs)
	db, err := app.OpenDatabase(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b, err := app.ConnectBus(context.Background(), cfg, bustest.Embedded(t).URL, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	srv, stopEvents, err := app.NewAPIServer(context.Background(), cfg, db, b, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopEvents)
	ln, err := app.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, cfg, srv, ln, log) }()

	// The listener is open before Serve starts: this first request waits in
	// the accept backlog until the server serves, so no polling is needed.
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second}
	if resp, err := client.Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	user := dbtest.CreateUser(t, testDB.DB, "")
	tok, err := auth.SignHS256(secret, auth.TokenClaims{UserID: user, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/"+user+"/tasks", strings.NewReader(`{"title":"Pay the bills"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var task struct {
		ID    int64  `json:"id"`
		Title string `json:"title"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &task) != nil || task.Title != "Pay the bills" {
		t.Fatalf("create task: %d %s", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancellation")
	}
	if resp, err := client.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after shutdown")
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), secret) {
		t.Fatal("logs contain the token or the secret")
	}
}

func TestLoadAPIRefusesBadSecrets(t *testing.T) {
	tests := []struct {
		name, secret, want string
	}{
		{"no auth setting", "", "set BETTER_AUTH_SECRET or BETTER_AUTH_URL/JWKS_URL"},
		{"31-byte secret", strings.Repeat("s", 31), "BETTER_AUTH_SECRET is 31 bytes, it must be at least 32"},
		{"the published development secret", app.DevSecret, "BETTER_AUTH_SECRET is the published development secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAPI((map[string]string{"DATABASE_URL": testDB.URL, "BETTER_AUTH_SECRET": tt.secret}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: err = %v, want %q", err, tt.want)
			}
			if tt.secret != "" && tt.secret != app.DevSecret && strings.Contains(err.Error(), tt.secret) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestLoadAPIReportsEachProblemOnce: every broken variable is reported, and
// each only once (the package that owns a setting validates it; nobody
// else checks it again).
func TestLoadAPIReportsEachProblemOnce(t *testing.T) {
	_, err := loadAPI((map[string]string{
		"DB_MAX_CONNS":         "0",
		"HTTP_BODY_LIMIT":      "lots",
		"LOG_LEVEL":            "loud",
		"CORS_ORIGINS":         "https://app.example.com#frag",
		"HTTP_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal",
		"AUTH_USER_CACHE_TTL":  "2m",
		"DEV_MODE":             "maybe",
	}))
	if err == nil {
		t.Fatal("Load accepted a broken environment")
	}
	// The worker's and chat's counts: zero is a mistake, not "the default".
	_, err2 := app.Load(env(map[string]string{
		"WORKER_CONCURRENCY": "0", "RUN_MAX_ATTEMPTS": "0", "AI_HISTORY_MESSAGES": "0", "MAX_QUEUED_RUNS_PER_USER": "0",
	}), app.ServiceChatd)
	for _, want := range []string{"WORKER_CONCURRENCY must be at least 1", "RUN_MAX_ATTEMPTS must be at least 1", "AI_HISTORY_MESSAGES must be at least 1", "MAX_QUEUED_RUNS_PER_USER must be at least 1"} {
		if err2 == nil || strings.Count(err2.Error(), want) != 1 {
			t.Errorf("zero counts: %q not reported once in %v", want, err2)
		}
	}
	if err == nil {
		t.Fatal("LoadAPI accepted a broken environment")
	}
	for _, want := range []string{"DATABASE_URL", "DB_MAX_CONNS", "HTTP_BODY_LIMIT", "LOG_LEVEL", "app.example.com#frag", "proxy.internal", "CORS_ORIGINS", "HTTP_TRUSTED_PROXIES", "cache TTL", "BETTER_AUTH_SECRET", "DEV_MODE"} {
		if n := strings.Count(err.Error(), want); n != 1 {
			t.Errorf("%q is mentioned %d times, want once: %v", want, n, err)
		}
	}
}

// TestLoadAgent: the provider follows the OPENAI_* settings unless
// AI_PROVIDER says otherwise, every setting reaches the provider's
// configuration, and impossible ones are refused naming their variable.
func TestLoadAgent(t *testing.T) {
	load := func(vars map[string]string) (app.AgentConfig, error) {
		cfg, err := app.Load(env(vars), app.ServiceWorker)
		return cfg.Agent, err
	}
	base := map[string]string{"DATABASE_URL": testDB.URL, "NATS_URL": "nats://127.0.0.1:4222"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"nothing set", nil, app.ProviderOffline},
		{"a key", map[string]string{"OPENAI_API_KEY": "sk-x"}, app.ProviderOpenAI},
		{"a base URL", map[string]string{"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, app.ProviderOpenAI},
		{"a key, but offline asked for", map[string]string{"OPENAI_API_KEY": "sk-x", "AI_PROVIDER": "offline"}, app.ProviderOffline},
	} {
		a, err := load(with(tc.vars))
		if err != nil || a.Provider != tc.want {
			t.Errorf("%s: provider %q, %v; want %q", tc.name, a.Provider, err, tc.want)
		}
	}

	a, err := load(with(map[string]string{
		"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1", "OPENAI_API_KEY": "sk-x", "AI_MODEL": "llama3.1",
		"AI_TEMPERATURE": "0.2", "AI_TIMEOUT": "20s", "AI_MAX_RETRIES": "4", "AI_MAX_TOOL_ROUNDS": "5",
	}))
	if err != nil {
		t.Fatal(err)
	}
	o := a.OpenAI
	if o.BaseURL != "http://127.0.0.1:11434/v1" || o.APIKey != "sk-x" || o.Model != "llama3.1" || o.Temperature == nil || *o.Temperature != 0.2 ||
		o.Timeout != 20*time.Second || o.MaxRetries != 4 || a.MaxToolRounds != 5 {
		t.Errorf("agent config = %+v, openai %+v", a, o)
	}
	if p, err := app.NewProvider(a); err != nil || p.Model() != "llama3.1" {
		t.Errorf("NewProvider = %v, %v; want the openai provider for llama3.1", p, err)
	}

	for vars, want := range map[string]string{
		`{"AI_PROVIDER": "openai"}`:                         "AI_PROVIDER is openai but neither OPENAI_API_KEY",
		`{"AI_PROVIDER": "claude"}`:                         "AI_PROVIDER",
		`{"OPENAI_BASE_URL": "localhost:11434"}`:            "OPENAI_BASE_URL must be an http or https URL",
		`{"OPENAI_API_KEY": "k", "AI_TEMPERATURE": "3"}`:    "AI_TEMPERATURE must be from 0 to 2",
		`{"OPENAI_API_KEY": "k", "AI_TEMPERATURE": "warm"}`: "AI_TEMPERATURE must be a number",
		`{"OPENAI_API_KEY": "k", "AI_MAX_RETRIES": "-1"}`:   "AI_MAX_RETRIES must be from 0 to 10",
		`{"OPENAI_API_KEY": "k", "AI_TIMEOUT": "0s"}`:       "AI_TIMEOUT must be a positive duration",
		`{"AI_RUN_TIMEOUT": "500ms"}`:                       "AI_RUN_TIMEOUT must be at least 1s",
	} {
		var extra map[string]string
		if err := json.Unmarshal([]byte(vars), &extra); err != nil {
			t.Fatal(err)
		}
		_, err := load(with(extra))
		if err == nil || strings.Count(err.Error(), want) != 1 {
			t.Errorf("%s: err = %v, want %q once", vars, err, want)
		}
	}
	// The key never shows in an error or the start-up log.
	cfg, err := app.Load(env(with(map[string]string{"OPENAI_API_KEY": "sk-secret-value-123", "AI_TEMPERATURE": "9"})), app.ServiceWorker)
	if err == nil || strings.Contains(err.Error(), "sk-secret-value-123") {
		t.Errorf("err = %v", err)
	}
	var logged strings.Builder
	app.LogStart(cfg, slog.New(slog.NewTextHandler(&logged, nil)))
	if strings.Contains(logged.String(), "sk-secret-value-123") || !strings.Contains(logged.String(), "OPENAI_API_KEY") {
		t.Errorf("start-up log shows the key or not its variable: %s", logged.String())
	}
}

// TestStartLogShowsEveryVariable compares the start-up log with the list
// of variables the services read.
func TestStartLogShowsEveryVariable(t *testing.T) {
	// Together the three services read every variable; each logs what it read.
	logged := map[string]bool{}
	for _, service := range []app.Service{app.ServiceAPI, app.ServiceWorker, app.ServiceChatd} {
		cfg, err := app.Load(env(map[string]string{
			"DATABASE_URL":       "postgres://app:hunter2@db.internal:5432/taskchat",
			"NATS_URL":           "nats://nats-user:natspass@nats.internal:4222",
			"BETTER_AUTH_SECRET": secret,
		}), service)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		app.LogStart(cfg, slog.New(slog.NewJSONHandler(&b, nil)))
		out := b.String()
		for _, v := range cfg.Env.Vars() {
			if !strings.Contains(out, `"`+v.Name+`":`) {
				t.Errorf("service %d's start-up log lacks %s: %s", service, v.Name, out)
			}
			logged[v.Name] = true
		}
		for _, leak := range []string{"hunter2", "natspass", secret} {
			if strings.Contains(out, leak) {
				t.Fatalf("the start-up log leaks %q: %s", leak, out)
			}
		}
	}
	vars := app.Variables()
	if len(vars) < 40 {
		t.Fatalf("Variables() = %v: too few", vars)
	}
	for _, v := range vars {
		if !logged[v] {
			t.Errorf("no service logs %s at start", v)
		}
	}
}

func TestDevModeListensOnLoopback(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		addr     string
		loopback string
	}{
		{"production default", map[string]string{}, ":8080", ""},
		{"dev mode", map[string]string{"DEV_MODE": "true"}, "127.0.0.1:8080", "loopback_only=true"},
		{"dev mode with the development secret", map[string]string{"DEV_MODE": "true", "BETTER_AUTH_SECRET": app.DevSecret}, "127.0.0.1:8080", "loopback_only=true"},
		{"dev mode, address given", map[string]string{"DEV_MODE": "true", "HTTP_ADDR": ":9000"}, ":9000", "loopback_only=false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["DATABASE_URL"] = testDB.URL
			if tt.env["BETTER_AUTH_SECRET"] == "" {
				tt.env["BETTER_AUTH_SECRET"] = secret
			}
			cfg, err := loadAPI((tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.HTTPAddr != tt.addr {
				t.Fatalf("HTTPAddr = %q, want %q", cfg.HTTPAddr, tt.addr)
			}
			var b bytes.Buffer
			app.LogStart(cfg, slog.New(slog.NewTextHandler(&b, nil)))
			if tt.loopback == "" {
				if strings.Contains(b.String(), "development mode") {
					t.Fatalf("production start-up log speaks of development mode: %s", b.String())
				}
				return
			}
			if !strings.Contains(b.String(), "development mode") || !strings.Contains(b.String(), tt.loopback) {
				t.Fatalf("start-up log does not say where dev mode listens (%s): %s", tt.loopback, b.String())
			}
		})
	}
}

// TestREADMEDocumentsEveryVariable keeps the README's configuration table
// in step with what the services read, both ways: no variable without a
// row, no row for a variable nothing reads.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	b, err := os.ReadFile(repoRoot + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	vars := app.Variables()
	for _, v := range vars {
		if !strings.Contains(string(b), "| `"+v+"` |") {
			t.Errorf("README.md's configuration table has no row for %s", v)
		}
	}
	rows := regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|").FindAllStringSubmatch(string(b), -1)
	if len(rows) == 0 {
		t.Fatal("found no configuration rows in README.md")
	}
	for _, row := range rows {
		// TEST_DATABASE_URL and TEST_NATS_URL are read by the tests, not a service.
		if name := row[1]; name != "TEST_DATABASE_URL" && name != "TEST_NATS_URL" && !slices.Contains(vars, name) {
			t.Errorf("README.md documents %s, which no service reads", name)
		}
	}
}

// TestOnlyConfigReadsTheEnvironment: the start-up log shows every variable
// the config Reader read; that covers the whole environment only if nothing
// else reads it. Commands pass os.Getenv to the Reader; no package calls it.
func TestOnlyConfigReadsTheEnvironment(t *testing.T) {
	direct := regexp.MustCompile(`os\.(Getenv|LookupEnv|Environ)\(|syscall\.Getenv\(`)
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(repoRoot, path)
		// The test helpers read the tests' own TEST_DATABASE_URL and
		// TEST_NATS_URL.
		// Test helpers read TEST_*_URL; the load tool hands a token to its
		// own child process through the environment (not configuration).
		if rel == filepath.Join("pkg", "dbtest", "dbtest.go") || rel == filepath.Join("pkg", "bus", "bustest", "bustest.go") ||
			rel == filepath.Join("cmd", "chatload", "sse.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := direct.FindIndex(b); loc != nil {
			t.Errorf("%s reads the environment itself (%s); read it through pkg/config", rel, b[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestListenRefusesATakenAddress: a port in use stops start-up with an
// error naming the address.
func TestListenRefusesATakenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := app.Listen(ln.Addr().String()); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Listen on a taken address: %v", err)
	}
}

// TestLoadOfflineDelay: AI_OFFLINE_DELAY is a duration up to the offline
// agent's cap; unset, the agent does not pause.
func TestLoadOfflineDelay(t *testing.T) {
	tests := []struct {
		value   string
		want    time.Duration
		wantErr string
	}{
		{"", 0, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"2s", 2 * time.Second, ""},
		{"3s", 0, "AI_OFFLINE_DELAY must be at most 2s"},
		{"slow", 0, "AI_OFFLINE_DELAY must be a positive duration"},
		{"-1s", 0, "AI_OFFLINE_DELAY must be a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := app.Load(env(map[string]string{
				"DATABASE_URL": testDB.URL, "BETTER_AUTH_SECRET": secret, "AI_OFFLINE_DELAY": tt.value,
			}), app.ServiceChatd)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load: err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Agent.OfflineDelay != tt.want {
				t.Fatalf("OfflineDelay = %s, want %s", cfg.Agent.OfflineDelay, tt.want)
			}
		})
	}
}

// TestConsoleOnlyWhereEnabled: chatd serves the console unless
// DEV_CONSOLE=false; the API serves it only with DEV_CONSOLE=true.
func TestConsoleOnlyWhereEnabled(t *testing.T) {
	ns := bustest.Embedded(t)
	tests := []struct {
		name    string
		service app.Service
		value   string
		want    int
	}{
		{"api by default", app.ServiceAPI, "", http.StatusNotFound},
		{"api with DEV_CONSOLE=true", app.ServiceAPI, "true", http.StatusOK},
		{"chatd by default", app.ServiceChatd, "", http.StatusOK},
		{"chatd with DEV_CONSOLE=false", app.ServiceChatd, "false", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := app.Load(env(map[string]string{
				"DATABASE_URL": testDB.URL, "NATS_URL": ns.URL, "BETTER_AUTH_SECRET": secret, "DEV_CONSOLE": tt.value,
			}), tt.service)
			if err != nil {
				t.Fatal(err)
			}
			b, err := app.ConnectBus(context.Background(), cfg, "", "test", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			srv, stop, err := app.NewAPIServer(context.Background(), cfg, testDB.DB, b, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			for _, path := range []string{"/", "/console/console.js"} {
				resp, err := srv.App().Test(httptest.NewRequest(http.MethodGet, path, nil), -1)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, tt.want)
				}
			}
		})
	}
}

// TestDevModeGeneratesSecret: chatd in development mode with no credential
// setting makes a secret, keeps it under DATA_DIR (owner only) and reads
// it back on the next start; it says so at start and never shows it.
// Nothing else generates one.
func TestDevModeGeneratesSecret(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	dev := map[string]string{"DATABASE_URL": testDB.URL, "DEV_MODE": "true", "DATA_DIR": dir}
	file := filepath.Join(dir, app.DevSecretFile)

	var secrets []string
	for i, want := range []string{"generated, kept in " + file, "kept in " + file} {
		cfg, err := app.Load(env(dev), app.ServiceChatd)
		if err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		if len(cfg.Auth.Secret) < auth.MinSecretLength || cfg.DevSecret.Path != file || cfg.DevSecret.Created != (i == 0) {
			t.Fatalf("start %d: secret of %d bytes, %+v", i+1, len(cfg.Auth.Secret), cfg.DevSecret)
		}
		secrets = append(secrets, cfg.Auth.Secret)
		var b bytes.Buffer
		app.LogStart(cfg, slog.New(slog.NewTextHandler(&b, nil)))
		if !strings.Contains(b.String(), want) || strings.Contains(b.String(), cfg.Auth.Secret) {
			t.Fatalf("start %d: the log does not say %q, or shows the secret: %s", i+1, want, b.String())
		}
	}
	if secrets[0] != secrets[1] {
		t.Fatal("the second start did not read the kept secret")
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", file, perm)
	}

	tests := []struct {
		name    string
		service app.Service
		env     map[string]string
		wantErr string
	}{
		{"not in development mode", app.ServiceChatd, map[string]string{}, "set BETTER_AUTH_SECRET or BETTER_AUTH_URL/JWKS_URL"},
		{"the API", app.ServiceAPI, map[string]string{"DEV_MODE": "true", "NATS_URL": "nats://127.0.0.1:4222"}, "set BETTER_AUTH_SECRET or BETTER_AUTH_URL/JWKS_URL"},
		{"a JWKS is configured", app.ServiceChatd, map[string]string{"DEV_MODE": "true", "BETTER_AUTH_URL": "https://auth.example.com"}, ""},
		{"a secret is configured", app.ServiceChatd, map[string]string{"DEV_MODE": "true", "BETTER_AUTH_SECRET": secret}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.env["DATABASE_URL"], tt.env["DATA_DIR"] = testDB.URL, dir
			cfg, err := app.Load(env(tt.env), tt.service)
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Load: err = %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && (err != nil || cfg.DevSecret.Path != "") {
				t.Fatalf("Load: err = %v, development secret %+v", err, cfg.DevSecret)
			}
			if _, err := os.Stat(filepath.Join(dir, app.DevSecretFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a secret file was made: %v", err)
			}
		})
	}

	t.Run("a damaged file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, app.DevSecretFile), []byte("short\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := app.Load(env(map[string]string{"DATABASE_URL": testDB.URL, "DEV_MODE": "true", "DATA_DIR": dir}), app.ServiceChatd)
		if err == nil || !strings.Contains(err.Error(), "holds no usable secret") || !strings.Contains(err.Error(), "DATA_DIR") {
			t.Fatalf("Load: %v", err)
		}
	})
}
