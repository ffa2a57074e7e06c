package chat

import "encoding/json"

// EventVersion is the schema version of the event envelope.
const EventVersion = 1

// Event names, in the order a run emits them: run.queued, run.started,
// then any number of message.delta, tool.call, tool.result (and
// run.restarted before a retry's new run.started), then message.completed,
// then exactly one of run.completed, run.failed, run.cancelled. reset is
// sent by the SSE relay only.
const (
	EventRunQueued        = "run.queued"
	EventRunStarted       = "run.started"
	EventMessageDelta     = "message.delta"
	EventToolCall         = "tool.call"
	EventToolResult       = "tool.result"
	EventRunRestarted     = "run.restarted"
	EventMessageCompleted = "message.completed"
	EventRunCompleted     = "run.completed"
	EventRunFailed        = "run.failed"
	EventRunCancelled     = "run.cancelled"
	EventReset            = "reset"
)

// QueuedEventID is the message id of a run's run.queued event. The API and
// the worker that starts the run both publish it under this id, so
// JetStream keeps exactly one, ahead of run.started.
func QueuedEventID(runID string) string { return runID + ".queued" }

// AnswerEventID and FinalEventID are the message ids of a run's
// message.completed and final event (run.completed, run.failed or
// run.cancelled). Whoever publishes them — the worker, the API cancelling a
// queued run, a worker republishing after a crash between commit and
// publish — uses these ids, so JetStream keeps one of each.
func AnswerEventID(runID string) string { return runID + ".answer" }

// FinalEventID is the message id of a run's final event (see AnswerEventID).
func FinalEventID(runID string) string { return runID + ".final" }

// FinalEvent reports whether name ends a run.
func FinalEvent(name string) bool {
	return name == EventRunCompleted || name == EventRunFailed || name == EventRunCancelled
}

// Event is one run event as published on the conversation's event subject:
// a versioned envelope whose Data is the payload of Type (one of the
// payload structs below). Seq is filled in by whoever read it from the
// stream (the per-conversation cursor); it is not part of the JSON.
type Event struct {
	V              int             `json:"v"`
	Type           string          `json:"type"`
	ConversationID string          `json:"conversation_id"`
	RunID          string          `json:"run_id"`
	Data           json.RawMessage `json:"data"`
	Seq            uint64          `json:"-"`
}

// NewEvent builds an envelope around payload.
func NewEvent(typ, conversationID, runID string, payload any) (Event, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return Event{}, err
	}
	return Event{V: EventVersion, Type: typ, ConversationID: conversationID, RunID: runID, Data: b}, nil
}

// RunQueuedData is run.queued's payload; MessageID is the user's message,
// Position 0 means next to run in its conversation.
type RunQueuedData struct {
	RunID     string `json:"run_id"`
	MessageID string `json:"message_id"`
	Position  int    `json:"position"`
}

// RunStartedData is run.started's payload; MessageID is the assistant
// message the run will write.
type RunStartedData struct {
	RunID     string `json:"run_id"`
	Attempt   int    `json:"attempt"`
	MessageID string `json:"message_id"`
}

// MessageDeltaData is message.delta's payload: assistant text as generated.
type MessageDeltaData struct {
	RunID     string `json:"run_id"`
	MessageID string `json:"message_id"`
	Delta     string `json:"delta"`
}

// ToolCallData is tool.call's payload.
type ToolCallData struct {
	RunID     string          `json:"run_id"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// ToolResultData is tool.result's payload.
type ToolResultData struct {
	RunID  string          `json:"run_id"`
	CallID string          `json:"call_id"`
	Name   string          `json:"name"`
	Result json.RawMessage `json:"result"`
}

// RunRestartedData is run.restarted's payload: clients drop the run's
// partial text.
type RunRestartedData struct {
	RunID   string `json:"run_id"`
	Attempt int    `json:"attempt"`
}

// MessageCompletedData is message.completed's payload.
type MessageCompletedData struct {
	RunID   string  `json:"run_id"`
	Message Message `json:"message"`
}

// RunCompletedData is run.completed's payload.
type RunCompletedData struct {
	RunID     string     `json:"run_id"`
	Response  string     `json:"response"`
	ToolCalls []ToolCall `json:"tool_calls"`
}

// RunFailedData is run.failed's payload.
type RunFailedData struct {
	RunID     string   `json:"run_id"`
	Error     RunError `json:"error"`
	Retryable bool     `json:"retryable"`
}

// RunCancelledData is run.cancelled's payload.
type RunCancelledData struct {
	RunID string `json:"run_id"`
}

// ResetData is reset's payload.
type ResetData struct {
	Reason string `json:"reason"`
}
