package main

import (
	"context"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/logtest"
)

func TestRunStopsOnBadConfiguration(t *testing.T) {
	var logs logtest.Buffer
	err := run(context.Background(), func(k string) string {
		return map[string]string{"DATABASE_URL": "mysql://db/x"}[k]
	}, &logs)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL must be a postgres:// URL") || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET") {
		t.Fatalf("run with a bad configuration: %v", err)
	}
}

// TestRunStopsWhenTheDatabaseIsDown: nothing listens on port 1, so start-up
// fails at the database step with an error that says so.
func TestRunStopsWhenTheDatabaseIsDown(t *testing.T) {
	var logs logtest.Buffer
	err := run(context.Background(), func(k string) string {
		return map[string]string{
			"DATABASE_URL":       "postgres://postgres@127.0.0.1:1/taskchat?sslmode=disable&connect_timeout=2",
			"NATS_URL":           "nats://127.0.0.1:4222",
			"BETTER_AUTH_SECRET": "api-test-secret-0123456789abcdefghijkl",
		}[k]
	}, &logs)
	if err == nil || !strings.Contains(err.Error(), "connect to database") {
		t.Fatalf("run with the database down: %v", err)
	}
	if !strings.Contains(logs.String(), "starting") {
		t.Fatalf("no start-up line before the failure:\n%s", logs.String())
	}
}
