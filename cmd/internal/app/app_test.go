package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "app", &testDB)) }

const secret = "app-test-secret-0123456789abcdefghij"

// TestServeAPIServesTasksAndShutsDown runs the service the way chatd and api
// do, on a real listener: a token as chatctl mints it works end to end, and
// cancelling the context (SIGTERM) returns cleanly.
func TestServeAPIServesTasksAndShutsDown(t *testing.T) {
	cfg, err := config.Load(func(k string) string {
		return map[string]string{
			"DATABASE_URL":       testDB.URL,
			"BETTER_AUTH_SECRET": secret,
			"APPLY_SCHEMA":       "true",
			"SHUTDOWN_TIMEOUT":   "5s",
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.ServeAPI(ctx, cfg, app.NewLogger(cfg, &logs), ln) }()
	t.Cleanup(cancel)

	// The listener is open before ServeAPI starts: this first request waits
	// in the accept backlog until the service serves, so no polling is needed.
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
			t.Fatalf("ServeAPI after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeAPI did not return within 10s of cancellation")
	}
	if resp, err := client.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("server still answers after shutdown")
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), secret) {
		t.Fatal("logs contain the token or the secret")
	}
}

func TestRunRefusesBadConfiguration(t *testing.T) {
	var logs logtest.Buffer
	err := app.Run(context.Background(), "api", func(k string) string {
		return map[string]string{"DATABASE_URL": testDB.URL}[k]
	}, &logs)
	if err == nil || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET") {
		t.Fatalf("Run without any auth setting: err = %v, want it to name BETTER_AUTH_SECRET", err)
	}
}
