package todo_test

import (
	"context"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/todo"
	"github.com/taskchat/taskchat/pkg/validate"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "todo", &testDB)) }

func ptr[T any](v T) *T { return &v }

// newStore returns a store over the package's database and a fresh user.
func newStore(t *testing.T) (*todo.Store, string) {
	t.Helper()
	return todo.NewStore(testDB.DB), dbtest.CreateUser(t, testDB.DB, "")
}

// mustCreate creates a task or fails the test.
func mustCreate(t *testing.T, s *todo.Store, userID, title string, desc *string) todo.Task {
	t.Helper()
	task, err := s.Create(context.Background(), userID, todo.NewTask{Title: title, Description: desc})
	if err != nil {
		t.Fatalf("create %q: %v", title, err)
	}
	return task
}

// wantFields fails unless err is a *validate.Error naming exactly fields.
func wantFields(t *testing.T, err error, fields ...string) {
	t.Helper()
	list, ok := validate.Fields(err)
	if !ok {
		t.Fatalf("error = %v (%T), want *validate.Error on %q", err, err, fields)
	}
	got := make([]string, len(list))
	for i, f := range list {
		got[i] = f.Field
		if f.Message == "" {
			t.Errorf("field %q has no message", f.Field)
		}
	}
	if !reflect.DeepEqual(got, fields) {
		t.Fatalf("validation fields = %q, want %q (%v)", got, fields, err)
	}
}

// rawTask reads a task's row directly, bypassing the store's scoping.
func rawTask(t *testing.T, id int64) todo.Task {
	t.Helper()
	var task todo.Task
	if err := testDB.DB.NewSelect().Model(&task).Where("id = ?", id).Scan(context.Background()); err != nil {
		t.Fatalf("read task %d: %v", id, err)
	}
	task.CreatedAt, task.UpdatedAt = task.CreatedAt.UTC(), task.UpdatedAt.UTC()
	return task
}

// sameTask reports whether a and b hold the same values.
func sameTask(a, b todo.Task) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.Title == b.Title &&
		reflect.DeepEqual(a.Description, b.Description) && a.Completed == b.Completed &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// wantUTC fails unless the task's times are in time.UTC.
func wantUTC(t *testing.T, task todo.Task) {
	t.Helper()
	if task.CreatedAt.Location() != time.UTC || task.UpdatedAt.Location() != time.UTC {
		t.Errorf("task %d times not UTC: %v, %v", task.ID, task.CreatedAt, task.UpdatedAt)
	}
	if task.CreatedAt.IsZero() || task.UpdatedAt.IsZero() {
		t.Errorf("task %d has zero times", task.ID)
	}
}
