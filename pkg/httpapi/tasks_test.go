package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/httpapi"
)

// taskJSON is a Task as docs/api.md shows it.
type taskJSON struct {
	ID          int64   `json:"id"`
	UserID      string  `json:"user_id"`
	Title       string  `json:"title"`
	Description *string `json:"description"`
	Completed   bool    `json:"completed"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   string  `json:"updated_at"`
}

type taskList struct {
	Data       []taskJSON `json:"data"`
	NextCursor *string    `json:"next_cursor"`
}

// create makes a task through the API.
func create(t *testing.T, e *env, user, token, body string) taskJSON {
	t.Helper()
	r := e.do(t, req{method: "POST", path: "/api/" + user + "/tasks", token: token, body: body})
	wantStatus(t, r, http.StatusCreated)
	var task taskJSON
	r.json(t, &task)
	return task
}

func TestTaskLifecycle(t *testing.T) {
	e := newEnv(t)
	user, token := e.user(t)
	base := "/api/" + user + "/tasks"

	// Create.
	r := e.do(t, req{method: "POST", path: base, token: token, body: `{"title":"  Buy groceries ","description":"milk"}`})
	wantStatus(t, r, http.StatusCreated)
	var task taskJSON
	r.json(t, &task)
	if task.ID <= 0 || task.UserID != user || task.Title != "Buy groceries" || task.Description == nil || *task.Description != "milk" || task.Completed {
		t.Fatalf("created %+v", task)
	}
	if want := base + "/" + strconv.FormatInt(task.ID, 10); r.header.Get("Location") != want {
		t.Fatalf("Location = %q, want %q", r.header.Get("Location"), want)
	}
	for _, ts := range []string{task.CreatedAt, task.UpdatedAt} {
		if tm, err := time.Parse(time.RFC3339Nano, ts); err != nil || tm.Location() != time.UTC {
			t.Fatalf("time %q is not RFC 3339 UTC (%v)", ts, err)
		}
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("Content-Type = %q", r.header.Get("Content-Type"))
	}
	self := r.header.Get("Location")

	// Create without description: null.
	noDesc := create(t, e, user, token, `{"title":"No description"}`)
	if noDesc.Description != nil {
		t.Fatalf("description = %v, want null", *noDesc.Description)
	}
	if r := e.do(t, req{method: "GET", path: base + "/" + strconv.FormatInt(noDesc.ID, 10), token: token}); !strings.Contains(string(r.body), `"description":null`) {
		t.Fatalf("description not null in %s", r.body)
	}

	// Get.
	r = e.do(t, req{method: "GET", path: self, token: token})
	wantStatus(t, r, http.StatusOK)
	var got taskJSON
	r.json(t, &got)
	if !reflect.DeepEqual(got, task) {
		t.Fatalf("got %+v, want %+v", got, task)
	}

	// Update the title only.
	r = e.do(t, req{method: "PUT", path: self, token: token, body: `{"title":"Buy more groceries"}`})
	wantStatus(t, r, http.StatusOK)
	r.json(t, &got)
	if got.Title != "Buy more groceries" || got.Description == nil || *got.Description != "milk" || got.Completed {
		t.Fatalf("after title update: %+v", got)
	}
	// Clear the description, set completed.
	r = e.do(t, req{method: "PUT", path: self, token: token, body: `{"description":null,"completed":true}`})
	wantStatus(t, r, http.StatusOK)
	r.json(t, &got)
	if got.Title != "Buy more groceries" || got.Description != nil || !got.Completed {
		t.Fatalf("after clearing: %+v", got)
	}

	// Toggle twice.
	for _, want := range []bool{false, true} {
		r = e.do(t, req{method: "PATCH", path: self + "/complete", token: token})
		wantStatus(t, r, http.StatusOK)
		r.json(t, &got)
		if got.Completed != want {
			t.Fatalf("after toggle: completed = %v, want %v", got.Completed, want)
		}
	}

	// Delete, then it is gone everywhere.
	r = e.do(t, req{method: "DELETE", path: self, token: token})
	wantStatus(t, r, http.StatusNoContent)
	if len(r.body) != 0 {
		t.Fatalf("204 with body %q", r.body)
	}
	for _, q := range []req{
		{method: "GET", path: self},
		{method: "PUT", path: self, body: `{"title":"x"}`},
		{method: "DELETE", path: self},
		{method: "PATCH", path: self + "/complete"},
	} {
		q.token = token
		wantProblem(t, e.do(t, q), http.StatusNotFound, "NOT_FOUND")
	}
}

// TestTaskErrors checks every documented error of the tasks routes, in
// the API's order of checks.
func TestTaskErrors(t *testing.T) {
	e := newEnv(t, withConfig(func(c *httpapi.Config) { c.BodyLimit = 1500 }))
	user, token := e.user(t)
	base := "/api/" + user + "/tasks"
	task := create(t, e, user, token, `{"title":"existing"}`)
	self := base + "/" + strconv.FormatInt(task.ID, 10)
	big := `{"title":"` + strings.Repeat("x", 2000) + `"}`
	ct := func(v string) map[string]string { return map[string]string{"Content-Type": v} }

	type errCase struct {
		name   string
		q      req
		status int
		code   string
		field  string // a field errors[] must name
	}
	cases := []errCase{
		{"no content type", req{method: "POST", path: base, body: `{"title":"a"}`, header: ct("")}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"text/plain", req{method: "POST", path: base, body: `{"title":"a"}`, header: ct("text/plain")}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"latin1 charset", req{method: "POST", path: base, body: `{"title":"a"}`, header: ct("application/json; charset=iso-8859-1")}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"gzip encoding", req{method: "POST", path: base, body: `{"title":"a"}`, header: map[string]string{"Content-Encoding": "gzip"}}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"PUT without content type", req{method: "PUT", path: self, body: `{"title":"a"}`, header: ct("")}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"415 before 413", req{method: "POST", path: base, body: big, header: ct("text/plain")}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"too large", req{method: "POST", path: base, body: big}, 413, "PAYLOAD_TOO_LARGE", ""},
		{"PUT too large", req{method: "PUT", path: self, body: big}, 413, "PAYLOAD_TOO_LARGE", ""},
		{"malformed", req{method: "POST", path: base, body: `{"title":`}, 400, "INVALID_JSON", ""},
		{"trailing data", req{method: "POST", path: base, body: `{"title":"a"} {"title":"b"}`}, 400, "INVALID_JSON", ""},
		{"trailing garbage", req{method: "POST", path: base, body: `{"title":"a"}x`}, 400, "INVALID_JSON", ""},
		{"invalid UTF-8", req{method: "POST", path: base, body: "{\"title\":\"a\xff\"}"}, 400, "INVALID_JSON", ""},
		{"lone high surrogate escape", req{method: "POST", path: base, body: `{"title":"a\ud800"}`}, 400, "INVALID_JSON", ""},
		{"lone low surrogate escape", req{method: "POST", path: base, body: `{"title":"\udc00a"}`}, 400, "INVALID_JSON", ""},
		{"high surrogate before a non-surrogate escape", req{method: "POST", path: base, body: `{"title":"\ud83d\u0041"}`}, 400, "INVALID_JSON", ""},
		{"duplicate field", req{method: "POST", path: base, body: `{"title":"a","title":"b"}`}, 400, "INVALID_JSON", ""},
		{"wrong type", req{method: "POST", path: base, body: `{"title":5}`}, 400, "INVALID_JSON", ""},
		{"wrong type completed", req{method: "PUT", path: self, body: `{"completed":"yes"}`}, 400, "INVALID_JSON", ""},
		{"array", req{method: "POST", path: base, body: `[{"title":"a"}]`}, 400, "INVALID_JSON", ""},
		{"empty body", req{method: "POST", path: base, header: ct("application/json")}, 400, "INVALID_JSON", ""},
		{"charset utf-8 is fine, then missing title", req{method: "POST", path: base, body: `{}`, header: ct("application/json; charset=UTF-8")}, 400, "VALIDATION_FAILED", "title"},
		{"unknown field", req{method: "POST", path: base, body: `{"title":"a","priority":3}`}, 400, "VALIDATION_FAILED", "priority"},
		{"field names are exact", req{method: "POST", path: base, body: `{"Title":"a"}`}, 400, "VALIDATION_FAILED", "Title"},
		{"user_id is not a field", req{method: "POST", path: base, body: `{"title":"a","user_id":"x"}`}, 400, "VALIDATION_FAILED", "user_id"},
		{"blank title", req{method: "POST", path: base, body: `{"title":"   "}`}, 400, "VALIDATION_FAILED", "title"},
		{"null title", req{method: "POST", path: base, body: `{"title":null}`}, 400, "VALIDATION_FAILED", "title"},
		{"long title", req{method: "POST", path: base, body: `{"title":"` + strings.Repeat("é", 201) + `"}`}, 400, "VALIDATION_FAILED", "title"},
		{"NUL in title", req{method: "POST", path: base, body: `{"title":"a\u0000b"}`}, 400, "VALIDATION_FAILED", "title"},
		{"long description", req{method: "POST", path: base, body: `{"title":"a","description":"` + strings.Repeat("d", 1001) + `"}`}, 400, "VALIDATION_FAILED", "description"},
		{"empty update", req{method: "PUT", path: self, body: `{}`}, 400, "VALIDATION_FAILED", ""},
		{"unknown field in update", req{method: "PUT", path: self, body: `{"done":true}`}, 400, "VALIDATION_FAILED", "done"},
		{"null completed", req{method: "PUT", path: self, body: `{"completed":null}`}, 400, "VALIDATION_FAILED", "completed"},
		{"body error before malformed id", req{method: "PUT", path: base + "/abc", body: `{"title":`}, 400, "INVALID_JSON", ""},
		{"validation before unknown id", req{method: "PUT", path: base + "/999999999", body: `{"title":""}`}, 400, "VALIDATION_FAILED", "title"},
		{"validation before malformed id", req{method: "PUT", path: base + "/abc", body: `{"title":""}`}, 400, "VALIDATION_FAILED", "title"},
		{"empty patch before malformed id", req{method: "PUT", path: base + "/abc", body: `{}`}, 400, "VALIDATION_FAILED", ""},
		{"bad limit", req{method: "GET", path: base + "?limit=0"}, 400, "VALIDATION_FAILED", "limit"},
		{"limit too big", req{method: "GET", path: base + "?limit=201"}, 400, "VALIDATION_FAILED", "limit"},
		{"limit not a number", req{method: "GET", path: base + "?limit=ten"}, 400, "VALIDATION_FAILED", "limit"},
		{"bad status", req{method: "GET", path: base + "?status=done"}, 400, "VALIDATION_FAILED", "status"},
		{"bad sort", req{method: "GET", path: base + "?sort=priority"}, 400, "VALIDATION_FAILED", "sort"},
		{"bad order", req{method: "GET", path: base + "?order=up"}, 400, "VALIDATION_FAILED", "order"},
		{"bad cursor", req{method: "GET", path: base + "?cursor=bm9wZQ"}, 400, "VALIDATION_FAILED", "cursor"},
	}
	for _, id := range []string{"abc", "0", "-1", "01", "+1", "1.5", "1e3", "9223372036854775808", "99999999999999999999", "999999999"} {
		p := base + "/" + id
		cases = append(cases,
			errCase{"GET id " + id, req{method: "GET", path: p}, 404, "NOT_FOUND", ""},
			errCase{"PUT id " + id, req{method: "PUT", path: p, body: `{"title":"x"}`}, 404, "NOT_FOUND", ""},
			errCase{"DELETE id " + id, req{method: "DELETE", path: p}, 404, "NOT_FOUND", ""},
			errCase{"PATCH id " + id, req{method: "PATCH", path: p + "/complete"}, 404, "NOT_FOUND", ""},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.token = token
			p := wantProblem(t, e.do(t, tc.q), tc.status, tc.code)
			if tc.field != "" {
				found := false
				for _, f := range p.Errors {
					found = found || (f.Field == tc.field && f.Message != "")
				}
				if !found {
					t.Fatalf("errors %+v do not name %q", p.Errors, tc.field)
				}
			}
		})
	}

	// None of that changed the task.
	got, err := e.tasks.Get(context.Background(), user, task.ID)
	if err != nil || got.Title != "existing" {
		t.Fatalf("task after the errors: %+v, %v", got, err)
	}
}

// TestForeignTask checks that another user's task is 404 on every route
// and stays unchanged.
func TestForeignTask(t *testing.T) {
	e := newEnv(t)
	alice, aliceToken := e.user(t)
	bob, bobToken := e.user(t)
	task := create(t, e, alice, aliceToken, `{"title":"alice's","description":"private"}`)
	before, err := e.tasks.Get(context.Background(), alice, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(task.ID, 10)
	bobs := "/api/" + bob + "/tasks/" + id
	for _, q := range []req{
		{method: "GET", path: bobs},
		{method: "PUT", path: bobs, body: `{"title":"mine now","completed":true}`},
		{method: "PATCH", path: bobs + "/complete"},
		{method: "DELETE", path: bobs},
	} {
		t.Run(q.method, func(t *testing.T) {
			q.token = bobToken
			r := e.do(t, q)
			wantProblem(t, r, http.StatusNotFound, "NOT_FOUND")
			if strings.Contains(string(r.body), "private") || strings.Contains(string(r.body), alice) {
				t.Fatalf("404 leaks alice's task: %s", r.body)
			}
		})
	}
	// Bob's list does not show it.
	r := e.do(t, req{method: "GET", path: "/api/" + bob + "/tasks", token: bobToken})
	wantStatus(t, r, http.StatusOK)
	var l taskList
	r.json(t, &l)
	if len(l.Data) != 0 {
		t.Fatalf("bob lists %+v", l.Data)
	}
	// Bob on alice's path: 403 before anything.
	wantProblem(t, e.do(t, req{method: "GET", path: "/api/" + alice + "/tasks/" + id, token: bobToken}), http.StatusForbidden, "FORBIDDEN")

	after, err := e.tasks.Get(context.Background(), alice, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("alice's task changed: %+v → %+v", before, after)
	}
}

// TestListTasks checks filters, sorting, search and pagination through HTTP.
func TestListTasks(t *testing.T) {
	e := newEnv(t)
	user, token := e.user(t)
	base := "/api/" + user + "/tasks"

	list := func(t *testing.T, query string) taskList {
		t.Helper()
		r := e.do(t, req{method: "GET", path: base + query, token: token})
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `"next_cursor":`) {
			t.Fatalf("no next_cursor in %s", r.body)
		}
		var l taskList
		r.json(t, &l)
		if l.Data == nil {
			t.Fatalf("data is null: %s", r.body)
		}
		return l
	}
	titles := func(l taskList) []string {
		out := []string{}
		for _, task := range l.Data {
			out = append(out, task.Title)
		}
		return out
	}

	empty := list(t, "")
	if len(empty.Data) != 0 || empty.NextCursor != nil {
		t.Fatalf("empty list = %+v", empty)
	}

	names := []string{"Cherry pie", "apple jam", "Banana bread", "Date shake", "Elderflower tea"}
	ids := map[string]int64{}
	for i, n := range names {
		body := fmt.Sprintf(`{"title":%q}`, n)
		if i == 3 {
			body = fmt.Sprintf(`{"title":%q,"description":"needs MILK_100%%"}`, n)
		}
		ids[n] = create(t, e, user, token, body).ID
	}
	r := e.do(t, req{method: "PATCH", path: fmt.Sprintf("%s/%d/complete", base, ids["Banana bread"]), token: token})
	wantStatus(t, r, http.StatusOK)

	cases := []struct {
		name, query string
		want        []string
	}{
		{"default: newest first", "", []string{"Elderflower tea", "Date shake", "Banana bread", "apple jam", "Cherry pie"}},
		{"oldest first", "?order=asc", []string{"Cherry pie", "apple jam", "Banana bread", "Date shake", "Elderflower tea"}},
		{"completed", "?status=completed", []string{"Banana bread"}},
		{"pending by title", "?status=pending&sort=title&order=asc", nil},
		{"search title, any case", "?q=" + url.QueryEscape("APPLE"), []string{"apple jam"}},
		{"search description with wildcard characters", "?q=" + url.QueryEscape("milk_100%"), []string{"Date shake"}},
		{"recently updated first", "?sort=updated", []string{"Banana bread", "Elderflower tea", "Date shake", "apple jam", "Cherry pie"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := titles(list(t, tc.query))
			if tc.want == nil { // collation-dependent order: check the set
				if len(got) != 4 {
					t.Fatalf("got %v", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		for _, order := range []string{"asc", "desc"} {
			var seen []string
			query := "?limit=2&sort=title&order=" + order
			for pages := 0; ; pages++ {
				if pages > 5 {
					t.Fatal("too many pages")
				}
				l := list(t, query)
				if len(l.Data) > 2 {
					t.Fatalf("page of %d", len(l.Data))
				}
				seen = append(seen, titles(l)...)
				if l.NextCursor == nil {
					break
				}
				if *l.NextCursor == "" {
					t.Fatal(`next_cursor is "" instead of null`)
				}
				query = "?limit=2&sort=title&order=" + order + "&cursor=" + url.QueryEscape(*l.NextCursor)
			}
			if len(seen) != len(names) {
				t.Fatalf("%s: pages gave %v", order, seen)
			}
			all := titles(list(t, "?sort=title&order="+order))
			if !reflect.DeepEqual(seen, all) {
				t.Fatalf("%s: pages gave %v, one page %v", order, seen, all)
			}
		}
	})
	t.Run("cursor of another order", func(t *testing.T) {
		l := list(t, "?limit=1")
		if l.NextCursor == nil {
			t.Fatal("no cursor")
		}
		r := e.do(t, req{method: "GET", path: base + "?order=asc&cursor=" + url.QueryEscape(*l.NextCursor), token: token})
		wantProblem(t, r, http.StatusBadRequest, "VALIDATION_FAILED")
	})
}

// TestListOfNewUserIsEmptyArray checks "data": [] rather than null through
// the real store's empty page.
func TestListOfNewUserIsEmptyArray(t *testing.T) {
	e := newEnv(t)
	user, token := e.user(t)
	r := e.do(t, req{method: "GET", path: "/api/" + user + "/tasks?status=completed", token: token})
	wantStatus(t, r, http.StatusOK)
	if got := string(r.body); got != `{"data":[],"next_cursor":null}` {
		t.Fatalf("body = %s", got)
	}
}

// TestJSONEscapes checks that escapes which look like surrogates but are not
// (an escaped backslash, a proper pair) are decoded as sent.
func TestJSONEscapes(t *testing.T) {
	e := newEnv(t)
	user, token := e.user(t)
	for body, want := range map[string]string{
		`{"title":"smile \ud83d\ude00"}`: "smile \U0001F600",
		`{"title":"\\ud800"}`:            `\ud800`,
		`{"title":"tab\tand \u00e9"}`:    "tab\tand é",
	} {
		got := create(t, e, user, token, body)
		if got.Title != want {
			t.Errorf("%s stored title %q, want %q", body, got.Title, want)
		}
	}
}

// TestUnknownFieldsBounded checks that a body naming thousands of unknown
// (and overlong) fields gets a small VALIDATION_FAILED answer: the first 20
// fields, names cut to 64 bytes, and one entry counting the rest.
func TestUnknownFieldsBounded(t *testing.T) {
	e := newEnv(t)
	user, token := e.user(t)
	var b strings.Builder
	b.WriteString(`{"title":"a"`)
	n := 0
	for b.Len() < 60_000 {
		fmt.Fprintf(&b, `,"unknown_%05d_%s":0`, n, strings.Repeat("x", 90))
		n++
	}
	b.WriteString("}")
	r := e.do(t, req{method: "POST", path: "/api/" + user + "/tasks", token: token, body: b.String()})
	p := wantProblem(t, r, http.StatusBadRequest, "VALIDATION_FAILED")
	if len(r.body) > 4<<10 {
		t.Fatalf("the answer to %d unknown fields is %d bytes", n, len(r.body))
	}
	if len(p.Errors) != 21 {
		t.Fatalf("%d errors, want 20 fields and a summary: %+v", len(p.Errors), p.Errors)
	}
	for _, f := range p.Errors[:20] {
		if !strings.HasPrefix(f.Field, "unknown_") || len(f.Field) > 64 || f.Message == "" {
			t.Fatalf("field error %+v", f)
		}
	}
	if last := p.Errors[20]; last.Field != "" || !strings.Contains(last.Message, strconv.Itoa(n-20)) {
		t.Fatalf("summary %+v, want one counting the %d left out", last, n-20)
	}
}

// TestDuplicateLongFieldIsBounded: a member name given twice is echoed back
// cut short, however long it is (a 60 KB body once gave a 180 KB answer).
func TestDuplicateLongFieldIsBounded(t *testing.T) {
	e := newEnv(t)
	user, token := e.user(t)
	name := strings.Repeat("‹<", 7_000) // 28 KB, twice
	body := `{"` + name + `":1,"` + name + `":1}`
	r := e.do(t, req{method: "POST", path: "/api/" + user + "/tasks", token: token, body: body})
	p := wantProblem(t, r, http.StatusBadRequest, "INVALID_JSON")
	if len(r.body) > 1<<10 || !strings.Contains(p.Detail, "appears more than once") {
		t.Fatalf("answer of %d bytes: %s", len(r.body), r.body)
	}
}
