package chatkit_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/chatkit"
)

const (
	thread = "th1"
	run    = "run1"
	msgID  = "m1"
)

// clock is the renderer's time; stamp is how it reads in JSON.
var (
	clock = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	stamp = `"2026-01-02T03:04:05Z"`
)

// ev builds one event of the run.
func ev(t *testing.T, typ string, payload any) chat.Event {
	t.Helper()
	e, err := chat.NewEvent(typ, thread, run, payload)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func delta(t *testing.T, s string) chat.Event {
	return ev(t, chat.EventMessageDelta, chat.MessageDeltaData{RunID: run, MessageID: msgID, Delta: s})
}

func toolCall(t *testing.T, id, name, args string) chat.Event {
	return ev(t, chat.EventToolCall, chat.ToolCallData{RunID: run, CallID: id, Name: name, Arguments: json.RawMessage(args)})
}

func toolResult(t *testing.T, id, name, result string) chat.Event {
	return ev(t, chat.EventToolResult, chat.ToolResultData{RunID: run, CallID: id, Name: name, Result: json.RawMessage(result)})
}

func completed(t *testing.T, text string, calls ...chat.ToolCall) chat.Event {
	if calls == nil {
		calls = []chat.ToolCall{}
	}
	m := chat.Message{ID: msgID, ConversationID: thread, RunID: run, Role: chat.RoleAssistant, Content: text, ToolCalls: calls, CreatedAt: clock}
	return ev(t, chat.EventMessageCompleted, chat.MessageCompletedData{RunID: run, Message: m})
}

// rendered is what a renderer made of a run's events: each ChatKit event
// as JSON, and whether (and after which input) the run ended.
type rendered struct {
	events []string
	endAt  int // index of the input event that ended the run; -1: none
}

func render(t *testing.T, evs ...chat.Event) rendered {
	t.Helper()
	r := chatkit.NewRenderer(thread, "placeholder", func() time.Time { return clock })
	out := rendered{endAt: -1}
	for i, e := range evs {
		got, end, err := r.Render(e)
		if err != nil {
			t.Fatalf("Render(%s): %v", e.Type, err)
		}
		for _, g := range got {
			b, err := json.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			out.events = append(out.events, string(b))
		}
		if end {
			if out.endAt >= 0 {
				t.Fatalf("the run ended twice: at %d and %d", out.endAt, i)
			}
			out.endAt = i
		}
	}
	return out
}

// wantEvents fails unless got are the JSON values want, in order.
func wantEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	n := max(len(got), len(want))
	for i := range n {
		var g, w any
		gs, ws := "(none)", "(none)"
		if i < len(got) {
			gs = got[i]
			if err := json.Unmarshal([]byte(gs), &g); err != nil {
				t.Fatal(err)
			}
		}
		if i < len(want) {
			ws = strings.ReplaceAll(want[i], "$now", stamp)
			if err := json.Unmarshal([]byte(ws), &w); err != nil {
				t.Fatalf("want[%d] is not JSON: %v\n%s", i, err, ws)
			}
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d:\n got %s\nwant %s", i, gs, ws)
		}
	}
}

const (
	item   = `"id":"m1","thread_id":"th1","created_at":$now`
	wfItem = `"id":"wf_m1","thread_id":"th1","created_at":$now`
)

func textEvents(deltas ...string) []string {
	out := []string{
		`{"type":"thread.item.added","item":{` + item + `,"type":"assistant_message","content":[]}}`,
		`{"type":"thread.item.updated","item_id":"m1","update":{"type":"assistant_message.content_part.added","content_index":0,"content":{"type":"output_text","text":"","annotations":[]}}}`,
	}
	for _, d := range deltas {
		out = append(out, `{"type":"thread.item.updated","item_id":"m1","update":{"type":"assistant_message.content_part.text_delta","content_index":0,"delta":"`+d+`"}}`)
	}
	return out
}

func textDone(text string) []string {
	return []string{
		`{"type":"thread.item.updated","item_id":"m1","update":{"type":"assistant_message.content_part.done","content_index":0,"content":{"type":"output_text","text":"` + text + `","annotations":[]}}}`,
		`{"type":"thread.item.done","item":{` + item + `,"type":"assistant_message","content":[{"type":"output_text","text":"` + text + `","annotations":[]}]}}`,
	}
}

func TestRenderText(t *testing.T) {
	got := render(t,
		ev(t, chat.EventRunQueued, chat.RunQueuedData{RunID: run}),
		ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, Attempt: 1, MessageID: msgID}),
		delta(t, "Hel"), delta(t, "lo"),
		completed(t, "Hello"),
		ev(t, chat.EventRunCompleted, chat.RunCompletedData{RunID: run, Response: "Hello"}),
	)
	wantEvents(t, got.events, append(textEvents("Hel", "lo"), textDone("Hello")...)...)
	if got.endAt != 5 {
		t.Errorf("ended at event %d, want 5 (run.completed)", got.endAt)
	}
}

func TestRenderToolWorkflow(t *testing.T) {
	addArgs, addResult := `{"title":"Buy milk"}`, `{"task_id":2,"status":"created","title":"Buy milk"}`
	listResult := `[{"id":1},{"id":2}]`
	got := render(t,
		ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, Attempt: 1, MessageID: msgID}),
		delta(t, "Let me"), // thinking aloud before the calls: not kept
		toolCall(t, "c1", "add_task", addArgs),
		toolCall(t, "c2", "list_tasks", `{}`),
		toolResult(t, "c1", "add_task", addResult),
		toolResult(t, "c2", "list_tasks", listResult),
		toolResult(t, "c9", "list_tasks", listResult), // a call never announced: ignored
		delta(t, "Done"),
		completed(t, "Done",
			chat.ToolCall{ID: "c1", Name: "add_task", Arguments: json.RawMessage(addArgs), Result: json.RawMessage(addResult)},
			chat.ToolCall{ID: "c2", Name: "list_tasks", Arguments: json.RawMessage(`{}`), Result: json.RawMessage(listResult)}),
		ev(t, chat.EventRunCompleted, chat.RunCompletedData{RunID: run}),
	)
	task := func(title, status string) string {
		return `{"type":"custom","title":"` + title + `","status_indicator":"` + status + `"}`
	}
	update := func(kind string, i, title, status string) string {
		return `{"type":"thread.item.updated","item_id":"wf_m1","update":{"type":"workflow.task.` + kind + `","task_index":` + i + `,"task":` + task(title, status) + `}}`
	}
	want := textEvents("Let me")
	want = append(want,
		`{"type":"thread.item.removed","item_id":"m1"}`,
		`{"type":"thread.item.added","item":{`+wfItem+`,"type":"workflow","workflow":{"type":"custom","tasks":[],"expanded":false}}}`,
		update("added", "0", "Adding 'Buy milk'", "loading"),
		update("added", "1", "Looking at your tasks", "loading"),
		update("updated", "0", "Added 'Buy milk'", "complete"),
		update("updated", "1", "Listed 2 tasks", "complete"),
	)
	want = append(want, textEvents("Done")...)
	want = append(want,
		`{"type":"thread.item.done","item":{`+wfItem+`,"type":"workflow","workflow":{"type":"custom","tasks":[`+
			task("Added 'Buy milk'", "complete")+`,`+task("Listed 2 tasks", "complete")+
			`],"summary":{"title":"Worked on your tasks (2 steps)"},"expanded":false}}}`)
	want = append(want, textDone("Done")...)
	wantEvents(t, got.events, want...)
}

func TestRenderToolOnlyAnswer(t *testing.T) {
	args, result := `{"task_id":9}`, `{"status":"error","code":"TASK_NOT_FOUND","message":"no such task"}`
	got := render(t,
		ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, MessageID: msgID}),
		toolCall(t, "c1", "complete_task", args),
		toolResult(t, "c1", "complete_task", result),
		completed(t, "", chat.ToolCall{ID: "c1", Name: "complete_task", Arguments: json.RawMessage(args), Result: json.RawMessage(result)}),
		ev(t, chat.EventRunCompleted, chat.RunCompletedData{RunID: run}),
	)
	task := `{"type":"custom","title":"Could not complete task 9 (no such task)","status_indicator":"complete"}`
	wantEvents(t, got.events,
		`{"type":"thread.item.added","item":{`+wfItem+`,"type":"workflow","workflow":{"type":"custom","tasks":[],"expanded":false}}}`,
		`{"type":"thread.item.updated","item_id":"wf_m1","update":{"type":"workflow.task.added","task_index":0,"task":{"type":"custom","title":"Completing task 9","status_indicator":"loading"}}}`,
		`{"type":"thread.item.updated","item_id":"wf_m1","update":{"type":"workflow.task.updated","task_index":0,"task":`+task+`}}`,
		`{"type":"thread.item.done","item":{`+wfItem+`,"type":"workflow","workflow":{"type":"custom","tasks":[`+task+
			`],"summary":{"title":"Could not complete task 9 (no such task)"},"expanded":false}}}`,
	)
}

func TestRenderFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		data      chat.RunFailedData
		wantError string
	}{
		{"retryable", chat.RunFailedData{RunID: run, Error: chat.RunError{Code: chat.CodeAITimeout, Message: "the model took too long"}, Retryable: true},
			`{"type":"error","code":"custom","message":"The model took too long","allow_retry":true}`},
		{"not retryable", chat.RunFailedData{RunID: run, Error: chat.RunError{Code: "X", Message: "ünknown failure"}},
			`{"type":"error","code":"custom","message":"Ünknown failure","allow_retry":false}`},
		{"no message", chat.RunFailedData{RunID: run, Error: chat.RunError{Code: "X"}},
			`{"type":"error","code":"custom","message":"The assistant could not answer","allow_retry":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t,
				ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, MessageID: msgID}),
				toolCall(t, "c1", "list_tasks", `{}`),
				delta(t, "Half"),
				ev(t, chat.EventRunFailed, tc.data),
			)
			if got.endAt != 3 {
				t.Errorf("ended at %d, want 3 (run.failed)", got.endAt)
			}
			n := len(got.events)
			if n < 3 {
				t.Fatalf("events %v", got.events)
			}
			// What was streamed and not kept goes, then the error.
			wantEvents(t, got.events[n-3:],
				`{"type":"thread.item.removed","item_id":"wf_m1"}`,
				`{"type":"thread.item.removed","item_id":"m1"}`,
				tc.wantError)
		})
	}
}

func TestRenderCancelled(t *testing.T) {
	t.Run("partial text kept", func(t *testing.T) {
		got := render(t,
			ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, MessageID: msgID}),
			delta(t, "Half"),
			completed(t, "Half"),
			ev(t, chat.EventRunCancelled, chat.RunCancelledData{RunID: run}),
		)
		wantEvents(t, got.events, append(textEvents("Half"), textDone("Half")...)...)
		if got.endAt != 3 {
			t.Errorf("ended at %d, want 3 (run.cancelled)", got.endAt)
		}
	})
	t.Run("nothing kept", func(t *testing.T) {
		got := render(t,
			ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, MessageID: msgID}),
			delta(t, "Hal"),
			ev(t, chat.EventRunCancelled, chat.RunCancelledData{RunID: run}),
		)
		wantEvents(t, got.events, append(textEvents("Hal"), `{"type":"thread.item.removed","item_id":"m1"}`)...)
		if got.endAt != 2 {
			t.Errorf("ended at %d, want 2", got.endAt)
		}
	})
}

// A retried attempt takes back what the failed one streamed and starts
// its items afresh.
func TestRenderRestarted(t *testing.T) {
	got := render(t,
		ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, Attempt: 1, MessageID: msgID}),
		toolCall(t, "c1", "list_tasks", `{}`),
		delta(t, "Hal"),
		ev(t, chat.EventRunRestarted, chat.RunRestartedData{RunID: run, Attempt: 1}),
		ev(t, chat.EventRunStarted, chat.RunStartedData{RunID: run, Attempt: 2, MessageID: msgID}),
		delta(t, "Whole"),
		completed(t, "Whole"),
		ev(t, chat.EventRunCompleted, chat.RunCompletedData{RunID: run}),
	)
	i := indexOf(got.events, `"type":"thread.item.removed"`)
	if i < 0 {
		t.Fatalf("nothing removed: %v", got.events)
	}
	wantEvents(t, got.events[i:], append([]string{
		`{"type":"thread.item.removed","item_id":"wf_m1"}`,
		`{"type":"thread.item.removed","item_id":"m1"}`,
	}, append(textEvents("Whole"), textDone("Whole")...)...)...)
}

func indexOf(events []string, part string) int {
	for i, e := range events {
		if strings.Contains(e, part) {
			return i
		}
	}
	return -1
}

// An event whose payload cannot be read is an error; a run.failed one
// still ends the stream with an error event.
func TestRenderBadPayload(t *testing.T) {
	r := chatkit.NewRenderer(thread, msgID, func() time.Time { return clock })
	for _, typ := range []string{chat.EventRunStarted, chat.EventMessageDelta, chat.EventToolCall, chat.EventToolResult, chat.EventMessageCompleted} {
		out, end, err := r.Render(chat.Event{Type: typ, RunID: run, Data: json.RawMessage(`[`)})
		if err == nil || end || len(out) != 0 {
			t.Errorf("%s: Render = %v, %v, %v; want an error alone", typ, out, end, err)
		}
	}
	out, end, err := r.Render(chat.Event{Type: chat.EventRunFailed, RunID: run, Data: json.RawMessage(`"x"`)})
	if err == nil || !end || len(out) != 1 {
		t.Fatalf("run.failed: Render = %v, %v, %v", out, end, err)
	}
	if e, ok := out[0].(chatkit.ErrorEvent); !ok || !e.AllowRetry || e.Type != chatkit.EventError {
		t.Errorf("run.failed renders %#v", out[0])
	}
}

func TestTaskWords(t *testing.T) {
	for _, tc := range []struct {
		name, args, result string
		pending, done      string
	}{
		{"add_task", `{"title":"Buy milk"}`, `{"task_id":1,"status":"created","title":"Buy milk"}`, "Adding 'Buy milk'", "Added 'Buy milk'"},
		{"complete_task", `{"task_id":4}`, `{"task_id":4,"status":"completed","title":"Call mom"}`, "Completing task 4", "Completed 'Call mom'"},
		{"delete_task", `{"task_id":5}`, `{"task_id":5,"status":"deleted","title":"Old"}`, "Deleting task 5", "Deleted 'Old'"},
		{"update_task", `{"task_id":6,"title":"New"}`, `{"task_id":6,"status":"updated","title":"New"}`, "Updating task 6", "Updated 'New'"},
		{"list_tasks", `{}`, `[]`, "Looking at your tasks", "Found no tasks"},
		{"list_tasks", `{"status":"pending"}`, `[{"id":1}]`, "Looking at your tasks", "Listed 1 task"},
		{"list_tasks", `{}`, ` [{"id":1},{"id":2},{"id":3}]`, "Looking at your tasks", "Listed 3 tasks"},
		{"add_task", `{"title":""}`, `{"status":"error","code":"INVALID_TITLE","message":"title is blank"}`, "Adding ''", "Could not add '' (title is blank)"},
		{"delete_task", `not json`, `{"status":"error","code":"INVALID_ARGUMENTS"}`, "Deleting task 0", "Could not delete task 0"},
		{"send_email", `{}`, `{"status":"error","code":"UNKNOWN_TOOL","message":"no such tool"}`, "Using send_email", "Could not use send_email (no such tool)"},
		{"list_tasks", `{}`, `null`, "Looking at your tasks", "Could not list your tasks"},
	} {
		t.Run(tc.name+" "+tc.done, func(t *testing.T) {
			if got := chatkit.TaskPending(tc.name, json.RawMessage(tc.args)); got != tc.pending {
				t.Errorf("TaskPending = %q, want %q", got, tc.pending)
			}
			if got := chatkit.TaskDone(tc.name, json.RawMessage(tc.args), json.RawMessage(tc.result)); got != tc.done {
				t.Errorf("TaskDone = %q, want %q", got, tc.done)
			}
		})
	}
}
