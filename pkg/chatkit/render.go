package chatkit

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taskchat/taskchat/pkg/chat"
)

// Renderer turns one run's events into ChatKit stream events: the
// assistant's text becomes an assistant_message item (added, a
// content_part.added, a text_delta per message.delta, content_part.done,
// done with the stored text), its tool calls a workflow item with one task
// per call (added as "Adding 'Buy milk'", updated to "Added 'Buy milk'"),
// and a failed run an error event. Items are finished from the stored
// message (message.completed), so the stream ends with exactly the items
// threads.get_by_id shows afterwards. A Renderer is used by one goroutine.
type Renderer struct {
	threadID string
	now      func() time.Time

	messageID string // the assistant message's id (run.started)
	// textOpen: the assistant_message item was added and not yet done.
	textOpen bool
	// tasks is the open workflow item's tasks (nil: none open); calls
	// finds a call's task.
	tasks []Task
	calls map[string]call
}

// call is a tool call shown as a task.
type call struct {
	index int
	name  string
	args  json.RawMessage
}

// NewRenderer returns a Renderer for a run of thread threadID whose
// assistant message will have id messageID. now stamps the items added
// before the message is stored.
func NewRenderer(threadID, messageID string, now func() time.Time) *Renderer {
	return &Renderer{threadID: threadID, messageID: messageID, now: now, calls: map[string]call{}}
}

// Render returns the ChatKit events that show ev (none for events that
// change nothing on screen) and whether ev ends the run. An event whose
// payload cannot be read is an error; the run's other events still
// render.
func (r *Renderer) Render(ev chat.Event) (events []any, end bool, err error) {
	switch ev.Type {
	case chat.EventRunStarted:
		var d chat.RunStartedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, false, r.bad(ev, err)
		}
		if d.MessageID != "" {
			r.messageID = d.MessageID
		}
	case chat.EventRunRestarted:
		// The retry announces the recorded text and calls again.
		return r.dropOpen(), false, nil
	case chat.EventMessageDelta:
		var d chat.MessageDeltaData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, false, r.bad(ev, err)
		}
		return r.delta(d.Delta), false, nil
	case chat.EventToolCall:
		var d chat.ToolCallData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, false, r.bad(ev, err)
		}
		return r.toolCall(d), false, nil
	case chat.EventToolResult:
		var d chat.ToolResultData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, false, r.bad(ev, err)
		}
		return r.toolResult(d), false, nil
	case chat.EventMessageCompleted:
		var d chat.MessageCompletedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, false, r.bad(ev, err)
		}
		return r.completed(d.Message), false, nil
	case chat.EventRunCompleted, chat.EventRunCancelled:
		// Whatever message.completed did not finish was not kept.
		return r.dropOpen(), true, nil
	case chat.EventRunFailed:
		var d chat.RunFailedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return append(r.dropOpen(), Error("the assistant could not answer", true)), true, r.bad(ev, err)
		}
		msg := d.Error.Message
		if msg == "" {
			msg = "the assistant could not answer"
		}
		return append(r.dropOpen(), Error(upperFirst(msg), d.Retryable)), true, nil
	}
	return nil, false, nil
}

func (r *Renderer) bad(ev chat.Event, err error) error {
	return fmt.Errorf("chatkit: render %s of run %s: %w", ev.Type, ev.RunID, err)
}

func (r *Renderer) base(id, typ string) itemBase {
	return itemBase{ID: id, ThreadID: r.threadID, CreatedAt: r.now().UTC(), Type: typ}
}

func (r *Renderer) delta(s string) []any {
	var out []any
	if !r.textOpen {
		r.textOpen = true
		added := &AssistantMessageItem{itemBase: r.base(r.messageID, ItemAssistantMessage), Content: []OutputText{}}
		out = append(out,
			ItemEvent{Type: EventItemAdded, Item: added},
			r.update(r.messageID, PartUpdate{Type: UpdatePartAdded, Content: outputText("")}))
	}
	return append(out, r.update(r.messageID, TextDelta{Type: UpdateTextDelta, Delta: s}))
}

func (r *Renderer) toolCall(d chat.ToolCallData) []any {
	var out []any
	if r.textOpen {
		// Text before a tool call is the model thinking aloud: the stored
		// answer is the text after the last call, in an item below the
		// workflow. Take it away; later deltas add the item again.
		out = append(out, ItemRemovedEvent{Type: EventItemRemoved, ItemID: r.messageID})
		r.textOpen = false
	}
	if r.tasks == nil {
		r.tasks = []Task{}
		added := &WorkflowItem{itemBase: r.base(WorkflowID(r.messageID), ItemWorkflow), Workflow: Workflow{Type: "custom", Tasks: []Task{}}}
		out = append(out, ItemEvent{Type: EventItemAdded, Item: added})
	}
	task := Task{Type: "custom", Title: TaskPending(d.Name, d.Arguments), StatusIndicator: TaskLoading}
	if c, seen := r.calls[d.CallID]; seen { // a retry announcing it again
		r.tasks[c.index] = task
		return append(out, r.update(WorkflowID(r.messageID), TaskUpdate{Type: UpdateTaskUpdated, TaskIndex: c.index, Task: task}))
	}
	c := call{index: len(r.tasks), name: d.Name, args: d.Arguments}
	r.calls[d.CallID] = c
	r.tasks = append(r.tasks, task)
	return append(out, r.update(WorkflowID(r.messageID), TaskUpdate{Type: UpdateTaskAdded, TaskIndex: c.index, Task: task}))
}

func (r *Renderer) toolResult(d chat.ToolResultData) []any {
	c, ok := r.calls[d.CallID]
	if !ok {
		return nil // its tool.call was not seen: message.completed shows it
	}
	task := Task{Type: "custom", Title: TaskDone(c.name, c.args, d.Result), StatusIndicator: TaskComplete}
	r.tasks[c.index] = task
	return []any{r.update(WorkflowID(r.messageID), TaskUpdate{Type: UpdateTaskUpdated, TaskIndex: c.index, Task: task})}
}

// completed finishes the items from the stored message m.
func (r *Renderer) completed(m chat.Message) []any {
	var out []any
	for _, it := range ItemsOf(m) {
		switch it := it.(type) {
		case *AssistantMessageItem:
			if r.textOpen {
				out = append(out, r.update(it.ID, PartUpdate{Type: UpdatePartDone, Content: it.Content[0]}))
				r.textOpen = false
			}
		case *WorkflowItem:
			r.tasks = nil
		}
		out = append(out, ItemEvent{Type: EventItemDone, Item: it})
	}
	// An item streamed but not stored (text before the calls of a
	// cancelled run with none after) goes.
	return append(out, r.dropOpen()...)
}

// dropOpen removes the items added but not done.
func (r *Renderer) dropOpen() []any {
	var out []any
	if r.tasks != nil {
		out = append(out, ItemRemovedEvent{Type: EventItemRemoved, ItemID: WorkflowID(r.messageID)})
	}
	if r.textOpen {
		out = append(out, ItemRemovedEvent{Type: EventItemRemoved, ItemID: r.messageID})
	}
	r.tasks, r.textOpen, r.calls = nil, false, map[string]call{}
	return out
}

func (r *Renderer) update(itemID string, u any) ItemUpdatedEvent {
	return ItemUpdatedEvent{Type: EventItemUpdated, ItemID: itemID, Update: u}
}

// upperFirst capitalises the first letter of s, whatever its length in
// bytes.
func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
