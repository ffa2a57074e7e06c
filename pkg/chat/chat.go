// Package chat owns conversations, their messages, the runs that answer
// them, and the ledger of tool rounds each run records; it also defines the
// run events the pipeline publishes (the SSE contract's types).
//
// Every Store method takes the id of the user it acts for and restricts its
// queries to that user's rows, so another user's conversation, message or
// run is indistinguishable from a missing one (ErrNotFound). Rule
// violations are *validate.Error values. Database outages wrap
// pgdb.ErrUnavailable.
//
// Wire types (request bodies, event payloads, the JSON forms of
// Conversation, Message, Run and ToolCall) carry json tags only; the bun
// models that map rows live in store.go and never leave this package.
package chat

import (
	"encoding/json"
	"errors"
	"time"
)

// Limits of the chat rules, in Unicode code points after trimming.
const (
	MaxMessageLen = 4000
	MaxTitleLen   = 200
)

// Sentinel errors of the store. Callers decide with errors.Is.
var (
	// ErrNotFound: the conversation, message or run does not exist or
	// belongs to another user.
	ErrNotFound = errors.New("chat: not found")
	// ErrTooManyRuns: the user already has the maximum of unfinished runs.
	ErrTooManyRuns = errors.New("chat: too many unfinished runs")
	// ErrIdempotencyKeyReused: the Idempotency-Key was used with another body.
	ErrIdempotencyKeyReused = errors.New("chat: idempotency key reused with a different request")
	// ErrRunFinished: the run is already completed, failed or cancelled.
	ErrRunFinished = errors.New("chat: run already finished")
	// ErrConversationBusy: the conversation has a queued or running run, so
	// its later messages cannot be replaced yet (RetryTurn).
	ErrConversationBusy = errors.New("chat: conversation has an unfinished run")
)

// RunStatus is a run's state. A run moves queued → running → one of the
// three final states (or queued → cancelled/failed directly); running may
// go back to queued when a worker hands it back.
type RunStatus string

// The run statuses.
const (
	RunQueued    RunStatus = "queued"
	RunRunning   RunStatus = "running"
	RunCompleted RunStatus = "completed"
	RunFailed    RunStatus = "failed"
	RunCancelled RunStatus = "cancelled"
)

// Final reports whether s is completed, failed or cancelled.
func (s RunStatus) Final() bool {
	return s == RunCompleted || s == RunFailed || s == RunCancelled
}

// Message roles.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Conversation is a chat thread of one user.
type Conversation struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastMessagePreview is the start of the newest message (lists only).
	LastMessagePreview *string `json:"last_message_preview,omitempty"`
}

// ToolCall is one tool call of an assistant message with its result;
// Arguments and Result are JSON objects (never JSON strings).
type ToolCall struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Result    json.RawMessage `json:"result"`
}

// Message is one message of a conversation. ToolCalls is never nil (an
// empty list for user messages). RunID is the run the message belongs to:
// for a user message the run that answers it, for an assistant message the
// run that wrote it.
type Message struct {
	ID             string     `json:"id"`
	ConversationID string     `json:"conversation_id"`
	RunID          string     `json:"run_id"`
	Role           string     `json:"role"`
	Content        string     `json:"content"`
	ToolCalls      []ToolCall `json:"tool_calls"`
	Model          string     `json:"model,omitempty"`
	// Feedback is the user's rating of an assistant message, FeedbackPositive
	// or FeedbackNegative; "" (absent in JSON) when none was given.
	Feedback  string    `json:"feedback,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Values of Message.Feedback.
const (
	FeedbackPositive = "positive"
	FeedbackNegative = "negative"
)

// RunError is why a run failed (or was cancelled).
type RunError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Run is one answer being produced for one user message.
type Run struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	// MessageID is the user message the run answers.
	MessageID string `json:"message_id"`
	// AssistantMessageID is the id the run's assistant message gets; it is
	// fixed when the run is created so events can name it before it exists.
	AssistantMessageID string     `json:"-"`
	Status             RunStatus  `json:"status"`
	Attempts           int        `json:"attempts"`
	Error              *RunError  `json:"error"`
	CreatedAt          time.Time  `json:"created_at"`
	StartedAt          *time.Time `json:"started_at"`
	FinishedAt         *time.Time `json:"finished_at"`
	// Usage is the tokens the run's model calls took, null until the run
	// finished or when the model's server did not say.
	Usage *Usage `json:"usage"`
	// UserID owns the run (never shown to clients: it is in the path).
	UserID string `json:"-"`
}

// Usage counts a run's model tokens: the calls of the attempt that
// finished it.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Error codes of failed or cancelled runs.
const (
	CodeCancelled        = "CANCELLED"
	CodeConversationGone = "CONVERSATION_DELETED"
	CodeAttemptsExceeded = "ATTEMPTS_EXCEEDED"
	CodeAgentError       = "AGENT_ERROR"
	CodeToolRoundsCapped = "TOOL_ROUNDS_EXCEEDED"
	// The model could not be reached, or kept answering 429 or 5xx,
	// through the retries.
	CodeAIUnavailable = "AI_UNAVAILABLE"
	// A model call, or the whole run, took longer than its timeout.
	CodeAITimeout = "AI_TIMEOUT"
	// The model's server refused the request (a wrong key, an unknown
	// model, a conversation too long for it): a setting to fix.
	CodeAIRejected = "AI_REJECTED"
	// The model answered something that cannot be used.
	CodeAIBadResponse = "AI_BAD_RESPONSE"
)

// Retryable reports whether sending the same message again may succeed
// after a run failed with e: the failure was the moment's, not the
// request's or the configuration's.
func (e RunError) Retryable() bool {
	switch e.Code {
	case CodeAttemptsExceeded, CodeAIUnavailable, CodeAITimeout, CodeAIBadResponse:
		return true
	}
	return false
}
