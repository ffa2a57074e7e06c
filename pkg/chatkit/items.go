package chatkit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/validate"
)

// DefaultPageSize is a page's size when the request gives no limit, and
// the size of the first page of items threads.get_by_id returns.
const DefaultPageSize = 20

// workflowPrefix starts the id of the workflow item of an assistant
// message: "wf_" and the message's id. Every other item's id is its
// message's id, and a thread's id is its conversation's.
const workflowPrefix = "wf_"

// WorkflowID returns the id of the workflow item that shows the tool calls
// of assistant message messageID.
func WorkflowID(messageID string) string { return workflowPrefix + messageID }

// MessageID returns the id of the message behind item id.
func MessageID(itemID string) string { return strings.TrimPrefix(itemID, workflowPrefix) }

// IsWorkflowID reports whether itemID is a workflow item's id (see
// WorkflowID), which is never a user message's.
func IsWorkflowID(itemID string) bool { return strings.HasPrefix(itemID, workflowPrefix) }

// ThreadOf returns conversation c as a thread with the given items.
func ThreadOf(c chat.Conversation, items Page[ThreadItem]) Thread {
	return Thread{ID: c.ID, Title: c.Title, CreatedAt: c.CreatedAt, Status: ThreadStatus{Type: "active"}, Items: items}
}

// emptyItems is the items page of threads outside threads.get_by_id.
func emptyItems() Page[ThreadItem] { return Page[ThreadItem]{Data: []ThreadItem{}} }

// Threads returns conversations as a page of threads without items.
func Threads(convs []chat.Conversation, more bool) Page[Thread] {
	out := make([]Thread, len(convs))
	for i, c := range convs {
		out[i] = ThreadOf(c, emptyItems())
	}
	return newPage(out, more, func(t Thread) string { return t.ID })
}

// ItemsOf returns the items that show message m, oldest first: a user
// message is one item; an assistant message is a workflow item for its tool
// calls (when it made any), then its text (when it has text, or made no
// calls).
func ItemsOf(m chat.Message) []ThreadItem {
	if m.Role == chat.RoleUser {
		return []ThreadItem{UserItem(m)}
	}
	var out []ThreadItem
	if len(m.ToolCalls) > 0 {
		out = append(out, workflowOf(m))
	}
	if m.Content != "" || len(m.ToolCalls) == 0 {
		out = append(out, assistantOf(m))
	}
	return out
}

// UserItem returns user message m as an item.
func UserItem(m chat.Message) *UserMessageItem {
	return &UserMessageItem{
		itemBase:    itemBase{ID: m.ID, ThreadID: m.ConversationID, CreatedAt: m.CreatedAt, Type: ItemUserMessage},
		Content:     []UserContent{{Type: ContentInputText, Text: m.Content}},
		Attachments: []struct{}{},
	}
}

func assistantOf(m chat.Message) *AssistantMessageItem {
	return &AssistantMessageItem{
		itemBase: itemBase{ID: m.ID, ThreadID: m.ConversationID, CreatedAt: m.CreatedAt, Type: ItemAssistantMessage},
		Content:  []OutputText{outputText(m.Content)},
	}
}

func workflowOf(m chat.Message) *WorkflowItem {
	tasks := make([]Task, len(m.ToolCalls))
	for i, c := range m.ToolCalls {
		tasks[i] = Task{Type: "custom", Title: TaskDone(c.Name, c.Arguments, c.Result), StatusIndicator: TaskComplete}
	}
	return &WorkflowItem{
		itemBase: itemBase{ID: WorkflowID(m.ID), ThreadID: m.ConversationID, CreatedAt: m.CreatedAt, Type: ItemWorkflow},
		Workflow: Workflow{Type: "custom", Tasks: tasks, Summary: summary(tasks)},
	}
}

// summary is a finished workflow's one line: its task's title, or how
// many steps it took.
func summary(tasks []Task) *WorkflowSummary {
	switch len(tasks) {
	case 0:
		return nil
	case 1:
		return &WorkflowSummary{Title: tasks[0].Title}
	}
	return &WorkflowSummary{Title: fmt.Sprintf("Worked on your tasks (%d steps)", len(tasks))}
}

// MessageStore is what ListItems needs of *chat.Store; its methods act for
// userID only (see package chat).
type MessageStore interface {
	ListMessages(ctx context.Context, userID, conversationID string, p chat.ListParams) (chat.MessagePage, error)
	GetMessage(ctx context.Context, userID, conversationID, messageID string) (chat.Message, error)
}

// PageParams are the limit, order and after of threads.list and
// items.list, as sent.
type PageParams struct {
	Limit *int   `json:"limit"`
	Order string `json:"order"`
	After string `json:"after"`
}

// Normalize applies the defaults (limit 20, order desc) and bounds a limit
// to chat.MaxLimit; a negative limit or another order is a *validate.Error.
func (p PageParams) Normalize() (limit int, order string, err error) {
	var v validate.Errors
	limit, order = DefaultPageSize, p.Order
	if p.Limit != nil && *p.Limit != 0 {
		limit = min(*p.Limit, chat.MaxLimit)
	}
	if limit < 0 {
		v.Add("params.limit", "must not be negative")
	}
	if order == "" {
		order = chat.OrderDesc
	}
	if order != chat.OrderAsc && order != chat.OrderDesc {
		v.Add("params.order", "must be asc or desc")
	}
	return limit, order, v.Err()
}

// ListItems returns a page of the items of userID's conversation threadID
// (see ItemsOf) in p's order, after the item p.After. chat.ErrNotFound
// when the conversation, or p.After in it, is not the user's.
func ListItems(ctx context.Context, store MessageStore, userID, threadID string, p PageParams) (Page[ThreadItem], error) {
	limit, order, err := p.Normalize()
	if err != nil {
		return Page[ThreadItem]{}, err
	}
	inOrder := func(items []ThreadItem) []ThreadItem {
		if order == chat.OrderDesc {
			slices.Reverse(items)
		}
		return items
	}
	// The items of the message p.After belongs to that come after it.
	var items []ThreadItem
	afterMessage := ""
	if p.After != "" {
		m, err := store.GetMessage(ctx, userID, threadID, MessageID(p.After))
		if err != nil {
			return Page[ThreadItem]{}, err
		}
		own := inOrder(ItemsOf(m))
		i := slices.IndexFunc(own, func(it ThreadItem) bool { return it.ItemID() == p.After })
		if i < 0 {
			return Page[ThreadItem]{}, chat.ErrNotFound
		}
		items, afterMessage = own[i+1:], m.ID
	}
	// Every message has an item: limit+1 items need at most this many
	// messages.
	n := min(max(limit+1-len(items), 1), chat.MaxLimit)
	page, err := store.ListMessages(ctx, userID, threadID, chat.ListParams{Limit: n, Order: order, After: afterMessage})
	if err != nil {
		return Page[ThreadItem]{}, err
	}
	for _, m := range page.Messages {
		items = append(items, inOrder(ItemsOf(m))...)
	}
	more := page.NextCursor != "" || len(items) > limit
	if len(items) > limit {
		items = items[:limit]
	}
	return newPage(items, more, ThreadItem.ItemID), nil
}

// toolArgs are the arguments of the todo tools that a task's line names.
type toolArgs struct {
	Title  string `json:"title"`
	TaskID int64  `json:"task_id"`
}

// toolWords returns what a call of tool name does, as "Adding 'X'", and
// its failure, as "Could not add 'X'".
func toolWords(name string, args json.RawMessage) (doing, failed string) {
	var a toolArgs
	_ = json.Unmarshal(args, &a) // arguments the tool refuses still get a line
	task := fmt.Sprintf("task %d", a.TaskID)
	switch name {
	case "add_task":
		return "Adding " + quote(a.Title), "Could not add " + quote(a.Title)
	case "list_tasks":
		return "Looking at your tasks", "Could not list your tasks"
	case "complete_task":
		return "Completing " + task, "Could not complete " + task
	case "delete_task":
		return "Deleting " + task, "Could not delete " + task
	case "update_task":
		return "Updating " + task, "Could not update " + task
	}
	return "Using " + name, "Could not use " + name
}

// TaskPending says in plain words what a tool call is doing.
func TaskPending(name string, args json.RawMessage) string {
	doing, _ := toolWords(name, args)
	return doing
}

// TaskDone says in plain words what a tool call did, from its result:
// "Added 'Buy milk'", "Listed 3 tasks", "Could not complete task 9 (no
// such task)".
func TaskDone(name string, args, result json.RawMessage) string {
	if strings.HasPrefix(strings.TrimSpace(string(result)), "[") {
		var listed []json.RawMessage
		_ = json.Unmarshal(result, &listed)
		switch len(listed) {
		case 0:
			return "Found no tasks"
		case 1:
			return "Listed 1 task"
		}
		return fmt.Sprintf("Listed %d tasks", len(listed))
	}
	var r struct {
		Status  string `json:"status"`
		Title   string `json:"title"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(result, &r)
	verbs := map[string]string{"created": "Added", "completed": "Completed", "deleted": "Deleted", "updated": "Updated"}
	if v, ok := verbs[r.Status]; ok {
		return v + " " + quote(r.Title)
	}
	_, failed := toolWords(name, args)
	if r.Message != "" {
		failed += " (" + r.Message + ")"
	}
	return failed
}

func quote(s string) string { return "'" + s + "'" }

// ThreadMeta returns conversation c as a thread with no items, as every
// answer but threads.get_by_id shows it.
func ThreadMeta(c chat.Conversation) Thread { return ThreadOf(c, emptyItems()) }
