package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeStrict checks that decodeStrict never panics, answers only with
// an *Error, and that what it accepts is exactly what encoding/json decodes
// without loss: valid UTF-8 in, no U+FFFD that the body did not spell.
func FuzzDecodeStrict(f *testing.F) {
	for _, seed := range []string{
		`{"title":"a"}`, `{"title":"a\ud800"}`, `{"title":"\udc00"}`, `{"title":"\ud83d\ude00"}`,
		`{"title":"\\ud800"}`, `{"title":"\ud83d\u0041"}`, `{"title":"a","title":"b"}`,
		`{"title":"a","x":{"title":1}}`, `{"title":"\ud83d"}`, `{"title":"\uFFFD"}`, `[]`, `{`, "{\"title\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var dst struct {
			Title optional[string] `json:"title"`
		}
		err := decodeStrict(body, &dst)
		if err != nil {
			if e, known := toError(err); !known || e.Status != 400 {
				t.Fatalf("decodeStrict(%q) = %v, want an error answered 400", body, err)
			}
			return
		}
		if !utf8.ValidString(dst.Title.Value) {
			t.Fatalf("decodeStrict(%q) accepted invalid UTF-8 %q", body, dst.Title.Value)
		}
		spelled := bytes.Contains(body, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
		if strings.ContainsRune(dst.Title.Value, utf8.RuneError) && !spelled {
			t.Fatalf("decodeStrict(%q) replaced something with U+FFFD: %q", body, dst.Title.Value)
		}
		var members map[string]json.RawMessage
		if json.Unmarshal(body, &members) != nil {
			t.Fatalf("decodeStrict(%q) accepted what encoding/json refuses", body)
		}
	})
}
