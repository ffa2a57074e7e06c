package llm_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/llm"
	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// newProvider returns a provider on fake's URL with short timeouts; adjust
// changes its configuration first.
func newProvider(t testing.TB, fake *llmtest.Server, adjust ...func(*llm.Config)) *llm.OpenAI {
	t.Helper()
	cfg := llm.Config{BaseURL: fake.URL(), APIKey: "sk-test", Model: "test-model", Timeout: 10 * time.Second, MaxRetries: 2}
	for _, f := range adjust {
		f(&cfg)
	}
	p, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// request is a small conversation with the five tools.
func request() agent.Request {
	return agent.Request{
		Messages: []agent.Message{
			{Role: agent.RoleSystem, Content: "be brief"},
			{Role: agent.RoleUser, Content: "add milk"},
		},
		Tools: agent.ToolSpecs(),
	}
}

// complete runs one call and collects its deltas.
func complete(t *testing.T, p *llm.OpenAI, req agent.Request) (agent.Turn, []string, error) {
	t.Helper()
	var deltas []string
	turn, err := p.Complete(context.Background(), req, func(s string) { deltas = append(deltas, s) })
	return turn, deltas, err
}

func TestStreamsText(t *testing.T) {
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("Hel", "lo, ", "world."), Usage: &llmtest.Usage{PromptTokens: 12, CompletionTokens: 3}})
	turn, deltas, err := complete(t, newProvider(t, fake), request())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Hel", "lo, ", "world."}; !reflect.DeepEqual(deltas, want) {
		t.Errorf("deltas = %q, want %q", deltas, want)
	}
	if turn.Text != "Hello, world." || len(turn.Calls) != 0 {
		t.Errorf("turn = %+v, want the text and no calls", turn)
	}
	if want := (agent.Usage{PromptTokens: 12, CompletionTokens: 3, Reported: true}); turn.Usage != want {
		t.Errorf("usage = %+v, want %+v", turn.Usage, want)
	}
}

func TestUsageIsOptional(t *testing.T) {
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("ok")}) // a server that sends no usage
	turn, _, err := complete(t, newProvider(t, fake), request())
	if err != nil {
		t.Fatal(err)
	}
	if turn.Usage.Reported || turn.Text != "ok" {
		t.Errorf("turn = %+v, want text ok and no usage", turn)
	}
}

// TestNonsenseUsageIsIgnored: counts the run's token columns cannot hold
// would make the worker's final write fail, and the run be retried for
// them; a server that reports them has reported nothing usable.
func TestNonsenseUsageIsIgnored(t *testing.T) {
	for _, u := range []llmtest.Usage{
		{PromptTokens: -1, CompletionTokens: 5},
		{PromptTokens: 12, CompletionTokens: 1 << 40},
	} {
		fake := llmtest.New(t)
		fake.Push(llmtest.Response{Chunks: llmtest.Text("ok"), Usage: &u})
		turn, _, err := complete(t, newProvider(t, fake), request())
		if err != nil {
			t.Fatal(err)
		}
		if turn.Usage.Reported || turn.Text != "ok" {
			t.Errorf("usage %+v: turn = %+v, want text ok and no usage", u, turn)
		}
	}
}

func TestAssemblesToolCalls(t *testing.T) {
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Chunks(
		llmtest.ToolCall(0, "call_a", "add_task", `{"ti`, `tle": "Buy`, ` milk"}`),
		llmtest.ToolCall(1, "call_b", "list_tasks", ``, `{"status":`, `"pending"}`),
	)})
	turn, deltas, err := complete(t, newProvider(t, fake), request())
	if err != nil {
		t.Fatal(err)
	}
	if len(deltas) != 0 || turn.Text != "" {
		t.Errorf("text = %q, deltas %q; want none", turn.Text, deltas)
	}
	want := []agent.Call{
		{ID: "call_a", Name: "add_task", Arguments: json.RawMessage(`{"title": "Buy milk"}`)},
		{ID: "call_b", Name: "list_tasks", Arguments: json.RawMessage(`{"status":"pending"}`)},
	}
	if !reflect.DeepEqual(turn.Calls, want) {
		t.Errorf("calls = %+v\nwant %+v", turn.Calls, want)
	}
}

// Some servers number every call 0; a new id starts a new call.
func TestToolCallsAllAtIndexZero(t *testing.T) {
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Chunks(
		llmtest.ToolCall(0, "call_a", "complete_task", `{"task_id":1}`),
		llmtest.ToolCall(0, "call_b", "complete_task", `{"task_id":`, `2}`),
	)})
	turn, _, err := complete(t, newProvider(t, fake), request())
	if err != nil {
		t.Fatal(err)
	}
	if len(turn.Calls) != 2 || string(turn.Calls[0].Arguments) != `{"task_id":1}` || string(turn.Calls[1].Arguments) != `{"task_id":2}` || turn.Calls[1].ID != "call_b" {
		t.Errorf("calls = %+v, want call_a on task 1 and call_b on task 2", turn.Calls)
	}
}

// TestRequest checks what the provider sends: the model, the options, the
// messages in order in the API's shapes, and the five tools with their
// schemas.
func TestRequest(t *testing.T) {
	// The SDK would read these by itself; the provider must not.
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	t.Setenv("OPENAI_API_KEY", "sk-from-the-environment")
	t.Setenv("OPENAI_ORG_ID", "org-from-the-environment")
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("done")})
	temp := 0.3
	p := newProvider(t, fake, func(c *llm.Config) { c.Temperature = &temp })
	req := agent.Request{
		Messages: []agent.Message{
			{Role: agent.RoleSystem, Content: "the system prompt"},
			{Role: agent.RoleUser, Content: "first question"},
			{Role: agent.RoleAssistant, Calls: []agent.Call{{ID: "c1", Name: "list_tasks", Arguments: json.RawMessage(`{}`)}}},
			{Role: agent.RoleTool, CallID: "c1", Name: "list_tasks", Content: `{"tasks":[]}`},
			{Role: agent.RoleAssistant, Content: "You have no tasks."},
			{Role: agent.RoleAssistant, Content: ""}, // a run cancelled before it said anything
			{Role: agent.RoleUser, Content: "the latest message"},
		},
		Tools: agent.ToolSpecs(),
	}
	if _, _, err := complete(t, p, req); err != nil {
		t.Fatal(err)
	}
	got := fake.Requests()[0]
	if got.Model != "test-model" || !got.Stream || !got.IncludeUsage || got.Temperature == nil || *got.Temperature != 0.3 {
		t.Errorf("request = model %q, stream %v, include_usage %v, temperature %v", got.Model, got.Stream, got.IncludeUsage, got.Temperature)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer sk-test" {
		t.Errorf("Authorization = %q, want the configured key", a)
	}
	if o := got.Header.Get("OpenAI-Organization"); o != "" {
		t.Errorf("OpenAI-Organization = %q: the SDK read the environment", o)
	}
	type msg struct{ role, content, callID, calls string }
	var msgs []msg
	for _, m := range got.Messages {
		var calls []string
		for _, c := range m.ToolCalls {
			calls = append(calls, c.ID+":"+c.Function.Name+":"+c.Function.Arguments)
		}
		msgs = append(msgs, msg{m.Role, m.Content, m.ToolCallID, strings.Join(calls, ",")})
	}
	want := []msg{
		{"system", "the system prompt", "", ""},
		{"user", "first question", "", ""},
		{"assistant", "", "", "c1:list_tasks:{}"},
		{"tool", `{"tasks":[]}`, "c1", ""},
		{"assistant", "You have no tasks.", "", ""},
		{"user", "the latest message", "", ""},
	}
	if !reflect.DeepEqual(msgs, want) {
		t.Errorf("messages =\n%q\nwant\n%q", msgs, want)
	}
	var names []string
	for i, tool := range got.Tools {
		names = append(names, tool.Function.Name)
		spec := agent.ToolSpecs()[i]
		if tool.Type != "function" || tool.Function.Description != spec.Description || !sameJSON(t, tool.Function.Parameters, spec.Parameters) {
			t.Errorf("tool %d = %+v, want %s with its description and schema", i, tool, spec.Name)
		}
	}
	if want := []string{"add_task", "list_tasks", "complete_task", "delete_task", "update_task"}; !reflect.DeepEqual(names, want) {
		t.Errorf("tools = %v, want %v", names, want)
	}
}

// TestNoKeyNoAuthorization: a local server (Ollama) gets no bearer.
func TestNoKeyNoAuthorization(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-from-the-environment")
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("hi")})
	if _, _, err := complete(t, newProvider(t, fake, func(c *llm.Config) { c.APIKey = "" }), request()); err != nil {
		t.Fatal(err)
	}
	if a := fake.Requests()[0].Header.Get("Authorization"); a != "" {
		t.Errorf("Authorization = %q, want none", a)
	}
}

func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TestRetries: failures before the stream starts are retried by the SDK,
// honouring Retry-After; what still fails after the retries, or cannot
// succeed, ends with the error of its kind.
func TestRetries(t *testing.T) {
	t.Run("429 with Retry-After, then success", func(t *testing.T) {
		fake := llmtest.New(t)
		fake.Push(
			llmtest.Response{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "1"}, Error: "slow down"},
			llmtest.Response{Chunks: llmtest.Text("fine")},
		)
		turn, _, err := complete(t, newProvider(t, fake), request())
		if err != nil || turn.Text != "fine" {
			t.Fatalf("turn = %+v, %v; want fine", turn, err)
		}
		reqs := fake.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		// Retry-After is a floor; the SDK's own backoff would be 0.5 s.
		if gap := reqs[1].Arrived.Sub(reqs[0].Arrived); gap < time.Second {
			t.Errorf("the retry came %s after the 429, before its Retry-After of 1s", gap)
		}
	})
	t.Run("500 twice, then success", func(t *testing.T) {
		fake := llmtest.New(t)
		fake.Push(
			llmtest.Response{Status: 500, Error: "boom"},
			llmtest.Response{Status: 502, Error: "bad gateway"},
			llmtest.Response{Chunks: llmtest.Text("fine")},
		)
		turn, _, err := complete(t, newProvider(t, fake), request())
		if err != nil || turn.Text != "fine" || len(fake.Requests()) != 3 {
			t.Fatalf("turn = %+v, %v after %d requests; want fine after 3", turn, err, len(fake.Requests()))
		}
	})
	t.Run("503 through every retry", func(t *testing.T) {
		fake := llmtest.New(t)
		for range 3 {
			fake.Push(llmtest.Response{Status: 503, Error: "overloaded"})
		}
		_, _, err := complete(t, newProvider(t, fake), request())
		if !errors.Is(err, agent.ErrModelUnavailable) || errors.Is(err, agent.ErrTransient) {
			t.Fatalf("err = %v, want ErrModelUnavailable only", err)
		}
		if !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "overloaded") {
			t.Errorf("err = %v, want the status and the server's message", err)
		}
		if n := len(fake.Requests()); n != 3 {
			t.Errorf("%d requests, want 1 + AI_MAX_RETRIES (2)", n)
		}
	})
	t.Run("401 is not retried", func(t *testing.T) {
		fake := llmtest.New(t)
		fake.Push(llmtest.Response{Status: 401, Error: "Incorrect API key provided"})
		_, _, err := complete(t, newProvider(t, fake), request())
		if !errors.Is(err, agent.ErrModelRejected) || !strings.Contains(err.Error(), "Incorrect API key") {
			t.Fatalf("err = %v, want ErrModelRejected with the server's message", err)
		}
		if n := len(fake.Requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("no server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		p, err := llm.New(llm.Config{BaseURL: "http://" + addr + "/v1", MaxRetries: 1, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Complete(context.Background(), request(), func(string) {})
		if !errors.Is(err, agent.ErrModelUnavailable) {
			t.Fatalf("err = %v, want ErrModelUnavailable", err)
		}
	})
	// A dial timeout is an error that errors.Is calls a deadline: still a
	// server out of reach, not a slow model.
	t.Run("a host that does not answer the dial", func(t *testing.T) {
		fake := llmtest.New(t)
		dialer := &net.Dialer{Timeout: time.Nanosecond} // times out before it connects
		client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
		p := newProvider(t, fake, func(c *llm.Config) { c.HTTPClient, c.MaxRetries = client, 0 })
		_, _, err := complete(t, p, request())
		if !errors.Is(err, agent.ErrModelUnavailable) || errors.Is(err, agent.ErrModelTimeout) {
			t.Fatalf("err = %v, want ErrModelUnavailable only", err)
		}
	})
	// The SDK waits for Retry-After inside the call's timeout: when the
	// timeout ends the wait, the model was unavailable, not slow.
	t.Run("Retry-After longer than the call's timeout", func(t *testing.T) {
		fake := llmtest.New(t)
		fake.Push(llmtest.Response{Status: http.StatusTooManyRequests, Header: map[string]string{"Retry-After": "30"}, Error: "slow down"})
		p := newProvider(t, fake, func(c *llm.Config) { c.Timeout = 200 * time.Millisecond })
		_, _, err := complete(t, p, request())
		if !errors.Is(err, agent.ErrModelUnavailable) || errors.Is(err, agent.ErrModelTimeout) {
			t.Fatalf("err = %v, want ErrModelUnavailable only", err)
		}
		if n := len(fake.Requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

// TestBrokenStream: once output has started nothing is retried inside the
// call: the error is transient, for the pipeline to run the attempt again.
func TestBrokenStream(t *testing.T) {
	fake := llmtest.New(t)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("Sure, ", "I will ", "never finish"), CutAfter: 2})
	_, deltas, err := complete(t, newProvider(t, fake), request())
	if !errors.Is(err, agent.ErrTransient) {
		t.Fatalf("err = %v, want ErrTransient", err)
	}
	if want := []string{"Sure, ", "I will "}; !reflect.DeepEqual(deltas, want) {
		t.Errorf("deltas = %q, want %q", deltas, want)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("%d requests, want 1: a started stream is not retried", n)
	}
}

func TestTimeout(t *testing.T) {
	fake := llmtest.New(t)
	hold := make(chan struct{})
	defer close(hold)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("thinking", "…"), Hold: hold, HoldAfter: 1})
	p := newProvider(t, fake, func(c *llm.Config) { c.Timeout = 300 * time.Millisecond })
	_, deltas, err := complete(t, p, request())
	if !errors.Is(err, agent.ErrModelTimeout) {
		t.Fatalf("err = %v, want ErrModelTimeout", err)
	}
	if len(deltas) != 1 {
		t.Errorf("deltas = %q, want the one sent before the hold", deltas)
	}
	fake.WaitCancelled(t, 1)
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("%d requests, want 1: a timed-out call is not retried", n)
	}
}

// TestCancel: when the caller's context ends mid-stream, the call returns
// at once with the context's error and the request is cancelled.
func TestCancel(t *testing.T) {
	fake := llmtest.New(t)
	hold := make(chan struct{})
	defer close(hold)
	fake.Push(llmtest.Response{Chunks: llmtest.Text("partial", " answer"), Hold: hold, HoldAfter: 1})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var got []string
	go func() {
		_, err := newProvider(t, fake).Complete(ctx, request(), func(s string) {
			got = append(got, s)
			cancel() // the user pressed stop once the first words arrived
		})
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Complete did not return after its context was cancelled")
	}
	fake.WaitCancelled(t, 1)
	if !reflect.DeepEqual(got, []string{"partial"}) {
		t.Errorf("deltas = %q, want the first", got)
	}
}

func TestBadResponses(t *testing.T) {
	t.Run("empty answer", func(t *testing.T) {
		fake := llmtest.New(t)
		fake.Push(llmtest.Response{})
		_, _, err := complete(t, newProvider(t, fake), request())
		if !errors.Is(err, agent.ErrBadResponse) {
			t.Fatalf("err = %v, want ErrBadResponse", err)
		}
	})
	// Bodies the fake cannot send: written by hand. want nil: the answer
	// is "hi".
	const hi = `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}` + "\n\n"
	for _, tc := range []struct {
		name, body string
		want       error
		// contentType is the answer's; "" means text/event-stream.
		contentType string
	}{
		{"a whole completion, not a stream (a proxy that ignores stream)", `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`, agent.ErrBadResponse, "application/json"},
		{"a chunk that is not JSON", hi + "data: {not json\n\n", agent.ErrBadResponse, ""},
		{"a body that ends before the completion (no finish reason, no [DONE])", hi, agent.ErrTransient, ""},
		{"an error event mid-stream", hi + `data: {"error":{"message":"upstream went away","code":502}}` + "\n\n", agent.ErrTransient, ""},
		{"a 4xx error event mid-stream (vLLM)", hi + `data: {"error":{"object":"error","message":"This model's maximum context length is 4096 tokens","type":"BadRequestError","code":400}}` + "\n\n", agent.ErrModelRejected, ""},
		{"a 429 error event mid-stream", hi + `data: {"error":{"message":"slow down","code":429}}` + "\n\n", agent.ErrTransient, ""},
		{"an error event with a word for a code", hi + `data: {"error":{"message":"overloaded","code":"server_error"}}` + "\n\n", agent.ErrTransient, ""},
		// Some gateways (Gemini and Bedrock proxies) never set
		// finish_reason; [DONE] still says the answer is whole.
		{"[DONE] without a finish reason", hi + "data: [DONE]\n\n", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", cmp.Or(tc.contentType, "text/event-stream"))
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			p, err := llm.New(llm.Config{BaseURL: srv.URL + "/v1"})
			if err != nil {
				t.Fatal(err)
			}
			turn, err := p.Complete(context.Background(), request(), func(string) {})
			if tc.want == nil {
				if err != nil || turn.Text != "hi" {
					t.Fatalf("turn = %+v, %v; want hi", turn, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	hot, cold := 2.5, -0.1
	for _, tc := range []struct {
		cfg  llm.Config
		want string
	}{
		{llm.Config{BaseURL: "localhost:11434"}, "OPENAI_BASE_URL"},
		{llm.Config{BaseURL: "ftp://h/v1"}, "OPENAI_BASE_URL"},
		{llm.Config{Temperature: &hot}, "AI_TEMPERATURE"},
		{llm.Config{Temperature: &cold}, "AI_TEMPERATURE"},
		{llm.Config{Timeout: -time.Second}, "AI_TIMEOUT"},
		{llm.Config{MaxRetries: 11}, "AI_MAX_RETRIES"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
		if _, err := llm.New(tc.cfg); err == nil {
			t.Errorf("New(%+v) accepted it", tc.cfg)
		}
	}
	if err := (llm.Config{BaseURL: "http://127.0.0.1:11434/v1"}).Validate(); err != nil {
		t.Errorf("a local server's URL: %v", err)
	}
}
