package todo_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/todo"
	"github.com/taskchat/taskchat/pkg/validate"
)

func TestNewTaskNormalize(t *testing.T) {
	tests := []struct {
		name      string
		in        todo.NewTask
		wantTitle string
		wantDesc  *string
		fields    []string // nil: valid
	}{
		{name: "empty title", in: todo.NewTask{Title: ""}, fields: []string{"title"}},
		{name: "white-space title", in: todo.NewTask{Title: " \t\n\u00a0\u3000 "}, fields: []string{"title"}},
		{name: "one code point", in: todo.NewTask{Title: "x"}, wantTitle: "x"},
		{name: "200 code points", in: todo.NewTask{Title: strings.Repeat("a", 200)}, wantTitle: strings.Repeat("a", 200)},
		{name: "201 code points", in: todo.NewTask{Title: strings.Repeat("a", 201)}, fields: []string{"title"}},
		{name: "200 emoji count as 200", in: todo.NewTask{Title: strings.Repeat("😀", 200)}, wantTitle: strings.Repeat("😀", 200)},
		{name: "201 emoji", in: todo.NewTask{Title: strings.Repeat("😀", 201)}, fields: []string{"title"}},
		{name: "200 letters with padding trimmed", in: todo.NewTask{Title: "  \t" + strings.Repeat("é", 200) + "\n "}, wantTitle: strings.Repeat("é", 200)},
		{name: "inner white space kept", in: todo.NewTask{Title: "  buy  milk "}, wantTitle: "buy  milk"},
		{name: "NUL in title", in: todo.NewTask{Title: "a\x00b"}, fields: []string{"title"}},
		{name: "invalid UTF-8 title", in: todo.NewTask{Title: "a\xffb"}, fields: []string{"title"}},
		{name: "no description", in: todo.NewTask{Title: "t"}, wantTitle: "t"},
		{name: "empty description is null", in: todo.NewTask{Title: "t", Description: ptr("")}, wantTitle: "t"},
		{name: "white-space description is null", in: todo.NewTask{Title: "t", Description: ptr(" \t\n ")}, wantTitle: "t"},
		{name: "description trimmed", in: todo.NewTask{Title: "t", Description: ptr("  milk \n")}, wantTitle: "t", wantDesc: ptr("milk")},
		{name: "1000 code point description", in: todo.NewTask{Title: "t", Description: ptr(" " + strings.Repeat("ж", 1000) + " ")}, wantTitle: "t", wantDesc: ptr(strings.Repeat("ж", 1000))},
		{name: "1001 code point description", in: todo.NewTask{Title: "t", Description: ptr(strings.Repeat("ж", 1001))}, fields: []string{"description"}},
		{name: "NUL in description", in: todo.NewTask{Title: "t", Description: ptr("x\x00")}, fields: []string{"description"}},
		{name: "both wrong", in: todo.NewTask{Title: "", Description: ptr(strings.Repeat("d", 1001))}, fields: []string{"title", "description"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Normalize()
			if tc.fields != nil {
				wantFields(t, err, tc.fields...)
				return
			}
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if got.Title != tc.wantTitle {
				t.Errorf("title = %q, want %q", got.Title, tc.wantTitle)
			}
			if (got.Description == nil) != (tc.wantDesc == nil) || (got.Description != nil && *got.Description != *tc.wantDesc) {
				t.Errorf("description = %v, want %v", got.Description, tc.wantDesc)
			}
		})
	}
}

func TestPatchNormalize(t *testing.T) {
	tests := []struct {
		name   string
		in     todo.Patch
		want   todo.Patch
		fields []string
	}{
		{name: "empty patch", in: todo.Patch{}, fields: []string{""}},
		{name: "completed only", in: todo.Patch{Completed: ptr(false)}, want: todo.Patch{Completed: ptr(false)}},
		{name: "title trimmed", in: todo.Patch{Title: ptr(" new ")}, want: todo.Patch{Title: ptr("new")}},
		{name: "empty title", in: todo.Patch{Title: ptr("  ")}, fields: []string{"title"}},
		{name: "long title", in: todo.Patch{Title: ptr(strings.Repeat("😀", 201))}, fields: []string{"title"}},
		{name: "clear description", in: todo.Patch{ClearDescription: true}, want: todo.Patch{ClearDescription: true}},
		{name: "white-space description clears", in: todo.Patch{Description: ptr(" \n")}, want: todo.Patch{ClearDescription: true}},
		{name: "description trimmed", in: todo.Patch{Description: ptr(" d ")}, want: todo.Patch{Description: ptr("d")}},
		{name: "set and clear", in: todo.Patch{Description: ptr("d"), ClearDescription: true}, fields: []string{"description"}},
		{name: "NUL description", in: todo.Patch{Description: ptr("\x00")}, fields: []string{"description"}},
		{name: "long description", in: todo.Patch{Description: ptr(strings.Repeat("d", 1001))}, fields: []string{"description"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.Normalize()
			if tc.fields != nil {
				wantFields(t, err, tc.fields...)
				return
			}
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			if str(got.Title) != str(tc.want.Title) || str(got.Description) != str(tc.want.Description) ||
				got.ClearDescription != tc.want.ClearDescription || (got.Completed == nil) != (tc.want.Completed == nil) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// str renders an optional string for comparisons.
func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return "=" + *p
}

func TestValidationErrorMessage(t *testing.T) {
	_, err := todo.NewTask{Title: "", Description: ptr(strings.Repeat("d", 1001))}.Normalize()
	want := "invalid input: title: is required; description: must be at most 1000 characters"
	if err == nil || err.Error() != want {
		t.Fatalf("Error() = %v, want %q", err, want)
	}
	if _, ok := validate.Fields(err); !ok {
		t.Fatalf("not a *validate.Error: %T", err)
	}
}

func TestTaskJSON(t *testing.T) {
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	tests := []struct {
		name string
		task todo.Task
		want string
	}{
		{
			name: "null description",
			task: todo.Task{ID: 12, UserID: "u1", Title: "Buy groceries", CreatedAt: ts, UpdatedAt: ts},
			want: `{"id":12,"user_id":"u1","title":"Buy groceries","description":null,"completed":false,"created_at":"2026-03-04T05:06:07.123456Z","updated_at":"2026-03-04T05:06:07.123456Z"}`,
		},
		{
			name: "with description",
			task: todo.Task{ID: 1, UserID: "u1", Title: "t", Description: ptr("milk"), Completed: true, CreatedAt: ts, UpdatedAt: ts.Add(time.Second)},
			want: `{"id":1,"user_id":"u1","title":"t","description":"milk","completed":true,"created_at":"2026-03-04T05:06:07.123456Z","updated_at":"2026-03-04T05:06:08.123456Z"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.task)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("json = %s\nwant   %s", b, tc.want)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in   string
		want int
		bad  bool
	}{
		{in: "", want: todo.DefaultLimit},
		{in: "1", want: 1},
		{in: "200", want: 200},
		{in: "0", bad: true},
		{in: "-1", bad: true},
		{in: "201", bad: true},
		{in: "abc", bad: true},
		{in: "1.5", bad: true},
		{in: "99999999999999999999", bad: true},
	}
	for _, tc := range tests {
		t.Run("limit="+tc.in, func(t *testing.T) {
			got, err := todo.ParseLimit(tc.in)
			if tc.bad {
				wantFields(t, err, "limit")
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
