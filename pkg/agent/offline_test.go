package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/todo"
)

// baseTasks is every utterance case's starting list.
var baseTasks = []seedTask{
	{title: "Buy milk"},
	{title: "Pay the bills"},
	{title: "Team meeting notes"},
	{title: "Call mom"},
	{title: "Dentist appointment"},
	{title: "Buy groceries"},
	{title: "Water the plants", done: true},
	{title: "File taxes", done: true},
}

// wantCall is a call the run must make: its tool and arguments, where
// {Title} stands for the id of the seeded task Title.
type wantCall struct {
	name, args string
}

// change is what a case does to the list: tasks added, completed, deleted,
// renamed, and descriptions set.
type change struct {
	added   []seedTask
	done    []string
	deleted []string
	renamed map[string]string
	descs   map[string]string
}

// apply returns tasks after c.
func (c change) apply(t *testing.T, tasks []seedTask) []seedTask {
	t.Helper()
	out := make([]seedTask, 0, len(tasks)+len(c.added))
	touched := 0
	for _, x := range tasks {
		if contains(c.deleted, x.title) {
			touched++
			continue
		}
		if contains(c.done, x.title) {
			x.done = true
			touched++
		}
		if d, ok := c.descs[x.title]; ok {
			x.desc = d
			touched++
		}
		if n, ok := c.renamed[x.title]; ok {
			x.title = n
			touched++
		}
		out = append(out, x)
	}
	if touched != len(c.deleted)+len(c.done)+len(c.renamed)+len(c.descs) {
		t.Fatalf("change %+v names tasks that are not seeded", c)
	}
	out = append(out, c.added...)
	sortTasks(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestOfflineUtterances runs the offline agent on one message per case over
// baseTasks and checks the tool calls it made (through the runner, as a
// real model's), the tasks afterwards and the answer.
func TestOfflineUtterances(t *testing.T) {
	long := strings.Repeat("x", todo.MaxTitleLen+1)
	tests := []struct {
		name  string
		say   string
		calls []wantCall
		want  change
		text  []string // substrings of the answer; {Title} expands
	}{
		// add_task
		{name: "remind me to", say: "remind me to pay the rent",
			calls: []wantCall{{"add_task", `{"title":"Pay the rent"}`}},
			want:  change{added: []seedTask{{title: "Pay the rent"}}}, text: []string{`Added "Pay the rent" (task `}},
		{name: "add with and", say: "add buy milk and eggs",
			calls: []wantCall{{"add_task", `{"title":"Buy milk and eggs"}`}},
			want:  change{added: []seedTask{{title: "Buy milk and eggs"}}}, text: []string{`Added "Buy milk and eggs"`}},
		{name: "add a task to", say: "Add a task to call the plumber",
			calls: []wantCall{{"add_task", `{"title":"Call the plumber"}`}},
			want:  change{added: []seedTask{{title: "Call the plumber"}}}},
		{name: "create a task called", say: "create a task called Renew passport.",
			calls: []wantCall{{"add_task", `{"title":"Renew passport"}`}},
			want:  change{added: []seedTask{{title: "Renew passport"}}}},
		{name: "remember to", say: "remember to water the garden",
			calls: []wantCall{{"add_task", `{"title":"Water the garden"}`}},
			want:  change{added: []seedTask{{title: "Water the garden"}}}},
		{name: "I need to", say: "I need to book a flight",
			calls: []wantCall{{"add_task", `{"title":"Book a flight"}`}},
			want:  change{added: []seedTask{{title: "Book a flight"}}}},
		{name: "new task colon", say: "new task: clean the garage",
			calls: []wantCall{{"add_task", `{"title":"Clean the garage"}`}},
			want:  change{added: []seedTask{{title: "Clean the garage"}}}},
		{name: "add to my list", say: "add oat milk to my list",
			calls: []wantCall{{"add_task", `{"title":"Oat milk"}`}},
			want:  change{added: []seedTask{{title: "Oat milk"}}}},
		{name: "greeting and please around add", say: "Hey, add buy bread please!",
			calls: []wantCall{{"add_task", `{"title":"Buy bread"}`}},
			want:  change{added: []seedTask{{title: "Buy bread"}}}},
		{name: "add with description", say: "add call grandma with a description about her birthday",
			calls: []wantCall{{"add_task", `{"title":"Call grandma","description":"about her birthday"}`}},
			want:  change{added: []seedTask{{title: "Call grandma", desc: "about her birthday"}}}},
		{name: "todo colon", say: "todo: sharpen pencils",
			calls: []wantCall{{"add_task", `{"title":"Sharpen pencils"}`}},
			want:  change{added: []seedTask{{title: "Sharpen pencils"}}}},
		{name: "don't let me forget", say: "don’t let me forget to feed the cat",
			calls: []wantCall{{"add_task", `{"title":"Feed the cat"}`}},
			want:  change{added: []seedTask{{title: "Feed the cat"}}}},
		{name: "title too long is explained", say: "add " + long,
			calls: []wantCall{{"add_task", `{"title":"X` + long[1:] + `"}`}},
			text:  []string{"I couldn't use that title: it must be at most 200 characters."}},
		{name: "add without a title asks", say: "add",
			text: []string{"What should the task say?"}},

		// list_tasks
		{name: "show my tasks", say: "show my tasks",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}},
			text:  []string{"You have 8 tasks, 6 pending and 2 done:", "- Buy milk (task {Buy milk})", "- File taxes (task {File taxes}, done)"}},
		{name: "what's pending", say: "what's pending?",
			calls: []wantCall{{"list_tasks", `{"status":"pending"}`}},
			text:  []string{"You have 6 pending tasks:", "- Call mom (task {Call mom})"}},
		{name: "what's left", say: "What's left?",
			calls: []wantCall{{"list_tasks", `{"status":"pending"}`}}},
		{name: "what have I completed", say: "what have I completed?",
			calls: []wantCall{{"list_tasks", `{"status":"completed"}`}},
			text:  []string{"You have completed 2 tasks:", "- Water the plants (task {Water the plants})"}},
		{name: "show completed tasks", say: "show completed tasks",
			calls: []wantCall{{"list_tasks", `{"status":"completed"}`}}},
		{name: "list everything", say: "list everything",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}}},
		{name: "what's still open", say: "what's still open",
			calls: []wantCall{{"list_tasks", `{"status":"pending"}`}}},
		{name: "how many tasks", say: "how many tasks do I have",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}}},
		{name: "bare tasks", say: "tasks",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}}},
		{name: "can you please show pending", say: "can you please show my pending tasks?",
			calls: []wantCall{{"list_tasks", `{"status":"pending"}`}}},

		// complete_task
		{name: "complete by id", say: "complete task {Buy milk}",
			calls: []wantCall{{"complete_task", `{"task_id":{Buy milk}}`}},
			want:  change{done: []string{"Buy milk"}}, text: []string{`Marked "Buy milk" as done.`}},
		{name: "mark #id as done", say: "mark #{Call mom} as done",
			calls: []wantCall{{"complete_task", `{"task_id":{Call mom}}`}},
			want:  change{done: []string{"Call mom"}}},
		{name: "mark words done", say: "mark the groceries done",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"complete_task", `{"task_id":{Buy groceries}}`}},
			want:  change{done: []string{"Buy groceries"}}, text: []string{`Marked "Buy groceries" as done.`}},
		{name: "I finished", say: "I finished the bills",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"complete_task", `{"task_id":{Pay the bills}}`}},
			want:  change{done: []string{"Pay the bills"}}},
		{name: "done with", say: "done with call mom",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"complete_task", `{"task_id":{Call mom}}`}},
			want:  change{done: []string{"Call mom"}}},
		{name: "X is done", say: "the dentist appointment is done",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"complete_task", `{"task_id":{Dentist appointment}}`}},
			want:  change{done: []string{"Dentist appointment"}}},
		{name: "check off", say: "check off buy milk",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"complete_task", `{"task_id":{Buy milk}}`}},
			want:  change{done: []string{"Buy milk"}}},
		{name: "change to done completes", say: "change task {Buy milk} to done",
			calls: []wantCall{{"complete_task", `{"task_id":{Buy milk}}`}},
			want:  change{done: []string{"Buy milk"}}},
		{name: "already done", say: "mark water the plants as done",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}},
			text:  []string{`"Water the plants" is already done.`}},
		{name: "missing id", say: "complete task 999999999",
			calls: []wantCall{{"complete_task", `{"task_id":999999999}`}},
			text:  []string{"I couldn't find task 999999999."}},
		{name: "reopen is refused", say: "mark buy milk as not done",
			text: []string{"I can't reopen a task"}},

		// delete_task
		{name: "delete by words", say: "delete the meeting task",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"delete_task", `{"task_id":{Team meeting notes}}`}},
			want:  change{deleted: []string{"Team meeting notes"}}, text: []string{`Deleted "Team meeting notes".`}},
		{name: "remove by id", say: "remove task {Dentist appointment}",
			calls: []wantCall{{"delete_task", `{"task_id":{Dentist appointment}}`}},
			want:  change{deleted: []string{"Dentist appointment"}}, text: []string{`Deleted "Dentist appointment".`}},
		{name: "cancel my", say: "cancel my dentist appointment",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"delete_task", `{"task_id":{Dentist appointment}}`}},
			want:  change{deleted: []string{"Dentist appointment"}}},
		{name: "get rid of a done task", say: "get rid of file taxes",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"delete_task", `{"task_id":{File taxes}}`}},
			want:  change{deleted: []string{"File taxes"}}},
		{name: "no match says so", say: "delete buy bread",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}},
			text:  []string{`I couldn't find a task matching "buy bread".`}},
		{name: "ambiguous asks which", say: "delete buy",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}},
			text:  []string{"I found 2 tasks matching", "- Buy milk (task {Buy milk})", "- Buy groceries (task {Buy groceries})", "Which one do you mean?"}},
		{name: "delete all is refused", say: "delete all tasks",
			text: []string{"one task at a time"}},

		// update_task
		{name: "rename by id", say: "rename task {Call mom} to call mom and dad",
			calls: []wantCall{{"update_task", `{"task_id":{Call mom},"title":"Call mom and dad"}`}},
			want:  change{renamed: map[string]string{"Call mom": "Call mom and dad"}},
			text:  []string{`Renamed task {Call mom} to "Call mom and dad".`}},
		{name: "change by words", say: "change the dentist task to Dentist on Friday",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"update_task", `{"task_id":{Dentist appointment},"title":"Dentist on Friday"}`}},
			want:  change{renamed: map[string]string{"Dentist appointment": "Dentist on Friday"}},
			text:  []string{`Renamed "Dentist appointment" to "Dentist on Friday".`}},
		{name: "rename exact title", say: "rename buy milk to buy oat milk",
			calls: []wantCall{{"list_tasks", `{"status":"all"}`}, {"update_task", `{"task_id":{Buy milk},"title":"Buy oat milk"}`}},
			want:  change{renamed: map[string]string{"Buy milk": "Buy oat milk"}}},
		{name: "update description", say: "update the description of task {Pay the bills} to before the 5th",
			calls: []wantCall{{"update_task", `{"task_id":{Pay the bills},"description":"before the 5th"}`}},
			want:  change{descs: map[string]string{"Pay the bills": "before the 5th"}},
			text:  []string{`Updated the description of "Pay the bills".`}},
		{name: "rename without new title asks", say: "rename buy milk",
			text: []string{"What should I change it to?"}},

		// no tools
		{name: "greeting", say: "hi", text: []string{"I can:", "remind me to pay the bills"}},
		{name: "help", say: "help", text: []string{"I can:"}},
		{name: "what can you do", say: "What can you do?", text: []string{"I can:"}},
		{name: "thanks", say: "thanks!", text: []string{"You're welcome!"}},
		{name: "joke", say: "tell me a joke", text: []string{"Sorry, I didn't understand that. I can add, list, complete, rename and delete"}},
		{name: "weather", say: "what's the weather like?", text: []string{"Sorry, I didn't understand that."}},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d utterances", len(tests))
	}
	a := agent.New(agent.NewOffline())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t)
			ids := seed(t, r.store.(*todo.Store), r.user, baseTasks)
			var s sink
			res, err := a.Run(context.Background(), agent.Input{History: []agent.Message{
				{Role: agent.RoleUser, Content: expand(tc.say, ids)},
			}}, r, &s)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(r.ran) != len(tc.calls) || len(res.Calls) != len(tc.calls) {
				t.Fatalf("ran %d calls, result has %d, want %d: %+v", len(r.ran), len(res.Calls), len(tc.calls), r.ran)
			}
			seen := map[string]bool{}
			for i, want := range tc.calls {
				got := r.ran[i]
				if got.call.Name != want.name || !sameJSON(t, got.call.Arguments, []byte(expand(want.args, ids))) {
					t.Errorf("call %d = %s %s, want %s %s", i, got.call.Name, got.call.Arguments, want.name, expand(want.args, ids))
				}
				if got.round != i || got.index != 0 {
					t.Errorf("call %d ran as round %d index %d", i, got.round, got.index)
				}
				if got.call.ID == "" || seen[got.call.ID] {
					t.Errorf("call %d id %q empty or repeated", i, got.call.ID)
				}
				seen[got.call.ID] = true
				if res.Calls[i].ID != got.call.ID || string(res.Calls[i].Result) != string(got.result) {
					t.Errorf("Result.Calls[%d] = %+v, want what ran", i, res.Calls[i])
				}
			}
			if got, want := tasksOf(t, r.user), tc.want.apply(t, baseTasks); !equalTasks(got, want) {
				t.Errorf("tasks after:\n got %+v\nwant %+v", got, want)
			}
			if res.Text == "" || strings.Join(s.deltas, "") != res.Text {
				t.Errorf("deltas %q do not make the text %q", s.deltas, res.Text)
			}
			for _, want := range tc.text {
				if !strings.Contains(res.Text, expand(want, ids)) {
					t.Errorf("answer %q lacks %q", res.Text, expand(want, ids))
				}
			}
			if res.Model != agent.OfflineModel {
				t.Errorf("model %q", res.Model)
			}
		})
	}
}

func equalTasks(a, b []seedTask) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestOfflineFlows checks the offline agent's multi-step behaviour: which
// of several similar tasks it picks, what it asks, and what it says.
func TestOfflineFlows(t *testing.T) {
	a := agent.New(agent.NewOffline())
	run := func(t *testing.T, r *runner, history ...string) agent.Result {
		t.Helper()
		var msgs []agent.Message
		for i, h := range history {
			role := agent.RoleUser
			if i%2 == 1 {
				role = agent.RoleAssistant
			}
			msgs = append(msgs, agent.Message{Role: role, Content: h})
		}
		res, err := a.Run(context.Background(), agent.Input{History: msgs}, r, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return res
	}
	names := func(r *runner) string {
		var n []string
		for _, c := range r.ran {
			n = append(n, c.call.Name)
		}
		return strings.Join(n, ",")
	}

	t.Run("ambiguous, then the id the answer suggests", func(t *testing.T) {
		r := newRunner(t)
		ids := seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Call the bank"}, {title: "Call the dentist"}, {title: "Email Bob"}})
		first := run(t, r, "complete the call task")
		for _, want := range []string{"I found 2 tasks", "Call the bank", "Call the dentist", `"complete task ` + expand("{Call the bank}", ids) + `"`} {
			if !strings.Contains(first.Text, want) {
				t.Errorf("answer %q lacks %q", first.Text, want)
			}
		}
		second := run(t, r, "complete the call task", first.Text, expand("complete task {Call the dentist}", ids))
		if names(r) != "list_tasks,complete_task" || !strings.Contains(second.Text, `Marked "Call the dentist" as done.`) {
			t.Errorf("calls %s, answer %q", names(r), second.Text)
		}
		want := []seedTask{{title: "Call the bank"}, {title: "Call the dentist", done: true}, {title: "Email Bob"}}
		if got := tasksOf(t, r.user); !equalTasks(got, want) {
			t.Errorf("tasks %+v, want %+v", got, want)
		}
	})
	t.Run("an exact title wins over longer ones", func(t *testing.T) {
		r := newRunner(t)
		seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Buy milk and eggs"}, {title: "Buy milk"}, {title: "buy MILK for the cat"}})
		res := run(t, r, "delete buy milk")
		if names(r) != "list_tasks,delete_task" || res.Text != `Deleted "Buy milk".` {
			t.Errorf("calls %s, answer %q", names(r), res.Text)
		}
	})
	t.Run("completing prefers the pending one of equal matches", func(t *testing.T) {
		r := newRunner(t)
		ids := seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Water plants", done: true}, {title: "Water the plants"}})
		run(t, r, "I finished the plants")
		if names(r) != "list_tasks,complete_task" || !strings.Contains(string(r.ran[1].call.Arguments), expand("{Water the plants}", ids)) {
			t.Errorf("calls %s %+v", names(r), r.ran)
		}
	})
	t.Run("a single shared word is not enough for two words", func(t *testing.T) {
		r := newRunner(t)
		seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Buy milk"}})
		res := run(t, r, "remove buy bread")
		if names(r) != "list_tasks" || !strings.Contains(res.Text, `couldn't find a task matching "buy bread"`) {
			t.Errorf("calls %s, answer %q", names(r), res.Text)
		}
	})
	t.Run("an empty list says so", func(t *testing.T) {
		r := newRunner(t)
		res := run(t, r, "delete the meeting task")
		if names(r) != "list_tasks" || !strings.Contains(res.Text, "You don't have any tasks yet") {
			t.Errorf("calls %s, answer %q", names(r), res.Text)
		}
		res = run(t, r, "what's pending?")
		if res.Text != "You have no pending tasks. Nice work!" {
			t.Errorf("answer %q", res.Text)
		}
	})
	t.Run("rename splits at the to that names a task", func(t *testing.T) {
		r := newRunner(t)
		ids := seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Go to gym"}, {title: "Read"}})
		res := run(t, r, "rename go to gym to go to the gym")
		if names(r) != "list_tasks,update_task" || !sameJSON(t, r.ran[1].call.Arguments, []byte(expand(`{"task_id":{Go to gym},"title":"Go to the gym"}`, ids))) {
			t.Fatalf("calls %s %+v", names(r), r.ran)
		}
		if res.Text != `Renamed "Go to gym" to "Go to the gym".` {
			t.Errorf("answer %q", res.Text)
		}
	})
	t.Run("another user's task id is not found", func(t *testing.T) {
		owner := newRunner(t)
		ids := seed(t, owner.store.(*todo.Store), owner.user, []seedTask{{title: "Secret"}})
		r := newRunner(t)
		res := run(t, r, expand("delete task {Secret}", ids))
		if names(r) != "delete_task" || !strings.Contains(res.Text, "I couldn't find task") {
			t.Errorf("calls %s, answer %q", names(r), res.Text)
		}
		if got := tasksOf(t, owner.user); len(got) != 1 {
			t.Errorf("owner's tasks %+v", got)
		}
	})
	t.Run("earlier turns do not change the answer to the last", func(t *testing.T) {
		r := newRunner(t)
		res := run(t, r, "add buy milk", `Added "Buy milk" (task 1).`, "add pay rent")
		if names(r) != "add_task" || !strings.HasPrefix(res.Text, `Added "Pay rent"`) {
			t.Errorf("calls %s, answer %q", names(r), res.Text)
		}
	})
}

// TestOfflineProvider checks the provider on its own: the same messages
// give the same turn, text comes in word-sized deltas, a cancelled context
// stops it.
func TestOfflineProvider(t *testing.T) {
	p := agent.NewOffline()
	req := agent.Request{Messages: []agent.Message{{Role: agent.RoleUser, Content: "delete the meeting task"}}}
	t1, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(t1.Calls) != 1 || t1.Text != "" || t1.Calls[0].ID != t2.Calls[0].ID {
		t.Errorf("turns %+v and %+v differ or are not one call", t1, t2)
	}
	// The next call of the run, after the list, gets another id.
	result, _ := json.Marshal([]agent.ListedTask{{ID: 7, Title: "Team meeting"}})
	req.Messages = append(req.Messages,
		agent.Message{Role: agent.RoleAssistant, Calls: t1.Calls},
		agent.Message{Role: agent.RoleTool, CallID: t1.Calls[0].ID, Name: t1.Calls[0].Name, Content: string(result)})
	t3, err := p.Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(t3.Calls) != 1 || t3.Calls[0].Name != agent.ToolDeleteTask || t3.Calls[0].ID == t1.Calls[0].ID {
		t.Errorf("second turn %+v", t3)
	}

	var deltas []string
	help, err := p.Complete(context.Background(), agent.Request{Messages: []agent.Message{{Role: agent.RoleUser, Content: "help"}}},
		func(s string) { deltas = append(deltas, s) })
	if err != nil {
		t.Fatal(err)
	}
	if len(deltas) < 10 || strings.Join(deltas, "") != help.Text {
		t.Errorf("deltas %q", deltas)
	}
	for _, d := range deltas {
		if strings.Contains(strings.TrimSpace(d), " ") {
			t.Errorf("delta %q is more than a word", d)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = p.Complete(ctx, agent.Request{Messages: []agent.Message{{Role: agent.RoleUser, Content: "help"}}},
		func(string) {
			if n++; n == 3 {
				cancel()
			}
		})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Errorf("cancelled mid-stream: err %v after %d deltas", err, n)
	}
	if p.Model() != agent.OfflineModel {
		t.Errorf("model %q", p.Model())
	}
}

// BenchmarkOfflineRun measures the agent's own cost of one chat turn with
// the offline provider (tools answered without a database): what it adds
// to each turn of the pipeline.
func BenchmarkOfflineRun(b *testing.B) {
	a := agent.New(agent.NewOffline())
	listed, _ := json.Marshal([]agent.ListedTask{{ID: 1, Title: "Buy milk"}, {ID: 2, Title: "Team meeting"}, {ID: 3, Title: "Call mom"}})
	tools := toolFunc(func(_ context.Context, _, _ int, _ string, c agent.Call) (json.RawMessage, error) {
		if c.Name == agent.ToolListTasks {
			return listed, nil
		}
		return json.RawMessage(`{"task_id":2,"status":"deleted","title":"Team meeting"}`), nil
	})
	history := []agent.Message{
		{Role: agent.RoleUser, Content: "add buy milk"},
		{Role: agent.RoleAssistant, Content: `Added "Buy milk" (task 1).`},
		{Role: agent.RoleUser, Content: "delete the meeting task"},
	}
	for b.Loop() {
		res, err := a.Run(context.Background(), agent.Input{History: history}, tools, nil)
		if err != nil || len(res.Calls) != 2 {
			b.Fatalf("%+v, %v", res, err)
		}
	}
}

// TestOfflineWordDelay: with a word delay the provider pauses before each
// word but the first, for the delay asked (capped), and a run cancelled
// during a pause stops at once.
func TestOfflineWordDelay(t *testing.T) {
	help := agent.Request{Messages: []agent.Message{{Role: agent.RoleUser, Content: "help"}}}
	tests := []struct {
		name  string
		delay time.Duration
		want  time.Duration // each pause; 0: none
	}{
		{"no delay", 0, 0},
		{"a delay", 300 * time.Millisecond, 300 * time.Millisecond},
		{"capped", time.Hour, agent.MaxOfflineWordDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seq []string
			p := agent.NewOffline(agent.WithWordDelay(tt.delay), agent.WithPause(func(_ context.Context, d time.Duration) error {
				seq = append(seq, "pause "+d.String())
				return nil
			}))
			turn, err := p.Complete(context.Background(), help, func(s string) { seq = append(seq, "word") })
			if err != nil {
				t.Fatal(err)
			}
			words := len(strings.Fields(turn.Text))
			var want []string
			for i := range words {
				if i > 0 && tt.want > 0 {
					want = append(want, "pause "+tt.want.String())
				}
				want = append(want, "word")
			}
			if !slices.Equal(seq, want) {
				t.Fatalf("got %q, want %q", seq, want)
			}
		})
	}

	// The real pause: an hour-long one ends with the run's context.
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := agent.NewOffline(agent.WithWordDelay(time.Hour)).Complete(ctx, help, func(string) {
		if n++; n == 1 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("cancelled during a pause: err %v after %d words", err, n)
	}
}
