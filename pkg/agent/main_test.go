package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/todo"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "agent", &testDB)) }

// ranCall is one RunTool call a runner received.
type ranCall struct {
	round, index int
	text         string
	call         agent.Call
	result       json.RawMessage
}

// runner is the test's ToolRunner: it runs each call with agent.ExecTool
// over the real store, for its user, and records it. err, when set, is
// returned instead of running the call.
type runner struct {
	store agent.TaskStore
	user  string
	err   error
	ran   []ranCall
}

func newRunner(t *testing.T) *runner {
	t.Helper()
	return &runner{store: todo.NewStore(testDB.DB), user: dbtest.CreateUser(t, testDB.DB, "")}
}

func (r *runner) RunTool(ctx context.Context, round, index int, text string, call agent.Call) (json.RawMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	res := agent.ExecTool(ctx, r.store, r.user, call)
	r.ran = append(r.ran, ranCall{round: round, index: index, text: text, call: call, result: res})
	return res, nil
}

// sink records what a run produced, in order: "delta:<text>",
// "call:<id>:<name>", "result:<id>:<json>".
type sink struct {
	events []string
	deltas []string
}

func (s *sink) Delta(text string) {
	s.deltas = append(s.deltas, text)
	s.events = append(s.events, "delta:"+text)
}

func (s *sink) ToolCall(c agent.Call) {
	s.events = append(s.events, "call:"+c.ID+":"+c.Name)
}

func (s *sink) ToolResult(c agent.Call, res json.RawMessage) {
	s.events = append(s.events, "result:"+c.ID+":"+string(res))
}

// seedTask is a task of a test's starting list (or of its expected end).
type seedTask struct {
	title string
	done  bool
	desc  string
}

// seed creates tasks for user and returns their ids by title.
func seed(t *testing.T, store *todo.Store, user string, tasks []seedTask) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	ids := map[string]int64{}
	for _, s := range tasks {
		in := todo.NewTask{Title: s.title}
		if s.desc != "" {
			in.Description = &s.desc
		}
		task, err := store.Create(ctx, user, in)
		if err != nil {
			t.Fatalf("seed %q: %v", s.title, err)
		}
		if s.done {
			if _, err := store.SetCompleted(ctx, user, task.ID, true); err != nil {
				t.Fatalf("seed %q: %v", s.title, err)
			}
		}
		ids[s.title] = task.ID
	}
	return ids
}

// tasksOf returns user's tasks as stored, sorted by title.
func tasksOf(t *testing.T, user string) []seedTask {
	t.Helper()
	page, err := todo.NewStore(testDB.DB).List(context.Background(), user, todo.ListParams{Limit: todo.MaxLimit})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	out := make([]seedTask, len(page.Tasks))
	for i, x := range page.Tasks {
		out[i] = seedTask{title: x.Title, done: x.Completed}
		if x.Description != nil {
			out[i].desc = *x.Description
		}
	}
	sortTasks(out)
	return out
}

func sortTasks(ts []seedTask) {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].title != ts[j].title {
			return ts[i].title < ts[j].title
		}
		return !ts[i].done && ts[j].done
	})
}

// sameJSON reports whether a and b are equal JSON values.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// resultObject fails unless res is a JSON object and returns it decoded.
func resultObject(t *testing.T, res json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if !bytes.HasPrefix(bytes.TrimSpace(res), []byte("{")) || json.Unmarshal(res, &m) != nil {
		t.Fatalf("result %s is not a JSON object", res)
	}
	return m
}

// errorCode returns the code of an error result, or "" for a success.
func errorCode(t *testing.T, res json.RawMessage) string {
	t.Helper()
	if bytes.HasPrefix(bytes.TrimSpace(res), []byte("[")) {
		return ""
	}
	m := resultObject(t, res)
	if m["status"] != agent.StatusError {
		return ""
	}
	code, _ := m["code"].(string)
	msg, _ := m["message"].(string)
	if code == "" || msg == "" || len(m) != 3 {
		t.Fatalf("error result %s lacks code or message or has more", res)
	}
	return code
}

// expand replaces {Title} with the id of the seeded task Title.
func expand(s string, ids map[string]int64) string {
	for title, id := range ids {
		s = strings.ReplaceAll(s, "{"+title+"}", fmt.Sprint(id))
	}
	return s
}
