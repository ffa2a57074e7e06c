package validate_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/validate"
)

func TestErrorsEmptyIsNil(t *testing.T) {
	var v validate.Errors
	if err := v.Err(); err != nil {
		t.Fatalf("Err() of nothing = %v, want nil", err)
	}
}

func TestErrorsListInOrder(t *testing.T) {
	var v validate.Errors
	v.Add("title", "is required")
	v.Addf("limit", "must be at most %d", 200)
	v.Add("", "at least one field is required")
	err := fmt.Errorf("create task: %w", v.Err())
	fields, ok := validate.Fields(err)
	if !ok {
		t.Fatalf("Fields(%v) found no *validate.Error", err)
	}
	want := []validate.FieldError{
		{Field: "title", Message: "is required"},
		{Field: "limit", Message: "must be at most 200"},
		{Field: "", Message: "at least one field is required"},
	}
	if fmt.Sprint(fields) != fmt.Sprint(want) {
		t.Fatalf("fields = %v, want %v", fields, want)
	}
	if got := err.Error(); got != "create task: invalid input: title: is required; limit: must be at most 200; at least one field is required" {
		t.Fatalf("message = %q", got)
	}
}

func TestErrorsAreBounded(t *testing.T) {
	var v validate.Errors
	for i := range 5000 {
		v.Add(fmt.Sprintf("field-%04d", i), "is not a known field")
	}
	var e *validate.Error
	if !errors.As(v.Err(), &e) {
		t.Fatal("no *validate.Error")
	}
	if len(e.Fields) != validate.MaxFields+1 {
		t.Fatalf("%d fields listed, want %d plus one summary", len(e.Fields), validate.MaxFields)
	}
	last := e.Fields[len(e.Fields)-1]
	if last.Field != "" || last.Message != "and 4980 more problems not listed" {
		t.Fatalf("summary entry = %+v", last)
	}
	if v.Len() != 5000 {
		t.Fatalf("Len = %d, want 5000", v.Len())
	}
}

func TestLongFieldNamesAreCut(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	fields, _ := validate.Fields(validate.Field(long, "is not a known field"))
	got := fields[0].Field
	if len(got) > validate.MaxFieldLen || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Fatalf("cut name = %q (%d bytes)", got, len(got))
	}
	short := "title"
	if fields, _ := validate.Fields(validate.Field(short, "x")); fields[0].Field != short {
		t.Fatalf("short name changed to %q", fields[0].Field)
	}
}

func TestPrefix(t *testing.T) {
	var v validate.Errors
	v.Add("title", "is required")
	v.Add("params.limit", "must not be negative")
	v.Add("", "the body as a whole is wrong")
	got, ok := validate.Fields(validate.Prefix(fmt.Errorf("rename: %w", v.Err()), "params."))
	want := []validate.FieldError{
		{Field: "params.title", Message: "is required"},
		{Field: "params.limit", Message: "must not be negative"},
		{Message: "the body as a whole is wrong"},
	}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Prefix = %+v, want %+v", got, want)
	}
	other := errors.New("not a validation error")
	if err := validate.Prefix(other, "params."); err == nil || err.Error() != other.Error() || !errors.Is(err, other) {
		t.Errorf("Prefix of another error = %v, want it unchanged", err)
	}
	if err := validate.Prefix(nil, "params."); err != nil {
		t.Errorf("Prefix(nil) = %v", err)
	}
}
