package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "chatd", &testDB)) }

var listening = regexp.MustCompile(`msg="api listening" .*addr=(\S+)`)

// TestRunServesUntilCancelled runs chatd as `make run` does (development
// mode) on a free port: it says it listens on loopback only, serves, and
// returns nil once its context ends.
func TestRunServesUntilCancelled(t *testing.T) {
	var logs logtest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	dataDir := t.TempDir()
	go func() {
		done <- run(ctx, func(k string) string {
			return map[string]string{
				"DATABASE_URL":       testDB.URL,
				"BETTER_AUTH_SECRET": "chatd-test-secret-0123456789abcdefghij",
				"DEV_MODE":           "true",
				"HTTP_ADDR":          "127.0.0.1:0",
				"LOG_FORMAT":         "text",
				"DATA_DIR":           dataDir, // the embedded NATS server's storage
			}[k]
		}, &logs)
	}()

	// run logs the address once it listens; wait for that line.
	var addr string
	deadline := time.Now().Add(20 * time.Second)
	for addr == "" {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd did not start listening:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "loopback_only=true") {
		t.Errorf("development mode start-up does not say it listens on loopback only:\n%s", logs.String())
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), `msg=stopped`) {
		t.Errorf("no stop line in the log:\n%s", logs.String())
	}
}

func TestRunStopsOnBadConfiguration(t *testing.T) {
	var logs logtest.Buffer
	err := run(context.Background(), func(string) string { return "" }, &logs)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET") {
		t.Fatalf("run with no configuration: %v", err)
	}
}
