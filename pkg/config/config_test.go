package config_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/config"
)

func env(m map[string]string) config.Getenv {
	return func(k string) string { return m[k] }
}

func base() map[string]string {
	return map[string]string{
		"DATABASE_URL":       "postgres://app:hunter2@db.internal:5432/taskchat?sslmode=disable",
		"BETTER_AUTH_SECRET": "a-secret-of-reasonable-length-0123456789",
	}
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := config.Load(env(base()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.HTTP.BodyLimit != 64<<10 || cfg.DB.MaxConns != 10 ||
		cfg.Auth.ClockSkew != time.Minute || cfg.Auth.UserCacheTTL != time.Minute || cfg.LogLevel != slog.LevelInfo {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestLoadParsesEveryKind(t *testing.T) {
	m := base()
	m["HTTP_ADDR"] = "127.0.0.1:9000"
	m["HTTP_BODY_LIMIT"] = "128KiB"
	m["DB_MAX_CONNS"] = "20"
	m["DB_STATEMENT_TIMEOUT"] = "5s"
	m["LOG_LEVEL"] = "debug"
	m["CORS_ORIGINS"] = "https://a.example.com, http://localhost:3000/"
	m["AUTH_SESSION_REQUIRE_SIGNATURE"] = "true"
	cfg, err := config.Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:9000" || cfg.HTTP.BodyLimit != 128<<10 || cfg.DB.MaxConns != 20 ||
		cfg.DB.StatementTimeout != 5*time.Second || cfg.LogLevel != slog.LevelDebug || !cfg.Auth.RequireSessionSignature {
		t.Fatalf("parsed config: %+v", cfg)
	}
	if got := strings.Join(cfg.HTTP.CORSOrigins, " "); got != "https://a.example.com http://localhost:3000" {
		t.Fatalf("CORS origins = %q", got)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	m := map[string]string{
		"DB_MAX_CONNS":         "0",
		"HTTP_BODY_LIMIT":      "lots",
		"LOG_LEVEL":            "loud",
		"CORS_ORIGINS":         "not a url",
		"HTTP_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal",
	}
	_, err := config.Load(env(m))
	if err == nil {
		t.Fatal("Load accepted a broken environment")
	}
	for _, want := range []string{"DATABASE_URL", "DB_MAX_CONNS", "HTTP_BODY_LIMIT", "LOG_LEVEL", "CORS_ORIGINS", "BETTER_AUTH_SECRET", "HTTP_TRUSTED_PROXIES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	cfg, err := config.Load(env(base()))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("start", "config", cfg)
	out := b.String()
	for _, secret := range []string{"hunter2", "a-secret-of-reasonable-length-0123456789"} {
		if strings.Contains(out, secret) {
			t.Fatalf("start-up log leaks %q: %s", secret, out)
		}
	}
	if !strings.Contains(out, "db.internal") {
		t.Fatalf("start-up log lost the database host: %s", out)
	}
}

func TestLoadDatabaseNeedsOnlyTheURL(t *testing.T) {
	db, dev, err := config.LoadDatabase(env(map[string]string{
		"DATABASE_URL":  "postgres://postgres@127.0.0.1:5432/x",
		"ATLAS_DEV_URL": "postgres://postgres@127.0.0.1:5432/dev",
	}))
	if err != nil || db.URL == "" || dev == "" {
		t.Fatalf("LoadDatabase = %+v, %q, %v", db, dev, err)
	}
	if _, _, err := config.LoadDatabase(env(nil)); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("missing DATABASE_URL: err = %v", err)
	}
}

func TestMaskURL(t *testing.T) {
	tests := []struct{ in, hidden, kept string }{
		{"postgres://app:hunter2@db:5432/x", "hunter2", "db:5432"},
		{"postgres://app@db/x?sslmode=require&sslpassword=hunter2", "hunter2", "sslmode=require"},
		{"postgres://app@db/x?password=hunter2", "hunter2", "db"},
		{"https://ba.example.com/api/auth/jwks?token=hunter2", "hunter2", "ba.example.com"},
		{"host=db user=app password=hunter2", "hunter2", "hidden"},
	}
	for _, tt := range tests {
		got := config.MaskURL(tt.in)
		if strings.Contains(got, tt.hidden) || !strings.Contains(got, tt.kept) {
			t.Errorf("MaskURL(%q) = %q, want %q hidden and %q kept", tt.in, got, tt.hidden, tt.kept)
		}
	}
}

// TestREADMEDocumentsEveryVariable keeps the README's configuration table
// in step with what Load reads.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Variables() {
		if !strings.Contains(string(b), "| `"+v+"` |") {
			t.Errorf("README.md's configuration table has no row for %s", v)
		}
	}
}
