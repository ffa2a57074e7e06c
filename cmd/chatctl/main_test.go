package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

const testSecret = "chatctl-test-secret-0123456789abcdef"

// chatctl runs one command and returns its output.
func chatctl(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, func(k string) string { return env[k] })
	return out.String(), err
}

// freshURL names a database on the test server that does not exist yet and
// drops it when the test ends.
func freshURL(t *testing.T) string {
	t.Helper()
	return dbtest.UnusedURL(t, "chatctl")
}

func TestSchemaApplyCreatesDatabaseThenPlansNothing(t *testing.T) {
	env := map[string]string{"DATABASE_URL": freshURL(t)}

	out, err := chatctl(t, env, "schema", "apply", "--create-database")
	if err != nil {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	for _, want := range []string{"Created the database.", `CREATE TABLE "public"."tasks"`, "Applied"} {
		if !strings.Contains(out, want) {
			t.Errorf("first apply output lacks %q:\n%s", want, out)
		}
	}
	out, err = chatctl(t, env, "schema", "apply")
	if err != nil || !strings.Contains(out, "nothing to apply") {
		t.Fatalf("second apply: err=%v\n%s", err, out)
	}
	out, err = chatctl(t, env, "schema", "diff")
	if err != nil || !strings.Contains(out, "nothing to apply") {
		t.Fatalf("diff after apply: err=%v\n%s", err, out)
	}
}

func TestSchemaDryRunAppliesNothing(t *testing.T) {
	env := map[string]string{"DATABASE_URL": freshURL(t)}
	out, err := chatctl(t, env, "schema", "apply", "--create-database", "--dry-run")
	if err != nil || !strings.Contains(out, "Not applied.") {
		t.Fatalf("dry run: err=%v\n%s", err, out)
	}
	out, err = chatctl(t, env, "schema", "diff")
	if err != nil || !strings.Contains(out, `CREATE TABLE "public"."tasks"`) {
		t.Fatalf("diff after a dry run should still plan everything: err=%v\n%s", err, out)
	}
}

func TestTokenIsAcceptedByTheVerifier(t *testing.T) {
	d := dbtest.WithSchema(t, "chatctl")
	env := map[string]string{"DATABASE_URL": d.URL, "BETTER_AUTH_SECRET": testSecret}

	out, err := chatctl(t, env, "token", "--user-id", "dev-user-1", "--create-user", "--ttl", "10m")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, out)
	}
	tok := strings.TrimSpace(out)
	if strings.Count(tok, ".") != 2 || strings.Contains(tok, "\n") {
		t.Fatalf("token output is not one JWT: %q", out)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret}, authstore.NewStore(d.DB))
	if err != nil {
		t.Fatal(err)
	}
	uid, err := v.Verify(context.Background(), tok)
	if err != nil || uid != "dev-user-1" {
		t.Fatalf("Verify = %q, %v; want dev-user-1", uid, err)
	}

	// A second call finds the user and does not fail on the unique email.
	if out, err := chatctl(t, env, "token", "--user-id", "dev-user-1", "--create-user"); err != nil {
		t.Fatalf("second token: %v\n%s", err, out)
	}

	out, err = chatctl(t, env, "users", "list")
	if err != nil || !strings.Contains(out, "dev-user-1") || !strings.Contains(out, "dev-user-1@example.com") {
		t.Fatalf("users list: err=%v\n%s", err, out)
	}

	store := authstore.NewStore(d.DB)
	now := time.Now()
	err = store.CreateSession(context.Background(), &authstore.Session{
		ID: "sess-1", Token: "tok0123456789abcdefghijklmnopqrs", UserID: "dev-user-1",
		ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err = chatctl(t, env, "sessions", "list", "--user-id", "dev-user-1")
	if err != nil || !strings.Contains(out, "sess-1") {
		t.Fatalf("sessions list: err=%v\n%s", err, out)
	}
	if strings.Contains(out, "tok0123456789abcdefghijklmnopqrs") {
		t.Fatalf("sessions list prints the session token (a credential):\n%s", out)
	}
}

func TestTokenWithoutCreateNeedsNoDatabase(t *testing.T) {
	out, err := chatctl(t, map[string]string{"BETTER_AUTH_SECRET": testSecret}, "token", "--user-id", "u1")
	if err != nil || strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Fatalf("token without DATABASE_URL: err=%v out=%q", err, out)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no command", nil, nil, "usage"},
		{"unknown command", nil, []string{"frobnicate", "now"}, "unknown command"},
		{"token without user", map[string]string{"BETTER_AUTH_SECRET": testSecret}, []string{"token"}, "--user-id is required"},
		{"token without secret", nil, []string{"token", "--user-id", "u"}, "BETTER_AUTH_SECRET"},
		{"token with bad ttl", map[string]string{"BETTER_AUTH_SECRET": testSecret}, []string{"token", "--user-id", "u", "--ttl", "-1h"}, "--ttl"},
		{"schema without database", nil, []string{"schema", "apply"}, "DATABASE_URL"},
		{"unknown flag", nil, []string{"schema", "diff", "--allow-destructive"}, "flag provided but not defined"},
		{"limit out of range", map[string]string{"DATABASE_URL": "postgres://x/y"}, []string{"users", "list", "--limit", "0"}, "--limit must be between 1 and 10000"},
		{"session limit too large", map[string]string{"DATABASE_URL": "postgres://x/y"}, []string{"sessions", "list", "--limit", "100000"}, "--limit must be between 1 and 10000"},
		{"stray argument", map[string]string{"DATABASE_URL": "postgres://x/y"}, []string{"users", "list", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			if !strings.Contains(err.Error()+out, tt.want) {
				t.Fatalf("err=%v out=%q, want mention of %q", err, out, tt.want)
			}
		})
	}
}
