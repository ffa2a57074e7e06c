package config_test

import (
	"bytes"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/config"
)

func env(m map[string]string) config.Getenv {
	return func(k string) string { return m[k] }
}

func TestReaderParsesEveryKind(t *testing.T) {
	r := config.NewReader(env(map[string]string{
		"S": "  text  ", "I": "42", "D": "1m30s", "B": "true", "L": "debug",
		"O": "TEXT", "Z": "128KiB", "LIST": " a, ,b ,", "U": "postgres://u:pw@h/db", "F": " 0.25 ",
	}))
	if got := r.String("S", "def"); got != "text" {
		t.Errorf("String = %q (values are trimmed)", got)
	}
	if got := r.String("UNSET", "def"); got != "def" {
		t.Errorf("String of an unset variable = %q, want the default", got)
	}
	if got := r.Int("I", 1); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Duration("D", time.Second); got != 90*time.Second {
		t.Errorf("Duration = %s", got)
	}
	if !r.Bool("B", false) {
		t.Error("Bool = false")
	}
	if got := r.Level("L", slog.LevelInfo); got != slog.LevelDebug {
		t.Errorf("Level = %s", got)
	}
	if got := r.OneOf("O", "json", "json", "text"); got != "text" {
		t.Errorf("OneOf = %q (case-insensitive)", got)
	}
	if got := r.Size("Z", 1); got != 128<<10 {
		t.Errorf("Size = %d", got)
	}
	if got := strings.Join(r.List("LIST"), "|"); got != "a|b" {
		t.Errorf("List = %q", got)
	}
	if got := r.OptionalFloat("F"); got == nil || *got != 0.25 {
		t.Errorf("OptionalFloat = %v, want 0.25", got)
	}
	if got := r.OptionalFloat("UNSET_F"); got != nil {
		t.Errorf("OptionalFloat of an unset variable = %v, want nil", *got)
	}
	if got := r.URL("U", ""); got != "postgres://u:pw@h/db" {
		t.Errorf("URL = %q (the value itself is not masked, only its log form)", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
}

func TestReaderReportsEveryProblemOnce(t *testing.T) {
	r := config.NewReader(env(map[string]string{
		"I": "many", "D": "-1s", "B": "perhaps", "L": "loud", "O": "xml", "Z": "lots", "F": "NaN",
	}))
	r.OptionalFloat("F")
	r.Int("I", 1)
	r.Duration("D", time.Second)
	r.Bool("B", false)
	r.Level("L", slog.LevelInfo)
	r.OneOf("O", "json", "json", "text")
	r.Size("Z", 1)
	r.Fail("X", "is wrong")
	err := r.Err()
	if err == nil {
		t.Fatal("no error for a broken environment")
	}
	for _, name := range []string{"I ", "D ", "B ", "L ", "O ", "Z ", "F ", "X "} {
		if n := strings.Count(err.Error(), "\n"+name) + strings.Count(err.Error(), ": "+name); n != 1 {
			t.Errorf("%q is reported %d times in %v", name, n, err)
		}
	}
}

func TestSizeBounds(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"65536", 65536, true},
		{"64k", 64 << 10, true},
		{"2 MiB", 2 << 20, true},
		{"0", 0, false},
		{"-5", 0, false},
		{"99999999999MiB", 0, false}, // would overflow
		{"1.5MiB", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := config.NewReader(env(map[string]string{"Z": tt.in}))
			got := r.Size("Z", 7)
			if tt.ok && (got != tt.want || r.Err() != nil) {
				t.Fatalf("Size(%q) = %d, %v; want %d", tt.in, got, r.Err(), tt.want)
			}
			if !tt.ok && (got != 7 || r.Err() == nil) {
				t.Fatalf("Size(%q) = %d, %v; want the default and an error", tt.in, got, r.Err())
			}
		})
	}
}

// TestLogValueShowsEveryVariableMasked: the start-up log is made from what
// was read, so no variable can be left out, and secrets never show.
func TestLogValueShowsEveryVariableMasked(t *testing.T) {
	r := config.NewReader(env(map[string]string{
		"DATABASE_URL":       "postgres://app:hunter2@db.internal:5432/taskchat",
		"BETTER_AUTH_SECRET": "a-secret-of-reasonable-length-0123456789",
		"HTTP_ADDR":          ":9000",
	}))
	config.Database(r)
	config.Auth(r)
	r.String("HTTP_ADDR", ":8080")
	r.String("UNSET_WITH_DEFAULT", "the-default")
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", r)
	out := b.String()
	for _, secret := range []string{"hunter2", "a-secret-of-reasonable-length-0123456789"} {
		if strings.Contains(out, secret) {
			t.Fatalf("start-up log leaks %q: %s", secret, out)
		}
	}
	for _, want := range []string{"db.internal", `"BETTER_AUTH_SECRET":"set (40 bytes)"`, `"HTTP_ADDR":":9000"`, `"UNSET_WITH_DEFAULT":"the-default"`} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up log lacks %s: %s", want, out)
		}
	}
	for _, v := range r.Vars() {
		if !strings.Contains(out, `"`+v.Name+`"`) {
			t.Errorf("start-up log lacks %s", v.Name)
		}
	}
}

func TestSectionsValidateOnce(t *testing.T) {
	r := config.NewReader(env(map[string]string{
		"DB_MAX_CONNS":        "0",
		"AUTH_USER_CACHE_TTL": "2m",
	}))
	config.Database(r)
	config.Auth(r)
	err := r.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"DATABASE_URL is required", "DB_MAX_CONNS", "BETTER_AUTH_SECRET", "cache TTL"} {
		if n := strings.Count(err.Error(), want); n != 1 {
			t.Errorf("%q appears %d times in %v", want, n, err)
		}
	}
}

func TestNATS(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    bus.Config
		wantErr []string
	}{
		{"unset: defaults, no URL and no error (the caller requires it)", nil,
			bus.Config{Prefix: bus.DefaultPrefix, Replicas: bus.DefaultReplicas, EventsMaxAge: bus.DefaultEventsMaxAge,
				EventsMaxBytes: bus.DefaultEventsMaxBytes, RunsMaxMsgs: bus.DefaultRunsMaxMsgs, AckWait: bus.DefaultAckWait, MaxDeliver: bus.DefaultMaxDeliver}, nil},
		{"every variable", map[string]string{
			"NATS_URL": " nats://a:4222,nats://b:4222 ", "NATS_PREFIX": "prod", "NATS_STREAM_REPLICAS": "3",
			"EVENTS_MAX_AGE": "72h", "RUN_ACK_WAIT": "45s", "RUN_MAX_DELIVER": "4",
			"EVENTS_MAX_BYTES": "8GiB", "RUNS_MAX_MSGS": "5000",
		}, bus.Config{URL: "nats://a:4222,nats://b:4222", Prefix: "prod", Replicas: 3, EventsMaxAge: 72 * time.Hour,
			EventsMaxBytes: 8 << 30, RunsMaxMsgs: 5000, AckWait: 45 * time.Second, MaxDeliver: 4}, nil},
		{"checked without a URL too", map[string]string{"NATS_PREFIX": "Bad.Prefix", "NATS_STREAM_REPLICAS": "9", "EVENTS_MAX_BYTES": "1KiB", "RUNS_MAX_MSGS": "10"},
			bus.Config{}, []string{"NATS_PREFIX", "NATS_STREAM_REPLICAS", "EVENTS_MAX_BYTES", "RUNS_MAX_MSGS"}},
		{"a URL of another scheme", map[string]string{"NATS_URL": "http://nats:4222"}, bus.Config{}, []string{"NATS_URL must be"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := config.NewReader(env(tt.env))
			got := config.NATS(r)
			err := r.Err()
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Errorf("NATS = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || strings.Count(err.Error(), w) != 1 {
					t.Errorf("error %v does not name %q once", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "nats://unset") {
				t.Errorf("error shows the placeholder URL: %v", err)
			}
		})
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

// TestChatctlLinksNoEdge keeps the operator tool (and this package) free of
// the HTTP edge: reading configuration must not pull in Fiber.
func TestChatctlLinksNoEdge(t *testing.T) {
	for _, pkg := range []string{"github.com/taskchat/taskchat/pkg/config", "github.com/taskchat/taskchat/cmd/chatctl"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, edge := range []string{"github.com/gofiber/fiber", "github.com/valyala/fasthttp", "github.com/taskchat/taskchat/pkg/httpapi"} {
			if strings.Contains(string(out), edge) {
				t.Errorf("%s depends on %s", pkg, edge)
			}
		}
	}
}
