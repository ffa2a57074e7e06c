package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/validate"
)

// decodeJSON reads the request body into dst, a pointer to a struct whose
// fields all have json tags. In the order docs/api.md gives, it answers:
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
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	return decodeStrict(body, dst)
}

// readBody reads the raw request body, at most Config.BodyLimit+1 bytes of
// it: a body announced (Content-Length) or found to be larger is 413. Bodies
// are streamed (fiber.Config.StreamRequestBody), so nothing beyond what is
// read here is held in memory. c.Body() and c.Request().Body() would read
// the whole stream, however large, and c.Body() would also inflate a
// compressed body. Once the body has been read to its end, the connection
// may serve the next request (see closeUnreadBody).
func (s *Server) readBody(c *fiber.Ctx) ([]byte, error) {
	limit := s.cfg.BodyLimit
	tooLarge := &Error{Status: fiber.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge,
		Detail: fmt.Sprintf("the body must be at most %d bytes", limit)}
	req := c.Request()
	n := req.Header.ContentLength() // -1: chunked, -2: no body
	if n > limit {
		return nil, tooLarge
	}
	stream := req.BodyStream()
	if stream == nil {
		// Neither Content-Length nor chunked: there is no body, and
		// Body() is empty.
		body := req.Body()
		if len(body) > limit {
			return nil, tooLarge
		}
		c.Locals(keyBodyRead, true)
		return body, nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(max(n, 512), limit)+1))
	if _, err := buf.ReadFrom(io.LimitReader(stream, int64(limit)+1)); err != nil {
		// The client went away, was too slow (ReadTimeout) or broke the
		// chunked framing. fasthttp closes such a connection itself.
		return nil, &Error{Status: fiber.StatusBadRequest, Code: CodeBadRequest,
			Detail: "the request body could not be read"}
	}
	if buf.Len() > limit {
		return nil, tooLarge
	}
	// Fewer than limit+1 bytes: the stream has ended.
	c.Locals(keyBodyRead, true)
	return buf.Bytes(), nil
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
	if err := checkObject(body); err != nil {
		return err
	}
	names, err := memberNames(body)
	if err != nil {
		return err
	}
	known := jsonFields(reflect.TypeOf(dst).Elem())
	var unknown []string
	for _, name := range names {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		var v validate.Errors // bounded: a body may name thousands of fields
		for _, name := range unknown {
			v.Add(name, "is not a known field")
		}
		return v.Err()
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

// checkObject answers INVALID_JSON unless body is exactly one JSON object
// in valid UTF-8 with no escaped lone surrogate.
func checkObject(body []byte) error {
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
	// encoding/json would also turn an escaped lone surrogate ("\ud800")
	// into U+FFFD: that is not the text the client sent either.
	if hasLoneSurrogate(body) {
		return errInvalidJSON("the body holds an escaped lone UTF-16 surrogate")
	}
	return nil
}

// memberNames returns the member names of the JSON object body (already
// known to be one valid JSON object). A name given twice is INVALID_JSON:
// encoding/json would silently keep the last value, and other parsers the
// first.
func memberNames(body []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // the opening '{'
		return nil, errInvalidJSON("the body must be a JSON object")
	}
	var names []string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errInvalidJSON("the body must be a JSON object")
		}
		name, _ := tok.(string)
		if seen[name] {
			// The name is echoed back cut short: it can be as long as the body.
			return nil, errInvalidJSON(fmt.Sprintf("field %q appears more than once", validate.ShortName(name)))
		}
		seen[name] = true
		names = append(names, name)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, errInvalidJSON("the body must be a JSON object")
		}
	}
	return names, nil
}

// hasLoneSurrogate reports whether valid JSON text b has a \u escape of a
// UTF-16 surrogate that is not part of a high-low pair. Backslashes occur
// only inside strings in valid JSON, so no string tracking is needed.
func hasLoneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // skip the escaped character (it may be a backslash)
			continue
		}
		r := hex4(b[i+2 : i+6])
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low surrogate without a high one before it
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
				return true
			}
			if lo := hex4(b[i+3 : i+7]); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 decodes four hex digits (valid JSON guarantees them).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
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
