// Package agent is the assistant's loop: it asks a model (a Provider) for
// the next turn, runs the tool calls the model makes through a ToolRunner
// bound to the run's user, feeds the results back, and repeats until the
// model answers in text or the round cap is hit. It also holds the five
// todo tools and the offline provider.
//
// The loop knows nothing of NATS, HTTP or transactions: the worker gives it
// a ToolRunner that applies each call and records it in the ledger in one
// transaction, and a Sink that publishes events. A retried run passes the
// rounds its ledger already holds, and the loop continues after them
// instead of asking the model to do them again.
//
// Replay: the recorded rounds become the model's messages (an assistant
// message with the round's text and calls, then one tool message per
// result) and the loop asks the model for the next round. Their tools are
// not run again (RunTool is not called for them), but they are announced
// to the Sink again, before anything new: the round's text as one Delta,
// then ToolCall and ToolResult for each call with its recorded id and
// result. The worker publishes run.restarted before a retry, clients drop
// what they had of the run, and the retry's events alone rebuild the
// whole run, as if it had run once.
//
// Text: every turn's text is streamed to Sink.Delta as it arrives,
// including the text a model writes next to its tool calls (which the
// ledger keeps as Round.Text); Result.Text is the final turn's text only,
// the answer. The offline provider writes no text next to its calls, so
// its deltas add up to Result.Text exactly.
//
// The five tools (ExecTool, ToolSpecs) are the todo app's tool set of
// API.md; the user they act for is always the caller's, never an argument.
// The offline provider (NewOffline) stands in for a model when none is
// configured.
package agent

import (
	"context"
	"encoding/json"
	"errors"
)

// ErrTransient is wrapped by provider and tool errors worth retrying (the
// model's stream broke, the database blinked); the run is then retried.
var ErrTransient = errors.New("agent: transient failure")

// Provider errors that end a run at once, each with its own code: the
// provider has already retried what was worth retrying.
var (
	// ErrModelUnavailable: the model could not be reached, or kept
	// answering 429 or 5xx, through the provider's retries.
	ErrModelUnavailable = errors.New("agent: model unavailable")
	// ErrModelTimeout: one model call took longer than its timeout.
	ErrModelTimeout = errors.New("agent: model call timed out")
	// ErrModelRejected: the model's server refused the request (4xx: a
	// wrong key, an unknown model, a request too long for it).
	ErrModelRejected = errors.New("agent: model rejected the request")
	// ErrBadResponse: the model answered something that cannot be used (a
	// chunk that is not JSON, an empty answer).
	ErrBadResponse = errors.New("agent: unusable model response")
)

// Roles of Message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one entry of the conversation the model sees.
type Message struct {
	Role    string
	Content string
	// Calls are the tool calls of an assistant message.
	Calls []Call
	// CallID and Name identify the call a tool message answers.
	CallID string
	Name   string
}

// Call is a tool call the model asked for. Arguments is the JSON text the
// model produced (it may be invalid: the tool answers with an error). The
// loop hands ToolRunner, Sink and Result valid JSON only: empty arguments
// as {}, text that is not JSON as a JSON string holding it.
type Call struct {
	ID        string
	Name      string
	Arguments json.RawMessage
}

// ToolSpec describes a tool to the model: Parameters is a JSON schema.
type ToolSpec struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// Request is the input of one model turn.
type Request struct {
	Messages []Message
	Tools    []ToolSpec
}

// Turn is what the model answered in one round: text, tool calls, or both.
type Turn struct {
	Text  string
	Calls []Call
	// Usage is what the turn cost, when the model's server said (zero
	// otherwise).
	Usage Usage
}

// Usage counts the tokens of model calls. Many OpenAI-compatible servers
// do not report them; Reported tells a zero count from an unknown one.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	Reported         bool
}

// Add returns the sum of u and v (reported when either was).
func (u Usage) Add(v Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + v.PromptTokens,
		CompletionTokens: u.CompletionTokens + v.CompletionTokens,
		Reported:         u.Reported || v.Reported,
	}
}

// Provider is a model. Implementations are safe for concurrent use.
type Provider interface {
	// Complete runs one turn. It calls onDelta with each piece of text as it
	// is generated (from the calling goroutine, in order) and returns the
	// whole turn. An error means the turn produced nothing usable (the
	// returned Turn may still carry its Usage); errors worth retrying wrap
	// ErrTransient, and the model errors above end the run with their code.
	// When ctx ends, Complete returns promptly.
	Complete(ctx context.Context, req Request, onDelta func(text string)) (Turn, error)
	// Model names the model, for the assistant message's model field.
	Model() string
}

// RecordedCall is a call of a recorded round with its result.
type RecordedCall struct {
	Call
	Result json.RawMessage
}

// Round is one tool round a previous attempt recorded in the ledger: the
// model's text of that round and each call with its result, by index.
type Round struct {
	Text  string
	Calls []RecordedCall
}

// ToolRunner runs tool calls for the run's user. RunTool applies call
// (index i of round r) and records it with its result in one transaction;
// when (r, i) is already recorded it returns the recorded result without
// applying the call again. Tool failures are results
// ({"status":"error",…}), not errors; an error means the call could not
// be run or recorded (the run is retried).
type ToolRunner interface {
	RunTool(ctx context.Context, round, index int, text string, call Call) (json.RawMessage, error)
}

// Sink receives what the run produces, as it happens, from the loop's
// goroutine.
type Sink interface {
	// Delta is a piece of the answer's text.
	Delta(text string)
	// ToolCall is a call about to run; ToolResult its result.
	ToolCall(call Call)
	ToolResult(call Call, result json.RawMessage)
}

// Input is what a run starts from.
type Input struct {
	// History is the conversation so far, oldest first, ending with the
	// user message being answered; it is already cut to the history window.
	History []Message
	// Ledger holds the rounds a previous attempt recorded, in order.
	Ledger []Round
}

// Result is a finished run: the answer's text and every tool call of
// every round with its result, in order.
type Result struct {
	Text  string
	Calls []RecordedCall
	Model string
	// Usage sums the model calls of this attempt.
	Usage Usage
}
