package llmtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// The tests drive the fake through the official SDK, so a wire-format slip
// shows up as the SDK failing to parse, not as a hand-written client agreeing
// with a hand-written server.

// client returns the SDK's chat completions client for s, without retries so
// every scripted error reaches the test.
func client(s *llmtest.Server) *openai.ChatCompletionService {
	c := openai.NewChatCompletionService(
		option.WithBaseURL(s.URL()),
		option.WithAPIKey("k"),
		option.WithHTTPClient(&http.Client{}),
		option.WithMaxRetries(0),
	)
	return &c
}

// params is a minimal streaming request.
func params(includeUsage bool) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model:    "gpt-test",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	}
	if includeUsage {
		p.StreamOptions.IncludeUsage = openai.Bool(true)
	}
	return p
}

// drain reads a whole stream into the SDK's accumulator and returns it with
// the chunks seen and the stream's error (or the accumulator's refusal).
func drain(stream *ssestream.Stream[openai.ChatCompletionChunk]) (openai.ChatCompletionAccumulator, []openai.ChatCompletionChunk, error) {
	defer func() { _ = stream.Close() }() // read to the end or failed; nothing left to release
	var acc openai.ChatCompletionAccumulator
	var chunks []openai.ChatCompletionChunk
	for stream.Next() {
		c := stream.Current()
		if !acc.AddChunk(c) {
			return acc, chunks, fmt.Errorf("accumulator rejected chunk %d: %s", len(chunks), c.RawJSON())
		}
		chunks = append(chunks, c)
	}
	return acc, chunks, stream.Err()
}

func TestTextStream(t *testing.T) {
	s := llmtest.New(t)
	s.Push(llmtest.Response{
		Chunks: llmtest.Text("Hel", "lo", "!"),
		Usage:  &llmtest.Usage{PromptTokens: 7, CompletionTokens: 3},
	})

	acc, chunks, err := drain(client(s).NewStreaming(context.Background(), params(true)))
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	// three text chunks, the finish chunk, the usage chunk
	if len(chunks) != 5 {
		t.Fatalf("got %d chunks, want 5", len(chunks))
	}
	var deltas []string
	for _, c := range chunks[:3] {
		deltas = append(deltas, c.Choices[0].Delta.Content)
	}
	if want := []string{"Hel", "lo", "!"}; !slices.Equal(deltas, want) {
		t.Errorf("deltas = %q, want %q", deltas, want)
	}
	if got := chunks[0].Choices[0].Delta.Role; got != "assistant" {
		t.Errorf("first delta role = %q, want assistant", got)
	}
	for i, c := range chunks {
		if c.ID != chunks[0].ID || c.ID == "" || string(c.Object) != "chat.completion.chunk" || c.Model != "gpt-test" || c.Created == 0 {
			t.Errorf("chunk %d envelope: id %q object %q model %q created %d", i, c.ID, c.Object, c.Model, c.Created)
		}
	}
	if got := acc.Choices[0].Message.Content; got != "Hello!" {
		t.Errorf("accumulated content = %q", got)
	}
	if got := acc.Choices[0].FinishReason; got != "stop" {
		t.Errorf("finish reason = %q, want stop", got)
	}
	if u := acc.Usage; u.PromptTokens != 7 || u.CompletionTokens != 3 || u.TotalTokens != 10 {
		t.Errorf("usage = %+v, want 7+3=10", u)
	}
	if last := chunks[4]; len(last.Choices) != 0 || !last.JSON.Usage.Valid() {
		t.Errorf("usage chunk: choices %d, usage %s", len(last.Choices), last.JSON.Usage.Raw())
	}
}

func TestUsageOnlyWhenAsked(t *testing.T) {
	s := llmtest.New(t)
	u := &llmtest.Usage{PromptTokens: 1, CompletionTokens: 1}
	s.Push(llmtest.Response{Chunks: llmtest.Text("a"), Usage: u}, llmtest.Response{Chunks: llmtest.Text("a")})

	// Not asked: no usage chunk even though the script has one.
	_, chunks, err := drain(client(s).NewStreaming(context.Background(), params(false)))
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || chunks[1].JSON.Usage.Valid() {
		t.Errorf("without include_usage: %d chunks, last usage %q", len(chunks), chunks[len(chunks)-1].JSON.Usage.Raw())
	}
	// Asked, but the script has none (servers that omit usage): no usage chunk.
	acc, chunks, err := drain(client(s).NewStreaming(context.Background(), params(true)))
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 2 || acc.Usage.TotalTokens != 0 {
		t.Errorf("include_usage without scripted usage: %d chunks, usage %+v", len(chunks), acc.Usage)
	}
}

func TestToolCallFragments(t *testing.T) {
	s := llmtest.New(t)
	s.Push(llmtest.Response{Chunks: llmtest.Chunks(
		llmtest.Text("Adding it."),
		llmtest.ToolCall(0, "call_1", "add_task", `{"ti`, `tle":"Buy`, ` milk"}`),
		llmtest.ToolCall(1, "call_2", "list_tasks"),
	)})

	acc, chunks, err := drain(client(s).NewStreaming(context.Background(), params(false)))
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	// one text chunk, three fragments of call_1, one of call_2, the finish chunk
	if len(chunks) != 6 {
		t.Fatalf("got %d chunks, want 6", len(chunks))
	}
	first := chunks[1].Choices[0].Delta.ToolCalls[0]
	if first.ID != "call_1" || first.Type != "function" || first.Function.Name != "add_task" {
		t.Errorf("first fragment = %s", first.RawJSON())
	}
	if later := chunks[2].Choices[0].Delta.ToolCalls[0]; later.ID != "" || later.Type != "" || later.Function.Name != "" || later.Index != 0 {
		t.Errorf("later fragment carries more than index and arguments: %s", later.RawJSON())
	}
	msg := acc.Choices[0].Message
	if msg.Content != "Adding it." {
		t.Errorf("content = %q", msg.Content)
	}
	type call struct{ id, name, args string }
	var got []call
	for _, tc := range msg.ToolCalls {
		got = append(got, call{tc.ID, tc.Function.Name, tc.Function.Arguments})
	}
	want := []call{{"call_1", "add_task", `{"title":"Buy milk"}`}, {"call_2", "list_tasks", ""}}
	if !slices.Equal(got, want) {
		t.Errorf("tool calls = %+v, want %+v", got, want)
	}
	if got := acc.Choices[0].FinishReason; got != "tool_calls" {
		t.Errorf("finish reason = %q, want tool_calls", got)
	}
}

func TestFinishReasonOverride(t *testing.T) {
	s := llmtest.New(t)
	s.Push(llmtest.Response{Chunks: llmtest.Text("cut sh"), FinishReason: "length"})
	acc, _, err := drain(client(s).NewStreaming(context.Background(), params(false)))
	if err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].FinishReason; got != "length" {
		t.Errorf("finish reason = %q, want length", got)
	}
}

func TestErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header map[string]string
	}{
		{"rate limited, with Retry-After", http.StatusTooManyRequests, map[string]string{"Retry-After": "1"}},
		{"bad key", http.StatusUnauthorized, nil},
		{"overloaded", http.StatusServiceUnavailable, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.New(t)
			s.Push(llmtest.Response{Status: tc.status, Header: tc.header, Error: "scripted failure"})

			stream := client(s).NewStreaming(context.Background(), params(false))
			if stream.Next() {
				t.Fatalf("got a chunk from an error response: %s", stream.Current().RawJSON())
			}
			var apiErr *openai.Error
			if !errors.As(stream.Err(), &apiErr) {
				t.Fatalf("err = %v (%T), want *openai.Error", stream.Err(), stream.Err())
			}
			if apiErr.StatusCode != tc.status || apiErr.Message != "scripted failure" || apiErr.Type == "" {
				t.Errorf("error: status %d message %q type %q", apiErr.StatusCode, apiErr.Message, apiErr.Type)
			}
			for k, v := range tc.header {
				if got := apiErr.Response.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if got := s.FirstByte(); len(got) != 0 {
				t.Errorf("FirstByte has %d entries for an error response", len(got))
			}
		})
	}
}

func TestCutAfter(t *testing.T) {
	s := llmtest.New(t)
	s.Push(llmtest.Response{Chunks: llmtest.Text("one ", "two ", "three"), CutAfter: 2})

	acc, chunks, err := drain(client(s).NewStreaming(context.Background(), params(false)))
	if err == nil {
		t.Fatal("a cut stream ended without an error")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v, want unexpected EOF", err)
	}
	if len(chunks) != 2 || acc.Choices[0].Message.Content != "one two " || acc.Choices[0].FinishReason != "" {
		t.Errorf("before the cut: %d chunks, content %q, finish %q", len(chunks), acc.Choices[0].Message.Content, acc.Choices[0].FinishReason)
	}
	if got := s.Cancelled(); got != 0 {
		t.Errorf("Cancelled = %d after a cut, want 0: the server broke it, not the client", got)
	}
}

func TestHold(t *testing.T) {
	t.Run("client cancels while held", func(t *testing.T) {
		s := llmtest.New(t)
		s.Push(llmtest.Response{Chunks: llmtest.Text("a", "b"), Hold: make(chan struct{}), HoldAfter: 1})

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream := client(s).NewStreaming(ctx, params(false))
		if !stream.Next() || stream.Current().Choices[0].Delta.Content != "a" {
			t.Fatalf("first chunk before the hold: %v", stream.Err())
		}
		cancel()
		s.WaitCancelled(t, 1)
		if stream.Next() {
			t.Errorf("chunk after cancel: %s", stream.Current().RawJSON())
		}
		if !errors.Is(stream.Err(), context.Canceled) {
			t.Errorf("stream err = %v, want context.Canceled", stream.Err())
		}
		if got := s.Cancelled(); got != 1 {
			t.Errorf("Cancelled = %d, want 1", got)
		}
	})
	t.Run("test ends while held", func(t *testing.T) {
		var stream *ssestream.Stream[openai.ChatCompletionChunk]
		t.Run("holder", func(t *testing.T) {
			s := llmtest.New(t)
			s.Push(llmtest.Response{Chunks: llmtest.Text("a", "b"), Hold: make(chan struct{}), HoldAfter: 1})
			stream = client(s).NewStreaming(context.Background(), params(false))
			if !stream.Next() {
				t.Fatalf("first chunk: %v", stream.Err())
			}
		}) // the fake's cleanup must not wait for a release that never comes
		_, chunks, err := drain(stream)
		if len(chunks) != 0 || err == nil {
			t.Errorf("after the test ended: %d more chunks, err %v; want the stream broken", len(chunks), err)
		}
	})
	t.Run("released", func(t *testing.T) {
		s := llmtest.New(t)
		release := make(chan struct{})
		s.Push(llmtest.Response{Chunks: llmtest.Text("a", "b"), Hold: release, HoldAfter: 1})

		stream := client(s).NewStreaming(context.Background(), params(false))
		if !stream.Next() {
			t.Fatalf("first chunk: %v", stream.Err())
		}
		close(release)
		acc, _, err := drain(stream)
		if err != nil {
			t.Fatal(err)
		}
		// the accumulator saw only the chunks after the first
		if got := acc.Choices[0].Message.Content; got != "b" {
			t.Errorf("content after release = %q, want b", got)
		}
		if got := s.Cancelled(); got != 0 {
			t.Errorf("Cancelled = %d, want 0", got)
		}
	})
}

func TestRequestsDecoded(t *testing.T) {
	s := llmtest.New(t)
	s.Push(llmtest.Response{Chunks: llmtest.Text("ok")})

	p := params(true)
	p.Temperature = openai.Float(0.25)
	p.Messages = []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("be brief"),
		openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("add "), openai.TextContentPart("milk"),
		}),
		{OfAssistant: &openai.ChatCompletionAssistantMessageParam{
			ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{
				OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
					ID: "call_1",
					Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{
						Name: "add_task", Arguments: `{"title":"milk"}`,
					},
				},
			}},
		}},
		openai.ToolMessage(`{"task_id":1}`, "call_1"),
	}
	p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "add_task",
		Description: openai.String("Add a task"),
		Parameters:  shared.FunctionParameters{"type": "object"},
	})}
	if _, _, err := drain(client(s).NewStreaming(context.Background(), p)); err != nil {
		t.Fatal(err)
	}

	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Model != "gpt-test" || !r.Stream || !r.IncludeUsage || r.Temperature == nil || *r.Temperature != 0.25 {
		t.Errorf("model %q stream %v include_usage %v temperature %v", r.Model, r.Stream, r.IncludeUsage, r.Temperature)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer k" {
		t.Errorf("Authorization = %q", got)
	}
	if !json.Valid(r.Body) || !strings.Contains(string(r.Body), `"stream":true`) {
		t.Errorf("raw body = %s", r.Body)
	}
	call := llmtest.MessageToolCall{ID: "call_1", Type: "function"}
	call.Function.Name, call.Function.Arguments = "add_task", `{"title":"milk"}`
	want := []llmtest.Message{
		{Role: "system", Content: "be brief"},
		{Role: "user", Content: "add milk"},
		{Role: "assistant", ToolCalls: []llmtest.MessageToolCall{call}},
		{Role: "tool", Content: `{"task_id":1}`, ToolCallID: "call_1"},
	}
	if len(r.Messages) != len(want) {
		t.Fatalf("messages = %+v", r.Messages)
	}
	for i := range want {
		g, w := r.Messages[i], want[i]
		if g.Role != w.Role || g.Content != w.Content || g.ToolCallID != w.ToolCallID || g.Name != w.Name || !slices.Equal(g.ToolCalls, w.ToolCalls) {
			t.Errorf("message %d = %+v, want %+v", i, g, w)
		}
	}
	if len(r.Tools) != 1 {
		t.Fatalf("tools = %+v", r.Tools)
	}
	tool := r.Tools[0]
	if tool.Type != "function" || tool.Function.Name != "add_task" || tool.Function.Description != "Add a task" || string(tool.Function.Parameters) != `{"type":"object"}` {
		t.Errorf("tool = %+v (parameters %s)", tool, tool.Function.Parameters)
	}
}

func TestWaitRequestsAndFirstByte(t *testing.T) {
	s := llmtest.New(t)
	// Both answers are held after their first chunk, so WaitRequests can
	// only return by seeing the requests arrive, not by their completion.
	release := make(chan struct{})
	s.Push(
		llmtest.Response{Chunks: llmtest.Text("a", "b"), Hold: release, HoldAfter: 1},
		llmtest.Response{Chunks: llmtest.Text("c", "d"), Hold: release, HoldAfter: 1},
	)

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			_, _, err := drain(client(s).NewStreaming(context.Background(), params(false)))
			errs <- err
		})
	}
	if got := s.WaitRequests(t, 2); len(got) != 2 {
		t.Errorf("WaitRequests returned %d requests, want 2", len(got))
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	fb := s.FirstByte()
	if len(fb) != 2 {
		t.Fatalf("FirstByte = %v, want 2 entries", fb)
	}
	for _, d := range fb {
		if d < 0 {
			t.Errorf("negative first-byte time %v", d)
		}
	}
}

// TestWireFormat reads the raw bytes, to pin what the SDK tolerates either
// way: data-only events, null usage and finish_reason until the end, [DONE].
func TestWireFormat(t *testing.T) {
	s := llmtest.New(t)
	s.Push(llmtest.Response{Chunks: llmtest.Text("hi"), Usage: &llmtest.Usage{PromptTokens: 2, CompletionTokens: 1}})

	res := do(t, http.MethodPost, s.URL()+"/chat/completions",
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`)
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d content type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var events []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line is not a data line: %q", line)
		}
		events = append(events, data)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":N,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":N,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		`{"id":"chatcmpl-llmtest-1","object":"chat.completion.chunk","created":N,"model":"m","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}`,
		`[DONE]`,
	}
	if len(events) != len(want) {
		t.Fatalf("events:\n%s", strings.Join(events, "\n"))
	}
	for i := range want {
		if got := withoutCreated(t, events[i]); got != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
}

// withoutCreated replaces the created timestamp with N so events compare.
func withoutCreated(t *testing.T, event string) string {
	t.Helper()
	if event == "[DONE]" {
		return event
	}
	var c struct {
		Created int64 `json:"created"`
	}
	if err := json.Unmarshal([]byte(event), &c); err != nil || c.Created == 0 {
		t.Fatalf("event %s: created %d, %v", event, c.Created, err)
	}
	return strings.Replace(event, fmt.Sprintf(`"created":%d`, c.Created), `"created":N`, 1)
}

// recorder stands in for the test so the failures the fake reports can be
// checked rather than failing this test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

func TestUnexpectedRequestsFailTheTest(t *testing.T) {
	const good = `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		message                  string
	}{
		{"script empty", http.MethodPost, "/chat/completions", good, http.StatusInternalServerError, "llmtest: no scripted response"},
		{"not JSON", http.MethodPost, "/chat/completions", `{"model":`, http.StatusBadRequest, "llmtest: request body is not a chat completion request"},
		{"content neither string nor parts", http.MethodPost, "/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":7}]}`, http.StatusBadRequest, "llmtest: messages[0].content"},
		{"no model", http.MethodPost, "/chat/completions", `{"stream":true,"messages":[{"role":"user","content":"x"}]}`, http.StatusBadRequest, "llmtest: you must provide a model"},
		{"no messages", http.MethodPost, "/chat/completions", `{"model":"m","stream":true}`, http.StatusBadRequest, "llmtest: messages must hold"},
		{"not streaming", http.MethodPost, "/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, http.StatusBadRequest, "llmtest: only streaming is supported"},
		{"wrong path", http.MethodPost, "/completions", good, http.StatusNotFound, "llmtest: no route POST /v1/completions"},
		{"wrong method", http.MethodGet, "/chat/completions", "", http.StatusNotFound, "llmtest: no route GET /v1/chat/completions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			s := llmtest.New(rec)
			res := do(t, tc.method, s.URL()+tc.path, tc.body)
			defer func() { _ = res.Body.Close() }()
			var body struct {
				Error struct{ Message, Type string } `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatalf("error body: %v", err)
			}
			if res.StatusCode != tc.status || !strings.HasPrefix(body.Error.Message, tc.message) || body.Error.Type == "" {
				t.Errorf("got %d %+v, want %d %q…", res.StatusCode, body.Error, tc.status, tc.message)
			}
			if f := rec.failures(); len(f) != 1 || !strings.HasPrefix(f[0], tc.message) {
				t.Errorf("test failures = %q, want one starting %q", f, tc.message)
			}
		})
	}
}

// do sends a raw request, bypassing the SDK.
func do(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
