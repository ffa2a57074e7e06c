package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// decodeJSON reads the request body into dst, a pointer to a struct whose
// fields all have json tags. In the order API.md gives, it answers:
// 415 for a body that is not application/json (or is compressed), 413 for a
// body over Config.BodyLimit, 400 INVALID_JSON for invalid UTF-8, malformed
// JSON, trailing data, a non-object or a wrong type, and 400
// VALIDATION_FAILED naming each unknown field. Field names match exactly
// (encoding/json alone would also accept "Title" for "title").
func (s *Server) decodeJSON(c *fiber.Ctx, dst any) error {
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return &Error{Status: fiber.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Detail: "the body must be application/json"}
	}
	if ce := c.Get(fiber.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		return &Error{Status: fiber.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Detail: "compressed bodies are not accepted"}
	}
	// The raw body: c.Body() would inflate a compressed one.
	body := c.Request().Body()
	if len(body) > s.cfg.BodyLimit {
		return &Error{Status: fiber.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
			Detail: fmt.Sprintf("the body must be at most %d bytes", s.cfg.BodyLimit)}
	}
	return decodeStrict(body, dst)
}

// isJSON accepts application/json with no parameter but a UTF-8 charset.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// decodeStrict decodes one JSON object from body into dst.
func decodeStrict(body []byte, dst any) error {
	// encoding/json would silently turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(body) {
		return errInvalidJSON("the body is not valid UTF-8")
	}
	// Exactly one JSON value: this also refuses an empty body and trailing data.
	if !json.Valid(body) {
		return errInvalidJSON("the body is not one well-formed JSON value")
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return errInvalidJSON("the body must be a JSON object")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return errInvalidJSON("the body must be a JSON object")
	}
	known := jsonFields(reflect.TypeOf(dst).Elem())
	var unknown []FieldError
	for name := range members {
		if !known[name] {
			unknown = append(unknown, FieldError{Field: name, Message: "is not a known field"})
		}
	}
	if len(unknown) > 0 {
		slices.SortFunc(unknown, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
		return errValidation(unknown...)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return errInvalidJSON(fmt.Sprintf("field %q has the wrong type", te.Field))
		}
		return errInvalidJSON("a field has the wrong type")
	}
	return nil
}

var jsonFieldCache sync.Map // reflect.Type → map[string]bool

// jsonFields returns the json names of struct type t's fields.
func jsonFields(t reflect.Type) map[string]bool {
	if v, ok := jsonFieldCache.Load(t); ok {
		return v.(map[string]bool)
	}
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	jsonFieldCache.Store(t, names)
	return names
}

// optional is a JSON field that may be absent, null or a value.
type optional[T any] struct {
	Set   bool // the field was present
	Null  bool // its value was null
	Value T
}

// UnmarshalJSON records presence and null; encoding/json calls it for null
// too, because optional is not a pointer.
func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// ptr returns a pointer to the value when the field was set and not null.
func (o optional[T]) ptr() *T {
	if !o.Set || o.Null {
		return nil
	}
	v := o.Value
	return &v
}
