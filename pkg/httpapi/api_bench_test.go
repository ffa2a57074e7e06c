package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/todo"
)

// BenchmarkAPI measures requests through the whole stack — a real listener,
// the Fiber app with every middleware, the real verifier and the todo store
// on Postgres — from a keep-alive HTTP client in the same process.
// /healthz is the baseline (no authentication, no database); "auth-only"
// adds authentication and routing but stops at a malformed id (404) before
// the database.
func BenchmarkAPI(b *testing.B) {
	ctx := context.Background()
	store := todo.NewStore(testDB.DB)
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret}, authstore.NewStore(testDB.DB))
	if err != nil {
		b.Fatal(err)
	}
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{
		Auth:  v,
		Tasks: store,
		Log:   slog.New(slog.DiscardHandler),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown(ctx) })

	user := dbtest.CreateUser(b, testDB.DB, "")
	token, err := auth.SignHS256(testSecret, auth.TokenClaims{UserID: user, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	var one todo.Task
	for i := range 500 {
		desc := fmt.Sprintf("benchmark task number %d", i)
		one, err = store.Create(ctx, user, todo.NewTask{Title: fmt.Sprintf("task %03d", i), Description: &desc})
		if err != nil {
			b.Fatal(err)
		}
	}

	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	send := func(b *testing.B, method, path, body string, want int) {
		var r io.Reader = http.NoBody
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, r)
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			b.Fatalf("%s %s: status %d, want %d", method, path, resp.StatusCode, want)
		}
	}
	tasks := "/api/" + user + "/tasks"
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"healthz", http.MethodGet, "/healthz", "", http.StatusOK},
		{"auth-only", http.MethodGet, tasks + "/0", "", http.StatusNotFound},
		{"get", http.MethodGet, fmt.Sprintf("%s/%d", tasks, one.ID), "", http.StatusOK},
		{"list-50", http.MethodGet, tasks + "?limit=50", "", http.StatusOK},
		{"list-50-pending-by-title", http.MethodGet, tasks + "?limit=50&status=pending&sort=title&order=asc", "", http.StatusOK},
		{"search", http.MethodGet, tasks + "?q=number%2042", "", http.StatusOK},
		{"toggle", http.MethodPatch, fmt.Sprintf("%s/%d/complete", tasks, one.ID), "", http.StatusOK},
		{"create", http.MethodPost, tasks, `{"title":"created by the benchmark"}`, http.StatusCreated},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				send(b, c.method, c.path, c.body, c.want)
			}
		})
	}
}
