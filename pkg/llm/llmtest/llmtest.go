// Package llmtest is a fake OpenAI-compatible Chat Completions server for
// tests: a paid model cannot run in CI, so tests point the real client (the
// openai-go SDK) at this server instead.
//
// The fake speaks the real wire format of POST /v1/chat/completions with
// "stream": true — Server-Sent Events carrying chat.completion.chunk objects
// and ending with "data: [DONE]", and {"error": {...}} bodies with the HTTP
// status on failure — so the code under test runs its real parsing, retry
// and cancellation paths. A test scripts one Response per expected request
// with Push, then inspects what was sent with Requests:
//
//	llm := llmtest.New(t)
//	llm.Push(
//		llmtest.Response{Chunks: llmtest.ToolCall(0, "call_1", "add_task", `{"title":`, `"Buy milk"}`)},
//		llmtest.Response{Chunks: llmtest.Text("Added ", "it.")},
//	)
//	// … run the code under test against llm.URL() …
//	reqs := llm.Requests()
//
// A request the script does not expect (none left, not a streaming chat
// completion, malformed) is answered with an error and fails the test.
package llmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds WaitRequests and WaitCancelled: long enough for a slow
// CI machine, short enough that a hung test says why.
const waitTimeout = 10 * time.Second

// endpoint is the one route the fake serves.
const endpoint = "/v1/chat/completions"

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	fail    func(msg string) // hears requests the script did not expect
	srv     *httptest.Server
	closing chan struct{} // closed when the test ends: releases held responses

	mu        sync.Mutex
	script    []Response
	respond   func(Request) Response // answers when the script is empty
	requests  []Request
	cancelled int
	firstByte []time.Duration
	responses int           // numbers the completion ids
	changed   chan struct{} // closed and replaced on every change that waiters watch
}

// New starts a fake on a loopback port; it is closed when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := Start(func(msg string) { t.Errorf("%s", msg) })
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake outside a test (a load tool's model that answers at
// once): onError hears what would fail New's test. Close it when done.
func Start(onError func(msg string)) *Server {
	s := &Server{fail: onError, closing: make(chan struct{}), changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// Close releases held responses and stops the server once every request
// has ended.
func (s *Server) Close() {
	close(s.closing)
	s.srv.Close()
}

// Respond sets how requests are answered once the script is used up: f
// gets the decoded request (a model that answers depending on what it was
// sent). Without it, such a request is an error.
func (s *Server) Respond(f func(Request) Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respond = f
}

// URL returns the base URL to give the SDK (option.WithBaseURL); it ends in
// "/v1".
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// Push appends scripted responses. Each request takes the next one, in order.
func (s *Server) Push(rs ...Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, rs...)
}

// Requests returns every request received so far, in arrival order. The
// slice is a copy.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// WaitRequests waits until at least n requests have arrived and returns all
// received so far. It fails the test after about 10 s; call it from the
// test's goroutine.
func (s *Server) WaitRequests(t testing.TB, n int) []Request {
	t.Helper()
	s.wait(t, fmt.Sprintf("%d requests", n), func() bool { return len(s.requests) >= n })
	return s.Requests()
}

// Cancelled returns how many requests' contexts ended (the client went away)
// before their response was complete.
func (s *Server) Cancelled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelled
}

// WaitCancelled waits until Cancelled() >= n. It fails the test after about
// 10 s; call it from the test's goroutine.
func (s *Server) WaitCancelled(t testing.TB, n int) {
	t.Helper()
	s.wait(t, fmt.Sprintf("%d cancelled requests", n), func() bool { return s.cancelled >= n })
}

// FirstByte returns, for each streamed response whose first chunk was sent,
// the time from the request's arrival (headers read) to that chunk's flush,
// in the order the first chunks went out. Error responses have no entry.
func (s *Server) FirstByte() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.firstByte...)
}

// wait blocks until cond, evaluated under s.mu, holds. Every change that a
// condition can depend on closes s.changed, so this wakes on events rather
// than polling.
func (s *Server) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("llmtest: timed out after %v waiting for %s", waitTimeout, what)
		}
	}
}

// update applies f under s.mu and wakes the waiters.
func (s *Server) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.changed)
	s.changed = make(chan struct{})
}

// Request is one request the fake received, decoded.
type Request struct {
	Header       http.Header
	Arrived      time.Time       // when its headers had been read
	Body         json.RawMessage // the raw request body, as received
	Model        string
	Messages     []Message
	Tools        []Tool
	Stream       bool
	IncludeUsage bool // stream_options.include_usage
	Temperature  *float64
}

// Message is one entry of a request's messages. Content is the string
// content, or the text parts of an array content joined without separator.
type Message struct {
	Role, Content, ToolCallID, Name string
	ToolCalls                       []MessageToolCall
}

// MessageToolCall is a tool call as sent back in a request's assistant
// message. (It is not named ToolCall: that name scripts a streamed call.)
type MessageToolCall struct {
	ID, Type string
	Function struct{ Name, Arguments string }
}

// Tool is one entry of a request's tools.
type Tool struct {
	Type     string
	Function struct {
		Name, Description string
		Parameters        json.RawMessage
	}
}

// Response scripts the answer to one request.
type Response struct {
	Status int               // 0 means 200; 300 and above answers an error body
	Header map[string]string // extra headers, e.g. "Retry-After": "1"
	Error  string            // message of the error body for an error Status
	Chunks []Chunk           // streamed for a 2xx Status, each flushed on its own
	// FinishReason is that of the last choice chunk: "" means "tool_calls"
	// when Chunks hold a tool call, else "stop".
	FinishReason string
	// Usage is sent, as its own final chunk, only when the request asked for
	// stream_options.include_usage and Usage is not nil.
	Usage *Usage
	// CutAfter > 0 closes the connection abruptly after that many chunks
	// (no finish chunk, no [DONE]): a stream broken mid-answer.
	CutAfter int
	// Hold, if not nil, pauses the stream after HoldAfter chunks until Hold
	// is closed or the request's context ends (which counts as Cancelled).
	Hold      <-chan struct{}
	HoldAfter int
}

// Usage is the token count reported in the usage chunk; the total is their
// sum.
type Usage struct{ PromptTokens, CompletionTokens int }

// Chunk is one streamed delta: a piece of text or one tool-call fragment.
// Build chunks with Text and ToolCall.
type Chunk struct {
	content string
	tool    *toolDelta // nil for a text chunk
}

type toolDelta struct {
	index    int
	id, name string // set on a call's first fragment only
	args     string
}

// Text returns one content chunk per part.
func Text(parts ...string) []Chunk {
	cs := make([]Chunk, 0, len(parts))
	for _, p := range parts {
		cs = append(cs, Chunk{content: p})
	}
	return cs
}

// ToolCall returns the chunks of one streamed tool call, as OpenAI sends
// them: the first carries index, id, type "function", name and the first
// argument fragment (or ""); each further fragment is a chunk carrying only
// index and arguments.
func ToolCall(index int, id, name string, argFragments ...string) []Chunk {
	first := ""
	if len(argFragments) > 0 {
		first, argFragments = argFragments[0], argFragments[1:]
	}
	cs := []Chunk{{tool: &toolDelta{index: index, id: id, name: name, args: first}}}
	for _, a := range argFragments {
		cs = append(cs, Chunk{tool: &toolDelta{index: index, args: a}})
	}
	return cs
}

// Chunks concatenates groups of chunks, for readable scripts.
func Chunks(groups ...[]Chunk) []Chunk {
	var cs []Chunk
	for _, g := range groups {
		cs = append(cs, g...)
	}
	return cs
}

// serveHTTP answers one request: checks it, records it, and plays the next
// scripted response.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	if r.Method != http.MethodPost || r.URL.Path != endpoint {
		s.reject(w, http.StatusNotFound, fmt.Sprintf("llmtest: no route %s %s", r.Method, r.URL.Path))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.reject(w, http.StatusBadRequest, "llmtest: read body: "+err.Error())
		return
	}
	req, err := decodeRequest(r.Header, body)
	req.Arrived = arrived
	s.update(func() { s.requests = append(s.requests, req) })
	if err != nil {
		s.reject(w, http.StatusBadRequest, "llmtest: "+err.Error())
		return
	}
	if !req.Stream {
		s.reject(w, http.StatusBadRequest, "llmtest: only streaming is supported")
		return
	}
	s.mu.Lock()
	var resp Response
	var id string
	respond := s.respond
	scripted := len(s.script) > 0
	if scripted {
		resp, s.script = s.script[0], s.script[1:]
	}
	ok := scripted || respond != nil
	if ok {
		s.responses++
		id = fmt.Sprintf("chatcmpl-llmtest-%d", s.responses)
	}
	s.mu.Unlock()
	if !scripted && respond != nil {
		resp = respond(req)
	}
	if !ok {
		s.reject(w, http.StatusInternalServerError, "llmtest: no scripted response")
		return
	}
	for k, v := range resp.Header {
		w.Header().Set(k, v)
	}
	if resp.Status >= 300 {
		writeError(w, resp.Status, resp.Error)
		return
	}
	s.stream(w, r, req, resp, id, arrived)
}

// reject answers an error the script did not ask for and fails the test.
func (s *Server) reject(w http.ResponseWriter, status int, msg string) {
	s.fail(msg)
	writeError(w, status, msg)
}

// writeError writes OpenAI's error body: {"error": {message, type, param, code}}.
func writeError(w http.ResponseWriter, status int, msg string) {
	typ, code := "invalid_request_error", any(nil)
	switch {
	case status == http.StatusUnauthorized:
		code = "invalid_api_key"
	case status == http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
	case status >= 500:
		typ = "server_error"
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": code,
	}}) // a map of strings and nils always marshals
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b) // the client may be gone; nothing to do about it
}

// stream plays a 2xx response as Server-Sent Events.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req Request, resp Response, id string, arrived time.Time) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(max(resp.Status, http.StatusOK))
	_ = rc.Flush() // headers first, as a real server does; a failure shows on the next write

	base := wireChunk{ID: id, Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: req.Model}
	if req.IncludeUsage {
		base.Usage = json.RawMessage("null")
	}
	sent := 0
	// send writes one event; false means the client is gone (counted) or
	// the test ended.
	send := func(data []byte) bool {
		if r.Context().Err() != nil {
			s.update(func() { s.cancelled++ })
			return false
		}
		_, err := fmt.Fprintf(w, "data: %s\n\n", data)
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			s.update(func() { s.cancelled++ })
			return false
		}
		if sent == 0 {
			s.update(func() { s.firstByte = append(s.firstByte, time.Since(arrived)) })
		}
		sent++
		return true
	}

	n := len(resp.Chunks)
	holdAt, cutAt := -1, -1
	if resp.Hold != nil {
		holdAt = min(resp.HoldAfter, n)
	}
	if resp.CutAfter > 0 {
		cutAt = min(resp.CutAfter, n)
	}
	hasTool := false
	for i := 0; ; i++ {
		if i == holdAt && !s.hold(w, r, resp.Hold) {
			return
		}
		if i == cutAt {
			cut(w)
			return
		}
		if i == n {
			break
		}
		c := resp.Chunks[i]
		hasTool = hasTool || c.tool != nil
		if !send(base.with(c.delta(i == 0), nil)) {
			return
		}
	}

	reason := resp.FinishReason
	if reason == "" {
		reason = "stop"
		if hasTool {
			reason = "tool_calls"
		}
	}
	last := wireDelta{}
	if n == 0 {
		last.Role = "assistant"
	}
	if !send(base.with(last, &reason)) {
		return
	}
	if req.IncludeUsage && resp.Usage != nil {
		u := base
		u.Choices = []wireChoice{}
		u.Usage, _ = json.Marshal(wireUsage{ // ints always marshal
			PromptTokens:     resp.Usage.PromptTokens,
			CompletionTokens: resp.Usage.CompletionTokens,
			TotalTokens:      resp.Usage.PromptTokens + resp.Usage.CompletionTokens,
		})
		if !send(u.marshal()) {
			return
		}
	}
	send([]byte("[DONE]"))
}

// hold waits for the script's hold to be released. It returns false when
// the client went away (counted as cancelled) or the test ended (the stream
// is then cut, so the client cannot take it for a complete answer).
func (s *Server) hold(w http.ResponseWriter, r *http.Request, release <-chan struct{}) bool {
	select {
	case <-release:
		return true
	case <-r.Context().Done():
		s.update(func() { s.cancelled++ })
		return false
	case <-s.closing:
		cut(w)
		return false
	}
}

// cut closes the connection under a half-sent stream: the client sees the
// body end without the chunked terminator, as when a proxy or the provider
// drops the connection.
func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // net/http also drops the connection for this
	}
	_ = conn.Close() // dropping it is the point
}

// The wire types of a chat.completion.chunk.
type (
	wireChunk struct {
		ID      string          `json:"id"`
		Object  string          `json:"object"`
		Created int64           `json:"created"`
		Model   string          `json:"model"`
		Choices []wireChoice    `json:"choices"`
		Usage   json.RawMessage `json:"usage,omitempty"` // null on every chunk but the last when include_usage
	}
	wireChoice struct {
		Index        int       `json:"index"`
		Delta        wireDelta `json:"delta"`
		Logprobs     *struct{} `json:"logprobs"`      // always null
		FinishReason *string   `json:"finish_reason"` // null until the last choice chunk
	}
	wireDelta struct {
		Role      string          `json:"role,omitempty"`
		Content   *string         `json:"content,omitempty"`
		ToolCalls []wireToolDelta `json:"tool_calls,omitempty"`
	}
	wireToolDelta struct {
		Index    int    `json:"index"`
		ID       string `json:"id,omitempty"`
		Type     string `json:"type,omitempty"`
		Function struct {
			Name      string `json:"name,omitempty"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	wireUsage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
)

// with returns the event data of c's envelope carrying one choice.
func (c wireChunk) with(d wireDelta, finish *string) []byte {
	c.Choices = []wireChoice{{Delta: d, FinishReason: finish}}
	return c.marshal()
}

func (c wireChunk) marshal() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic("llmtest: marshal chunk: " + err.Error()) // only strings, ints and valid raw JSON
	}
	return b
}

// delta is the wire delta of one scripted chunk; the first carries the role.
func (c Chunk) delta(first bool) wireDelta {
	var d wireDelta
	if first {
		d.Role = "assistant"
	}
	if c.tool == nil {
		d.Content = &c.content
		return d
	}
	t := wireToolDelta{Index: c.tool.index, ID: c.tool.id}
	if c.tool.id != "" || c.tool.name != "" {
		t.Type = "function"
	}
	t.Function.Name, t.Function.Arguments = c.tool.name, c.tool.args
	d.ToolCalls = []wireToolDelta{t}
	return d
}

// decodeRequest decodes a chat completion request body. On error the
// returned Request still holds the header and raw body.
func decodeRequest(h http.Header, body []byte) (Request, error) {
	req := Request{Header: h.Clone(), Body: json.RawMessage(body)}
	var in struct {
		Model    string `json:"model"`
		Messages []struct {
			Role       string          `json:"role"`
			Content    json.RawMessage `json:"content"`
			Name       string          `json:"name"`
			ToolCallID string          `json:"tool_call_id"`
			ToolCalls  []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools []struct {
			Type     string `json:"type"`
			Function struct {
				Name        string          `json:"name"`
				Description string          `json:"description"`
				Parameters  json.RawMessage `json:"parameters"`
			} `json:"function"`
		} `json:"tools"`
		Stream        bool `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		Temperature *float64 `json:"temperature"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return req, fmt.Errorf("request body is not a chat completion request: %w", err)
	}
	req.Model, req.Stream, req.IncludeUsage, req.Temperature = in.Model, in.Stream, in.StreamOptions.IncludeUsage, in.Temperature
	for i, m := range in.Messages {
		content, err := messageContent(m.Content)
		if err != nil {
			return req, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		msg := Message{Role: m.Role, Content: content, ToolCallID: m.ToolCallID, Name: m.Name}
		for _, tc := range m.ToolCalls {
			c := MessageToolCall{ID: tc.ID, Type: tc.Type}
			c.Function.Name, c.Function.Arguments = tc.Function.Name, tc.Function.Arguments
			msg.ToolCalls = append(msg.ToolCalls, c)
		}
		req.Messages = append(req.Messages, msg)
	}
	for _, t := range in.Tools {
		tool := Tool{Type: t.Type}
		tool.Function.Name, tool.Function.Description, tool.Function.Parameters = t.Function.Name, t.Function.Description, t.Function.Parameters
		req.Tools = append(req.Tools, tool)
	}
	// The real API rejects these too; a request without them is a bug in
	// the code under test.
	if req.Model == "" {
		return req, errors.New("you must provide a model parameter")
	}
	if len(req.Messages) == 0 {
		return req, errors.New("messages must hold at least one message")
	}
	return req, nil
}

// messageContent reads a message's content: null, a string, or an array of
// parts whose text parts are joined.
func messageContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("not a string or an array of content parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}
