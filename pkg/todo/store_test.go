package todo_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
)

func TestCreate(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	tests := []struct {
		name     string
		in       todo.NewTask
		wantT    string
		wantDesc *string
	}{
		{name: "title only", in: todo.NewTask{Title: "Buy groceries"}, wantT: "Buy groceries"},
		{name: "trimmed text stored", in: todo.NewTask{Title: "  Call mum \n", Description: ptr("\t about Sunday  ")}, wantT: "Call mum", wantDesc: ptr("about Sunday")},
		{name: "white-space description stored as null", in: todo.NewTask{Title: "x", Description: ptr("   ")}, wantT: "x"},
		{name: "longest texts", in: todo.NewTask{Title: strings.Repeat("😀", 200), Description: ptr(strings.Repeat("ж", 1000))}, wantT: strings.Repeat("😀", 200), wantDesc: ptr(strings.Repeat("ж", 1000))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Create(ctx, user, tc.in)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if got.ID < 1 || got.UserID != user || got.Title != tc.wantT || str(got.Description) != str(tc.wantDesc) || got.Completed {
				t.Errorf("created %+v, want title %q description %s", got, tc.wantT, str(tc.wantDesc))
			}
			wantUTC(t, got)
			if !got.CreatedAt.Equal(got.UpdatedAt) {
				t.Errorf("created_at %v != updated_at %v", got.CreatedAt, got.UpdatedAt)
			}
			if row := rawTask(t, got.ID); !sameTask(row, got) {
				t.Errorf("stored row %+v, returned %+v", row, got)
			}
		})
	}
}

func TestCreateErrors(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	t.Run("invalid title", func(t *testing.T) {
		_, err := s.Create(ctx, user, todo.NewTask{Title: " "})
		wantFields(t, err, "title")
	})
	t.Run("NUL in description", func(t *testing.T) {
		_, err := s.Create(ctx, user, todo.NewTask{Title: "t", Description: ptr("a\x00")})
		wantFields(t, err, "description")
	})
	t.Run("missing user", func(t *testing.T) {
		_, err := s.Create(ctx, "no-such-user", todo.NewTask{Title: "t"})
		if !errors.Is(err, todo.ErrUserNotFound) {
			t.Fatalf("err = %v, want ErrUserNotFound", err)
		}
	})
	t.Run("nothing stored", func(t *testing.T) {
		var n int
		if err := testDB.DB.NewRaw("SELECT count(*) FROM tasks WHERE user_id IN (?, 'no-such-user')", user).Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d rows stored by failed creates", n)
		}
	})
}

func TestGet(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	want := mustCreate(t, s, user, "read me", ptr("body"))
	got, err := s.Get(ctx, user, want.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !sameTask(got, want) {
		t.Errorf("Get = %+v, want %+v", got, want)
	}
	wantUTC(t, got)
	for _, id := range []int64{0, -1, want.ID + 1_000_000, 1<<63 - 1} {
		if _, err := s.Get(ctx, user, id); !errors.Is(err, todo.ErrNotFound) {
			t.Errorf("Get(%d) err = %v, want ErrNotFound", id, err)
		}
	}
}

// ageTask moves a task's timestamps into the past so a later change is
// visible without waiting for the clock.
func ageTask(t *testing.T, id int64) todo.Task {
	t.Helper()
	_, err := testDB.DB.NewRaw("UPDATE tasks SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour' WHERE id = ?", id).
		Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rawTask(t, id)
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	tests := []struct {
		name  string
		patch todo.Patch
		// want applies the expected change to the row before the update.
		want func(*todo.Task)
	}{
		{name: "title only", patch: todo.Patch{Title: ptr("  renamed ")}, want: func(x *todo.Task) { x.Title = "renamed" }},
		{name: "description only", patch: todo.Patch{Description: ptr(" new body ")}, want: func(x *todo.Task) { x.Description = ptr("new body") }},
		{name: "clear description", patch: todo.Patch{ClearDescription: true}, want: func(x *todo.Task) { x.Description = nil }},
		{name: "white-space description clears", patch: todo.Patch{Description: ptr("  ")}, want: func(x *todo.Task) { x.Description = nil }},
		{name: "completed only", patch: todo.Patch{Completed: ptr(true)}, want: func(x *todo.Task) { x.Completed = true }},
		{name: "everything", patch: todo.Patch{Title: ptr("all"), Description: ptr("d2"), Completed: ptr(true)}, want: func(x *todo.Task) {
			x.Title, x.Description, x.Completed = "all", ptr("d2"), true
		}},
		{name: "same values still touch updated_at", patch: todo.Patch{Title: ptr("orig")}, want: func(x *todo.Task) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := ageTask(t, mustCreate(t, s, user, "orig", ptr("body")).ID)
			got, err := s.Update(ctx, user, before.ID, tc.patch)
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			want := before
			tc.want(&want)
			if !got.UpdatedAt.After(before.UpdatedAt) {
				t.Errorf("updated_at %v not after %v", got.UpdatedAt, before.UpdatedAt)
			}
			want.UpdatedAt = got.UpdatedAt
			if !sameTask(got, want) {
				t.Errorf("Update = %+v\nwant     %+v", got, want)
			}
			wantUTC(t, got)
			if row := rawTask(t, got.ID); !sameTask(row, got) {
				t.Errorf("stored %+v, returned %+v", row, got)
			}
		})
	}
}

func TestUpdateErrors(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	task := mustCreate(t, s, user, "keep", ptr("body"))
	tests := []struct {
		name   string
		id     int64
		patch  todo.Patch
		fields []string
		err    error
	}{
		{name: "empty patch", id: task.ID, patch: todo.Patch{}, fields: []string{""}},
		{name: "empty title", id: task.ID, patch: todo.Patch{Title: ptr(""), Completed: ptr(true)}, fields: []string{"title"}},
		{name: "set and clear description", id: task.ID, patch: todo.Patch{Description: ptr("x"), ClearDescription: true}, fields: []string{"description"}},
		{name: "NUL title", id: task.ID, patch: todo.Patch{Title: ptr("\x00")}, fields: []string{"title"}},
		{name: "missing task", id: task.ID + 1_000_000, patch: todo.Patch{Completed: ptr(true)}, err: todo.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Update(ctx, user, tc.id, tc.patch)
			if tc.fields != nil {
				wantFields(t, err, tc.fields...)
			} else if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if row := rawTask(t, task.ID); !sameTask(row, task) {
				t.Errorf("row changed by a failed update: %+v", row)
			}
		})
	}
}

func TestToggleComplete(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	task := ageTask(t, mustCreate(t, s, user, "toggle", nil).ID)
	for i, want := range []bool{true, false} {
		got, err := s.ToggleComplete(ctx, user, task.ID)
		if err != nil {
			t.Fatalf("toggle %d: %v", i+1, err)
		}
		if got.Completed != want {
			t.Errorf("toggle %d: completed = %v, want %v", i+1, got.Completed, want)
		}
		if !got.UpdatedAt.After(task.UpdatedAt) {
			t.Errorf("toggle %d: updated_at %v not after %v", i+1, got.UpdatedAt, task.UpdatedAt)
		}
		if got.Title != task.Title || got.Description != nil || !got.CreatedAt.Equal(task.CreatedAt) {
			t.Errorf("toggle %d changed other fields: %+v", i+1, got)
		}
		wantUTC(t, got)
	}
	if _, err := s.ToggleComplete(ctx, user, task.ID+1_000_000); !errors.Is(err, todo.ErrNotFound) {
		t.Errorf("toggle missing: err = %v, want ErrNotFound", err)
	}
}

func TestSetCompleted(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	task := ageTask(t, mustCreate(t, s, user, "finish", nil).ID)

	first, err := s.SetCompleted(ctx, user, task.ID, true)
	if err != nil || !first.Completed {
		t.Fatalf("SetCompleted(true) = %+v, %v", first, err)
	}
	if !first.UpdatedAt.After(task.UpdatedAt) {
		t.Errorf("updated_at %v not after %v", first.UpdatedAt, task.UpdatedAt)
	}
	again, err := s.SetCompleted(ctx, user, task.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTask(again, first) {
		t.Errorf("second SetCompleted(true) changed the row: %+v, was %+v", again, first)
	}
	wantUTC(t, again)
	undone, err := s.SetCompleted(ctx, user, task.ID, false)
	if err != nil || undone.Completed || !undone.UpdatedAt.After(task.UpdatedAt) {
		t.Errorf("SetCompleted(false) = %+v, %v", undone, err)
	}
	if _, err := s.SetCompleted(ctx, user, task.ID+1_000_000, true); !errors.Is(err, todo.ErrNotFound) {
		t.Errorf("SetCompleted missing: err = %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	task := mustCreate(t, s, user, "gone", nil)
	other := mustCreate(t, s, user, "stays", nil)
	if err := s.Delete(ctx, user, task.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, user, task.ID); !errors.Is(err, todo.ErrNotFound) {
		t.Errorf("Get after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, user, task.ID); !errors.Is(err, todo.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, user, other.ID); err != nil {
		t.Errorf("other task: %v", err)
	}
}

// TestOtherUser checks that user B cannot see or change user A's task
// through any method, gets the same error as for a missing task, and leaves
// A's row exactly as it was.
func TestOtherUser(t *testing.T) {
	ctx := context.Background()
	s, alice := newStore(t)
	bob := dbtest.CreateUser(t, testDB.DB, "")
	mustCreate(t, s, bob, "bob's own", nil) // B has tasks of his own
	task := ageTask(t, mustCreate(t, s, alice, "alice's", ptr("private")).ID)

	calls := []struct {
		name string
		call func(userID string, id int64) error
	}{
		{"Get", func(u string, id int64) error { _, err := s.Get(ctx, u, id); return err }},
		{"Update", func(u string, id int64) error {
			_, err := s.Update(ctx, u, id, todo.Patch{Title: ptr("pwned"), ClearDescription: true, Completed: ptr(true)})
			return err
		}},
		{"ToggleComplete", func(u string, id int64) error { _, err := s.ToggleComplete(ctx, u, id); return err }},
		{"SetCompleted", func(u string, id int64) error { _, err := s.SetCompleted(ctx, u, id, true); return err }},
		{"Delete", func(u string, id int64) error { return s.Delete(ctx, u, id) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			foreign := c.call(bob, task.ID)
			missing := c.call(bob, task.ID+1_000_000)
			if !errors.Is(foreign, todo.ErrNotFound) || !errors.Is(missing, todo.ErrNotFound) {
				t.Errorf("foreign err = %v, missing err = %v; want ErrNotFound for both", foreign, missing)
			}
			if row := rawTask(t, task.ID); !sameTask(row, task) {
				t.Errorf("alice's row changed: %+v, was %+v", row, task)
			}
		})
	}
	t.Run("List", func(t *testing.T) {
		page, err := s.List(ctx, bob, todo.ListParams{Query: "alice"})
		if err != nil || len(page.Tasks) != 0 {
			t.Errorf("bob's list for %q = %+v, %v", "alice", page, err)
		}
	})
}

// TestInTransaction checks that a store over a bun.Tx works inside it and
// its changes vanish on rollback, and that times come back as UTC under a
// session time zone with an odd offset.
func TestInTransaction(t *testing.T) {
	ctx := context.Background()
	_, user := newStore(t)
	tx, err := testDB.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }() // undo the test's changes; ErrTxDone after an explicit Rollback is expected
	if _, err := tx.ExecContext(ctx, "SET LOCAL TimeZone = 'Asia/Kathmandu'"); err != nil {
		t.Fatal(err)
	}
	s := todo.NewStore(tx)
	task := mustCreate(t, s, user, "in tx", nil)
	wantUTC(t, task)
	got, err := s.ToggleComplete(ctx, user, task.ID)
	if err != nil || !got.Completed {
		t.Fatalf("toggle in tx = %+v, %v", got, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := todo.NewStore(testDB.DB).Get(ctx, user, task.ID); !errors.Is(err, todo.ErrNotFound) {
		t.Errorf("after rollback: err = %v, want ErrNotFound", err)
	}
}

// TestTranslateCheckViolation feeds a real CHECK violation (the store never
// lets one through) to the error translation.
func TestTranslateCheckViolation(t *testing.T) {
	ctx := context.Background()
	_, user := newStore(t)
	tests := []struct {
		name, sql string
		field     string
	}{
		{"title", "INSERT INTO tasks (user_id, title) VALUES (?, '')", "title"},
		{"description", "INSERT INTO tasks (user_id, title, description) VALUES (?, 't', repeat('d', 1001))", "description"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testDB.DB.NewRaw(tc.sql, user).Exec(ctx)
			if err == nil {
				t.Fatal("the CHECK constraint let the row in")
			}
			wantFields(t, todo.Translate("create task", err), tc.field)
		})
	}
	t.Run("other errors wrapped", func(t *testing.T) {
		_, err := testDB.DB.NewRaw("SELECT 1/0").Exec(ctx)
		got := todo.Translate("list tasks", err)
		if !strings.HasPrefix(got.Error(), "list tasks: ") || !errors.Is(got, err) {
			t.Errorf("Translate = %v", got)
		}
	})
}

// TestStoreUnavailable checks that every method reports a database that
// cannot be reached as pgdb.ErrUnavailable (answered 503 by the HTTP API),
// and that other database errors are not reported so.
func TestStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	s := todo.NewStore(dbtest.PoolAt(t, pgdb.Config{URL: dbtest.UnreachableURL}))
	const user = "someone"
	tests := []struct {
		name string
		call func() error
	}{
		{"Create", func() error { _, err := s.Create(ctx, user, todo.NewTask{Title: "t"}); return err }},
		{"Get", func() error { _, err := s.Get(ctx, user, 1); return err }},
		{"List", func() error { _, err := s.List(ctx, user, todo.ListParams{}); return err }},
		{"Update", func() error { _, err := s.Update(ctx, user, 1, todo.Patch{Title: ptr("t")}); return err }},
		{"Delete", func() error { return s.Delete(ctx, user, 1) }},
		{"ToggleComplete", func() error { _, err := s.ToggleComplete(ctx, user, 1); return err }},
		{"SetCompleted", func() error { _, err := s.SetCompleted(ctx, user, 1, true); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, pgdb.ErrUnavailable) {
				t.Fatalf("err = %v, want pgdb.ErrUnavailable", err)
			}
		})
	}
	t.Run("a failing statement is not an outage", func(t *testing.T) {
		_, err := testDB.DB.NewRaw("SELECT 1/0").Exec(ctx)
		if got := todo.Translate("list tasks", err); errors.Is(got, pgdb.ErrUnavailable) {
			t.Fatalf("Translate = %v, marked unavailable", got)
		}
	})
}
