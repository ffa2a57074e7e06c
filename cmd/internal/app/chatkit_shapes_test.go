package app_test

// The shapes of ChatKit's answers and stream events, written from
// openai/chatkit-python's chatkit/types.py (Thread, ThreadItem, Page, the
// ThreadStreamEvent and ThreadItemUpdate unions) and the serialisation of
// chatkit/server.py (exclude_none: a null field is left out). Every
// ChatKit answer and event of the tests goes through checkShape.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// shape checks one decoded JSON value; it returns the problems found, each
// naming its path.
type shape func(path string, v any) []string

// checkShape fails the test unless raw is JSON of shape s with no null
// anywhere.
func checkShape(t testing.TB, what string, raw []byte, s shape) {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", what, err, raw)
	}
	probs := noNulls("$", v)
	probs = append(probs, s("$", v)...)
	if len(probs) > 0 {
		t.Errorf("%s does not match ChatKit's types:\n  %s\nin %s", what, strings.Join(probs, "\n  "), raw)
	}
}

// noNulls finds nulls: ChatKit's server leaves null fields out.
func noNulls(path string, v any) []string {
	var out []string
	switch v := v.(type) {
	case nil:
		return []string{path + ": null (null fields are omitted)"}
	case map[string]any:
		for k, x := range v {
			out = append(out, noNulls(path+"."+k, x)...)
		}
	case []any:
		for i, x := range v {
			out = append(out, noNulls(fmt.Sprintf("%s[%d]", path, i), x)...)
		}
	}
	return out
}

// field is one member of an object shape.
type field struct {
	name     string
	required bool
	s        shape
}

func req(name string, s shape) field { return field{name, true, s} }
func opt(name string, s shape) field { return field{name, false, s} }

// object checks an object's members; members not listed are allowed
// (ChatKit's models ignore extra fields) but reported when strict.
func object(fields ...field) shape {
	return func(path string, v any) []string {
		m, ok := v.(map[string]any)
		if !ok {
			return []string{path + ": want an object"}
		}
		var out []string
		known := map[string]bool{}
		for _, f := range fields {
			known[f.name] = true
			x, ok := m[f.name]
			if !ok {
				if f.required {
					out = append(out, path+"."+f.name+": missing")
				}
				continue
			}
			out = append(out, f.s(path+"."+f.name, x)...)
		}
		for k := range m {
			if !known[k] {
				out = append(out, path+"."+k+": not a field of the type")
			}
		}
		return out
	}
}

func str(path string, v any) []string {
	if _, ok := v.(string); !ok {
		return []string{path + ": want a string"}
	}
	return nil
}

func nonEmpty(path string, v any) []string {
	if s, ok := v.(string); !ok || s == "" {
		return []string{path + ": want a non-empty string"}
	}
	return nil
}

func boolean(path string, v any) []string {
	if _, ok := v.(bool); !ok {
		return []string{path + ": want a boolean"}
	}
	return nil
}

func integer(path string, v any) []string {
	if f, ok := v.(float64); !ok || f != float64(int64(f)) {
		return []string{path + ": want an integer"}
	}
	return nil
}

// timestamp is a datetime as pydantic writes it: ISO 8601 with a zone.
func timestamp(path string, v any) []string {
	s, ok := v.(string)
	if !ok {
		return []string{path + ": want an ISO 8601 string"}
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return []string{path + ": not ISO 8601: " + s}
	}
	return nil
}

func literal(values ...string) shape {
	return func(path string, v any) []string {
		s, _ := v.(string)
		for _, w := range values {
			if s == w {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s: %v is not one of %v", path, v, values)}
	}
}

func anyObject(path string, v any) []string {
	if _, ok := v.(map[string]any); !ok {
		return []string{path + ": want an object"}
	}
	return nil
}

func array(elem shape) shape {
	return func(path string, v any) []string {
		a, ok := v.([]any)
		if !ok {
			return []string{path + ": want an array"}
		}
		var out []string
		for i, x := range a {
			out = append(out, elem(fmt.Sprintf("%s[%d]", path, i), x)...)
		}
		return out
	}
}

// union picks the shape by the value's "type".
func union(byType map[string]shape) shape {
	return func(path string, v any) []string {
		m, ok := v.(map[string]any)
		if !ok {
			return []string{path + ": want an object"}
		}
		typ, _ := m["type"].(string)
		s, ok := byType[typ]
		if !ok {
			return []string{fmt.Sprintf("%s.type: %q is not a known type", path, typ)}
		}
		return s(path, v)
	}
}

// pageShape is Page[T].
func pageShape(elem shape) shape {
	return object(req("data", array(elem)), req("has_more", boolean), opt("after", nonEmpty))
}

var (
	userContent = union(map[string]shape{
		"input_text": object(req("type", literal("input_text")), req("text", str)),
		"input_tag": object(req("type", literal("input_tag")), req("id", str), req("text", str), req("data", anyObject),
			opt("group", str), opt("interactive", boolean)),
	})
	outputText = object(req("type", literal("output_text")), req("text", str), req("annotations", array(anyObject)))
	taskShape  = union(map[string]shape{
		"custom": object(req("type", literal("custom")), opt("title", str), opt("icon", str), opt("content", str),
			opt("status_indicator", literal("none", "loading", "complete"))),
	})
	workflow = object(req("type", literal("custom", "reasoning")), req("tasks", array(taskShape)),
		opt("summary", func(path string, v any) []string {
			if m, ok := v.(map[string]any); ok {
				if _, ok := m["duration"]; ok {
					return object(req("duration", integer))(path, v)
				}
			}
			return object(req("title", str), opt("icon", str))(path, v)
		}), opt("expanded", boolean))

	itemBase = []field{req("id", nonEmpty), req("thread_id", nonEmpty), req("created_at", timestamp)}
	item     = union(map[string]shape{
		"user_message": object(append(itemBase, req("type", literal("user_message")), req("content", array(userContent)),
			opt("attachments", array(anyObject)), opt("quoted_text", str), req("inference_options", object(
				opt("tool_choice", object(req("id", str))), opt("model", str))))...),
		"assistant_message": object(append(itemBase, req("type", literal("assistant_message")), req("content", array(outputText)))...),
		"workflow":          object(append(itemBase, req("type", literal("workflow")), req("workflow", workflow))...),
	})
	status = union(map[string]shape{
		"active": object(req("type", literal("active"))),
		"locked": object(req("type", literal("locked")), opt("reason", str)),
		"closed": object(req("type", literal("closed")), opt("reason", str)),
	})
	threadShape = object(opt("title", str), req("id", nonEmpty), req("created_at", timestamp), opt("status", status),
		opt("metadata", anyObject), req("items", pageShape(item)))
	update = union(map[string]shape{
		"assistant_message.content_part.added":      object(req("type", str), req("content_index", integer), req("content", outputText)),
		"assistant_message.content_part.text_delta": object(req("type", str), req("content_index", integer), req("delta", str)),
		"assistant_message.content_part.done":       object(req("type", str), req("content_index", integer), req("content", outputText)),
		"workflow.task.added":                       object(req("type", str), req("task_index", integer), req("task", taskShape)),
		"workflow.task.updated":                     object(req("type", str), req("task_index", integer), req("task", taskShape)),
	})
	streamEvent = union(map[string]shape{
		"thread.created":      object(req("type", str), req("thread", threadShape)),
		"thread.updated":      object(req("type", str), req("thread", threadShape)),
		"thread.item.added":   object(req("type", str), req("item", item)),
		"thread.item.done":    object(req("type", str), req("item", item)),
		"thread.item.updated": object(req("type", str), req("item_id", nonEmpty), req("update", update)),
		"thread.item.removed": object(req("type", str), req("item_id", nonEmpty)),
		"stream_options":      object(req("type", str), req("stream_options", object(req("allow_cancel", boolean)))),
		"progress_update":     object(req("type", str), opt("icon", str), req("text", str)),
		"notice":              object(req("type", str), req("level", literal("info", "warning", "danger")), req("message", str), opt("title", str)),
		"error":               object(req("type", str), opt("code", literal("stream.error", "custom")), opt("message", str), opt("allow_retry", boolean)),
	})
	emptyObject = object()
)
