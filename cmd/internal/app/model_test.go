package app_test

// End-to-end tests of the OpenAI-compatible provider: the whole stack
// (harness_test.go) configured through OPENAI_BASE_URL, as chatd is, with
// a fake model server that speaks the Chat Completions streaming format
// (pkg/llm/llmtest) and answers from a script.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// modelStack is a stack whose workers ask the fake model.
type modelStack struct {
	*stack
	fake *llmtest.Server
}

const testModel = "test-model"

// newModelStack starts the stack with the openai provider on a fake
// model; env adds settings.
func newModelStack(t *testing.T, env map[string]string) *modelStack {
	t.Helper()
	fake := llmtest.New(t)
	e := map[string]string{
		"OPENAI_BASE_URL":    fake.URL(),
		"OPENAI_API_KEY":     "sk-test",
		"AI_MODEL":           testModel,
		"AI_MAX_TOOL_ROUNDS": "3",
		"AI_TIMEOUT":         "10s",
	}
	for k, v := range env {
		e[k] = v
	}
	s := newStack(t, bustest.Embedded(t), stackOptions{env: e})
	if s.cfg.Agent.Provider != "openai" {
		t.Fatalf("AI_PROVIDER = %q with OPENAI_BASE_URL set, want openai by default", s.cfg.Agent.Provider)
	}
	return &modelStack{stack: s, fake: fake}
}

// since returns the model requests that arrived after the first n.
func (m *modelStack) since(n int) []llmtest.Request { return m.fake.Requests()[n:] }

// runEvents waits for the run's final event and returns its events.
func (m *modelStack) runEvents(t *testing.T, a accepted) []chat.Event {
	t.Helper()
	return waitFinalEvent(t, m.stack, a.ConversationID, 0, a.RunID)
}

// answerOf returns the run's assistant message.
func answerOf(t *testing.T, u *apiUser, a accepted) message {
	t.Helper()
	var found []message
	for _, m := range u.messages(t, a.ConversationID) {
		if m.RunID == a.RunID && m.Role == chat.RoleAssistant {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("run %s has %d assistant messages, want 1: %+v", a.RunID, len(found), found)
	}
	return found[0]
}

// toolResults returns the tool messages' contents of a model request, by
// call id.
func toolResults(r llmtest.Request) map[string]string {
	out := map[string]string{}
	for _, m := range r.Messages {
		if m.Role == "tool" {
			out[m.ToolCallID] = m.Content
		}
	}
	return out
}

// TestModelStreamsAndUsesTools covers the provider's normal work through
// the pipeline: streamed text, tool calls from fragments, several calls in
// one turn, more rounds after the results, the round cap, bad calls given
// back to the model, and what each request carries.
func TestModelStreamsAndUsesTools(t *testing.T) {
	m := newModelStack(t, nil)
	u := m.newUser(t)

	t.Run("streamed text", func(t *testing.T) {
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("Hello", ", I can ", "help with ", "your tasks."), Usage: &llmtest.Usage{PromptTokens: 321, CompletionTokens: 9}})
		st, resp := u.postStream(t, "hi there", "")
		if st == nil {
			t.Fatalf("POST = %d %s", resp.status, resp.body)
		}
		var got []string
		var runID string
		for {
			f := st.next(t)
			if f.event == chat.EventMessageDelta {
				var d chat.MessageDeltaData
				decodeJSON(t, []byte(f.data), &d)
				got = append(got, d.Delta)
			}
			if chat.FinalEvent(f.event) {
				if f.event != chat.EventRunCompleted {
					t.Fatalf("final event %s: %s", f.event, f.data)
				}
				var d chat.RunCompletedData
				decodeJSON(t, []byte(f.data), &d)
				runID = d.RunID
				break
			}
		}
		if want := []string{"Hello", ", I can ", "help with ", "your tasks."}; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("deltas on the stream = %q, want %q in order", got, want)
		}
		r := u.run(t, runID)
		msg := answerOf(t, u, accepted{ConversationID: r.ConversationID, RunID: runID})
		if msg.Content != strings.Join(got, "") || msg.Model != testModel {
			t.Errorf("stored answer = %q by %q, want the deltas' concatenation by %s", msg.Content, msg.Model, testModel)
		}
		if r.Usage == nil || r.Usage.PromptTokens != 321 || r.Usage.CompletionTokens != 9 {
			t.Errorf("run usage = %+v, want 321 prompt and 9 completion tokens", r.Usage)
		}
	})

	t.Run("tool calls over two rounds", func(t *testing.T) {
		n := len(m.fake.Requests())
		m.fake.Push(
			// Round 0: two calls in one turn, the first one's arguments in
			// three fragments.
			llmtest.Response{Chunks: llmtest.Chunks(
				llmtest.ToolCall(0, "call_milk", agent.ToolAddTask, `{"tit`, `le": "Buy `, `milk"}`),
				llmtest.ToolCall(1, "call_mom", agent.ToolAddTask, `{"title": "Call mom"}`),
			)},
			// Round 1, after the results: one more call.
			llmtest.Response{Chunks: llmtest.ToolCall(0, "call_list", agent.ToolListTasks, `{"status":"pending"}`)},
			llmtest.Response{Chunks: llmtest.Text("Added 'Buy milk' and 'Call mom'.")},
		)
		a := u.chatAsync(t, "remember milk and to call mom", "")
		evs := m.runEvents(t, a)
		wantSequence(t, evs, a.RunID, `run.queued run.started tool.call tool.result tool.call tool.result tool.call tool.result message.delta message.completed run.completed`)
		if !hasTitle(u.tasks(t), "Buy milk") || !hasTitle(u.tasks(t), "Call mom") {
			t.Fatalf("tasks = %+v, want both added", u.tasks(t))
		}
		msg := answerOf(t, u, a)
		if len(msg.ToolCalls) != 3 || msg.ToolCalls[0].ID != "call_milk" || !sameJSON(t, msg.ToolCalls[0].Arguments, []byte(`{"title":"Buy milk"}`)) {
			t.Errorf("stored tool calls = %+v", msg.ToolCalls)
		}
		reqs := m.since(n)
		if len(reqs) != 3 {
			t.Fatalf("%d model requests, want 3", len(reqs))
		}
		// The second request ends with the round: the assistant's two
		// calls, then their results in order.
		tail := reqs[1].Messages[len(reqs[1].Messages)-3:]
		if tail[0].Role != "assistant" || len(tail[0].ToolCalls) != 2 || tail[0].ToolCalls[1].ID != "call_mom" ||
			tail[1].ToolCallID != "call_milk" || tail[2].ToolCallID != "call_mom" || !strings.Contains(tail[1].Content, `"created"`) {
			t.Errorf("round 1's request ends with %+v", tail)
		}
		if res := toolResults(reqs[2])["call_list"]; !strings.Contains(res, "Buy milk") || !strings.Contains(res, "Call mom") {
			t.Errorf("list result given to the model = %s", res)
		}
	})

	t.Run("bad calls go back to the model", func(t *testing.T) {
		n := len(m.fake.Requests())
		m.fake.Push(
			llmtest.Response{Chunks: llmtest.Chunks(
				llmtest.ToolCall(0, "call_x", "launch_rockets", `{}`),
				llmtest.ToolCall(1, "call_json", agent.ToolAddTask, `{"title": "unterminated`),
				llmtest.ToolCall(2, "call_gone", agent.ToolCompleteTask, `{"task_id": 987654321}`),
			)},
			llmtest.Response{Chunks: llmtest.Text("Sorry, I could not do that.")},
		)
		a := u.chatAsync(t, "do odd things", "")
		u.waitRun(t, a.RunID, "completed")
		reqs := m.since(n)
		if len(reqs) != 2 {
			t.Fatalf("%d model requests, want 2", len(reqs))
		}
		results := toolResults(reqs[1])
		for id, code := range map[string]string{"call_x": agent.CodeUnknownTool, "call_json": agent.CodeInvalidArguments, "call_gone": agent.CodeTaskNotFound} {
			var r struct{ Status, Code string }
			if err := json.Unmarshal([]byte(results[id]), &r); err != nil || r.Status != agent.StatusError || r.Code != code {
				t.Errorf("result of %s given to the model = %s, want an error %s", id, results[id], code)
			}
		}
		if msg := answerOf(t, u, a); msg.Content != "Sorry, I could not do that." || len(msg.ToolCalls) != 3 {
			t.Errorf("answer = %+v", msg)
		}
	})

	t.Run("round cap", func(t *testing.T) {
		for i := range 4 {
			m.fake.Push(llmtest.Response{Chunks: llmtest.ToolCall(0, "call_loop_"+string(rune('a'+i)), agent.ToolListTasks, `{}`)})
		}
		a := u.chatAsync(t, "list forever", "")
		r := u.waitRun(t, a.RunID, "failed")
		if r.Error == nil || r.Error.Code != chat.CodeToolRoundsCapped {
			t.Fatalf("run error = %+v, want %s", r.Error, chat.CodeToolRoundsCapped)
		}
	})

	t.Run("the request", func(t *testing.T) {
		// A conversation with history, and another user's conversation
		// going on beside it.
		other := m.newUser(t)
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("First answer.")})
		first := u.chatAsync(t, "first question", "")
		u.waitRun(t, first.RunID, "completed")
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("Other user's answer.")})
		o := other.chatAsync(t, "a secret of the other user", "")
		other.waitRun(t, o.RunID, "completed")

		n := len(m.fake.Requests())
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("Second answer.")})
		second := u.chatAsync(t, "second question", first.ConversationID)
		u.waitRun(t, second.RunID, "completed")
		req := m.since(n)[0]
		if req.Model != testModel || !req.Stream || !req.IncludeUsage {
			t.Errorf("request model %q stream %v include_usage %v", req.Model, req.Stream, req.IncludeUsage)
		}
		if len(req.Tools) != 5 {
			t.Errorf("%d tools, want the five", len(req.Tools))
		}
		var got []string
		for _, msg := range req.Messages {
			got = append(got, msg.Role+": "+msg.Content)
		}
		want := []string{
			"system: " + agent.DefaultSystemPrompt,
			"user: first question",
			"assistant: First answer.",
			"user: second question",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("messages:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if strings.Contains(string(req.Body), "other user") {
			t.Error("the request carries the other user's conversation")
		}
	})
}

// TestModelFailures covers what goes wrong with a model: retried errors
// before the stream, a stream cut mid-answer, a model that cannot be
// reached, a call that takes too long, and the user's cancel.
func TestModelFailures(t *testing.T) {
	m := newModelStack(t, map[string]string{"AI_TIMEOUT": "1s"})
	u := m.newUser(t)

	t.Run("429 with Retry-After, then success", func(t *testing.T) {
		n := len(m.fake.Requests())
		m.fake.Push(
			llmtest.Response{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "0.2"}, Error: "Rate limit reached"},
			llmtest.Response{Chunks: llmtest.Text("Done after a wait.")},
		)
		a := u.chatAsync(t, "hello", "")
		r := u.waitRun(t, a.RunID, "completed")
		evs := m.runEvents(t, a)
		if r.Attempts != 1 || len(m.since(n)) != 2 {
			t.Errorf("attempts %d, model requests %d; want 1 attempt, 2 requests (the SDK's retry)", r.Attempts, len(m.since(n)))
		}
		wantSequence(t, evs, a.RunID, `run.queued run.started message.delta message.completed run.completed`)
	})

	t.Run("500 twice, then success", func(t *testing.T) {
		n := len(m.fake.Requests())
		m.fake.Push(
			llmtest.Response{Status: 500, Error: "internal"},
			llmtest.Response{Status: 500, Error: "internal"},
			llmtest.Response{Chunks: llmtest.Text("Third time lucky.")},
		)
		a := u.chatAsync(t, "hello", "")
		u.waitRun(t, a.RunID, "completed")
		if got := len(m.since(n)); got != 3 {
			t.Errorf("%d model requests, want 3", got)
		}
		if msg := answerOf(t, u, a); msg.Content != "Third time lucky." {
			t.Errorf("answer %q", msg.Content)
		}
	})

	t.Run("unreachable through the retries", func(t *testing.T) {
		for range 3 {
			m.fake.Push(llmtest.Response{Status: 503, Error: "overloaded"})
		}
		a := u.chatAsync(t, "hello", "")
		r := u.waitRun(t, a.RunID, "failed")
		if r.Error == nil || r.Error.Code != chat.CodeAIUnavailable || r.Attempts != 1 {
			t.Fatalf("run = %+v, want failed with %s after one attempt", r, chat.CodeAIUnavailable)
		}
		evs := m.runEvents(t, a)
		var d chat.RunFailedData
		decodeJSON(t, evs[len(evs)-1].Data, &d)
		if d.Error.Code != chat.CodeAIUnavailable || !d.Retryable {
			t.Errorf("run.failed = %+v, want %s, retryable", d, chat.CodeAIUnavailable)
		}
	})

	t.Run("stream cut mid-answer", func(t *testing.T) {
		m.fake.Push(
			llmtest.Response{Chunks: llmtest.Text("The first ", "attempt ", "breaks"), CutAfter: 2},
			llmtest.Response{Chunks: llmtest.Text("The whole ", "answer.")},
		)
		a := u.chatAsync(t, "hello", "")
		r := u.waitRun(t, a.RunID, "completed")
		evs := m.runEvents(t, a)
		wantSequence(t, evs, a.RunID, `run.queued run.started message.delta message.delta run.restarted run.started message.delta message.delta message.completed run.completed`)
		if r.Attempts != 2 {
			t.Errorf("attempts = %d, want 2", r.Attempts)
		}
		// The partial text is not an answer: one message, the retry's.
		if msg := answerOf(t, u, a); msg.Content != "The whole answer." {
			t.Errorf("answer %q, want the second attempt's", msg.Content)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("Let me think", "…"), Hold: hold, HoldAfter: 1})
		cancelled := m.fake.Cancelled()
		a := u.chatAsync(t, "hello", "")
		r := u.waitRun(t, a.RunID, "failed")
		if r.Error == nil || r.Error.Code != chat.CodeAITimeout {
			t.Fatalf("run error = %+v, want %s", r.Error, chat.CodeAITimeout)
		}
		m.fake.WaitCancelled(t, cancelled+1)
		for _, msg := range u.messages(t, a.ConversationID) {
			if msg.Role == chat.RoleAssistant {
				t.Errorf("a timed-out run stored an answer: %+v", msg)
			}
		}
	})

	t.Run("cancel mid-stream", func(t *testing.T) {
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("Here is the start", " and the rest"), Hold: hold, HoldAfter: 1})
		cancelled := m.fake.Cancelled()
		st, resp := u.postStream(t, "tell me a long story", "")
		if st == nil {
			t.Fatalf("POST = %d %s", resp.status, resp.body)
		}
		var runID string
		for runID == "" {
			if f := st.next(t); f.event == chat.EventMessageDelta {
				var d chat.MessageDeltaData
				decodeJSON(t, []byte(f.data), &d)
				runID = d.RunID
			}
		}
		asked := time.Now()
		u.do(t, http.MethodPost, u.path("/runs/"+runID+"/cancel"), "").want(t, http.StatusAccepted)
		frames := st.untilFinal(t, runID)
		t.Logf("run.cancelled %s after the cancel request", time.Since(asked).Round(time.Millisecond))
		if last := frames[len(frames)-1]; last.event != chat.EventRunCancelled {
			t.Fatalf("final event %s, want %s", last.event, chat.EventRunCancelled)
		}
		m.fake.WaitCancelled(t, cancelled+1) // the model call itself was cancelled
		r := u.run(t, runID)
		if msg := answerOf(t, u, accepted{ConversationID: r.ConversationID, RunID: runID}); msg.Content != "Here is the start" || msg.Model != testModel {
			t.Errorf("kept answer %q by %q, want the text produced before the cancel", msg.Content, msg.Model)
		}
	})

	t.Run("the conversation goes on", func(t *testing.T) {
		m.fake.Push(llmtest.Response{Chunks: llmtest.Text("Still here.")})
		if a := u.chat(t, "are you there?", ""); a.Response != "Still here." {
			t.Errorf("answer %q", a.Response)
		}
	})
}

// TestModelRejectedIsNotRetried: a 4xx other than 408/409/429 is a
// setting to fix (a wrong key, an unknown model): the run fails at once
// with AI_REJECTED, not retryable.
func TestModelRejectedIsNotRetried(t *testing.T) {
	m := newModelStack(t, nil)
	u := m.newUser(t)
	m.fake.Push(llmtest.Response{Status: 404, Error: "The model `test-model` does not exist"})
	a := u.chatAsync(t, "hello", "")
	r := u.waitRun(t, a.RunID, "failed")
	if r.Error == nil || r.Error.Code != chat.CodeAIRejected || r.Attempts != 1 || len(m.fake.Requests()) != 1 {
		t.Fatalf("run = %+v after %d requests, want failed %s at once", r, len(m.fake.Requests()), chat.CodeAIRejected)
	}
	evs := m.runEvents(t, a)
	var d chat.RunFailedData
	decodeJSON(t, evs[len(evs)-1].Data, &d)
	if d.Retryable {
		t.Errorf("run.failed %+v is retryable", d)
	}
	// The user sees plain words; the details are in the log.
	if strings.Contains(r.Error.Message, "does not exist") || !strings.Contains(m.logs.String(), "does not exist") {
		t.Errorf("error message %q; the server's words belong in the log", r.Error.Message)
	}
}

// TestModelRunTimeout: AI_RUN_TIMEOUT bounds the whole attempt, however
// the time is spent (here a model that keeps calling tools, slowly): the
// run fails with AI_TIMEOUT and its model call is cancelled.
func TestModelRunTimeout(t *testing.T) {
	m := newModelStack(t, map[string]string{"AI_RUN_TIMEOUT": "1s", "AI_TIMEOUT": "30s", "AI_MAX_TOOL_ROUNDS": "50"})
	u := m.newUser(t)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	m.fake.Push(
		llmtest.Response{Chunks: llmtest.ToolCall(0, "call_1", agent.ToolListTasks, `{}`)},
		llmtest.Response{Chunks: llmtest.Text("Still thinking"), Hold: hold},
	)
	a := u.chatAsync(t, "take your time", "")
	r := u.waitRun(t, a.RunID, "failed")
	if r.Error == nil || r.Error.Code != chat.CodeAITimeout || !strings.Contains(r.Error.Message, "longer than 1s") {
		t.Fatalf("run error = %+v, want %s naming the run's bound", r.Error, chat.CodeAITimeout)
	}
	m.fake.WaitCancelled(t, 1)
	evs := m.runEvents(t, a)
	wantSequence(t, evs, a.RunID, `run.queued run.started tool.call tool.result run.failed`)
}
