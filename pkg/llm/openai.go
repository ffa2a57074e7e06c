// Package llm connects the assistant to a real model: any server that
// speaks the OpenAI Chat Completions API (OpenAI, Azure OpenAI, Ollama,
// vLLM, LM Studio, OpenRouter, …), through the official Go SDK.
//
// OpenAI is an agent.Provider. Each Complete is one streamed chat
// completion with the five todo tools: text deltas go to the caller as they
// arrive, tool calls are assembled from their fragments, and usage is read
// from the stream's last chunk when the server sends it.
//
// Failures, and who retries them:
//   - Before the response starts (connection refused, 429, 5xx), the SDK
//     retries with exponential backoff and jitter, honouring Retry-After,
//     up to Config.MaxRetries times. What still fails is
//     agent.ErrModelUnavailable (so is a Retry-After that outlasts the
//     call's timeout); a 4xx is agent.ErrModelRejected.
//   - Once the stream has started, nothing can be retried inside the call
//     (the caller may have shown the text): a broken stream (cut, an error
//     event, or an end with neither a finish reason nor [DONE]) wraps
//     agent.ErrTransient, and the pipeline runs the whole attempt again.
//   - A call longer than Config.Timeout is agent.ErrModelTimeout; a stream
//     that cannot be decoded, or an empty answer, is agent.ErrBadResponse.
//   - When the caller's context ends (a cancelled run), the HTTP request is
//     cancelled with it and Complete returns the context's error.
package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	"github.com/taskchat/taskchat/pkg/agent"
)

// Defaults of Config.
const (
	DefaultBaseURL    = "https://api.openai.com/v1"
	DefaultModel      = "gpt-4o-mini"
	DefaultTimeout    = 60 * time.Second
	DefaultMaxRetries = 2
)

// Config says which server and model to use. Every setting comes from
// here: the SDK's own reading of OPENAI_* variables is not used, so the
// service's configuration is the whole truth.
type Config struct {
	// BaseURL is the API's root, up to and including /v1
	// (OPENAI_BASE_URL; "" means DefaultBaseURL).
	BaseURL string
	// APIKey is sent as a bearer token (OPENAI_API_KEY); "" sends none,
	// which local servers such as Ollama accept.
	APIKey string
	// Model is the model's name on that server (AI_MODEL; "" means
	// DefaultModel).
	Model string
	// Temperature is sent when set (AI_TEMPERATURE); else the server's
	// default applies.
	Temperature *float64
	// Timeout bounds one call, from the request to the stream's last chunk,
	// each SDK attempt on its own (AI_TIMEOUT; 0 means DefaultTimeout).
	Timeout time.Duration
	// MaxRetries is how often the SDK retries a call that failed before
	// its response started (AI_MAX_RETRIES). Negative means none.
	MaxRetries int
	// HTTPClient makes the requests (nil: one with sensible transport
	// limits and no overall timeout, which would cut long streams).
	HTTPClient *http.Client
}

// Validate reports settings that cannot work, naming their variables.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("OPENAI_BASE_URL must be an http or https URL such as http://127.0.0.1:11434/v1"))
		}
	}
	if t := c.Temperature; t != nil && (*t < 0 || *t > 2) {
		errs = append(errs, fmt.Errorf("AI_TEMPERATURE must be from 0 to 2, got %g", *t))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("AI_TIMEOUT must be positive, got %s", c.Timeout))
	}
	if c.MaxRetries > 10 {
		errs = append(errs, fmt.Errorf("AI_MAX_RETRIES must be from 0 to 10, got %d", c.MaxRetries))
	}
	return errors.Join(errs...)
}

// OpenAI is a model behind an OpenAI-compatible Chat Completions API. It
// is safe for concurrent use.
type OpenAI struct {
	completions openai.ChatCompletionService
	model       string
	temperature *float64
}

// New returns the provider cfg describes.
func New(cfg Config) (*OpenAI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	model := cfg.Model
	if model == "" {
		model = DefaultModel
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	client := cfg.HTTPClient
	if client == nil {
		client = newHTTPClient()
	}
	opts := []option.RequestOption{
		option.WithHTTPClient(client),
		// The SDK joins paths to the base URL; without the trailing slash
		// it would drop the base's last segment (/v1).
		option.WithBaseURL(strings.TrimRight(base, "/") + "/"),
		option.WithMaxRetries(max(cfg.MaxRetries, 0)),
		option.WithRequestTimeout(timeout),
	}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	}
	// NewChatCompletionService, unlike openai.NewClient, reads nothing
	// from the environment.
	return &OpenAI{
		completions: openai.NewChatCompletionService(opts...),
		model:       model,
		temperature: cfg.Temperature,
	}, nil
}

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 0 // a model may think long before its first byte; Timeout bounds it
	return &http.Client{Transport: t}
}

// Model names the configured model.
func (p *OpenAI) Model() string { return p.model }

// Complete runs one streamed chat completion (see the package comment).
func (p *OpenAI) Complete(ctx context.Context, req agent.Request, onDelta func(string)) (agent.Turn, error) {
	params, err := p.params(req)
	if err != nil {
		return agent.Turn{}, err
	}
	var last attempt
	stream := p.completions.NewStreaming(ctx, params, option.WithMiddleware(last.observe))
	defer stream.Close()

	var (
		turn   agent.Turn
		text   strings.Builder
		calls  callAssembler
		finish string
	)
	for stream.Next() {
		chunk := stream.Current()
		if chunk.JSON.Usage.Valid() {
			if u, ok := usage(chunk.Usage); ok {
				turn.Usage = u
			}
		}
		for _, choice := range chunk.Choices {
			if choice.Index != 0 {
				continue // only one completion is asked for
			}
			d := choice.Delta
			for _, piece := range []string{d.Content, d.Refusal} {
				if piece != "" {
					text.WriteString(piece)
					onDelta(piece)
				}
			}
			for _, tc := range d.ToolCalls {
				calls.add(tc)
			}
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
		}
	}
	if err := stream.Err(); err != nil {
		return turn, p.callError(ctx, err, &last)
	}
	if ctx.Err() != nil {
		return turn, ctx.Err()
	}
	if finish == "" && !last.streamed() {
		// A 200 that is not an event stream: a proxy or a server that
		// ignored "stream": true. Another attempt would get the same.
		return turn, fmt.Errorf("llm: %s answered %q, not a stream: is OPENAI_BASE_URL an OpenAI-compatible API? %w",
			p.model, last.contentType, agent.ErrBadResponse)
	}
	if finish == "" && !last.done() {
		// The body ended cleanly but before the completion did: the server
		// or a proxy between went away. (Some gateways never send a finish
		// reason; their [DONE] says the answer is whole.)
		return turn, fmt.Errorf("llm: stream ended before the completion finished: %w", agent.ErrTransient)
	}
	turn.Text = text.String()
	turn.Calls = calls.calls()
	if turn.Text == "" && len(turn.Calls) == 0 {
		return turn, fmt.Errorf("llm: %s answered nothing (finish reason %q): %w", p.model, finish, agent.ErrBadResponse)
	}
	return turn, nil
}

// maxCallTokens bounds the token counts believed of one call: far beyond
// any model's context, and small enough that a run's sum over its calls
// (at most 51 with AI_MAX_TOOL_ROUNDS at 50) fits the run's int4 columns.
const maxCallTokens = 1 << 24

// usage is a call's reported usage, when its counts make sense: a server
// that sends zeros, negative counts or absurd ones has told nothing.
func usage(u openai.CompletionUsage) (agent.Usage, bool) {
	p, c := u.PromptTokens, u.CompletionTokens
	if p < 0 || c < 0 || p > maxCallTokens || c > maxCallTokens || p+c == 0 {
		return agent.Usage{}, false
	}
	return agent.Usage{PromptTokens: int(p), CompletionTokens: int(c), Reported: true}, true
}

// callError classifies the error that ended a call (see the package
// comment); last is what the SDK's last attempt saw.
//
// A timeout is told by the attempt's context, not by the error: a dial
// timeout also satisfies errors.Is(err, context.DeadlineExceeded), and a
// call timeout that ends the SDK's wait for Retry-After follows a 429.
func (p *OpenAI) callError(ctx context.Context, err error, last *attempt) error {
	if ctx.Err() != nil {
		return ctx.Err() // cancelled or timed out by the caller: not the model's fault
	}
	if last.timedOut() {
		if last.status >= 300 {
			return fmt.Errorf("llm: %s answered %d and the timeout ended the wait to retry: %w", p.model, last.status, agent.ErrModelUnavailable)
		}
		return fmt.Errorf("llm: %s: %w", p.model, agent.ErrModelTimeout)
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		msg := apiErr.Message
		if msg == "" {
			msg = http.StatusText(apiErr.StatusCode)
		}
		if retryableStatus(apiErr.StatusCode) {
			return fmt.Errorf("llm: %s answered %d after its retries: %s: %w", p.model, apiErr.StatusCode, msg, agent.ErrModelUnavailable)
		}
		return fmt.Errorf("llm: %s answered %d: %s: %w", p.model, apiErr.StatusCode, msg, agent.ErrModelRejected)
	}
	if last.status == 0 || last.status >= 300 {
		// No response: the server could not be reached through the retries.
		return fmt.Errorf("llm: %s: %w: %w", p.model, agent.ErrModelUnavailable, err)
	}
	// The stream started and then failed.
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return fmt.Errorf("llm: %s sent a chunk that is not a completion chunk: %w: %w", p.model, agent.ErrBadResponse, err)
	}
	var streamErr *ssestream.StreamError
	if errors.As(err, &streamErr) {
		if code := eventStatus(streamErr.Event.Data); code >= 400 && code < 500 && !retryableStatus(code) {
			// vLLM reports a request it cannot serve this way (code 400):
			// running the attempt again would only repeat it.
			return fmt.Errorf("llm: %s reported a %d mid-stream: %w: %w", p.model, code, agent.ErrModelRejected, err)
		}
		return fmt.Errorf("llm: %s reported an error mid-stream: %w: %w", p.model, agent.ErrTransient, err)
	}
	return fmt.Errorf("llm: %s: stream broken: %w: %w", p.model, agent.ErrTransient, err)
}

// retryableStatus reports the statuses the SDK retries: a moment's
// trouble, not the request's.
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500 ||
		code == http.StatusRequestTimeout || code == http.StatusConflict
}

// eventStatus is the HTTP-like code of an error event's
// {"error":{"code":…}}, or 0 when it has no numeric one (OpenAI's codes
// are words).
func eventStatus(data []byte) int {
	var ev struct {
		Error struct {
			Code json.RawMessage `json:"code"`
		} `json:"error"`
	}
	var code int
	if json.Unmarshal(data, &ev) != nil || json.Unmarshal(ev.Error.Code, &code) != nil {
		return 0
	}
	return code
}

// attempt is what the SDK's latest attempt of one call saw, kept by
// observe, the call's middleware. The SDK runs attempts one after another
// and reads the body from Complete's goroutine: no locking is needed.
type attempt struct {
	ctx    context.Context // the attempt's: it carries Config.Timeout
	status int             // the response's status; 0 while none came
	// contentType is the response's media type.
	contentType string
	tail        []byte // the last bytes of the body read so far
}

// doneMarker ends an OpenAI stream; the SDK consumes it without a trace.
var doneMarker = []byte("[DONE]")

func (a *attempt) observe(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	*a = attempt{ctx: req.Context()}
	res, err := next(req)
	if res != nil {
		a.status = res.StatusCode
		a.contentType, _, _ = mime.ParseMediaType(res.Header.Get("Content-Type"))
		if res.Body != nil {
			res.Body = tailReader{ReadCloser: res.Body, a: a}
		}
	}
	return res, err
}

// timedOut reports whether the attempt's own timeout (Config.Timeout)
// ended it.
func (a *attempt) timedOut() bool {
	return a.ctx != nil && errors.Is(a.ctx.Err(), context.DeadlineExceeded)
}

// streamed reports whether the response was an event stream.
func (a *attempt) streamed() bool { return a.contentType == "text/event-stream" }

// done reports whether the body read so far ends with the [DONE] event.
// Every other event is a JSON object, so only that one can end with it.
func (a *attempt) done() bool {
	return bytes.HasSuffix(bytes.TrimSpace(a.tail), doneMarker)
}

// keep appends b to the tail, keeping enough of it for done.
func (a *attempt) keep(b []byte) {
	const size = 32
	if len(b) >= size {
		a.tail = append(a.tail[:0], b[len(b)-size:]...)
		return
	}
	a.tail = append(a.tail, b...)
	if over := len(a.tail) - size; over > 0 {
		a.tail = a.tail[:copy(a.tail, a.tail[over:])]
	}
}

// tailReader is a response body that shows what it reads to its attempt.
type tailReader struct {
	io.ReadCloser
	a *attempt
}

func (r tailReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.a.keep(p[:n])
	return n, err
}

// params builds the request: the model, the messages in order, the tools,
// and a request for usage in the stream.
func (p *OpenAI) params(req agent.Request) (openai.ChatCompletionNewParams, error) {
	params := openai.ChatCompletionNewParams{
		Model:         shared.ChatModel(p.model),
		Messages:      make([]openai.ChatCompletionMessageParamUnion, 0, len(req.Messages)),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	if p.temperature != nil {
		params.Temperature = openai.Float(*p.temperature)
	}
	for _, m := range req.Messages {
		switch m.Role {
		case agent.RoleSystem:
			params.Messages = append(params.Messages, openai.SystemMessage(m.Content))
		case agent.RoleUser:
			params.Messages = append(params.Messages, openai.UserMessage(m.Content))
		case agent.RoleTool:
			params.Messages = append(params.Messages, openai.ToolMessage(m.Content, m.CallID))
		case agent.RoleAssistant:
			if m.Content == "" && len(m.Calls) == 0 {
				continue // a run cancelled before it said anything
			}
			params.Messages = append(params.Messages, assistantMessage(m))
		default:
			return params, fmt.Errorf("llm: message role %q", m.Role)
		}
	}
	for _, t := range req.Tools {
		var schema map[string]any
		if err := json.Unmarshal(t.Parameters, &schema); err != nil {
			return params, fmt.Errorf("llm: tool %s: parameters: %w", t.Name, err)
		}
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        t.Name,
			Description: openai.String(t.Description),
			Parameters:  schema,
		}))
	}
	return params, nil
}

// assistantMessage is an assistant message with its text and tool calls.
func assistantMessage(m agent.Message) openai.ChatCompletionMessageParamUnion {
	msg := openai.ChatCompletionAssistantMessageParam{}
	if m.Content != "" {
		msg.Content.OfString = openai.String(m.Content)
	}
	for _, c := range m.Calls {
		msg.ToolCalls = append(msg.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
			OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
				ID: c.ID,
				Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{
					Name:      c.Name,
					Arguments: string(c.Arguments),
				},
			},
		})
	}
	return openai.ChatCompletionMessageParamUnion{OfAssistant: &msg}
}

// callAssembler puts tool calls together from their streamed fragments.
// The first fragment of a call has its index, id and name; later ones the
// same index and more of the arguments. Some servers give every call index
// 0: a fragment with a new id then starts a new call.
type callAssembler struct {
	list  []*agent.Call
	args  []*strings.Builder
	index map[int64]int // stream index → position in list
}

func (a *callAssembler) add(tc openai.ChatCompletionChunkChoiceDeltaToolCall) {
	if a.index == nil {
		a.index = map[int64]int{}
	}
	pos, ok := a.index[tc.Index]
	if ok && tc.ID != "" && a.list[pos].ID != "" && tc.ID != a.list[pos].ID {
		ok = false
	}
	if !ok {
		pos = len(a.list)
		a.index[tc.Index] = pos
		a.list = append(a.list, &agent.Call{})
		a.args = append(a.args, &strings.Builder{})
	}
	c := a.list[pos]
	if tc.ID != "" {
		c.ID = tc.ID
	}
	if c.Name == "" {
		c.Name = tc.Function.Name
	}
	a.args[pos].WriteString(tc.Function.Arguments)
}

// calls returns the assembled calls in the order they started. Arguments
// are the model's text as is (the agent loop makes them JSON).
func (a *callAssembler) calls() []agent.Call {
	if len(a.list) == 0 {
		return nil
	}
	out := make([]agent.Call, len(a.list))
	for i, c := range a.list {
		out[i] = *c
		out[i].Arguments = json.RawMessage(a.args[i].String())
	}
	return out
}
