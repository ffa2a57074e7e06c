package todo_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/todo"
)

// listFixture is a user with many tasks whose timestamps, titles and
// completion vary with ties, plus another user's look-alike tasks.
type listFixture struct {
	store *todo.Store
	user  string
	all   []todo.Task // the user's rows as stored
}

// Titles are ASCII letters and digits so that their lower-cased order is the
// same under the C collation (strings.Compare) and common linguistic ones.
var fixtureWords = []string{"apple", "bread", "call", "dentist", "email", "fix", "garden"}

// fixtureTitle is the i-th fixture title: a word and a number, in one of
// three cases, so that titles differing only in case tie on the sort key.
func fixtureTitle(i int) string {
	w := fmt.Sprintf("%s%d", fixtureWords[i%len(fixtureWords)], i%23)
	switch i % 3 {
	case 1:
		return strings.ToUpper(w[:1]) + w[1:]
	case 2:
		return strings.ToUpper(w)
	}
	return w
}

func newListFixture(t *testing.T, n int) listFixture {
	t.Helper()
	ctx := context.Background()
	s, user := newStore(t)
	other := dbtest.CreateUser(t, testDB.DB, "")
	err := testDB.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ts := todo.NewStore(tx)
		for i := range n {
			in := todo.NewTask{Title: fixtureTitle(i)}
			if i%5 != 0 {
				in.Description = ptr("Remember the " + strings.ToUpper(fixtureWords[(i*3)%len(fixtureWords)]))
			}
			for _, u := range []string{user, other} {
				if u == other && i%10 != 0 {
					continue
				}
				if _, err := ts.Create(ctx, u, in); err != nil {
					return err
				}
			}
		}
		// Timestamps with microsecond digits and many ties, so that the id
		// tie-breaker and the cursor's time precision both matter.
		_, err := tx.NewRaw(`UPDATE tasks SET
			created_at = timestamptz '2026-01-01 00:00:00+00' + ((id * 37) % 120) * interval '1234567 microseconds',
			updated_at = timestamptz '2026-02-01 00:00:00+00' + ((id * 53) % 90) * interval '7654321 microseconds' + (id % 7) * interval '1 microsecond',
			completed = (id % 3 = 0)
			WHERE user_id IN (?, ?)`, user, other).Exec(ctx)
		return err
	})
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	f := listFixture{store: s, user: user}
	if err := testDB.DB.NewSelect().Model(&f.all).Where("user_id = ?", user).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.all) != n {
		t.Fatalf("fixture has %d tasks, want %d", len(f.all), n)
	}
	return f
}

// expected computes in Go the order List must produce.
func (f listFixture) expected(status, sortBy, order, q string) []int64 {
	var rows []todo.Task
	q = strings.ToLower(q)
	for _, x := range f.all {
		if status == todo.StatusPending && x.Completed || status == todo.StatusCompleted && !x.Completed {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(x.Title), q) &&
			(x.Description == nil || !strings.Contains(strings.ToLower(*x.Description), q)) {
			continue
		}
		rows = append(rows, x)
	}
	slices.SortFunc(rows, func(a, b todo.Task) int {
		var c int
		switch sortBy {
		case todo.SortCreated:
			c = a.CreatedAt.Compare(b.CreatedAt)
		case todo.SortUpdated:
			c = a.UpdatedAt.Compare(b.UpdatedAt)
		case todo.SortTitle:
			c = strings.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title))
		}
		if c == 0 {
			c = cmp.Compare(a.ID, b.ID)
		}
		if order == todo.OrderDesc {
			c = -c
		}
		return c
	})
	ids := make([]int64, len(rows))
	for i, x := range rows {
		ids[i] = x.ID
	}
	return ids
}

// walk lists every page of p and returns the ids in order, checking each
// page's shape on the way.
func walk(t *testing.T, s *todo.Store, user string, p todo.ListParams) []int64 {
	t.Helper()
	var ids []int64
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("no end of pages")
		}
		page, err := s.List(context.Background(), user, p)
		if err != nil {
			t.Fatalf("List(%+v) page %d: %v", p, pages+1, err)
		}
		for _, x := range page.Tasks {
			if x.UserID != user {
				t.Fatalf("task %d of user %q listed for %q", x.ID, x.UserID, user)
			}
			wantUTC(t, x)
			ids = append(ids, x.ID)
		}
		if page.NextCursor == "" {
			return ids
		}
		if len(page.Tasks) != p.Limit {
			t.Fatalf("page %d has %d tasks and a next cursor; limit %d", pages+1, len(page.Tasks), p.Limit)
		}
		p.Cursor = page.NextCursor
	}
}

func TestListPagination(t *testing.T) {
	f := newListFixture(t, 300)
	for _, status := range []string{todo.StatusAll, todo.StatusPending, todo.StatusCompleted} {
		for _, sortBy := range []string{todo.SortCreated, todo.SortUpdated, todo.SortTitle} {
			for _, order := range []string{todo.OrderAsc, todo.OrderDesc} {
				for _, limit := range []int{7, 150} {
					name := fmt.Sprintf("%s/%s/%s/limit=%d", status, sortBy, order, limit)
					t.Run(name, func(t *testing.T) {
						got := walk(t, f.store, f.user, todo.ListParams{Status: status, Sort: sortBy, Order: order, Limit: limit})
						want := f.expected(status, sortBy, order, "")
						if !slices.Equal(got, want) {
							t.Fatalf("walked %d ids, want %d\n got %v\nwant %v", len(got), len(want), got, want)
						}
					})
				}
			}
		}
	}
	t.Run("defaults are all/created/desc", func(t *testing.T) {
		got := walk(t, f.store, f.user, todo.ListParams{Limit: 13})
		if want := f.expected(todo.StatusAll, todo.SortCreated, todo.OrderDesc, ""); !slices.Equal(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	})
	t.Run("query and status with pages", func(t *testing.T) {
		for _, q := range []string{"apple", "APPLE", "Remember the Fix", "call1"} {
			got := walk(t, f.store, f.user, todo.ListParams{Status: todo.StatusPending, Sort: todo.SortTitle, Order: todo.OrderAsc, Query: q, Limit: 4})
			want := f.expected(todo.StatusPending, todo.SortTitle, todo.OrderAsc, q)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("q=%q: got %v\nwant %v", q, got, want)
			}
		}
	})
	t.Run("in a transaction with a non-UTC session zone", func(t *testing.T) {
		tx, err := testDB.DB.BeginTx(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }() // undo the test's changes; ErrTxDone after an explicit Rollback is expected
		if _, err := tx.ExecContext(context.Background(), "SET LOCAL TimeZone = 'America/St_Johns'"); err != nil {
			t.Fatal(err)
		}
		got := walk(t, todo.NewStore(tx), f.user, todo.ListParams{Sort: todo.SortUpdated, Order: todo.OrderAsc, Limit: 9})
		if want := f.expected(todo.StatusAll, todo.SortUpdated, todo.OrderAsc, ""); !slices.Equal(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	})
	t.Run("status may change between pages", func(t *testing.T) {
		page, err := f.store.List(context.Background(), f.user, todo.ListParams{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.List(context.Background(), f.user, todo.ListParams{Status: todo.StatusCompleted, Limit: 10, Cursor: page.NextCursor}); err != nil {
			t.Fatalf("cursor with another status: %v", err)
		}
	})
	t.Run("limits", func(t *testing.T) {
		tests := []struct {
			limit, want int
		}{{0, todo.DefaultLimit}, {1, 1}, {200, 200}}
		for _, tc := range tests {
			page, err := f.store.List(context.Background(), f.user, todo.ListParams{Limit: tc.limit})
			if err != nil {
				t.Fatalf("limit %d: %v", tc.limit, err)
			}
			if len(page.Tasks) != tc.want || page.NextCursor == "" {
				t.Errorf("limit %d: %d tasks, next cursor %q", tc.limit, len(page.Tasks), page.NextCursor)
			}
		}
	})
}

func TestListSearch(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	titles := map[string]*string{
		"Buy 50% off milk":   nil,
		"Buy 50 apples":      ptr("cheap"),
		"under_score":        nil,
		"underXscore":        nil,
		`back\slash`:         nil,
		`backslash`:          nil,
		"Groceries":          ptr("MILK and Eggs"),
		"Plain":              ptr("100% sure"),
		"Äpfel kaufen":       nil,
		"quote's and \"dq\"": nil,
	}
	ids := map[string]int64{}
	for title, desc := range titles {
		ids[title] = mustCreate(t, s, user, title, desc).ID
	}
	tests := []struct {
		q    string
		want []string
	}{
		{q: "50%", want: []string{"Buy 50% off milk"}},
		{q: "50", want: []string{"Buy 50% off milk", "Buy 50 apples"}},
		{q: "%", want: []string{"Buy 50% off milk", "Plain"}},
		{q: "under_score", want: []string{"under_score"}},
		{q: "_", want: []string{"under_score"}},
		{q: `back\slash`, want: []string{`back\slash`}},
		{q: `\`, want: []string{`back\slash`}},
		{q: "milk", want: []string{"Buy 50% off milk", "Groceries"}},
		{q: "MiLk", want: []string{"Buy 50% off milk", "Groceries"}},
		{q: "  eggs  ", want: []string{"Groceries"}},
		{q: "Äpfel", want: []string{"Äpfel kaufen"}},
		{q: "'s and \"", want: []string{"quote's and \"dq\""}},
		{q: "nothing like this", want: nil},
		{q: "   ", want: slices.Collect(maps.Keys(titles))},
	}
	for _, tc := range tests {
		t.Run("q="+tc.q, func(t *testing.T) {
			page, err := s.List(ctx, user, todo.ListParams{Query: tc.q, Limit: 200})
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got, want []int64
			for _, x := range page.Tasks {
				got = append(got, x.ID)
			}
			for _, title := range tc.want {
				want = append(want, ids[title])
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("ids %v, want %v (%q)", got, want, tc.want)
			}
		})
	}
}

func TestListInvalid(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	for i := range 3 {
		mustCreate(t, s, user, fmt.Sprintf("task%d", i), nil)
	}
	first, err := s.List(ctx, user, todo.ListParams{Limit: 1})
	if err != nil || first.NextCursor == "" {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	titleFirst, err := s.List(ctx, user, todo.ListParams{Sort: todo.SortTitle, Limit: 1})
	if err != nil || titleFirst.NextCursor == "" {
		t.Fatalf("first title page: %+v, %v", titleFirst, err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name   string
		p      todo.ListParams
		fields []string
	}{
		{name: "unknown status", p: todo.ListParams{Status: "done"}, fields: []string{"status"}},
		{name: "status is case-sensitive", p: todo.ListParams{Status: "All"}, fields: []string{"status"}},
		{name: "unknown sort", p: todo.ListParams{Sort: "due"}, fields: []string{"sort"}},
		{name: "unknown order", p: todo.ListParams{Order: "up"}, fields: []string{"order"}},
		{name: "negative limit", p: todo.ListParams{Limit: -1}, fields: []string{"limit"}},
		{name: "limit 201", p: todo.ListParams{Limit: 201}, fields: []string{"limit"}},
		{name: "q too long", p: todo.ListParams{Query: strings.Repeat("ö", 201)}, fields: []string{"q"}},
		{name: "q with NUL", p: todo.ListParams{Query: "a\x00"}, fields: []string{"q"}},
		{name: "q invalid UTF-8", p: todo.ListParams{Query: "\xc3"}, fields: []string{"q"}},
		{name: "everything wrong", p: todo.ListParams{Status: "x", Sort: "x", Order: "x", Query: strings.Repeat("q", 201), Limit: 500, Cursor: "!"}, fields: []string{"status", "sort", "order", "q", "limit"}},
		{name: "cursor not base64", p: todo.ListParams{Cursor: "!!!"}, fields: []string{"cursor"}},
		{name: "cursor padded base64", p: todo.ListParams{Cursor: first.NextCursor + "="}, fields: []string{"cursor"}},
		{name: "cursor not JSON", p: todo.ListParams{Cursor: b64("not json")}, fields: []string{"cursor"}},
		{name: "cursor trailing data", p: todo.ListParams{Cursor: b64(`{"s":"created","o":"desc","id":1,"t":1}{}`)}, fields: []string{"cursor"}},
		{name: "cursor unknown field", p: todo.ListParams{Cursor: b64(`{"s":"created","o":"desc","id":1,"t":1,"x":1}`)}, fields: []string{"cursor"}},
		{name: "cursor without key", p: todo.ListParams{Cursor: b64(`{"s":"created","o":"desc","id":1}`)}, fields: []string{"cursor"}},
		{name: "cursor with zero id", p: todo.ListParams{Cursor: b64(`{"s":"created","o":"desc","id":0,"t":1}`)}, fields: []string{"cursor"}},
		{name: "cursor time out of range", p: todo.ListParams{Cursor: b64(`{"s":"created","o":"desc","id":1,"t":9223372036854775807}`)}, fields: []string{"cursor"}},
		{name: "title cursor with NUL", p: todo.ListParams{Sort: "title", Cursor: b64(`{"s":"title","o":"desc","id":1,"k":"a\u0000"}`)}, fields: []string{"cursor"}},
		{name: "title cursor with time key", p: todo.ListParams{Sort: "title", Cursor: b64(`{"s":"title","o":"desc","id":1,"t":5}`)}, fields: []string{"cursor"}},
		{name: "cursor too long", p: todo.ListParams{Cursor: strings.Repeat("A", 5000)}, fields: []string{"cursor"}},
		{name: "cursor from another order", p: todo.ListParams{Order: "asc", Cursor: first.NextCursor}, fields: []string{"cursor"}},
		{name: "cursor from another sort", p: todo.ListParams{Sort: "updated", Cursor: first.NextCursor}, fields: []string{"cursor"}},
		{name: "title cursor with created sort", p: todo.ListParams{Cursor: titleFirst.NextCursor}, fields: []string{"cursor"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.List(ctx, user, tc.p)
			wantFields(t, err, tc.fields...)
		})
	}
	t.Run("a valid cursor still works", func(t *testing.T) {
		page, err := s.List(ctx, user, todo.ListParams{Limit: 5, Cursor: first.NextCursor})
		if err != nil || len(page.Tasks) != 2 || page.NextCursor != "" {
			t.Fatalf("second page = %+v, %v", page, err)
		}
	})
	t.Run("another user's cursor shows only the caller's tasks", func(t *testing.T) {
		other := dbtest.CreateUser(t, testDB.DB, "")
		page, err := s.List(ctx, other, todo.ListParams{Cursor: first.NextCursor})
		if err != nil || len(page.Tasks) != 0 {
			t.Fatalf("page = %+v, %v", page, err)
		}
	})
}

// TestListTitleIgnoresCase checks that sort=title orders "alpha" before
// "Beta" before "zebra", ties (titles equal but for case) by id, in both
// directions and across pages.
func TestListTitleIgnoresCase(t *testing.T) {
	s, user := newStore(t)
	ids := map[string]int64{}
	for _, title := range []string{"zebra", "Beta", "alpha", "ALPHA", "Zebra"} {
		ids[title] = mustCreate(t, s, user, title, nil).ID
	}
	asc := []string{"alpha", "ALPHA", "Beta", "zebra", "Zebra"}
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	tests := []struct {
		order string
		limit int
		want  []string
	}{
		{todo.OrderAsc, 50, asc},
		{todo.OrderAsc, 1, asc},
		{todo.OrderAsc, 2, asc},
		{todo.OrderDesc, 50, desc},
		{todo.OrderDesc, 1, desc},
		{todo.OrderDesc, 2, desc},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/limit=%d", tc.order, tc.limit), func(t *testing.T) {
			got := walk(t, s, user, todo.ListParams{Sort: todo.SortTitle, Order: tc.order, Limit: tc.limit})
			want := make([]int64, len(tc.want))
			for i, title := range tc.want {
				want[i] = ids[title]
			}
			if !slices.Equal(got, want) {
				t.Fatalf("ids %v, want %v (%q)", got, want, tc.want)
			}
		})
	}
}

// queryLog records the SQL of every query run through a bun.DB.
type queryLog struct{ queries []string }

func (l *queryLog) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }
func (l *queryLog) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	l.queries = append(l.queries, e.Query)
}

// TestListTitleUsesIndex checks that a title page, first or continued, is
// read in order from tasks_user_title_idx rather than sorted: the index
// expression must be the sort expression. Sequential scans and sorts are
// disabled so that the small test table cannot make a sort look cheaper.
func TestListTitleUsesIndex(t *testing.T) {
	ctx := context.Background()
	_, user := newStore(t)
	for _, title := range []string{"b", "A", "c"} {
		mustCreate(t, todo.NewStore(testDB.DB), user, title, nil)
	}
	// A copy of the package's bun.DB (same pool) that records the store's SQL.
	var log queryLog
	s := todo.NewStore(testDB.DB.WithQueryHook(&log))
	for _, order := range []string{todo.OrderAsc, todo.OrderDesc} {
		first, err := s.List(ctx, user, todo.ListParams{Sort: todo.SortTitle, Order: order, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.List(ctx, user, todo.ListParams{Sort: todo.SortTitle, Order: order, Limit: 1, Cursor: first.NextCursor}); err != nil {
			t.Fatal(err)
		}
	}
	if len(log.queries) != 4 {
		t.Fatalf("recorded %d queries, want 4", len(log.queries))
	}
	names := []string{"asc first page", "asc next page", "desc first page", "desc next page"}
	for i, q := range log.queries {
		t.Run(names[i], func(t *testing.T) {
			plan := explain(t, q)
			if !strings.Contains(plan, "Index Scan") || !strings.Contains(plan, "tasks_user_title_idx") {
				t.Errorf("plan does not scan tasks_user_title_idx:\n%s\nquery: %s", plan, q)
			}
			if strings.Contains(plan, "Sort") {
				t.Errorf("plan sorts instead of reading the index in order:\n%s\nquery: %s", plan, q)
			}
			if strings.HasSuffix(names[i], "next page") && !strings.Contains(plan, "ROW(lower(title), id)") {
				t.Errorf("the cursor is not an index condition:\n%s\nquery: %s", plan, q)
			}
		})
	}
}

// explain returns the text plan of query with sequential scans and sorts
// disabled.
func explain(t *testing.T, query string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := testDB.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }() // only SET LOCAL to undo
	if _, err := tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.QueryContext(ctx, "EXPLAIN "+query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan.String()
}
