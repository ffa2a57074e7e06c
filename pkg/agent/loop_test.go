package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/todo"
)

// fakeProvider answers with scripted turns, one per Complete, streaming
// each turn's text in three-byte deltas, and records every request. When
// the script runs out it repeats its last turn. err, when set, is returned
// from the turn of that index.
type fakeProvider struct {
	turns  []agent.Turn
	errAt  int
	err    error
	during func() // called inside Complete, before answering
	reqs   []agent.Request
}

func (f *fakeProvider) Complete(ctx context.Context, req agent.Request, onDelta func(string)) (agent.Turn, error) {
	// Keep a copy: the loop may append to the slice it passed.
	req.Messages = append([]agent.Message(nil), req.Messages...)
	f.reqs = append(f.reqs, req)
	i := len(f.reqs) - 1
	if f.during != nil {
		f.during()
	}
	if err := ctx.Err(); err != nil {
		return agent.Turn{}, err
	}
	if f.err != nil && i == f.errAt {
		return agent.Turn{}, f.err
	}
	turn := f.turns[min(i, len(f.turns)-1)]
	for s := turn.Text; s != ""; {
		n := min(3, len(s))
		onDelta(s[:n])
		s = s[n:]
	}
	return turn, nil
}

func (f *fakeProvider) Model() string { return "fake-1" }

func call(id, name, args string) agent.Call {
	return agent.Call{ID: id, Name: name, Arguments: json.RawMessage(args)}
}

func userSays(s string) agent.Input {
	return agent.Input{History: []agent.Message{{Role: agent.RoleUser, Content: s}}}
}

// TestRunScripted runs a model that makes two calls in one round and then
// answers, and checks what the model saw, what ran and what the sink got.
func TestRunScripted(t *testing.T) {
	r := newRunner(t)
	p := &fakeProvider{turns: []agent.Turn{
		{Text: "Adding both.", Calls: []agent.Call{
			call("c1", "add_task", `{"title":"Alpha"}`),
			call("c2", "add_task", `{"title":"Beta","description":"second"}`),
		}},
		{Text: "Added Alpha and Beta."},
	}}
	var s sink
	history := []agent.Message{
		{Role: agent.RoleUser, Content: "earlier"},
		{Role: agent.RoleAssistant, Content: "earlier answer"},
		{Role: agent.RoleUser, Content: "add alpha and beta"},
	}
	res, err := agent.New(p, agent.WithSystemPrompt("be brief")).Run(context.Background(), agent.Input{History: history}, r, &s)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Text != "Added Alpha and Beta." || res.Model != "fake-1" || len(res.Calls) != 2 {
		t.Fatalf("result %+v", res)
	}
	if len(p.reqs) != 2 {
		t.Fatalf("model asked %d times", len(p.reqs))
	}
	wantFirst := append([]agent.Message{{Role: agent.RoleSystem, Content: "be brief"}}, history...)
	if !reflect.DeepEqual(p.reqs[0].Messages, wantFirst) {
		t.Errorf("first request %+v", p.reqs[0].Messages)
	}
	if !reflect.DeepEqual(p.reqs[0].Tools, agent.ToolSpecs()) {
		t.Errorf("tools %+v", p.reqs[0].Tools)
	}
	second := p.reqs[1].Messages
	if len(second) != len(wantFirst)+3 || !reflect.DeepEqual(second[:len(wantFirst)], wantFirst) {
		t.Fatalf("second request %+v", second)
	}
	asst, tool1, tool2 := second[len(wantFirst)], second[len(wantFirst)+1], second[len(wantFirst)+2]
	if asst.Role != agent.RoleAssistant || asst.Content != "Adding both." || !reflect.DeepEqual(asst.Calls, p.turns[0].Calls) {
		t.Errorf("assistant message %+v", asst)
	}
	for i, m := range []agent.Message{tool1, tool2} {
		c := res.Calls[i]
		if m.Role != agent.RoleTool || m.CallID != c.ID || m.Name != "add_task" || m.Content != string(c.Result) {
			t.Errorf("tool message %d = %+v, call %+v", i, m, c)
		}
		if got := resultObject(t, c.Result); got["status"] != "created" {
			t.Errorf("result %d = %s", i, c.Result)
		}
	}
	for i, rc := range r.ran {
		if rc.round != 0 || rc.index != i || rc.text != "Adding both." || rc.call.ID != p.turns[0].Calls[i].ID {
			t.Errorf("RunTool %d got round %d index %d text %q call %+v", i, rc.round, rc.index, rc.text, rc.call)
		}
	}
	var want []string
	for _, d := range []string{"Add", "ing", " bo", "th."} {
		want = append(want, "delta:"+d)
	}
	for _, c := range res.Calls {
		want = append(want, "call:"+c.ID+":add_task", "result:"+c.ID+":"+string(c.Result))
	}
	for _, d := range []string{"Add", "ed ", "Alp", "ha ", "and", " Be", "ta."} {
		want = append(want, "delta:"+d)
	}
	if !reflect.DeepEqual(s.events, want) {
		t.Errorf("sink events\n got %q\nwant %q", s.events, want)
	}
	wantTasks := []seedTask{{title: "Alpha"}, {title: "Beta", desc: "second"}}
	if got := tasksOf(t, r.user); !equalTasks(got, wantTasks) {
		t.Errorf("tasks %+v", got)
	}
}

// TestRunDeltas checks that a text-only turn streams in order and its
// deltas make Result.Text, and that the default system prompt is sent.
func TestRunDeltas(t *testing.T) {
	text := "The quick brown fox jumps over the lazy dog, twice."
	p := &fakeProvider{turns: []agent.Turn{{Text: text}}}
	var s sink
	res, err := agent.New(p).Run(context.Background(), userSays("hello"), newRunner(t), &s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != text || strings.Join(s.deltas, "") != text || len(s.deltas) != (len(text)+2)/3 {
		t.Errorf("text %q from deltas %q", res.Text, s.deltas)
	}
	if m := p.reqs[0].Messages[0]; m.Role != agent.RoleSystem || m.Content != agent.DefaultSystemPrompt {
		t.Errorf("first message %+v", m)
	}
	if _, err := agent.New(p, agent.WithSystemPrompt("")).Run(context.Background(), userSays("hello"), newRunner(t), nil); err != nil {
		t.Fatal(err)
	}
	if m := p.reqs[1].Messages; len(m) != 1 || m[0].Role != agent.RoleUser {
		t.Errorf("without a system prompt the request is %+v", m)
	}
}

// TestRunRoundCap checks that a model that never stops calling tools is
// cut off after the cap, with ErrRoundsExceeded, and that recorded rounds
// count towards it.
func TestRunRoundCap(t *testing.T) {
	loop := &fakeProvider{turns: []agent.Turn{{Calls: []agent.Call{call("", "list_tasks", `{}`)}}}}
	t.Run("new rounds", func(t *testing.T) {
		r := newRunner(t)
		loop.reqs = nil
		res, err := agent.New(loop, agent.WithMaxRounds(3)).Run(context.Background(), userSays("loop"), r, nil)
		if !errors.Is(err, agent.ErrRoundsExceeded) {
			t.Fatalf("err = %v, want ErrRoundsExceeded", err)
		}
		if len(r.ran) != 3 || len(loop.reqs) != 4 || len(res.Calls) != 3 || res.Text != "" {
			t.Errorf("ran %d tools, asked %d times, result %+v", len(r.ran), len(loop.reqs), res)
		}
		for i, rc := range r.ran {
			if rc.round != i {
				t.Errorf("call %d ran as round %d", i, rc.round)
			}
		}
	})
	t.Run("default is 8", func(t *testing.T) {
		r := newRunner(t)
		_, err := agent.New(loop).Run(context.Background(), userSays("loop"), r, nil)
		if !errors.Is(err, agent.ErrRoundsExceeded) || len(r.ran) != agent.DefaultMaxRounds {
			t.Errorf("err %v after %d rounds", err, len(r.ran))
		}
	})
	t.Run("recorded rounds count", func(t *testing.T) {
		r := newRunner(t)
		loop.reqs = nil
		recorded := agent.Round{Calls: []agent.RecordedCall{{Call: call("old", "list_tasks", `{}`), Result: json.RawMessage(`[]`)}}}
		in := userSays("loop")
		in.Ledger = []agent.Round{recorded, recorded}
		_, err := agent.New(loop, agent.WithMaxRounds(2)).Run(context.Background(), in, r, nil)
		if !errors.Is(err, agent.ErrRoundsExceeded) || len(r.ran) != 0 || len(loop.reqs) != 1 {
			t.Errorf("err %v, ran %d, asked %d times", err, len(r.ran), len(loop.reqs))
		}
	})
	t.Run("a text answer in the last allowed turn is fine", func(t *testing.T) {
		r := newRunner(t)
		p := &fakeProvider{turns: []agent.Turn{{Calls: []agent.Call{call("a", "list_tasks", `{}`)}}, {Text: "ok"}}}
		res, err := agent.New(p, agent.WithMaxRounds(1)).Run(context.Background(), userSays("list"), r, nil)
		if err != nil || res.Text != "ok" || len(r.ran) != 1 {
			t.Errorf("result %+v, err %v", res, err)
		}
	})
}

// TestRunReplay checks a retried run: the ledger's round 0 is given to the
// model, its tools are not run again, and the loop asks for round 1.
func TestRunReplay(t *testing.T) {
	t.Run("scripted model", func(t *testing.T) {
		r := newRunner(t)
		ids := seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Old task"}})
		recordedResult := json.RawMessage(fmt.Sprintf(`{"task_id":%d,"status":"created","title":"Old task"}`, ids["Old task"]))
		in := userSays("add two")
		in.Ledger = []agent.Round{{Text: "First one.", Calls: []agent.RecordedCall{
			{Call: call("attempt1-call", "add_task", `{"title":"Old task"}`), Result: recordedResult},
		}}}
		p := &fakeProvider{turns: []agent.Turn{
			{Calls: []agent.Call{call("attempt2-call", "add_task", `{"title":"New task"}`)}},
			{Text: "Both added."},
		}}
		var s sink
		res, err := agent.New(p, agent.WithSystemPrompt("")).Run(context.Background(), in, r, &s)
		if err != nil {
			t.Fatal(err)
		}
		first := p.reqs[0].Messages
		if len(first) != 3 || first[1].Role != agent.RoleAssistant || first[1].Content != "First one." ||
			len(first[1].Calls) != 1 || first[1].Calls[0].ID != "attempt1-call" ||
			first[2].Role != agent.RoleTool || first[2].CallID != "attempt1-call" || first[2].Content != string(recordedResult) {
			t.Fatalf("first request after a retry %+v", first)
		}
		if len(r.ran) != 1 || r.ran[0].round != 1 || r.ran[0].index != 0 || r.ran[0].call.ID != "attempt2-call" {
			t.Fatalf("ran %+v, want only round 1's call", r.ran)
		}
		if len(res.Calls) != 2 || res.Calls[0].ID != "attempt1-call" || string(res.Calls[0].Result) != string(recordedResult) ||
			res.Calls[1].ID != "attempt2-call" || res.Text != "Both added." {
			t.Errorf("result %+v", res)
		}
		// The recorded round is announced again, before anything new.
		wantStart := []string{"delta:First one.", "call:attempt1-call:add_task", "result:attempt1-call:" + string(recordedResult), "call:attempt2-call:add_task"}
		if len(s.events) < len(wantStart) || !reflect.DeepEqual(s.events[:len(wantStart)], wantStart) {
			t.Errorf("sink events %q", s.events)
		}
		want := []seedTask{{title: "New task"}, {title: "Old task"}}
		if got := tasksOf(t, r.user); !equalTasks(got, want) {
			t.Errorf("tasks %+v", got)
		}
	})
	t.Run("offline model continues after its recorded list", func(t *testing.T) {
		r := newRunner(t)
		ids := seed(t, r.store.(*todo.Store), r.user, []seedTask{{title: "Team meeting"}, {title: "Buy milk"}})
		in := userSays("delete the meeting task")
		// What the first attempt did before it died: round 0, a list.
		first, err := agent.NewOffline().Complete(context.Background(), agent.Request{Messages: in.History}, nil)
		if err != nil || len(first.Calls) != 1 || first.Calls[0].Name != agent.ToolListTasks {
			t.Fatalf("first turn %+v, %v", first, err)
		}
		listed := agent.ExecTool(context.Background(), r.store, r.user, first.Calls[0])
		in.Ledger = []agent.Round{{Calls: []agent.RecordedCall{{Call: first.Calls[0], Result: listed}}}}
		res, err := agent.New(agent.NewOffline()).Run(context.Background(), in, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.ran) != 1 || r.ran[0].round != 1 || r.ran[0].call.Name != agent.ToolDeleteTask ||
			!sameJSON(t, r.ran[0].call.Arguments, []byte(fmt.Sprintf(`{"task_id":%d}`, ids["Team meeting"]))) {
			t.Fatalf("ran %+v", r.ran)
		}
		if res.Text != `Deleted "Team meeting".` || len(res.Calls) != 2 {
			t.Errorf("result %+v", res)
		}
		if got := tasksOf(t, r.user); !equalTasks(got, []seedTask{{title: "Buy milk"}}) {
			t.Errorf("tasks %+v", got)
		}
	})
}

// TestRunBadCalls checks that an unknown tool and arguments that are not
// JSON give error results the model sees, not run errors.
func TestRunBadCalls(t *testing.T) {
	r := newRunner(t)
	p := &fakeProvider{turns: []agent.Turn{
		{Calls: []agent.Call{
			call("u", "fly_to_the_moon", `{}`),
			call("j", "add_task", `{"title": "unterminated`),
			call("s", "add_task", `"{\"title\":\"a string\"}"`),
		}},
		{Text: "Sorry."},
	}}
	res, err := agent.New(p).Run(context.Background(), userSays("do odd things"), r, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantCodes := []string{agent.CodeUnknownTool, agent.CodeInvalidArguments, agent.CodeInvalidArguments}
	for i, c := range res.Calls {
		if got := errorCode(t, c.Result); got != wantCodes[i] {
			t.Errorf("call %s result %s, want code %s", c.ID, c.Result, wantCodes[i])
		}
		if m := p.reqs[1].Messages[len(p.reqs[1].Messages)-3+i]; m.Content != string(c.Result) {
			t.Errorf("model saw %q for call %s", m.Content, c.ID)
		}
		if !json.Valid(c.Arguments) || !json.Valid(r.ran[i].call.Arguments) {
			t.Errorf("call %s arguments %q are not JSON", c.ID, c.Arguments)
		}
	}
	var kept string
	if err := json.Unmarshal(res.Calls[1].Arguments, &kept); err != nil || kept != `{"title": "unterminated` {
		t.Errorf("invalid arguments kept as %s", res.Calls[1].Arguments)
	}
	if got := tasksOf(t, r.user); len(got) != 0 {
		t.Errorf("tasks %+v", got)
	}
}

// TestRunMissingCallIDs checks that calls without ids get distinct ones,
// and that empty arguments are handed on as {}.
func TestRunMissingCallIDs(t *testing.T) {
	r := newRunner(t)
	p := &fakeProvider{turns: []agent.Turn{
		{Calls: []agent.Call{call("", "list_tasks", `{}`), call("", "list_tasks", ``)}},
		{Calls: []agent.Call{call("", "list_tasks", `{}`)}},
		{Text: "Done."},
	}}
	res, err := agent.New(p).Run(context.Background(), userSays("list thrice"), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range res.Calls {
		if c.ID == "" || seen[c.ID] {
			t.Errorf("call id %q empty or repeated", c.ID)
		}
		seen[c.ID] = true
	}
	if len(seen) != 3 {
		t.Errorf("calls %+v", res.Calls)
	}
	if string(res.Calls[1].Arguments) != `{}` || errorCode(t, res.Calls[1].Result) != "" {
		t.Errorf("empty arguments became %s, result %s", res.Calls[1].Arguments, res.Calls[1].Result)
	}
}

// TestRunErrors checks that provider and tool errors come back wrapped,
// with ErrTransient still visible, and what was done so far.
func TestRunErrors(t *testing.T) {
	t.Run("provider", func(t *testing.T) {
		r := newRunner(t)
		cause := fmt.Errorf("model timed out: %w", agent.ErrTransient)
		p := &fakeProvider{turns: []agent.Turn{{Calls: []agent.Call{call("a", "add_task", `{"title":"Kept"}`)}}}, errAt: 1, err: cause}
		res, err := agent.New(p).Run(context.Background(), userSays("add kept"), r, nil)
		if !errors.Is(err, agent.ErrTransient) || !errors.Is(err, cause) || !strings.Contains(err.Error(), "round 1") {
			t.Fatalf("err = %v", err)
		}
		if len(res.Calls) != 1 || res.Calls[0].ID != "a" || res.Text != "" || res.Model != "fake-1" {
			t.Errorf("partial result %+v", res)
		}
	})
	t.Run("tool", func(t *testing.T) {
		r := newRunner(t)
		r.err = fmt.Errorf("record round: %w", agent.ErrTransient)
		p := &fakeProvider{turns: []agent.Turn{{Calls: []agent.Call{call("a", "list_tasks", `{}`)}}}}
		var s sink
		_, err := agent.New(p).Run(context.Background(), userSays("list"), r, &s)
		if !errors.Is(err, agent.ErrTransient) || !strings.Contains(err.Error(), "list_tasks") {
			t.Fatalf("err = %v", err)
		}
		if want := []string{"call:a:list_tasks"}; !reflect.DeepEqual(s.events, want) {
			t.Errorf("sink events %q, want %q", s.events, want)
		}
	})
}

// TestRunCancel checks that a cancelled run returns ctx.Err() itself,
// whether it was cancelled before, during the model's turn or during a
// tool.
func TestRunCancel(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		r := newRunner(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := agent.New(agent.NewOffline()).Run(ctx, userSays("add milk"), r, nil)
		if !errors.Is(err, context.Canceled) || len(r.ran) != 0 {
			t.Errorf("err %v, ran %d", err, len(r.ran))
		}
	})
	t.Run("during the model's turn", func(t *testing.T) {
		r := newRunner(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := &fakeProvider{turns: []agent.Turn{{Text: "never"}}, during: cancel}
		_, err := agent.New(p).Run(ctx, userSays("hi"), r, nil)
		if err != context.Canceled { //nolint:errorlint // Run returns ctx.Err() itself
			t.Errorf("err = %v", err)
		}
	})
	t.Run("during a tool", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tools := toolFunc(func(ctx context.Context, _, _ int, _ string, _ agent.Call) (json.RawMessage, error) {
			cancel()
			return nil, fmt.Errorf("record: %w", ctx.Err())
		})
		p := &fakeProvider{turns: []agent.Turn{{Calls: []agent.Call{call("a", "list_tasks", `{}`), call("b", "list_tasks", `{}`)}}}}
		_, err := agent.New(p).Run(ctx, userSays("list"), tools, nil)
		if err != context.Canceled { //nolint:errorlint // Run returns ctx.Err() itself
			t.Errorf("err = %v", err)
		}
		if len(p.reqs) != 1 {
			t.Errorf("model asked %d times", len(p.reqs))
		}
	})
}

// toolFunc is a ToolRunner made of a function.
type toolFunc func(ctx context.Context, round, index int, text string, call agent.Call) (json.RawMessage, error)

func (f toolFunc) RunTool(ctx context.Context, round, index int, text string, call agent.Call) (json.RawMessage, error) {
	return f(ctx, round, index, text, call)
}
