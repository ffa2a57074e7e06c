package httpapi_test

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/console"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
)

func withConsole() option {
	return withDeps(func(d *httpapi.Deps) { d.Console = console.Files() })
}

// TestConsoleServesPageAndAssets: the page at "/" and each asset under
// /console/ come with their content type and the console's security
// headers; nothing else is served from there.
func TestConsoleServesPageAndAssets(t *testing.T) {
	e := newEnv(t, withConsole())
	tests := []struct {
		method, path, contentType, contains string
	}{
		{"GET", "/", "text/html; charset=utf-8", `<script src="/console/console.js" defer></script>`},
		{"HEAD", "/", "text/html; charset=utf-8", ""},
		{"GET", "/console/console.js", "text/javascript; charset=utf-8", "'use strict';"},
		{"GET", "/console/console.css", "text/css; charset=utf-8", ":root"},
		{"GET", "/console/icon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(t, req{method: tt.method, path: tt.path})
			wantStatus(t, r, http.StatusOK)
			for name, want := range map[string]string{
				"Content-Type":            tt.contentType,
				"Content-Security-Policy": httpapi.ConsoleCSP,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"Cache-Control":           "no-cache",
			} {
				if got := r.header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if !strings.Contains(string(r.body), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
		})
	}
	for _, path := range []string{"/console/missing.js", "/console/index.html", "/console/", "/console/..%2fconsole.go", "/index.html"} {
		t.Run("GET "+path, func(t *testing.T) {
			wantProblem(t, e.do(t, req{method: "GET", path: path}), http.StatusNotFound, httpapi.CodeNotFound)
		})
	}
}

// TestConsoleOffWithoutFiles: a server built without Deps.Console (cmd/api
// by default) serves no page.
func TestConsoleOffWithoutFiles(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/", "/console/console.js"} {
		wantProblem(t, e.do(t, req{method: "GET", path: path}), http.StatusNotFound, httpapi.CodeNotFound)
	}
}

// TestConsolePageFollowsItsPolicy reads the console's files for what the
// CSP would block or what would let data run as code: every script and
// style is a file of its own under /console/, nothing comes from another
// origin, and the script builds the page from text, never from HTML.
func TestConsolePageFollowsItsPolicy(t *testing.T) {
	files := console.Files()
	page, err := fs.ReadFile(files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(page), -1)
	if len(refs) < 3 {
		t.Fatalf("index.html references %d files, want the script, the style and the icon", len(refs))
	}
	for _, ref := range refs {
		name, ok := strings.CutPrefix(ref[1], httpapi.ConsolePrefix)
		if !ok {
			t.Errorf("index.html references %q, outside %s", ref[1], httpapi.ConsolePrefix)
			continue
		}
		if _, err := fs.Stat(files, name); err != nil {
			t.Errorf("index.html references %q, which is not a console file", ref[1])
		}
	}
	if bad := regexp.MustCompile(`(?i)<script>|<style|\sstyle=|javascript:|\son[a-z]+=`).FindString(string(page)); bad != "" {
		t.Errorf("index.html has inline code or style (%q): the CSP blocks it", bad)
	}
	script, err := fs.ReadFile(files, "console.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "access_token", "localStorage"} {
		if strings.Contains(string(script), bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
}

// TestMe: GET /api/me names the caller, needs a credential like every
// /api route, and does not hide the routes of a user whose id is "me".
func TestMe(t *testing.T) {
	e := newEnv(t)
	id, tok := e.user(t)
	r := e.do(t, req{method: "GET", path: "/api/me", token: tok})
	wantStatus(t, r, http.StatusOK)
	var got struct {
		UserID string `json:"user_id"`
	}
	r.json(t, &got)
	if got.UserID != id {
		t.Fatalf("user_id = %q, want %q", got.UserID, id)
	}
	wantProblem(t, e.do(t, req{method: "GET", path: "/api/me"}), http.StatusUnauthorized, httpapi.CodeUnauthorized)
	wantProblem(t, e.do(t, req{method: "POST", path: "/api/me", token: tok}), http.StatusForbidden, httpapi.CodeForbidden)

	me := dbtest.CreateUser(t, testDB.DB, "me")
	meTok := hs256(t, me)
	r = e.do(t, req{method: "GET", path: "/api/me", token: meTok})
	wantStatus(t, r, http.StatusOK)
	wantStatus(t, e.do(t, req{method: "GET", path: "/api/me/tasks", token: meTok}), http.StatusOK)
	wantProblem(t, e.do(t, req{method: "GET", path: "/api/me/tasks", token: tok}), http.StatusForbidden, httpapi.CodeForbidden)
}
