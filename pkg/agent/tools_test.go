package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
)

// TestExecTool runs each tool with good and bad arguments over a user with
// a pending task "Open" and a done task "Closed", and checks the result
// and the tasks afterwards. Every case starts from a fresh user.
func TestExecTool(t *testing.T) {
	long := strings.Repeat("é", todo.MaxTitleLen+1)
	tests := []struct {
		name string
		tool string
		args string // {Open}, {Closed} expand to the ids
		code string // the error code, or "" for success
		// result checks a success's decoded result.
		result func(t *testing.T, res json.RawMessage, ids map[string]int64)
		after  []seedTask // the tasks afterwards; nil means unchanged
	}{
		{name: "add", tool: "add_task", args: `{"title":"  New  "}`,
			result: wantTaskResult("created", "New"),
			after:  []seedTask{{title: "Closed", done: true}, {title: "New"}, {title: "Open"}}},
		{name: "add with description", tool: "add_task", args: `{"title":"New","description":"why"}`,
			result: wantTaskResult("created", "New"),
			after:  []seedTask{{title: "Closed", done: true}, {title: "New", desc: "why"}, {title: "Open"}}},
		{name: "add with null description", tool: "add_task", args: `{"title":"New","description":null}`,
			after: []seedTask{{title: "Closed", done: true}, {title: "New"}, {title: "Open"}}},
		{name: "add blank title", tool: "add_task", args: `{"title":"   "}`, code: agent.CodeInvalidTitle},
		{name: "add long title", tool: "add_task", args: `{"title":"` + long + `"}`, code: agent.CodeInvalidTitle},
		{name: "add NUL title", tool: "add_task", args: `{"title":"a\u0000b"}`, code: agent.CodeInvalidTitle},
		{name: "add long description", tool: "add_task", args: `{"title":"x","description":"` + strings.Repeat("d", todo.MaxDescriptionLen+1) + `"}`, code: agent.CodeInvalidDescription},
		{name: "add without title", tool: "add_task", args: `{}`, code: agent.CodeInvalidArguments},
		{name: "add null title", tool: "add_task", args: `{"title":null}`, code: agent.CodeInvalidArguments},
		{name: "add number title", tool: "add_task", args: `{"title":42}`, code: agent.CodeInvalidArguments},
		{name: "add naming a user", tool: "add_task", args: `{"title":"x","user_id":"someone-else"}`, code: agent.CodeInvalidArguments},
		{name: "add duplicate member", tool: "add_task", args: `{"title":"x","title":"y"}`, code: agent.CodeInvalidArguments},
		{name: "arguments an array", tool: "add_task", args: `["x"]`, code: agent.CodeInvalidArguments},
		{name: "arguments a JSON string", tool: "add_task", args: `"{\"title\":\"x\"}"`, code: agent.CodeInvalidArguments},
		{name: "arguments null", tool: "add_task", args: `null`, code: agent.CodeInvalidArguments},
		{name: "arguments not JSON", tool: "add_task", args: `{title: x}`, code: agent.CodeInvalidArguments},
		{name: "arguments with trailing data", tool: "add_task", args: `{"title":"x"} {}`, code: agent.CodeInvalidArguments},
		{name: "arguments cut short", tool: "add_task", args: `{"title":"x"`, code: agent.CodeInvalidArguments},

		{name: "list all", tool: "list_tasks", args: `{"status":"all"}`, result: wantListed("Closed", "Open")},
		{name: "list without arguments", tool: "list_tasks", args: ``, result: wantListed("Closed", "Open")},
		{name: "list null status", tool: "list_tasks", args: `{"status":null}`, result: wantListed("Closed", "Open")},
		{name: "list pending", tool: "list_tasks", args: `{"status":"pending"}`, result: wantListed("Open")},
		{name: "list completed", tool: "list_tasks", args: ` {"status":"completed"} `, result: wantListed("Closed")},
		{name: "list unknown status", tool: "list_tasks", args: `{"status":"done"}`, code: agent.CodeInvalidArguments},
		{name: "list number status", tool: "list_tasks", args: `{"status":1}`, code: agent.CodeInvalidArguments},
		{name: "list unknown member", tool: "list_tasks", args: `{"limit":5}`, code: agent.CodeInvalidArguments},

		{name: "complete", tool: "complete_task", args: `{"task_id":{Open}}`,
			result: wantTaskResult("completed", "Open"),
			after:  []seedTask{{title: "Closed", done: true}, {title: "Open", done: true}}},
		{name: "complete a done task stays done", tool: "complete_task", args: `{"task_id":{Closed}}`,
			result: wantTaskResult("completed", "Closed")},
		{name: "complete missing", tool: "complete_task", args: `{"task_id":999999999}`, code: agent.CodeTaskNotFound},
		{name: "complete id as string", tool: "complete_task", args: `{"task_id":"{Open}"}`, code: agent.CodeInvalidArguments},
		{name: "complete id with fraction", tool: "complete_task", args: `{"task_id":{Open}.0}`, code: agent.CodeInvalidArguments},
		{name: "complete id with exponent", tool: "complete_task", args: `{"task_id":1e3}`, code: agent.CodeInvalidArguments},
		{name: "complete id zero", tool: "complete_task", args: `{"task_id":0}`, code: agent.CodeInvalidArguments},
		{name: "complete id negative", tool: "complete_task", args: `{"task_id":-1}`, code: agent.CodeInvalidArguments},
		{name: "complete id too big", tool: "complete_task", args: `{"task_id":99999999999999999999}`, code: agent.CodeInvalidArguments},
		{name: "complete without id", tool: "complete_task", args: `{}`, code: agent.CodeInvalidArguments},
		{name: "complete with title", tool: "complete_task", args: `{"task_id":{Open},"title":"x"}`, code: agent.CodeInvalidArguments},

		{name: "delete", tool: "delete_task", args: `{"task_id":{Open}}`,
			result: wantTaskResult("deleted", "Open"),
			after:  []seedTask{{title: "Closed", done: true}}},
		{name: "delete missing", tool: "delete_task", args: `{"task_id":999999999}`, code: agent.CodeTaskNotFound},
		{name: "delete id as string", tool: "delete_task", args: `{"task_id":"1"}`, code: agent.CodeInvalidArguments},

		{name: "update title", tool: "update_task", args: `{"task_id":{Open},"title":"Renamed"}`,
			result: wantTaskResult("updated", "Renamed"),
			after:  []seedTask{{title: "Closed", done: true}, {title: "Renamed"}}},
		{name: "update description", tool: "update_task", args: `{"task_id":{Open},"description":"more"}`,
			result: wantTaskResult("updated", "Open"),
			after:  []seedTask{{title: "Closed", done: true}, {title: "Open", desc: "more"}}},
		{name: "update both, null ignored", tool: "update_task", args: `{"task_id":{Closed},"title":"Shut","description":null}`,
			after: []seedTask{{title: "Open"}, {title: "Shut", done: true}}},
		{name: "update nothing", tool: "update_task", args: `{"task_id":{Open}}`, code: agent.CodeInvalidArguments},
		{name: "update only nulls", tool: "update_task", args: `{"task_id":{Open},"title":null,"description":null}`, code: agent.CodeInvalidArguments},
		{name: "update empty title", tool: "update_task", args: `{"task_id":{Open},"title":""}`, code: agent.CodeInvalidTitle},
		{name: "update missing", tool: "update_task", args: `{"task_id":999999999,"title":"x"}`, code: agent.CodeTaskNotFound},
		{name: "update completed flag", tool: "update_task", args: `{"task_id":{Open},"completed":true}`, code: agent.CodeInvalidArguments},

		{name: "unknown tool", tool: "drop_database", args: `{}`, code: agent.CodeUnknownTool},
		{name: "unknown tool with bad arguments", tool: "", args: `nope`, code: agent.CodeUnknownTool},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t)
			start := []seedTask{{title: "Closed", done: true}, {title: "Open"}}
			ids := seed(t, r.store.(*todo.Store), r.user, start)
			res := agent.ExecTool(ctx, r.store, r.user, call("c", tc.tool, expand(tc.args, ids)))
			if !json.Valid(res) {
				t.Fatalf("result %q is not JSON", res)
			}
			if code := errorCode(t, res); code != tc.code {
				t.Fatalf("result %s, want code %q", res, tc.code)
			}
			if tc.result != nil {
				tc.result(t, res, ids)
			}
			want := tc.after
			if want == nil {
				want = start
			}
			if got := tasksOf(t, r.user); !equalTasks(got, want) {
				t.Errorf("tasks %+v, want %+v", got, want)
			}
		})
	}
}

// wantTaskResult checks {"task_id","status","title"} of a changed task.
func wantTaskResult(status, title string) func(*testing.T, json.RawMessage, map[string]int64) {
	return func(t *testing.T, res json.RawMessage, ids map[string]int64) {
		t.Helper()
		m := resultObject(t, res)
		id, _ := m["task_id"].(float64)
		if len(m) != 3 || m["status"] != status || m["title"] != title || id < 1 {
			t.Errorf("result %s, want status %q title %q", res, status, title)
		}
		if want, ok := ids[title]; ok && int64(id) != want {
			t.Errorf("result %s names task %v, want %d", res, id, want)
		}
	}
}

// wantListed checks that a list_tasks result is an array of exactly the
// titles, oldest first, each with the documented members.
func wantListed(titles ...string) func(*testing.T, json.RawMessage, map[string]int64) {
	return func(t *testing.T, res json.RawMessage, ids map[string]int64) {
		t.Helper()
		var got []map[string]any
		if !bytes.HasPrefix(res, []byte("[")) || json.Unmarshal(res, &got) != nil || len(got) != len(titles) {
			t.Fatalf("result %s, want %d tasks", res, len(titles))
		}
		for i, x := range got {
			for _, k := range []string{"id", "title", "description", "completed", "created_at"} {
				if _, ok := x[k]; !ok {
					t.Errorf("task %d lacks %q: %v", i, k, x)
				}
			}
			id, _ := x["id"].(float64)
			if len(x) != 5 || x["title"] != titles[i] || int64(id) != ids[titles[i]] {
				t.Errorf("task %d = %v, want %q (%d)", i, x, titles[i], ids[titles[i]])
			}
			if _, err := time.Parse(time.RFC3339Nano, x["created_at"].(string)); err != nil {
				t.Errorf("created_at: %v", err)
			}
		}
	}
}

// TestExecToolOtherUser checks that no tool reads or changes another
// user's task: the owner's task is reported missing and stays as it was.
func TestExecToolOtherUser(t *testing.T) {
	ctx := context.Background()
	owner := newRunner(t)
	ids := seed(t, owner.store.(*todo.Store), owner.user, []seedTask{{title: "Mine", desc: "private"}})
	intruder := newRunner(t)
	for _, c := range []agent.Call{
		call("1", "complete_task", expand(`{"task_id":{Mine}}`, ids)),
		call("2", "delete_task", expand(`{"task_id":{Mine}}`, ids)),
		call("3", "update_task", expand(`{"task_id":{Mine},"title":"Stolen"}`, ids)),
	} {
		if code := errorCode(t, agent.ExecTool(ctx, intruder.store, intruder.user, c)); code != agent.CodeTaskNotFound {
			t.Errorf("%s on another user's task: code %q", c.Name, code)
		}
	}
	listed := agent.ExecTool(ctx, intruder.store, intruder.user, call("4", "list_tasks", `{}`))
	if string(listed) != "[]" {
		t.Errorf("intruder lists %s", listed)
	}
	if got := tasksOf(t, owner.user); !equalTasks(got, []seedTask{{title: "Mine", desc: "private"}}) {
		t.Errorf("owner's tasks %+v", got)
	}
}

// TestExecUnavailable checks a database outage: Exec returns an error
// wrapping ErrTransient, ExecTool an UNAVAILABLE result.
func TestExecUnavailable(t *testing.T) {
	ctx := context.Background()
	store := todo.NewStore(dbtest.PoolAt(t, pgdb.Config{URL: dbtest.UnreachableURL}))
	for _, c := range []agent.Call{
		call("1", "add_task", `{"title":"x"}`),
		call("2", "list_tasks", `{}`),
		call("3", "complete_task", `{"task_id":1}`),
		call("4", "delete_task", `{"task_id":1}`),
		call("5", "update_task", `{"task_id":1,"title":"y"}`),
	} {
		res, err := agent.Exec(ctx, store, "user", c)
		if !errors.Is(err, agent.ErrTransient) || !errors.Is(err, pgdb.ErrUnavailable) || res != nil {
			t.Errorf("%s: result %s, err %v", c.Name, res, err)
		}
		if code := errorCode(t, agent.ExecTool(ctx, store, "user", c)); code != agent.CodeUnavailable {
			t.Errorf("%s: ExecTool code %q", c.Name, code)
		}
	}
	// Bad arguments are answered without the database.
	res, err := agent.Exec(ctx, store, "user", call("6", "add_task", `{}`))
	if err != nil || errorCode(t, res) != agent.CodeInvalidArguments {
		t.Errorf("bad arguments: %s, %v", res, err)
	}
}

// TestExecNotTransient checks that a store failure that is not an outage
// is an error without ErrTransient.
func TestExecNotTransient(t *testing.T) {
	store := todo.NewStore(testDB.DB)
	_, err := agent.Exec(context.Background(), store, "no-such-user", call("1", "add_task", `{"title":"x"}`))
	if err == nil || errors.Is(err, agent.ErrTransient) || !errors.Is(err, todo.ErrUserNotFound) {
		t.Errorf("err = %v", err)
	}
}

// TestToolSpecs checks the five specs: names, object schemas that refuse
// unknown members, and that each names a tool ExecTool knows.
func TestToolSpecs(t *testing.T) {
	specs := agent.ToolSpecs()
	want := []string{"add_task", "list_tasks", "complete_task", "delete_task", "update_task"}
	if len(specs) != len(want) {
		t.Fatalf("%d specs", len(specs))
	}
	for i, s := range specs {
		var schema struct {
			Type                 string                     `json:"type"`
			Properties           map[string]json.RawMessage `json:"properties"`
			Required             []string                   `json:"required"`
			AdditionalProperties *bool                      `json:"additionalProperties"`
		}
		if err := json.Unmarshal(s.Parameters, &schema); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if s.Name != want[i] || s.Description == "" || schema.Type != "object" ||
			schema.AdditionalProperties == nil || *schema.AdditionalProperties {
			t.Errorf("spec %d = %s %s", i, s.Name, s.Parameters)
		}
		for _, r := range schema.Required {
			if _, ok := schema.Properties[r]; !ok {
				t.Errorf("%s requires undeclared %q", s.Name, r)
			}
		}
		res := agent.ExecTool(context.Background(), todo.NewStore(testDB.DB), "nobody", call("x", s.Name, `{"bogus":1}`))
		if code := errorCode(t, res); code != agent.CodeInvalidArguments {
			t.Errorf("%s with an unknown member: %s", s.Name, res)
		}
	}
	specs[0].Parameters[0] = 'X'
	if agent.ToolSpecs()[0].Parameters[0] != '{' {
		t.Error("ToolSpecs shares its schemas with callers")
	}
}
