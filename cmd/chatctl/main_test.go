package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	gotoken "go/token"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

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
	if code, _ := status(err); code != exitOK || !strings.Contains(out, "nothing to apply") {
		t.Fatalf("diff after apply: exit %d, err=%v\n%s", code, err, out)
	}
}

func TestSchemaDryRunAppliesNothing(t *testing.T) {
	env := map[string]string{"DATABASE_URL": freshURL(t)}
	out, err := chatctl(t, env, "schema", "apply", "--create-database", "--dry-run")
	if err != nil || !strings.Contains(out, "Not applied.") {
		t.Fatalf("dry run: err=%v\n%s", err, out)
	}
	out, err = chatctl(t, env, "schema", "diff")
	if code, _ := status(err); code != exitFailure || !strings.Contains(out, `CREATE TABLE "public"."tasks"`) {
		t.Fatalf("diff after a dry run should still plan everything and exit 1: exit %d, err=%v\n%s", code, err, out)
	}
}

func TestTokenIsAcceptedByTheVerifier(t *testing.T) {
	d := schemaDB(t)
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

// schemaDB creates a database with the schema applied for one test.
func schemaDB(t *testing.T) *dbtest.Database {
	t.Helper()
	return dbtest.WithSchema(t, "chatctl")
}

// claims decodes a JWT's payload without verifying it.
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenRefusesUnknownUser(t *testing.T) {
	d := schemaDB(t)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown user", map[string]string{"DATABASE_URL": d.URL, "BETTER_AUTH_SECRET": testSecret},
			[]string{"token", "--user-id", "ghost"}, `chatctl: token: no user with id "ghost": the API rejects tokens of unknown users (pass --create-user to create it)`},
		{"no database to look the user up in", map[string]string{"BETTER_AUTH_SECRET": testSecret},
			[]string{"token", "--user-id", "ghost"}, "DATABASE_URL is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, tt.env, tt.args...)
			code, stderr := status(err)
			if code != exitFailure || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, tt.want)
			}
			if out != "" {
				t.Errorf("printed %q, want no token", out)
			}
		})
	}
	if ok, err := authstore.NewStore(d.DB).UserExists(context.Background(), "ghost"); err != nil || ok {
		t.Errorf("UserExists(ghost) = %v, %v; token must not create it", ok, err)
	}
}

func TestTokenForExistingUser(t *testing.T) {
	d := schemaDB(t)
	u := authstore.User{Name: "Stored Name", Email: "stored@example.test"}
	if err := authstore.NewStore(d.DB).CreateUser(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": d.URL, "BETTER_AUTH_SECRET": testSecret}
	tests := []struct {
		name      string
		args      []string
		wantEmail string
		wantName  string
	}{
		{"claims from the stored user", nil, u.Email, u.Name},
		{"flags override the claims", []string{"--email", "Other@Example.test", "--name", "Other"}, "other@example.test", "Other"},
		{"--create-user keeps the existing user", []string{"--create-user"}, u.Email, u.Name},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, env, append([]string{"token", "--user-id", u.ID}, tt.args...)...)
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			c := claims(t, out)
			if c["sub"] != u.ID || c["email"] != tt.wantEmail || c["name"] != tt.wantName {
				t.Errorf("claims %v, want sub %q email %q name %q", c, u.ID, tt.wantEmail, tt.wantName)
			}
		})
	}
}

func TestTokenCreateUserWithTakenEmail(t *testing.T) {
	d := schemaDB(t)
	st := authstore.NewStore(d.DB)
	owner := authstore.User{Name: "Owner", Email: "taken@example.test"}
	if err := st.CreateUser(context.Background(), &owner); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": d.URL, "BETTER_AUTH_SECRET": testSecret}
	out, err := chatctl(t, env, "token", "--user-id", "newcomer", "--create-user", "--email", "Taken@example.test")
	code, stderr := status(err)
	if want := "chatctl: token: a user with email \"taken@example.test\" already exists\n"; code != exitFailure || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr, want)
	}
	if out != "" {
		t.Errorf("printed %q, want no token", out)
	}
	if ok, err := st.UserExists(context.Background(), "newcomer"); err != nil || ok {
		t.Errorf("UserExists(newcomer) = %v, %v; want false", ok, err)
	}
}

// status maps err to its exit status and what main prints on stderr.
func status(err error) (int, string) {
	var stderr bytes.Buffer
	code := exitStatus(err, &stderr)
	return code, stderr.String()
}

func TestUsageErrors(t *testing.T) {
	secret := map[string]string{"BETTER_AUTH_SECRET": testSecret}
	db := map[string]string{"DATABASE_URL": "postgres://x/y"}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		want     string
		wantCode int
	}{
		{"no command", nil, nil, "missing command", exitUsage},
		{"unknown command", nil, []string{"frobnicate", "now"}, "unknown command", exitUsage},
		{"half a command", nil, []string{"users"}, "unknown command", exitUsage},
		{"token without user", secret, []string{"token"}, "--user-id is required", exitUsage},
		{"token with a bad email", secret, []string{"token", "--user-id", "u", "--email", "nobody"}, "not an email address", exitUsage},
		{"token for an id the API refuses", secret, []string{"token", "--user-id", "ca\x01rol", "--create-user"}, "--user-id contains a control character", exitUsage},
		{"token for an overlong id", secret, []string{"token", "--user-id", strings.Repeat("u", 256), "--create-user"}, "--user-id is longer than 255 bytes", exitUsage},
		{"token with a control character in the name", secret, []string{"token", "--user-id", "u", "--name", "d\x1bave"}, "--name must be non-empty text", exitUsage},
		{"token without secret", nil, []string{"token", "--user-id", "u"}, "BETTER_AUTH_SECRET", exitFailure},
		{"token with a short secret", map[string]string{"BETTER_AUTH_SECRET": "  " + strings.Repeat("s", 31) + "  "}, []string{"token", "--user-id", "u"}, "BETTER_AUTH_SECRET is 31 bytes", exitFailure},
		{"token with bad ttl", secret, []string{"token", "--user-id", "u", "--ttl", "-1h"}, "--ttl", exitUsage},
		{"token with a bad ttl value", secret, []string{"token", "--user-id", "u", "--ttl", "soon"}, "invalid value", exitUsage},
		{"schema without database", nil, []string{"schema", "apply"}, "DATABASE_URL", exitFailure},
		{"unknown flag", nil, []string{"schema", "diff", "--allow-destructive"}, "flag provided but not defined", exitUsage},
		{"limit out of range", db, []string{"users", "list", "--limit", "0"}, "--limit must be between 1 and 10000", exitUsage},
		{"session limit too large", db, []string{"sessions", "list", "--limit", "100000"}, "--limit must be between 1 and 10000", exitUsage},
		{"stray argument", db, []string{"users", "list", "extra"}, "unexpected argument", exitUsage},
		{"half a runs command", db, []string{"runs"}, "unknown command", exitUsage},
		{"runs list with an unknown status", db, []string{"runs", "list", "--status", "failed,stuck"}, `--status "stuck" is not one of queued, running, completed, failed, cancelled`, exitUsage},
		{"runs list limit above the store's", db, []string{"runs", "list", "--limit", "1001"}, "--limit must be between 1 and 1000", exitUsage},
		{"runs list with a negative age", db, []string{"runs", "list", "--stuck", "--older-than", "-1m"}, "--older-than must not be negative", exitUsage},
		{"runs list with an age that is no duration", db, []string{"runs", "list", "--older-than", "10"}, "invalid value", exitUsage},
		{"runs list stray argument", db, []string{"runs", "list", "failed"}, `unexpected argument "failed"`, exitUsage},
		{"runs requeue without an id", db, []string{"runs", "requeue", "--force"}, "chatctl: runs requeue: missing run ID", exitUsage},
		{"runs requeue with two ids", db, []string{"runs", "requeue", "a", "b"}, `unexpected argument "b"`, exitUsage},
		{"runs requeue without database", nil, []string{"runs", "requeue", "a"}, "DATABASE_URL is required", exitFailure},
		{"unreachable database", map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"}, []string{"users", "list"}, "connect to database", exitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			code, stderr := status(err)
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d (err=%v)", code, tt.wantCode, err)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tt.want)
			}
			if out != "" {
				t.Errorf("a failed command wrote to stdout: %q", out)
			}
		})
	}
}

// TestErrorPrintedOnce checks that the message names chatctl and the
// command once each, and that nothing repeats the flag package's error.
func TestErrorPrintedOnce(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // the first line of stderr
	}{
		{"stray argument", []string{"token", "x"}, `chatctl: token: unexpected argument "x"`},
		{"flag without its value", []string{"token", "--user-id"}, "chatctl: token: flag needs an argument: -user-id"},
		{"limit", []string{"users", "list", "--limit", "0"}, "chatctl: users list: --limit must be between 1 and 10000"},
		{"configuration", []string{"sessions", "list"}, "chatctl: sessions list: configuration: DATABASE_URL is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, nil, tt.args...)
			_, stderr := status(err)
			first, _, _ := strings.Cut(stderr, "\n")
			if !strings.HasPrefix(first, tt.want) {
				t.Errorf("stderr starts %q, want %q", first, tt.want)
			}
			if n := strings.Count(stderr, "chatctl: "); n != 1 {
				t.Errorf("%q printed %d times:\n%s", "chatctl: ", n, stderr)
			}
			// The flag package used to print its error to stdout as well.
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"--help", []string{"--help"}, []string{"usage:", "chatctl schema diff", "exit status"}},
		{"-h", []string{"-h"}, []string{"usage:", "chatctl token"}},
		{"help", []string{"help"}, []string{"usage:", "chatctl sessions list"}},
		{"group --help", []string{"users", "--help"}, []string{"usage:", "chatctl users list"}},
		{"command --help", []string{"schema", "apply", "--help"}, []string{"usage: chatctl schema apply", "-allow-destructive", "-create-database"}},
		{"command -h after flags", []string{"token", "--user-id", "u", "-h"}, []string{"usage: chatctl token", "-create-user", "-ttl"}},
		{"help command", []string{"help", "sessions", "list"}, []string{"usage: chatctl sessions list", "-user-id"}},
		{"command without flags", []string{"schema", "diff", "--help"}, []string{"usage: chatctl schema diff"}},
		{"runs group", []string{"runs", "--help"}, []string{"chatctl runs list", "chatctl runs requeue", "NATS_URL"}},
		{"help runs list", []string{"help", "runs", "list"}, []string{"usage: chatctl runs list", "-stuck", "-older-than", "-status", "-user-id"}},
		{"runs requeue -h", []string{"runs", "requeue", "-h"}, []string{"usage: chatctl runs requeue RUN_ID", "-force"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No environment: help must not need the database or the secret.
			out, err := chatctl(t, nil, tt.args...)
			if code, stderr := status(err); code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("help lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		want       int
		wantStderr string
	}{
		{"success", nil, exitOK, ""},
		{"failure", errors.New("users list: boom"), exitFailure, "chatctl: users list: boom\n"},
		{"schema differs: the plan on stdout says it all", fmt.Errorf("schema diff: %w", errDiffers), exitFailure, ""},
		{"usage", &usageError{err: errors.New("token: --user-id is required"), usage: "usage: chatctl token\n"}, exitUsage, "chatctl: token: --user-id is required\nusage: chatctl token\n"},
		{"wrapped usage", fmt.Errorf("x: %w", usagef("bad")), exitUsage, "chatctl: x: bad\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := status(tt.err)
			if code != tt.want || stderr != tt.wantStderr {
				t.Errorf("exitStatus = %d, %q; want %d, %q", code, stderr, tt.want, tt.wantStderr)
			}
		})
	}
}

// TestSchemaDiffExitStatus checks schema diff exits 1 whenever it plans a
// change, destructive or not, and 0 when the database is up to date.
func TestSchemaDiffExitStatus(t *testing.T) {
	tests := []struct {
		name     string
		setup    string // SQL run on a database with the schema applied
		wantCode int
		want     string
	}{
		{"up to date", "", exitOK, "nothing to apply"},
		{"missing index", `DROP INDEX tasks_user_created_idx`, exitFailure, "CREATE INDEX"},
		{"destructive: an extra column", `ALTER TABLE tasks ADD COLUMN legacy integer`, exitFailure, "-- DESTRUCTIVE: drops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := schemaDB(t)
			if tt.setup != "" {
				if _, err := d.DB.Exec(tt.setup); err != nil {
					t.Fatal(err)
				}
			}
			out, err := chatctl(t, map[string]string{"DATABASE_URL": d.URL}, "schema", "diff")
			code, stderr := status(err)
			if code != tt.wantCode || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d (want %d), stderr %q, output:\n%s\nwant it to contain %q", code, tt.wantCode, stderr, out, tt.want)
			}
			if stderr != "" {
				t.Errorf("diff printed an error: %q", stderr)
			}
		})
	}
}

// developerData is one user with what users show must and must not print.
type developerData struct {
	user            authstore.User
	active, expired authstore.Session
	github          authstore.Account
	secrets         []string // session tokens and account credentials
}

// seedDeveloperData creates a user with an active and an expired session, a
// password account and a GitHub account, with credentials in every column
// that holds one.
func seedDeveloperData(t *testing.T, d *dbtest.Database) developerData {
	t.Helper()
	ctx := context.Background()
	st := authstore.NewStore(d.DB)
	var dd developerData
	dd.user = authstore.User{Name: "Ada Lovelace", Email: "ada@example.test"}
	if err := st.CreateUser(ctx, &dd.user); err != nil {
		t.Fatal(err)
	}
	ip, agent := "203.0.113.7", "Mozilla/5.0 \x1b[2J"
	now := time.Now()
	dd.active = authstore.Session{UserID: dd.user.ID, ExpiresAt: now.Add(time.Hour), IPAddress: &ip, UserAgent: &agent}
	dd.expired = authstore.Session{UserID: dd.user.ID, ExpiresAt: now.Add(-time.Hour), CreatedAt: now.Add(-2 * time.Hour)}
	for _, s := range []*authstore.Session{&dd.active, &dd.expired} {
		if err := st.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		dd.secrets = append(dd.secrets, s.Token)
	}
	password := authstore.Account{UserID: dd.user.ID, ProviderID: "credential", AccountID: dd.user.ID, CreatedAt: now.Add(-time.Hour)}
	dd.github = authstore.Account{UserID: dd.user.ID, ProviderID: "github", AccountID: "gh-1815"}
	for _, a := range []*authstore.Account{&password, &dd.github} {
		if err := st.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		// The Account model cannot carry credentials (by design), so they
		// are written as Better Auth writes them.
		q := d.DB.NewUpdate().Table("account").Where("id = ?", a.ID)
		for _, col := range []string{"accessToken", "refreshToken", "idToken", "password"} {
			secret := "planted-" + col + "-" + authstore.NewID()
			dd.secrets = append(dd.secrets, secret)
			q = q.Set("? = ?", bun.Ident(col), secret)
		}
		if _, err := q.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return dd
}

// lineWith returns the first line of out that contains s.
func lineWith(t *testing.T, out, s string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return line
		}
	}
	t.Fatalf("no line contains %q:\n%s", s, out)
	return ""
}

func TestUsersShow(t *testing.T) {
	d := schemaDB(t)
	dd := seedDeveloperData(t, d)
	other := seedDeveloperDataFor(t, d, "someone-else@example.test")
	env := map[string]string{"DATABASE_URL": d.URL}

	out, err := chatctl(t, env, "users", "show", dd.user.ID)
	if err != nil {
		t.Fatalf("users show: %v\n%s", err, out)
	}
	for _, want := range []string{dd.user.ID, "Ada Lovelace", "ada@example.test", "Sessions (2)", "Accounts (2)", "credential", "203.0.113.7"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	tests := []struct {
		name string
		row  string // identifies the line
		want []string
	}{
		{"active session", dd.active.ID, []string{"true", `"Mozilla/5.0 \x1b[2J"`}},
		{"expired session", dd.expired.ID, []string{"false"}},
		{"oauth account", dd.github.ID, []string{"github", "gh-1815"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := lineWith(t, out, tt.row)
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("line %q lacks %q", line, w)
				}
			}
		})
	}
	for _, secret := range dd.secrets {
		if strings.Contains(out, secret) {
			t.Errorf("users show prints the credential %q:\n%s", secret, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("users show passes a raw escape character to the terminal:\n%q", out)
	}
	if strings.Contains(out, other) {
		t.Errorf("users show lists another user's rows (%s):\n%s", other, out)
	}
}

// seedDeveloperDataFor creates a user with one account and returns the
// account's id.
func seedDeveloperDataFor(t *testing.T, d *dbtest.Database, email string) string {
	t.Helper()
	st := authstore.NewStore(d.DB)
	u := authstore.User{Name: "Other", Email: email}
	if err := st.CreateUser(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
	a := authstore.Account{UserID: u.ID, ProviderID: "google", AccountID: "g-" + u.ID}
	if err := st.CreateAccount(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func TestUsersShowCutsLongLists(t *testing.T) {
	d := schemaDB(t)
	st := authstore.NewStore(d.DB)
	u := authstore.User{Name: "Busy", Email: "busy@example.test"}
	if err := st.CreateUser(context.Background(), &u); err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	var oldest authstore.Session
	for i := range showLimit + 1 {
		s := authstore.Session{UserID: u.ID, ExpiresAt: base.Add(time.Hour), CreatedAt: base.Add(time.Duration(i) * time.Second)}
		if err := st.CreateSession(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			oldest = s
		}
	}
	out, err := chatctl(t, map[string]string{"DATABASE_URL": d.URL}, "users", "show", u.ID)
	if err != nil {
		t.Fatalf("users show: %v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("Sessions (%d+)", showLimit), "chatctl sessions list --user-id " + u.ID, "Accounts (0)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, oldest.ID) {
		t.Errorf("output shows the oldest of %d sessions, want only the newest %d", showLimit+1, showLimit)
	}
	if n := strings.Count(out, "  true  "); n != showLimit {
		t.Errorf("%d session rows, want %d", n, showLimit)
	}
}

func TestUsersShowErrors(t *testing.T) {
	d := schemaDB(t)
	env := map[string]string{"DATABASE_URL": d.URL}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"unknown user", []string{"users", "show", "ghost"}, exitFailure, `chatctl: users show: no user with id "ghost"`},
		{"no id", []string{"users", "show"}, exitUsage, "chatctl: users show: missing user ID"},
		{"two ids", []string{"users", "show", "a", "b"}, exitUsage, `chatctl: users show: unexpected argument "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, env, tt.args...)
			code, stderr := status(err)
			if code != tt.wantCode || !strings.HasPrefix(stderr, tt.want) || out != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want %d and %q", code, stderr, out, tt.wantCode, tt.want)
			}
		})
	}
}

func TestAccountsList(t *testing.T) {
	d := schemaDB(t)
	dd := seedDeveloperData(t, d)
	other := seedDeveloperDataFor(t, d, "other@example.test")
	env := map[string]string{"DATABASE_URL": d.URL}

	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{"every account", nil, []string{dd.github.ID, other, "PROVIDER"}, nil},
		{"one user's", []string{"--user-id", dd.user.ID}, []string{dd.github.ID, "github", "gh-1815", "credential"}, []string{other}},
		{"limit", []string{"--limit", "1"}, []string{other}, []string{dd.github.ID}},
		{"a user without accounts", []string{"--user-id", "nobody"}, []string{"PROVIDER"}, []string{dd.github.ID, other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, env, append([]string{"accounts", "list"}, tt.args...)...)
			if err != nil {
				t.Fatalf("accounts list: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range append(tt.notWant, dd.secrets...) {
				if strings.Contains(out, w) {
					t.Errorf("output contains %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSessionsListMarksActive(t *testing.T) {
	d := schemaDB(t)
	dd := seedDeveloperData(t, d)
	out, err := chatctl(t, map[string]string{"DATABASE_URL": d.URL}, "sessions", "list", "--user-id", dd.user.ID)
	if err != nil {
		t.Fatalf("sessions list: %v\n%s", err, out)
	}
	if line := lineWith(t, out, dd.active.ID); !strings.Contains(line, "true") {
		t.Errorf("active session shown as %q", line)
	}
	if line := lineWith(t, out, dd.expired.ID); !strings.Contains(line, "false") {
		t.Errorf("expired session shown as %q", line)
	}
	for _, secret := range dd.secrets {
		if strings.Contains(out, secret) {
			t.Errorf("sessions list prints the credential %q", secret)
		}
	}
}

func TestUsersUpdate(t *testing.T) {
	d := schemaDB(t)
	ctx := context.Background()
	st := authstore.NewStore(d.DB)
	taken := authstore.User{Name: "Owner", Email: "taken@example.test"}
	if err := st.CreateUser(ctx, &taken); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": d.URL}
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

	tests := []struct {
		name     string
		args     []string // after "users update"; "ID" stands for the user's id
		wantCode int
		want     string // in stdout on success, in stderr otherwise
		check    func(u *authstore.User) bool
	}{
		{"name", []string{"ID", "--name", "  Grace Hopper "}, exitOK, "Grace Hopper",
			func(u *authstore.User) bool { return u.Name == "Grace Hopper" }},
		{"email is lower-cased", []string{"ID", "--email", "Grace@Example.TEST"}, exitOK, "grace@example.test",
			func(u *authstore.User) bool { return u.Email == "grace@example.test" }},
		{"verified, value after a space", []string{"ID", "--email-verified", "true"}, exitOK, "true",
			func(u *authstore.User) bool { return u.EmailVerified }},
		{"flags before the id", []string{"--name", "Flags First", "ID"}, exitOK, "Flags First",
			func(u *authstore.User) bool { return u.Name == "Flags First" }},
		{"taken email changes nothing", []string{"ID", "--name", "Not Applied", "--email", "TAKEN@example.test"}, exitFailure,
			`chatctl: users update: a user with email "taken@example.test" already exists`, nil},
		{"nothing to change", []string{"ID"}, exitUsage, "nothing to change", nil},
		{"empty name", []string{"ID", "--name", " "}, exitUsage, "--name must be non-empty", nil},
		{"name with a control character", []string{"ID", "--name", "a\x1bb"}, exitUsage, "--name must be non-empty", nil},
		{"email without @", []string{"ID", "--email", "grace.example.test"}, exitUsage, "not an email address", nil},
		{"verified not a boolean", []string{"ID", "--email-verified", "maybe"}, exitUsage, "must be true or false", nil},
		{"two ids", []string{"ID", "extra"}, exitUsage, `unexpected argument "extra"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := authstore.User{Name: "Before", Email: authstore.NewID() + "@example.test", CreatedAt: past, UpdatedAt: past}
			if err := st.CreateUser(ctx, &before); err != nil {
				t.Fatal(err)
			}
			args := []string{"users", "update"}
			for _, a := range tt.args {
				if a == "ID" {
					a = before.ID
				}
				args = append(args, a)
			}
			out, err := chatctl(t, env, args...)
			code, stderr := status(err)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			after, gerr := st.GetUser(ctx, before.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tt.check == nil {
				if !strings.Contains(stderr, tt.want) || out != "" {
					t.Errorf("stderr %q, stdout %q; want %q on stderr only", stderr, out, tt.want)
				}
				if after.Name != before.Name || after.Email != before.Email || after.EmailVerified != before.EmailVerified || !after.UpdatedAt.Equal(past) {
					t.Errorf("a failed update changed the row: %+v, was %+v", after, before)
				}
				return
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
			if !tt.check(after) {
				t.Errorf("row after update: %+v", after)
			}
			if !after.UpdatedAt.After(past) {
				t.Errorf("updatedAt = %v, want it moved to now", after.UpdatedAt)
			}
		})
	}

	t.Run("unknown user", func(t *testing.T) {
		out, err := chatctl(t, env, "users", "update", "ghost", "--name", "x")
		code, stderr := status(err)
		if code != exitFailure || !strings.HasPrefix(stderr, `chatctl: users update: no user with id "ghost"`) || out != "" {
			t.Errorf("exit %d, stderr %q, stdout %q", code, stderr, out)
		}
	})
}

// TestUsageListsEveryCommand holds the usage text and the package comment
// to the command table, so a new command cannot go undocumented.
func TestUsageListsEveryCommand(t *testing.T) {
	f, err := parser.ParseFile(gotoken.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	help, err := chatctl(t, nil, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(doc, "\t"+c.synopsis()+"\n") {
			t.Errorf("the package comment lacks %q", c.synopsis())
		}
		if !strings.Contains(help, "  "+c.synopsis()+"\n") {
			t.Errorf("usage lacks %q", c.synopsis())
		}
	}
}
