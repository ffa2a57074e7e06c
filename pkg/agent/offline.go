package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// OfflineModel is the model name of the offline provider.
const OfflineModel = "offline"

// maxOfflineSteps bounds the tool rounds the offline provider makes for one
// message; its own plans need two at most.
const maxOfflineSteps = 4

// Texts of the offline provider that do not depend on the tasks.
const (
	offlineHelp = "Hi! I'm your to-do assistant. I can:\n" +
		"- add a task: \"remind me to pay the bills\"\n" +
		"- list your tasks: \"what's pending?\" or \"what have I completed?\"\n" +
		"- complete one: \"mark buy milk as done\" or \"complete task 3\"\n" +
		"- rename one: \"rename task 3 to Call mom\"\n" +
		"- delete one: \"delete the meeting task\""
	offlineOther = "Sorry, I didn't understand that. I can add, list, complete, rename and delete your tasks; " +
		"say \"help\" for examples."
	offlineThanks = "You're welcome! Anything else for your list?"
	offlineDone   = "Done. Anything else?"
)

// MaxOfflineWordDelay bounds WithWordDelay: a run of the slowed offline
// provider must still end well within a worker's lease.
const MaxOfflineWordDelay = 2 * time.Second

// offline is the provider used when no model is configured.
type offline struct {
	// delay is the pause before each word after the first (WithWordDelay).
	delay time.Duration
	// pause waits d or until ctx ends; a test replaces it.
	pause func(ctx context.Context, d time.Duration) error
}

// OfflineOption changes the offline provider.
type OfflineOption func(*offline)

// WithWordDelay makes the offline provider pause d before each word of its
// text after the first, as a slow model would, so that an answer can be
// watched (or interrupted) while it streams: for tests and demos
// (AI_OFFLINE_DELAY), never needed otherwise. d is at most
// MaxOfflineWordDelay; a cancelled run stops waiting at once.
func WithWordDelay(d time.Duration) OfflineOption {
	return func(o *offline) { o.delay = min(max(d, 0), MaxOfflineWordDelay) }
}

// NewOffline returns the offline provider: a deterministic, rule-based
// stand-in for a model that needs no network. It reads the last user
// message (see parse in intent.go for the phrasings it knows) and answers
// like a model would, with tool calls that the loop runs through the same
// ToolRunner as a real model's, then with a confirmation built from the
// tool results. A task named by words is found by listing the tasks first
// and picking the title with the most words in common (an exact title wins
// a tie; several equally good matches make it ask which one). Its text is
// streamed word by word. Call ids are derived from the conversation, so
// they are the same on a retry and differ between the calls of a run.
func NewOffline(opts ...OfflineOption) Provider {
	o := offline{pause: pause}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Model names the offline provider.
func (offline) Model() string { return OfflineModel }

// Complete answers the conversation's last user message, or continues
// after the tool results that follow it.
func (o offline) Complete(ctx context.Context, req Request, onDelta func(string)) (Turn, error) {
	if err := ctx.Err(); err != nil {
		return Turn{}, err
	}
	turn := nextTurn(req.Messages)
	if onDelta != nil {
		for i, piece := range splitWords(turn.Text) {
			if i > 0 && o.delay > 0 {
				if err := o.pause(ctx, o.delay); err != nil {
					return Turn{}, err
				}
			}
			if err := ctx.Err(); err != nil {
				return Turn{}, err
			}
			onDelta(piece)
		}
	}
	return turn, nil
}

// step is one call the offline provider made for the current message, with
// its result (nil when no tool message answers it).
type step struct {
	call   Call
	result json.RawMessage
}

// plan decides the offline provider's next turn for one user message.
type plan struct {
	in    intent
	msgs  []Message
	steps []step
}

func nextTurn(msgs []Message) Turn {
	u := -1
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == RoleUser {
			u = i
			break
		}
	}
	if u < 0 {
		return Turn{Text: offlineHelp}
	}
	if last := msgs[len(msgs)-1]; last.Role == RoleAssistant && len(last.Calls) == 0 {
		return Turn{Text: offlineDone}
	}
	p := plan{in: parse(msgs[u].Content), msgs: msgs}
	results := map[string]json.RawMessage{}
	for _, m := range msgs[u+1:] {
		if m.Role == RoleTool {
			results[m.CallID] = json.RawMessage(m.Content)
		}
	}
	for _, m := range msgs[u+1:] {
		for _, c := range m.Calls {
			p.steps = append(p.steps, step{call: c, result: results[c.ID]})
		}
	}
	switch {
	case len(p.steps) == 0:
		return p.first()
	case len(p.steps) >= maxOfflineSteps:
		return Turn{Text: offlineDone}
	}
	return p.after(p.steps[len(p.steps)-1])
}

// Arguments of the calls the offline provider makes.
type (
	addArgs struct {
		Title       string  `json:"title"`
		Description *string `json:"description,omitempty"`
	}
	listArgs struct {
		Status string `json:"status"`
	}
	idArgs struct {
		TaskID int64 `json:"task_id"`
	}
	updateArgs struct {
		TaskID      int64   `json:"task_id"`
		Title       *string `json:"title,omitempty"`
		Description *string `json:"description,omitempty"`
	}
)

// first is the turn answering the user message itself.
func (p plan) first() Turn {
	in := p.in
	switch in.kind {
	case intentHelp:
		return Turn{Text: offlineHelp}
	case intentThanks:
		return Turn{Text: offlineThanks}
	case intentAsk:
		return Turn{Text: in.reply}
	case intentAdd:
		return p.call(ToolAddTask, addArgs{Title: in.title, Description: in.desc})
	case intentList:
		return p.call(ToolListTasks, listArgs{Status: in.status})
	case intentComplete, intentDelete:
		if in.ref.id > 0 {
			return p.act(in.ref.id, "")
		}
		return p.call(ToolListTasks, listArgs{Status: "all"})
	case intentUpdate:
		if t := in.targets[0]; len(in.targets) == 1 && t.ref.id > 0 {
			return p.act(t.ref.id, t.value)
		}
		return p.call(ToolListTasks, listArgs{Status: "all"})
	}
	return Turn{Text: offlineOther}
}

// act calls the intent's tool on task id; value is update's new text.
func (p plan) act(id int64, value string) Turn {
	switch p.in.kind {
	case intentComplete:
		return p.call(ToolCompleteTask, idArgs{TaskID: id})
	case intentDelete:
		return p.call(ToolDeleteTask, idArgs{TaskID: id})
	}
	a := updateArgs{TaskID: id, Title: &value}
	if p.in.descField {
		a = updateArgs{TaskID: id, Description: &value}
	}
	return p.call(ToolUpdateTask, a)
}

// call is a turn with one call of name; its id hashes the conversation so
// far, so each call of a run gets its own.
func (p plan) call(name string, args any) Turn {
	b, err := json.Marshal(args)
	if err != nil {
		panic("agent: encode offline arguments: " + err.Error()) // cannot happen: plain fields
	}
	h := sha256.New()
	for _, m := range p.msgs {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", m.Role, m.Content, m.CallID)
		for _, c := range m.Calls {
			fmt.Fprintf(h, "%s\x00", c.ID)
		}
	}
	fmt.Fprintf(h, "%s\x00%s", name, b)
	id := "call_" + hex.EncodeToString(h.Sum(nil)[:12])
	return Turn{Calls: []Call{{ID: id, Name: name, Arguments: b}}}
}

// after is the turn following the result of s, the last call made.
func (p plan) after(s step) Turn {
	var e ErrorResult
	if json.Unmarshal(s.result, &e) == nil && e.Status == StatusError {
		return Turn{Text: p.errorText(s, e)}
	}
	var done TaskResult
	if s.call.Name != ToolListTasks && json.Unmarshal(s.result, &done) != nil {
		return Turn{Text: offlineDone}
	}
	switch s.call.Name {
	case ToolListTasks:
		var tasks []ListedTask
		if err := json.Unmarshal(s.result, &tasks); err != nil {
			return Turn{Text: offlineDone}
		}
		switch p.in.kind {
		case intentComplete, intentDelete, intentUpdate:
			return p.resolve(tasks)
		}
		var a listArgs
		_ = json.Unmarshal(s.call.Arguments, &a) // no status lists all
		return Turn{Text: listText(a.Status, tasks)}
	case ToolAddTask:
		return Turn{Text: fmt.Sprintf("Added %s (task %d).", quote(done.Title), done.TaskID)}
	case ToolCompleteTask:
		return Turn{Text: fmt.Sprintf("Marked %s as done.", quote(done.Title))}
	case ToolDeleteTask:
		return Turn{Text: fmt.Sprintf("Deleted %s.", quote(done.Title))}
	case ToolUpdateTask:
		var a updateArgs
		_ = json.Unmarshal(s.call.Arguments, &a) // its own arguments
		if a.Description != nil {
			if strings.TrimSpace(*a.Description) == "" {
				return Turn{Text: fmt.Sprintf("Removed the description of %s.", quote(done.Title))}
			}
			return Turn{Text: fmt.Sprintf("Updated the description of %s.", quote(done.Title))}
		}
		if old, ok := p.listedTitle(done.TaskID); ok {
			return Turn{Text: fmt.Sprintf("Renamed %s to %s.", quote(old), quote(done.Title))}
		}
		return Turn{Text: fmt.Sprintf("Renamed task %d to %s.", done.TaskID, quote(done.Title))}
	}
	return Turn{Text: offlineDone}
}

// listedTitle finds task id's title in an earlier list_tasks result.
func (p plan) listedTitle(id int64) (string, bool) {
	for _, s := range p.steps {
		var tasks []ListedTask
		if s.call.Name != ToolListTasks || json.Unmarshal(s.result, &tasks) != nil {
			continue
		}
		for _, t := range tasks {
			if t.ID == id {
				return t.Title, true
			}
		}
	}
	return "", false
}

// resolve picks the task the user's words name from tasks and acts on it,
// or says why it cannot.
func (p plan) resolve(tasks []ListedTask) Turn {
	words, value := p.in.ref.words, ""
	var found []ListedTask
	if p.in.kind == intentUpdate {
		best := -1
		for _, t := range p.in.targets {
			cands, score := match(t.ref.words, tasks, false)
			if score > best {
				best, found, words, value = score, cands, t.ref.words, t.value
			}
		}
	} else {
		found, _ = match(words, tasks, p.in.kind == intentComplete)
	}
	switch {
	case len(found) == 0 && len(tasks) == 0:
		return Turn{Text: fmt.Sprintf("You don't have any tasks yet, so I couldn't find %s.", quote(words))}
	case len(found) == 0:
		return Turn{Text: fmt.Sprintf("I couldn't find a task matching %s. Say \"show my tasks\" to see your list.", quote(words))}
	case len(found) > 1:
		var b strings.Builder
		fmt.Fprintf(&b, "I found %d tasks matching %s:\n", len(found), quote(words))
		for _, t := range found {
			b.WriteString(listLine(t, true))
		}
		fmt.Fprintf(&b, "Which one do you mean? Say for example %s.", quote(p.example(found[0].ID, value)))
		return Turn{Text: b.String()}
	}
	t := found[0]
	if p.in.kind == intentComplete && t.Completed {
		return Turn{Text: fmt.Sprintf("%s is already done.", quote(t.Title))}
	}
	return p.act(t.ID, value)
}

// example is the phrasing that names task id directly.
func (p plan) example(id int64, value string) string {
	switch {
	case p.in.kind == intentComplete:
		return fmt.Sprintf("complete task %d", id)
	case p.in.kind == intentDelete:
		return fmt.Sprintf("delete task %d", id)
	case p.in.descField:
		return fmt.Sprintf("change the description of task %d to %s", id, value)
	}
	return fmt.Sprintf("rename task %d to %s", id, value)
}

// errorText tells the user in plain words why the call of s failed.
func (p plan) errorText(s step, e ErrorResult) string {
	var a idArgs
	_ = json.Unmarshal(s.call.Arguments, &a) // task_id when there is one
	msg := strings.TrimSuffix(e.Message, ".")
	switch e.Code {
	case CodeTaskNotFound:
		if a.TaskID > 0 {
			return fmt.Sprintf("I couldn't find task %d. Say \"show my tasks\" to see your list.", a.TaskID)
		}
		return "I couldn't find that task."
	case CodeInvalidTitle:
		return fmt.Sprintf("I couldn't use that title: %s.", strings.Replace(msg, "title ", "it ", 1))
	case CodeInvalidDescription:
		return fmt.Sprintf("I couldn't use that description: %s.", strings.Replace(msg, "description ", "it ", 1))
	case CodeUnavailable:
		return "Sorry, I couldn't reach your task list just now. Please try again in a moment."
	}
	return fmt.Sprintf("Sorry, that didn't work: %s.", msg)
}

// listText summarises list_tasks' result for status.
func listText(status string, tasks []ListedTask) string {
	n := len(tasks)
	var b strings.Builder
	switch status {
	case "pending":
		if n == 0 {
			return "You have no pending tasks. Nice work!"
		}
		fmt.Fprintf(&b, "You have %d pending %s:\n", n, plural(n, "task"))
	case "completed":
		if n == 0 {
			return "You haven't completed any tasks yet."
		}
		fmt.Fprintf(&b, "You have completed %d %s:\n", n, plural(n, "task"))
	default:
		if n == 0 {
			return "Your task list is empty. Say \"add\" and a task to start one."
		}
		done := 0
		for _, t := range tasks {
			if t.Completed {
				done++
			}
		}
		fmt.Fprintf(&b, "You have %d %s, %d pending and %d done:\n", n, plural(n, "task"), n-done, done)
	}
	for _, t := range tasks {
		b.WriteString(listLine(t, status != "pending" && status != "completed"))
	}
	if n >= ListLimit {
		fmt.Fprintf(&b, "(These are the first %d.)\n", ListLimit)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// listLine is one task of a list, marked when done and showDone is set.
func listLine(t ListedTask, showDone bool) string {
	if showDone && t.Completed {
		return fmt.Sprintf("- %s (task %d, done)\n", t.Title, t.ID)
	}
	return fmt.Sprintf("- %s (task %d)\n", t.Title, t.ID)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func quote(s string) string { return `"` + s + `"` }

// match returns the tasks whose titles share the most of words' tokens,
// more than half of them, and that count. Of several, an exact title
// wins, and then, when preferPending is set, the pending ones.
func match(words string, tasks []ListedTask, preferPending bool) ([]ListedTask, int) {
	want := tokens(words)
	if len(want) == 0 {
		return nil, 0
	}
	best := 0
	var found []ListedTask
	for _, t := range tasks {
		have := map[string]bool{}
		for _, w := range tokens(t.Title) {
			have[w] = true
		}
		n := 0
		for _, w := range want {
			if have[w] {
				n++
			}
		}
		if n*2 <= len(want) || n < best {
			continue
		}
		if n > best {
			best, found = n, nil
		}
		found = append(found, t)
	}
	narrow := func(keep func(ListedTask) bool) {
		var kept []ListedTask
		for _, t := range found {
			if keep(t) {
				kept = append(kept, t)
			}
		}
		if len(kept) > 0 {
			found = kept
		}
	}
	if len(found) > 1 {
		key := wordKey(words)
		narrow(func(t ListedTask) bool { return wordKey(t.Title) == key })
	}
	if len(found) > 1 && preferPending {
		narrow(func(t ListedTask) bool { return !t.Completed })
	}
	return found, best
}

// wordKey is s's words, lower-cased, joined by single spaces.
func wordKey(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), notWordRune), " ")
}

// splitWords cuts text into words, each with the white space after it.
func splitWords(text string) []string {
	var out []string
	start, inSpace := 0, false
	for i, r := range text {
		space := unicode.IsSpace(r)
		if !space && inSpace {
			out = append(out, text[start:i])
			start = i
		}
		inSpace = space
	}
	if start < len(text) {
		out = append(out, text[start:])
	}
	return out
}
