// Package validate is the one shape of "this input breaks a rule" shared by
// every domain package: an *Error listing each offending field with a
// message meant for the person who sent it. Domain packages build it with
// Errors; the HTTP edge answers it with 400 VALIDATION_FAILED, and the
// chat workers hand it back to the model as a tool error.
//
// An Error is bounded whatever the input: at most MaxFields entries (the
// rest are counted in one last entry) and field names cut to MaxFieldLen
// bytes, since a hostile body can name thousands of unknown fields.
package validate

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds of an Error.
const (
	// MaxFields is the most field errors an Error lists; past it, one last
	// entry with an empty Field says how many were left out.
	MaxFields = 20
	// MaxFieldLen bounds a field name in bytes; longer names (echoed from
	// input, like unknown JSON members) are cut at a rune boundary and end
	// in "…".
	MaxFieldLen = 64
)

// FieldError is one rule violation. Field is a stable name of the input
// field ("title", "limit", "task_id"), or "" when the input as a whole is
// wrong.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error reports input that breaks the rules; Fields lists the violations
// found, in a stable order, bounded as the package comment says.
type Error struct {
	Fields []FieldError
}

// Error joins the violations into one line.
func (e *Error) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		if f.Field == "" {
			parts[i] = f.Message
		} else {
			parts[i] = f.Field + ": " + f.Message
		}
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Errors collects field errors; its zero value is empty and ready.
type Errors struct {
	fields  []FieldError
	omitted int
}

// Add records that field breaks a rule, explained by msg.
func (v *Errors) Add(field, msg string) {
	if len(v.fields) >= MaxFields {
		v.omitted++
		return
	}
	v.fields = append(v.fields, FieldError{Field: cut(field), Message: msg})
}

// Addf is Add with a formatted message.
func (v *Errors) Addf(field, format string, args ...any) { v.Add(field, fmt.Sprintf(format, args...)) }

// Len is the number of violations recorded, omitted ones included.
func (v *Errors) Len() int { return len(v.fields) + v.omitted }

// Err returns nil when nothing was recorded, else an *Error.
func (v *Errors) Err() error {
	if v.Len() == 0 {
		return nil
	}
	fields := append([]FieldError(nil), v.fields...)
	if v.omitted > 0 {
		fields = append(fields, FieldError{Message: fmt.Sprintf("and %d more problems not listed", v.omitted)})
	}
	return &Error{Fields: fields}
}

// Field returns an *Error about one field.
func Field(field, msg string) error {
	var v Errors
	v.Add(field, msg)
	return v.Err()
}

// Fields returns the field errors of err when it is (or wraps) an *Error.
func Fields(err error) ([]FieldError, bool) {
	var e *Error
	if !errors.As(err, &e) {
		return nil, false
	}
	return e.Fields, true
}

// Prefix returns err with prefix put before each field name when err is (or
// wraps) an *Error, and err itself otherwise: a field the store names
// "title" is "params.title" in a request that nests it. Names that already
// start with prefix are left as they are.
func Prefix(err error, prefix string) error {
	fields, ok := Fields(err)
	if !ok {
		return err
	}
	var v Errors
	for _, f := range fields {
		if f.Field == "" {
			v.fields = append(v.fields, f) // the summary line: it already counts
			continue
		}
		if !strings.HasPrefix(f.Field, prefix) {
			f.Field = prefix + f.Field
		}
		v.Add(f.Field, f.Message)
	}
	return v.Err()
}

// ShortName returns field cut to MaxFieldLen bytes, as an Error lists it;
// use it wherever else an input's name is echoed back.
func ShortName(field string) string { return cut(field) }

func cut(field string) string {
	if len(field) <= MaxFieldLen {
		return field
	}
	n := MaxFieldLen - len("…")
	for n > 0 && !utf8.RuneStart(field[n]) {
		n--
	}
	return field[:n] + "…"
}
