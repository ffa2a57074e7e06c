package chatkit

import (
	"encoding/json"
	"time"
)

// Page is ChatKit's page of a list: Data in the order asked for, HasMore
// when rows follow, and then After, the id of the last row in Data: the
// next page starts strictly after it. As in ChatKit's reference store,
// After is set only when HasMore is (omitted on the last page).
type Page[T any] struct {
	Data    []T     `json:"data"`
	HasMore bool    `json:"has_more"`
	After   *string `json:"after,omitempty"`
}

// newPage makes a Page of data; Data is never null.
func newPage[T any](data []T, more bool, id func(T) string) Page[T] {
	if data == nil {
		data = []T{}
	}
	p := Page[T]{Data: data, HasMore: more}
	if more && len(data) > 0 {
		last := id(data[len(data)-1])
		p.After = &last
	}
	return p
}

// Thread is a conversation as ChatKit shows it. Items is its first page
// of items in threads.get_by_id, empty elsewhere.
type Thread struct {
	ID        string           `json:"id"`
	Title     string           `json:"title,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	Status    ThreadStatus     `json:"status"`
	Metadata  struct{}         `json:"metadata"`
	Items     Page[ThreadItem] `json:"items"`
}

// ThreadStatus is a thread's status; taskchat's threads are always
// "active".
type ThreadStatus struct {
	Type string `json:"type"`
}

// ThreadItem is one item of a thread: *UserMessageItem,
// *AssistantMessageItem or *WorkflowItem.
type ThreadItem interface {
	// ItemID returns the item's id.
	ItemID() string
}

// itemBase holds the fields every item has.
type itemBase struct {
	ID        string    `json:"id"`
	ThreadID  string    `json:"thread_id"`
	CreatedAt time.Time `json:"created_at"`
	Type      string    `json:"type"`
}

// ItemID returns the item's id.
func (b itemBase) ItemID() string { return b.ID }

// Item types.
const (
	ItemUserMessage      = "user_message"
	ItemAssistantMessage = "assistant_message"
	ItemWorkflow         = "workflow"
)

// UserMessageItem is a user's message.
type UserMessageItem struct {
	itemBase
	Content          []UserContent    `json:"content"`
	Attachments      []struct{}       `json:"attachments"`
	QuotedText       string           `json:"quoted_text,omitempty"`
	InferenceOptions InferenceOptions `json:"inference_options"`
}

// UserContent is one part of a user message: input_text (Text) or
// input_tag (ID, Text, Data, Group, Interactive).
type UserContent struct {
	Type        string          `json:"type"`
	Text        string          `json:"text"`
	ID          string          `json:"id,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	Group       *string         `json:"group,omitempty"`
	Interactive bool            `json:"interactive,omitempty"`
}

// Content part types.
const (
	ContentInputText  = "input_text"
	ContentInputTag   = "input_tag"
	ContentOutputText = "output_text"
)

// InferenceOptions are the model settings a user message asked for;
// taskchat reads neither.
type InferenceOptions struct {
	ToolChoice *struct {
		ID string `json:"id"`
	} `json:"tool_choice,omitempty"`
	Model *string `json:"model,omitempty"`
}

// AssistantMessageItem is an assistant's answer.
type AssistantMessageItem struct {
	itemBase
	Content []OutputText `json:"content"`
}

// OutputText is a part of an assistant message.
type OutputText struct {
	Type        string     `json:"type"`
	Text        string     `json:"text"`
	Annotations []struct{} `json:"annotations"`
}

func outputText(text string) OutputText {
	return OutputText{Type: ContentOutputText, Text: text, Annotations: []struct{}{}}
}

// WorkflowItem shows the assistant's tool work as a list of tasks.
type WorkflowItem struct {
	itemBase
	Workflow Workflow `json:"workflow"`
}

// Workflow is a WorkflowItem's content.
type Workflow struct {
	Type     string           `json:"type"`
	Tasks    []Task           `json:"tasks"`
	Summary  *WorkflowSummary `json:"summary,omitempty"`
	Expanded bool             `json:"expanded"`
}

// WorkflowSummary is a workflow's custom summary line.
type WorkflowSummary struct {
	Title string `json:"title"`
}

// Task is a custom workflow task: one tool call, said in plain words.
type Task struct {
	Type            string `json:"type"`
	Title           string `json:"title,omitempty"`
	Content         string `json:"content,omitempty"`
	StatusIndicator string `json:"status_indicator"`
}

// Task status indicators.
const (
	TaskLoading  = "loading"
	TaskComplete = "complete"
)

// Stream event types.
const (
	EventThreadCreated = "thread.created"
	EventThreadUpdated = "thread.updated"
	EventItemAdded     = "thread.item.added"
	EventItemDone      = "thread.item.done"
	EventItemUpdated   = "thread.item.updated"
	EventItemRemoved   = "thread.item.removed"
	EventStreamOptions = "stream_options"
	EventError         = "error"
)

// ThreadEvent is thread.created or thread.updated.
type ThreadEvent struct {
	Type   string `json:"type"`
	Thread Thread `json:"thread"`
}

// ItemEvent is thread.item.added or thread.item.done.
type ItemEvent struct {
	Type string     `json:"type"`
	Item ThreadItem `json:"item"`
}

// ItemUpdatedEvent is thread.item.updated.
type ItemUpdatedEvent struct {
	Type   string `json:"type"`
	ItemID string `json:"item_id"`
	Update any    `json:"update"`
}

// ItemRemovedEvent is thread.item.removed.
type ItemRemovedEvent struct {
	Type   string `json:"type"`
	ItemID string `json:"item_id"`
}

// StreamOptionsEvent is stream_options.
type StreamOptionsEvent struct {
	Type          string `json:"type"`
	StreamOptions struct {
		AllowCancel bool `json:"allow_cancel"`
	} `json:"stream_options"`
}

// ErrorEvent is error: Code is "custom" (with Message) or "stream.error".
type ErrorEvent struct {
	Type       string `json:"type"`
	Code       string `json:"code"`
	Message    string `json:"message,omitempty"`
	AllowRetry bool   `json:"allow_retry"`
}

// Error codes of ErrorEvent.
const (
	ErrorCustom = "custom"
	ErrorStream = "stream.error"
)

// Update types of thread.item.updated.
const (
	UpdatePartAdded   = "assistant_message.content_part.added"
	UpdateTextDelta   = "assistant_message.content_part.text_delta"
	UpdatePartDone    = "assistant_message.content_part.done"
	UpdateTaskAdded   = "workflow.task.added"
	UpdateTaskUpdated = "workflow.task.updated"
)

// PartUpdate is content_part.added or content_part.done.
type PartUpdate struct {
	Type         string     `json:"type"`
	ContentIndex int        `json:"content_index"`
	Content      OutputText `json:"content"`
}

// TextDelta is content_part.text_delta.
type TextDelta struct {
	Type         string `json:"type"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
}

// TaskUpdate is workflow.task.added or workflow.task.updated.
type TaskUpdate struct {
	Type      string `json:"type"`
	TaskIndex int    `json:"task_index"`
	Task      Task   `json:"task"`
}

// StreamOptions returns the stream_options event taskchat sends after the
// user's item: the client may cancel (its stop button).
func StreamOptions() StreamOptionsEvent {
	e := StreamOptionsEvent{Type: EventStreamOptions}
	e.StreamOptions.AllowCancel = true
	return e
}

// Error returns an error event with a message for people.
func Error(message string, allowRetry bool) ErrorEvent {
	return ErrorEvent{Type: EventError, Code: ErrorCustom, Message: message, AllowRetry: allowRetry}
}
