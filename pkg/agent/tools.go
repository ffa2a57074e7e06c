package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
	"github.com/taskchat/taskchat/pkg/validate"
)

// TaskStore is what the tools need of the task store; *todo.Store
// satisfies it. Every method acts for userID only (see todo.Store).
type TaskStore interface {
	Create(ctx context.Context, userID string, in todo.NewTask) (todo.Task, error)
	Get(ctx context.Context, userID string, id int64) (todo.Task, error)
	List(ctx context.Context, userID string, p todo.ListParams) (todo.Page, error)
	Update(ctx context.Context, userID string, id int64, p todo.Patch) (todo.Task, error)
	SetCompleted(ctx context.Context, userID string, id int64, done bool) (todo.Task, error)
	Delete(ctx context.Context, userID string, id int64) error
}

var _ TaskStore = (*todo.Store)(nil)

// Names of the tools.
const (
	ToolAddTask      = "add_task"
	ToolListTasks    = "list_tasks"
	ToolCompleteTask = "complete_task"
	ToolDeleteTask   = "delete_task"
	ToolUpdateTask   = "update_task"
)

// Codes of a tool's error result {"status":"error","code":…,"message":…}.
const (
	CodeTaskNotFound       = "TASK_NOT_FOUND"
	CodeInvalidArguments   = "INVALID_ARGUMENTS"
	CodeInvalidTitle       = "INVALID_TITLE"
	CodeInvalidDescription = "INVALID_DESCRIPTION"
	CodeUnknownTool        = "UNKNOWN_TOOL"
	// CodeUnavailable: the database failed; only ExecTool returns it (Exec
	// returns an error wrapping ErrTransient instead).
	CodeUnavailable = "UNAVAILABLE"
)

// Result statuses of the tools that change a task.
const (
	StatusCreated   = "created"
	StatusCompleted = "completed"
	StatusDeleted   = "deleted"
	StatusUpdated   = "updated"
	StatusError     = "error"
)

// ListLimit is the most tasks list_tasks returns (the oldest first).
const ListLimit = todo.MaxLimit

// TaskResult is the result of add_task, complete_task, delete_task and
// update_task.
type TaskResult struct {
	TaskID int64  `json:"task_id"`
	Status string `json:"status"`
	Title  string `json:"title"`
}

// ListedTask is one element of list_tasks' result.
type ListedTask struct {
	ID          int64     `json:"id"`
	Title       string    `json:"title"`
	Description *string   `json:"description"`
	Completed   bool      `json:"completed"`
	CreatedAt   time.Time `json:"created_at"`
}

// ErrorResult is a failed tool's result: the model explains it to the user.
type ErrorResult struct {
	Status  string `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// toolSpecs are the five tools' schemas. Optional fields may also be null,
// which means "not given": OpenAI's strict mode sends null for them.
var toolSpecs = []ToolSpec{
	{
		Name:        ToolAddTask,
		Description: "Add a task to the user's to-do list.",
		Parameters: json.RawMessage(`{"type":"object","properties":{` +
			`"title":{"type":"string","minLength":1,"maxLength":200,"description":"What to do, short."},` +
			`"description":{"type":["string","null"],"maxLength":1000,"description":"Optional details."}},` +
			`"required":["title"],"additionalProperties":false}`),
	},
	{
		Name:        ToolListTasks,
		Description: "List the user's tasks, oldest first (at most 200).",
		Parameters: json.RawMessage(`{"type":"object","properties":{` +
			`"status":{"type":["string","null"],"enum":["all","pending","completed",null],"description":"Which tasks; all when omitted."}},` +
			`"additionalProperties":false}`),
	},
	{
		Name:        ToolCompleteTask,
		Description: "Mark a task as done. Marking a done task again changes nothing.",
		Parameters:  taskIDOnly,
	},
	{
		Name:        ToolDeleteTask,
		Description: "Delete a task for good.",
		Parameters:  taskIDOnly,
	},
	{
		Name:        ToolUpdateTask,
		Description: "Change a task's title or description (at least one). An empty description removes it.",
		Parameters: json.RawMessage(`{"type":"object","properties":{` +
			`"task_id":{"type":"integer","minimum":1},` +
			`"title":{"type":["string","null"],"minLength":1,"maxLength":200},` +
			`"description":{"type":["string","null"],"maxLength":1000}},` +
			`"required":["task_id"],"additionalProperties":false}`),
	},
}

var taskIDOnly = json.RawMessage(`{"type":"object","properties":{` +
	`"task_id":{"type":"integer","minimum":1,"description":"The task's id, from list_tasks or add_task."}},` +
	`"required":["task_id"],"additionalProperties":false}`)

// ToolSpecs returns the five tools' specs; the caller may keep the slice.
func ToolSpecs() []ToolSpec {
	out := make([]ToolSpec, len(toolSpecs))
	for i, s := range toolSpecs {
		s.Parameters = append(json.RawMessage(nil), s.Parameters...)
		out[i] = s
	}
	return out
}

// ExecTool runs call for userID (never a user named in the arguments) and
// returns its result, a JSON object (a JSON array for list_tasks). Every
// failure is a result: bad arguments and missing tasks as Exec says, and a
// store failure as code UNAVAILABLE. A caller that must retry on store
// failures instead calls Exec; inside a transaction the failure also
// aborts the transaction, so a caller that records the result in the same
// transaction learns of it when it commits.
//
// delete_task reads the task and then deletes it: run it in one
// transaction so that the title it reports is the one deleted.
func ExecTool(ctx context.Context, tasks TaskStore, userID string, call Call) json.RawMessage {
	res, err := Exec(ctx, tasks, userID, call)
	if err != nil {
		return errorResult(CodeUnavailable, "the task list could not be reached; try again shortly")
	}
	return res
}

// Exec is ExecTool that returns store failures as errors: they wrap
// ErrTransient (and the store's error) when the database was unavailable,
// and wrap only the store's error otherwise. Tool failures are still
// results {"status":"error",…}: arguments that are not a JSON object of the
// tool's known fields with the right types (INVALID_ARGUMENTS), a title or
// description the todo rules refuse (INVALID_TITLE, INVALID_DESCRIPTION),
// a task that is missing or another user's (TASK_NOT_FOUND), an unknown
// tool (UNKNOWN_TOOL). Empty arguments count as {}.
func Exec(ctx context.Context, tasks TaskStore, userID string, call Call) (json.RawMessage, error) {
	run, ok := tools[call.Name]
	if !ok {
		return errorResult(CodeUnknownTool, fmt.Sprintf("there is no tool %q; the tools are add_task, list_tasks, complete_task, delete_task and update_task",
			validate.ShortName(call.Name))), nil
	}
	args, err := parseArgs(call.Arguments)
	if err != nil {
		return errorResult(CodeInvalidArguments, err.Error()), nil
	}
	res, err := run(ctx, tasks, userID, args)
	var bad *toolError
	switch {
	case err == nil:
	case errors.As(err, &bad):
		return errorResult(bad.code, bad.msg), nil
	case errors.Is(err, todo.ErrNotFound):
		return errorResult(CodeTaskNotFound, "no task with that id"), nil
	case pgdb.Unavailable(err):
		return nil, fmt.Errorf("tool %s: %w: %w", call.Name, ErrTransient, err)
	default:
		return nil, fmt.Errorf("tool %s: %w", call.Name, err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("tool %s: encode result: %w", call.Name, err)
	}
	return b, nil
}

// toolError is a failure the model is told about.
type toolError struct{ code, msg string }

func (e *toolError) Error() string { return e.code + ": " + e.msg }

func badArgs(format string, a ...any) error {
	return &toolError{CodeInvalidArguments, fmt.Sprintf(format, a...)}
}

func errorResult(code, msg string) json.RawMessage {
	b, err := json.Marshal(ErrorResult{Status: StatusError, Code: code, Message: msg})
	if err != nil {
		panic("agent: encode error result: " + err.Error()) // cannot happen: strings only
	}
	return b
}

var tools = map[string]func(ctx context.Context, s TaskStore, userID string, a args) (any, error){
	ToolAddTask:      addTask,
	ToolListTasks:    listTasks,
	ToolCompleteTask: completeTask,
	ToolDeleteTask:   deleteTask,
	ToolUpdateTask:   updateTask,
}

func addTask(ctx context.Context, s TaskStore, userID string, a args) (any, error) {
	if err := a.only("title", "description"); err != nil {
		return nil, err
	}
	title, err := a.str("title", true)
	if err != nil {
		return nil, err
	}
	desc, err := a.str("description", false)
	if err != nil {
		return nil, err
	}
	t, err := s.Create(ctx, userID, todo.NewTask{Title: *title, Description: desc})
	if err != nil {
		return nil, ruleError(err)
	}
	return TaskResult{TaskID: t.ID, Status: StatusCreated, Title: t.Title}, nil
}

func listTasks(ctx context.Context, s TaskStore, userID string, a args) (any, error) {
	if err := a.only("status"); err != nil {
		return nil, err
	}
	status, err := a.str("status", false)
	if err != nil {
		return nil, err
	}
	p := todo.ListParams{Status: todo.StatusAll, Sort: todo.SortCreated, Order: todo.OrderAsc, Limit: ListLimit}
	if status != nil {
		switch *status {
		case todo.StatusAll, todo.StatusPending, todo.StatusCompleted:
			p.Status = *status
		default:
			return nil, badArgs("status must be all, pending or completed")
		}
	}
	page, err := s.List(ctx, userID, p)
	if err != nil {
		return nil, err
	}
	out := make([]ListedTask, len(page.Tasks))
	for i, t := range page.Tasks {
		out[i] = ListedTask{ID: t.ID, Title: t.Title, Description: t.Description, Completed: t.Completed, CreatedAt: t.CreatedAt}
	}
	return out, nil
}

func completeTask(ctx context.Context, s TaskStore, userID string, a args) (any, error) {
	id, err := a.taskIDOnly()
	if err != nil {
		return nil, err
	}
	t, err := s.SetCompleted(ctx, userID, id, true)
	if err != nil {
		return nil, err
	}
	return TaskResult{TaskID: t.ID, Status: StatusCompleted, Title: t.Title}, nil
}

func deleteTask(ctx context.Context, s TaskStore, userID string, a args) (any, error) {
	id, err := a.taskIDOnly()
	if err != nil {
		return nil, err
	}
	t, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if err := s.Delete(ctx, userID, id); err != nil {
		return nil, err
	}
	return TaskResult{TaskID: t.ID, Status: StatusDeleted, Title: t.Title}, nil
}

func updateTask(ctx context.Context, s TaskStore, userID string, a args) (any, error) {
	if err := a.only("task_id", "title", "description"); err != nil {
		return nil, err
	}
	id, err := a.taskID()
	if err != nil {
		return nil, err
	}
	var p todo.Patch
	if p.Title, err = a.str("title", false); err != nil {
		return nil, err
	}
	if p.Description, err = a.str("description", false); err != nil {
		return nil, err
	}
	if p.Title == nil && p.Description == nil {
		return nil, badArgs("give a new title or description")
	}
	t, err := s.Update(ctx, userID, id, p)
	if err != nil {
		return nil, ruleError(err)
	}
	return TaskResult{TaskID: t.ID, Status: StatusUpdated, Title: t.Title}, nil
}

// ruleError turns the todo rules' *validate.Error into the tool's codes;
// other errors pass unchanged.
func ruleError(err error) error {
	fields, ok := validate.Fields(err)
	if !ok {
		return err
	}
	code := CodeInvalidArguments
	msgs := make([]string, len(fields))
	for i, f := range fields {
		switch f.Field {
		case "title":
			code = CodeInvalidTitle
		case "description":
			if code == CodeInvalidArguments {
				code = CodeInvalidDescription
			}
		}
		msgs[i] = f.Message
		if f.Field != "" {
			msgs[i] = f.Field + " " + f.Message
		}
	}
	return &toolError{code, strings.Join(msgs, "; ")}
}

// args are a call's arguments: each member of the JSON object, undecoded.
type args map[string]json.RawMessage

// parseArgs reads raw as one JSON object with distinct member names.
// Empty text is {}: some OpenAI-compatible servers send it for a call
// without arguments.
func parseArgs(raw json.RawMessage) (args, error) {
	a := args{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return a, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	const notObject = "the arguments must be a JSON object"
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New(notObject)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New(notObject)
		}
		name, _ := tok.(string) // object keys are always strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New(notObject)
		}
		if _, dup := a[name]; dup {
			return nil, fmt.Errorf("%q is given twice", validate.ShortName(name))
		}
		a[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New(notObject)
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New(notObject + " and nothing after it")
	}
	return a, nil
}

// only refuses members other than names.
func (a args) only(names ...string) error {
	for k := range a {
		known := false
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			return badArgs("unknown argument %q; this tool takes %s", validate.ShortName(k), strings.Join(names, ", "))
		}
	}
	return nil
}

// isNull reports whether v is JSON null.
func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// str returns member name as a string; nil when it is absent or null and
// not required.
func (a args) str(name string, required bool) (*string, error) {
	v, ok := a[name]
	if !ok || isNull(v) {
		if required {
			return nil, badArgs("%s is required", name)
		}
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, badArgs("%s must be a string", name)
	}
	return &s, nil
}

// taskID returns the required task_id, a positive JSON integer (not a
// string, not 3.0).
func (a args) taskID() (int64, error) {
	v, ok := a["task_id"]
	if !ok || isNull(v) {
		return 0, badArgs("task_id is required")
	}
	id, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil || id < 1 {
		return 0, badArgs("task_id must be a positive integer")
	}
	return id, nil
}

func (a args) taskIDOnly() (int64, error) {
	if err := a.only("task_id"); err != nil {
		return 0, err
	}
	return a.taskID()
}
