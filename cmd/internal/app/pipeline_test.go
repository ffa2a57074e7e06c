package app_test

// End-to-end tests of the chat API through the real stack (harness_test.go):
// HTTP → API → Postgres and JetStream → workers → the agent → Postgres and
// the events stream → back to the API. Every test runs against an embedded
// NATS server and against the machine's nats-server 2.9.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
)

// TestChatOfflineAgentManagesTasks: in one conversation, in the sync mode,
// the offline agent adds, lists, completes, renames and deletes tasks;
// each answer carries its tool calls with their results as JSON values;
// later turns act on what earlier ones made; the conversation holds two
// messages per turn, in order, the calls on the assistant's.
func TestChatOfflineAgentManagesTasks(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{})
		u := s.newUser(t)

		var answers []answer
		say := func(msg, conv string, tools ...string) (answer, []toolCall) {
			t.Helper()
			a := u.chat(t, msg, conv)
			if conv != "" && a.ConversationID != conv {
				t.Fatalf("%q answered in conversation %s, want %s", msg, a.ConversationID, conv)
			}
			answers = append(answers, a)
			return a, wantCalls(t, a, tools...)
		}

		first, calls := say("add buy milk", "", "add_task")
		conv := first.ConversationID
		wantJSON(t, "add_task arguments", calls[0].Arguments, `{"title":"Buy milk"}`)
		milk := created(t, calls[0], "Buy milk")

		_, calls = say("remind me to pay the bills", conv, "add_task")
		bills := created(t, calls[0], "Pay the bills")

		a, calls := say("show my tasks", conv, "list_tasks")
		var listed []task
		decodeJSON(t, calls[0].Result, &listed)
		if len(listed) != 2 || !hasTask(listed, milk, "Buy milk") || !hasTask(listed, bills, "Pay the bills") {
			t.Fatalf("list_tasks result %s", calls[0].Result)
		}
		if !strings.Contains(a.Response, "Buy milk") || !strings.Contains(a.Response, "Pay the bills") {
			t.Fatalf("the list answer names not both tasks: %q", a.Response)
		}

		_, calls = say("mark buy milk as done", conv, "list_tasks", "complete_task")
		wantJSON(t, "complete_task arguments", calls[1].Arguments, `{"task_id":`+strconv.FormatInt(milk, 10)+`}`)
		wantResult(t, calls[1], milk, "completed")

		_, calls = say("rename pay the bills to pay the rent", conv, "list_tasks", "update_task")
		wantResult(t, calls[1], bills, "updated")

		// "the milk task" is the one the first turn added.
		_, calls = say("delete the milk task", conv, "list_tasks", "delete_task")
		wantResult(t, calls[1], milk, "deleted")

		tasks := u.tasks(t)
		if len(tasks) != 1 || tasks[0].ID != bills || !strings.EqualFold(tasks[0].Title, "pay the rent") || tasks[0].Completed {
			t.Fatalf("tasks after the conversation: %+v", tasks)
		}

		msgs := u.messages(t, conv)
		if len(msgs) != 2*len(answers) {
			t.Fatalf("%d messages for %d turns", len(msgs), len(answers))
		}
		for i, a := range answers {
			um, am := msgs[2*i], msgs[2*i+1]
			if um.Role != chat.RoleUser || um.ID != a.MessageID || um.RunID != a.RunID || len(um.ToolCalls) != 0 || um.ConversationID != conv {
				t.Errorf("turn %d: user message %+v, answer %+v", i, um, a)
			}
			if am.Role != chat.RoleAssistant || am.RunID != a.RunID || am.Content != a.Response || am.ConversationID != conv {
				t.Errorf("turn %d: assistant message %+v, answer %+v", i, am, a)
			}
			if !sameJSON(t, mustJSON(t, am.ToolCalls), mustJSON(t, a.ToolCalls)) {
				t.Errorf("turn %d: assistant tool calls %s, answer's %s", i, mustJSON(t, am.ToolCalls), mustJSON(t, a.ToolCalls))
			}
			if am.CreatedAt.Before(um.CreatedAt) {
				t.Errorf("turn %d: the answer is older than the message", i)
			}
		}
	})
}

// TestChatAsyncEventSequence: Prefer: respond-async answers 202 at once
// with the run and an events_url whose cursor is just before the run's
// run.queued; after it the stream holds exactly the run's documented
// sequence, and GET /runs/{id} then shows it completed.
func TestChatAsyncEventSequence(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{})
		u := s.newUser(t)
		prev := u.chat(t, "add buy milk", "")
		conv := prev.ConversationID

		resp := u.do(t, http.MethodPost, u.path("/chat"), chatRequest("remind me to call mom", conv), "Prefer", "respond-async").want(t, http.StatusAccepted)
		var acc accepted
		resp.decode(t, &acc)
		if acc.ConversationID != conv || acc.RunID == "" || acc.MessageID == "" || !slices.Contains([]string{"queued", "running", "completed"}, acc.Status) {
			t.Fatalf("202 body %s", resp.body)
		}
		if loc := resp.header.Get("Location"); loc != u.path("/runs/"+acc.RunID) {
			t.Fatalf("Location %q", loc)
		}
		after := eventsCursor(t, u, acc)

		r := u.waitRun(t, acc.RunID, "completed")
		if r.ConversationID != conv || r.MessageID != acc.MessageID || r.Attempts != 1 || r.Error != nil || r.StartedAt == nil || r.FinishedAt == nil {
			t.Fatalf("run %+v", r)
		}
		evs := waitFinalEvent(t, s, conv, after, acc.RunID)

		// The cursor is just before run.queued: nothing of the
		// conversation between them, nothing of the run before it.
		if evs[0].Type != chat.EventRunQueued || evs[0].RunID != acc.RunID || evs[0].Seq != after+1 {
			t.Fatalf("first event after the cursor %d: %s of run %s at %d", after, evs[0].Type, evs[0].RunID, evs[0].Seq)
		}
		for _, ev := range s.events(t, conv, 0) {
			if ev.Seq <= after && ev.RunID != prev.RunID {
				t.Fatalf("event %s of run %s before the cursor", ev.Type, ev.RunID)
			}
		}
		wantSequence(t, evs, acc.RunID, `run.queued run.started (message.delta |tool.call |tool.result )*message.completed run.completed`)

		var assistant message
		for _, m := range u.messages(t, conv) {
			if m.RunID == acc.RunID && m.Role == chat.RoleAssistant {
				assistant = m
			}
		}
		if assistant.ID == "" {
			t.Fatal("no assistant message for the run")
		}
		var text strings.Builder
		for _, ev := range evs {
			if ev.ConversationID != conv || ev.V != chat.EventVersion {
				t.Fatalf("event %+v", ev)
			}
			switch ev.Type {
			case chat.EventRunQueued:
				var d chat.RunQueuedData
				decodeJSON(t, ev.Data, &d)
				if d.RunID != acc.RunID || d.MessageID != acc.MessageID || d.Position != 0 {
					t.Errorf("run.queued %s", ev.Data)
				}
			case chat.EventRunStarted:
				var d chat.RunStartedData
				decodeJSON(t, ev.Data, &d)
				if d.Attempt != 1 || d.MessageID != assistant.ID {
					t.Errorf("run.started %s, assistant message %s", ev.Data, assistant.ID)
				}
			case chat.EventMessageDelta:
				var d chat.MessageDeltaData
				decodeJSON(t, ev.Data, &d)
				if d.MessageID != assistant.ID {
					t.Errorf("message.delta %s", ev.Data)
				}
				text.WriteString(d.Delta)
			case chat.EventToolCall:
				var d chat.ToolCallData
				decodeJSON(t, ev.Data, &d)
				if d.Name != "add_task" || d.CallID != assistant.ToolCalls[0].ID {
					t.Errorf("tool.call %s", ev.Data)
				}
				wantJSON(t, "tool.call arguments", d.Arguments, `{"title":"Call mom"}`)
			case chat.EventToolResult:
				var d chat.ToolResultData
				decodeJSON(t, ev.Data, &d)
				if d.Name != "add_task" || d.CallID != assistant.ToolCalls[0].ID || !sameJSON(t, d.Result, assistant.ToolCalls[0].Result) {
					t.Errorf("tool.result %s", ev.Data)
				}
			case chat.EventMessageCompleted:
				var d chat.MessageCompletedData
				decodeJSON(t, ev.Data, &d)
				if d.Message.ID != assistant.ID || d.Message.Content != assistant.Content || len(d.Message.ToolCalls) != 1 {
					t.Errorf("message.completed %s", ev.Data)
				}
			case chat.EventRunCompleted:
				var d chat.RunCompletedData
				decodeJSON(t, ev.Data, &d)
				if d.Response != assistant.Content || !sameJSON(t, mustJSON(t, d.ToolCalls), mustJSON(t, assistant.ToolCalls)) {
					t.Errorf("run.completed %s, assistant message %+v", ev.Data, assistant)
				}
			}
		}
		if text.String() != assistant.Content || !strings.Contains(assistant.Content, "Call mom") {
			t.Fatalf("deltas add up to %q, the answer is %q", text.String(), assistant.Content)
		}
	})
}

// TestChatAnswersAConversationInOrder: five messages sent back to back to
// one conversation, while its first run is held, wait their turn and are
// answered one at a time in acceptance order, each run's model seeing the
// answers before it.
func TestChatAnswersAConversationInOrder(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p})
		u := s.newUser(t)

		sent := []string{"add buy milk " + holdMarker, "add call mom", "add pay rent", "add walk the dog", "show my tasks"}
		titles := []string{"Buy milk", "Call mom", "Pay rent", "Walk the dog"}
		accs := []accepted{u.chatAsync(t, sent[0], "")}
		conv := accs[0].ConversationID
		p.waitEntered(t, sent[0])
		for _, m := range sent[1:] {
			a := u.chatAsync(t, m, conv)
			if a.Status != "queued" {
				t.Fatalf("%q accepted %s while the conversation's first run holds", m, a.Status)
			}
			accs = append(accs, a)
		}
		p.releaseOne(t)

		runs := make([]run, len(accs))
		for i, a := range accs {
			runs[i] = u.waitRun(t, a.RunID, "completed")
			if runs[i].Attempts != 1 {
				t.Errorf("run %d took %d attempts", i, runs[i].Attempts)
			}
		}
		for i := 1; i < len(runs); i++ {
			if runs[i].StartedAt.Before(*runs[i-1].FinishedAt) {
				t.Errorf("run %d started at %s, before run %d finished at %s", i, runs[i].StartedAt, i-1, runs[i-1].FinishedAt)
			}
		}

		// The answers, in acceptance order.
		var answers []message
		for _, m := range u.messages(t, conv) {
			if m.Role == chat.RoleAssistant {
				answers = append(answers, m)
			}
		}
		if len(answers) != len(sent) {
			t.Fatalf("%d answers to %d messages", len(answers), len(sent))
		}
		for i, m := range answers {
			if m.RunID != accs[i].RunID {
				t.Fatalf("answer %d belongs to run %s, want %s", i, m.RunID, accs[i].RunID)
			}
			if i < len(titles) && !strings.Contains(m.Content, titles[i]) {
				t.Errorf("answer %d %q does not name %q", i, m.Content, titles[i])
			}
		}
		list := answers[len(answers)-1]
		for _, title := range titles {
			if !strings.Contains(list.Content, title) {
				t.Errorf("the list %q lacks %q, added before it", list.Content, title)
			}
		}
		if len(list.ToolCalls) != 1 || list.ToolCalls[0].Name != "list_tasks" {
			t.Fatalf("the list's tool calls: %+v", list.ToolCalls)
		}

		wantAnsweredInOrder(t, u, p, conv)

		// Each run.queued said how many were ahead of it.
		pos := map[string]int{}
		for _, ev := range s.events(t, conv, 0) {
			if ev.Type == chat.EventRunQueued {
				var d chat.RunQueuedData
				decodeJSON(t, ev.Data, &d)
				pos[d.RunID] = d.Position
			}
		}
		for i, a := range accs {
			if p, ok := pos[a.RunID]; !ok || p != i {
				t.Errorf("run %d: run.queued position %d (found %v), want %d", i, p, ok, i)
			}
		}
	})
}

// TestChatAnswersABurstInAcceptanceOrder: five messages posted at the same
// time to one conversation are accepted in some order, and answered one at
// a time in exactly that order, each seeing the ones before.
func TestChatAnswersABurstInAcceptanceOrder(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p})
		u := s.newUser(t)
		conv := u.chat(t, "hello", "").ConversationID
		titles := []string{"Buy milk", "Call mom", "Pay rent", "Walk the dog", "Feed the cat"}
		var answers []func() response
		for _, title := range titles {
			answers = append(answers, u.start(t, http.MethodPost, u.path("/chat"), chatRequest("add "+strings.ToLower(title), conv), "Prefer", "respond-async"))
		}
		for _, a := range answers {
			a().want(t, http.StatusAccepted)
		}
		eventually(t, "every run to finish", func() bool { return countUnfinished(t, u.id) == 0 }, nil)
		wantAnsweredInOrder(t, u, p, conv)
		tasks := u.tasks(t)
		if len(tasks) != len(titles) {
			t.Fatalf("tasks %+v, want one per message", tasks)
		}
	})
}

// wantAnsweredInOrder checks a conversation whose runs all completed: they
// ran one at a time in acceptance order (the order of its user messages),
// their answers were stored in that order, and the model of each saw every
// message and answer before its own message.
func wantAnsweredInOrder(t *testing.T, u *apiUser, p *gatedProvider, conv string) {
	t.Helper()
	var users []message
	var answerRuns []string
	answers := map[string]message{}
	for _, m := range u.messages(t, conv) {
		if m.Role == chat.RoleUser {
			users = append(users, m)
		} else {
			answerRuns = append(answerRuns, m.RunID)
			answers[m.RunID] = m
		}
	}
	var acceptedRuns []string
	var prev run
	for i, um := range users {
		acceptedRuns = append(acceptedRuns, um.RunID)
		r := u.run(t, um.RunID)
		if r.Status != "completed" || r.Attempts != 1 {
			t.Fatalf("run %d: %+v", i, r)
		}
		if i > 0 && r.StartedAt.Before(*prev.FinishedAt) {
			t.Errorf("run %d started at %s, before run %d finished at %s", i, r.StartedAt, i-1, prev.FinishedAt)
		}
		prev = r
	}
	if !slices.Equal(answerRuns, acceptedRuns) {
		t.Fatalf("answers stored for runs %v, accepted in the order %v", answerRuns, acceptedRuns)
	}
	for i, um := range users {
		var seenUsers, seenAnswers, wantUsers, wantAnswers []string
		for _, h := range p.history(t, clean(um.Content)) {
			switch {
			case h.Role == agent.RoleUser:
				seenUsers = append(seenUsers, h.Content)
			case h.Role == agent.RoleAssistant && len(h.Calls) == 0:
				seenAnswers = append(seenAnswers, h.Content)
			}
		}
		for j := 0; j <= i; j++ {
			wantUsers = append(wantUsers, clean(users[j].Content))
		}
		for j := 0; j < i; j++ {
			wantAnswers = append(wantAnswers, answers[users[j].RunID].Content)
		}
		if !slices.Equal(seenUsers, wantUsers) || !slices.Equal(seenAnswers, wantAnswers) {
			t.Errorf("run %d saw messages %q and answers %q, want %q and %q", i, seenUsers, seenAnswers, wantUsers, wantAnswers)
		}
	}
}

// TestChatRunsConversationsInParallel: the runs of two conversations are
// both in the model at once, and their running times overlap.
func TestChatRunsConversationsInParallel(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p})
		u := s.newUser(t)
		one := u.chatAsync(t, "add buy milk "+holdMarker, "")
		two := u.chatAsync(t, "add call mom "+holdMarker, "")
		if one.ConversationID == two.ConversationID {
			t.Fatal("two new conversations share an id")
		}
		// Both calls wait at the same time: neither run waits for the other.
		p.waitEntered(t, "add buy milk", "add call mom")
		p.releaseOne(t)
		p.releaseOne(t)
		r1 := u.waitRun(t, one.RunID, "completed")
		r2 := u.waitRun(t, two.RunID, "completed")
		if !r1.StartedAt.Before(*r2.FinishedAt) || !r2.StartedAt.Before(*r1.FinishedAt) {
			t.Fatalf("runs did not overlap: %s–%s and %s–%s", r1.StartedAt, r1.FinishedAt, r2.StartedAt, r2.FinishedAt)
		}
	})
}

// TestChatSyncTimeout: a sync request whose run is not done within
// CHAT_SYNC_TIMEOUT gets the async answer (202), and the run goes on.
func TestChatSyncTimeout(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		const timeout = 200 * time.Millisecond
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p, env: map[string]string{"CHAT_SYNC_TIMEOUT": timeout.String()}})
		u := s.newUser(t)
		start := time.Now()
		resp := u.do(t, http.MethodPost, u.path("/chat"), chatRequest("add buy milk "+holdMarker, "")).want(t, http.StatusAccepted)
		if waited := time.Since(start); waited < timeout {
			t.Fatalf("202 after %s, before the sync timeout %s", waited, timeout)
		}
		var acc accepted
		resp.decode(t, &acc)
		if acc.RunID == "" || acc.MessageID == "" || (acc.Status != "queued" && acc.Status != "running") {
			t.Fatalf("202 body %s", resp.body)
		}
		if loc := resp.header.Get("Location"); loc != u.path("/runs/"+acc.RunID) {
			t.Fatalf("Location %q", loc)
		}
		after := eventsCursor(t, u, acc)
		p.waitEntered(t, "add buy milk")
		p.releaseOne(t)
		u.waitRun(t, acc.RunID, "completed")
		wantSequence(t, waitFinalEvent(t, s, acc.ConversationID, after, acc.RunID), acc.RunID,
			`run.queued run.started (message.delta |tool.call |tool.result )*message.completed run.completed`)
		if tasks := u.tasks(t); len(tasks) != 1 || tasks[0].Title != "Buy milk" {
			t.Fatalf("tasks %+v", tasks)
		}
	})
}

// TestChatIdempotency: the same Idempotency-Key and body give one user
// message, one run, one effect and the same answer, in both modes; another
// body with the key is 422; a malformed key is 400 and stores nothing.
func TestChatIdempotency(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p})
		u := s.newUser(t)
		chatPath := u.path("/chat")

		// Sync.
		first := u.do(t, http.MethodPost, chatPath, chatRequest("add buy milk", ""), "Idempotency-Key", "sync-key-1").want(t, http.StatusOK)
		again := u.do(t, http.MethodPost, chatPath, chatRequest("add buy milk", ""), "Idempotency-Key", "sync-key-1").want(t, http.StatusOK)
		if !sameJSON(t, first.body, again.body) {
			t.Fatalf("a replay answered %s, the first answer was %s", again.body, first.body)
		}
		var a answer
		first.decode(t, &a)
		if a.Status != "completed" || len(a.ToolCalls) != 1 {
			t.Fatalf("answer %s", first.body)
		}
		want := rowCounts{conversations: 1, messages: 2, runs: 1, toolRounds: 1}
		if got := counts(t, u.id); got != want {
			t.Fatalf("after a replay: %+v, want %+v", got, want)
		}

		// Another body with the key: refused, nothing stored. The same text
		// sent into the conversation it created is another request too.
		for _, body := range []string{chatRequest("add buy bread", ""), chatRequest("add buy milk", a.ConversationID)} {
			u.do(t, http.MethodPost, chatPath, body, "Idempotency-Key", "sync-key-1").wantProblem(t, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED")
			u.do(t, http.MethodPost, chatPath, body, "Idempotency-Key", "sync-key-1", "Prefer", "respond-async").wantProblem(t, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED")
		}
		if got := counts(t, u.id); got != want {
			t.Fatalf("after refused replays: %+v, want %+v", got, want)
		}

		// Async, for a run that waits its turn behind a held one, so its
		// status is the same for both answers.
		conv := a.ConversationID
		held := u.chatAsync(t, "add call mom "+holdMarker, conv)
		p.waitEntered(t, "add call mom")
		body := chatRequest("add pay rent", conv)
		q1 := u.do(t, http.MethodPost, chatPath, body, "Prefer", "respond-async", "Idempotency-Key", "async-key-1").want(t, http.StatusAccepted)
		q2 := u.do(t, http.MethodPost, chatPath, body, "Prefer", "respond-async", "Idempotency-Key", "async-key-1").want(t, http.StatusAccepted)
		if !sameJSON(t, q1.body, q2.body) || q1.header.Get("Location") != q2.header.Get("Location") {
			t.Fatalf("a replay answered %s, the first answer was %s", q2.body, q1.body)
		}
		var q accepted
		q1.decode(t, &q)
		if q.Status != "queued" {
			t.Fatalf("202 body %s", q1.body)
		}
		want = rowCounts{conversations: 1, messages: 4, runs: 3, toolRounds: 1}
		if got := counts(t, u.id); got != want {
			t.Fatalf("after an async replay: %+v, want %+v", got, want)
		}
		// Replayed in the sync mode while the run waits: the answer once
		// it is done; replayed after that: the same answer, from storage.
		waited := u.start(t, http.MethodPost, chatPath, body, "Idempotency-Key", "async-key-1")
		p.releaseOne(t)
		u.waitRun(t, held.RunID, "completed")
		u.waitRun(t, q.RunID, "completed")
		var stored answer
		live := waited().want(t, http.StatusOK)
		replayed := u.do(t, http.MethodPost, chatPath, body, "Idempotency-Key", "async-key-1").want(t, http.StatusOK)
		if !sameJSON(t, live.body, replayed.body) {
			t.Fatalf("the answer awaited was %s, replayed %s", live.body, replayed.body)
		}
		replayed.decode(t, &stored)
		var reply message
		for _, m := range u.messages(t, conv) {
			if m.RunID == q.RunID && m.Role == chat.RoleAssistant {
				reply = m
			}
		}
		if stored.RunID != q.RunID || stored.MessageID != q.MessageID || stored.Status != "completed" || stored.Response != reply.Content ||
			!sameJSON(t, mustJSON(t, stored.ToolCalls), mustJSON(t, reply.ToolCalls)) {
			t.Fatalf("stored answer %+v, assistant message %+v", stored, reply)
		}
		want = rowCounts{conversations: 1, messages: 6, runs: 3, toolRounds: 3}
		if got := counts(t, u.id); got != want {
			t.Fatalf("after the runs: %+v, want %+v", got, want)
		}
		if n := len(u.tasks(t)); n != 3 {
			t.Fatalf("%d tasks, want 3: each add applied once", n)
		}

		// Malformed keys: 400 before anything is stored.
		for _, tt := range []struct{ name, key string }{
			{"256 characters", strings.Repeat("k", 256)},
			{"a space inside", "my key"},
			{"non-ASCII", "clé-1"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				pr := u.do(t, http.MethodPost, chatPath, chatRequest("add buy bread", ""), "Idempotency-Key", tt.key).wantProblem(t, http.StatusBadRequest, "VALIDATION_FAILED")
				if len(pr.Errors) != 1 || pr.Errors[0].Field != "Idempotency-Key" {
					t.Fatalf("errors %+v", pr.Errors)
				}
				if got := counts(t, u.id); got != want {
					t.Fatalf("after a bad key: %+v, want %+v", got, want)
				}
			})
		}
		// The longest key is fine.
		u.do(t, http.MethodPost, chatPath, chatRequest("add buy bread", ""), "Idempotency-Key", strings.Repeat("k", 255)).want(t, http.StatusOK)
	})
}

// TestChatIsolation: user B gets 404 for everything of user A's — the
// conversation, its messages, a finished and a running run, cancel, posting
// into it — and none of A's data changes.
func TestChatIsolation(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p})
		a, b := s.newUser(t), s.newUser(t)
		done := a.chat(t, "add buy milk", "")
		conv := done.ConversationID
		running := a.chatAsync(t, "add call mom "+holdMarker, conv)
		p.waitEntered(t, "add call mom")

		snapshot := func() string {
			t.Helper()
			var parts []string
			for _, p := range []string{"/conversations", "/conversations/" + conv, "/conversations/" + conv + "/messages", "/runs/" + done.RunID, "/runs/" + running.RunID, "/tasks"} {
				parts = append(parts, string(a.do(t, http.MethodGet, a.path(p), "").want(t, http.StatusOK).body))
			}
			var cancelRequested bool
			err := testDB.DB.NewSelect().Table("runs").Column("cancel_requested").Where("id = ?", running.RunID).Scan(context.Background(), &cancelRequested)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(parts, "\n") + "\ncancel_requested=" + strconv.FormatBool(cancelRequested) + "\n" + jsonString(counts(t, a.id))
		}
		before := snapshot()

		for _, tt := range []struct {
			name, method, path, body string
			headers                  []string
		}{
			{"get conversation", http.MethodGet, "/conversations/" + conv, "", nil},
			{"rename conversation", http.MethodPatch, "/conversations/" + conv, `{"title":"mine now"}`, nil},
			{"delete conversation", http.MethodDelete, "/conversations/" + conv, "", nil},
			{"list messages", http.MethodGet, "/conversations/" + conv + "/messages", "", nil},
			{"get finished run", http.MethodGet, "/runs/" + done.RunID, "", nil},
			{"get running run", http.MethodGet, "/runs/" + running.RunID, "", nil},
			{"cancel running run", http.MethodPost, "/runs/" + running.RunID + "/cancel", "", nil},
			{"cancel finished run", http.MethodPost, "/runs/" + done.RunID + "/cancel", "", nil},
			{"post into conversation", http.MethodPost, "/chat", chatRequest("delete buy milk", conv), nil},
			{"post async into conversation", http.MethodPost, "/chat", chatRequest("delete buy milk", conv), []string{"Prefer", "respond-async"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				b.do(t, tt.method, b.path(tt.path), tt.body, tt.headers...).wantProblem(t, http.StatusNotFound, "NOT_FOUND")
			})
		}
		// A's own paths are forbidden to B.
		b.do(t, http.MethodGet, a.path("/conversations/"+conv), "").wantProblem(t, http.StatusForbidden, "FORBIDDEN")

		if after := snapshot(); after != before {
			t.Fatalf("A's data changed:\nbefore %s\nafter  %s", before, after)
		}
		if got := counts(t, b.id); got != (rowCounts{}) {
			t.Fatalf("B has rows: %+v", got)
		}
		var bl list[json.RawMessage]
		b.do(t, http.MethodGet, b.path("/conversations"), "").want(t, http.StatusOK).decode(t, &bl)
		if len(bl.Data) != 0 {
			t.Fatalf("B lists conversations: %+v", bl.Data)
		}
		// A's run was not cancelled by B's attempt.
		p.releaseOne(t)
		a.waitRun(t, running.RunID, "completed")
	})
}

// TestChatRejectsBadInput: each bad request gets its documented error and
// stores nothing; a 4000-code-point message is accepted, trimmed.
func TestChatRejectsBadInput(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{})
		u := s.newUser(t)
		const jsonType = "application/json"
		for _, tt := range []struct {
			name, body, contentType string
			status                  int
			code, field             string
		}{
			{"empty message", `{"message":""}`, jsonType, 400, "VALIDATION_FAILED", "message"},
			{"white space only", `{"message":" \n\t\u00a0 "}`, jsonType, 400, "VALIDATION_FAILED", "message"},
			{"4001 code points", chatRequest(strings.Repeat("é", 4001), ""), jsonType, 400, "VALIDATION_FAILED", "message"},
			{"no message", `{}`, jsonType, 400, "VALIDATION_FAILED", "message"},
			{"null message", `{"message":null}`, jsonType, 400, "VALIDATION_FAILED", "message"},
			{"unknown field", `{"message":"hi","user_id":"someone"}`, jsonType, 400, "VALIDATION_FAILED", "user_id"},
			{"unknown conversation", chatRequest("hi", "0b0e8d9c-52a4-4a6e-9f38-3c1f1f6f2a10"), jsonType, 404, "NOT_FOUND", ""},
			{"malformed conversation id", chatRequest("hi", "not-a-uuid"), jsonType, 404, "NOT_FOUND", ""},
			{"malformed JSON", `{"message":`, jsonType, 400, "INVALID_JSON", ""},
			{"trailing data", `{"message":"hi"} {}`, jsonType, 400, "INVALID_JSON", ""},
			{"wrong type", `{"message":42}`, jsonType, 400, "INVALID_JSON", ""},
			{"invalid UTF-8", "{\"message\":\"\xff\xfe\"}", jsonType, 400, "INVALID_JSON", ""},
			{"not an object", `["hi"]`, jsonType, 400, "INVALID_JSON", ""},
			{"text/plain", `{"message":"hi"}`, "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE", ""},
			{"form", `message=hi`, "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				for _, async := range []bool{false, true} {
					h := []string{"Content-Type", tt.contentType}
					if async {
						h = append(h, "Prefer", "respond-async")
					}
					p := u.do(t, http.MethodPost, u.path("/chat"), tt.body, h...).wantProblem(t, tt.status, tt.code)
					if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field) {
						t.Fatalf("errors %+v, want one on %q", p.Errors, tt.field)
					}
					if got := counts(t, u.id); got != (rowCounts{}) {
						t.Fatalf("rows stored: %+v", got)
					}
				}
			})
		}

		long := strings.Repeat("é", chat.MaxMessageLen)
		a := u.chatAsync(t, " \n"+long+"\t ", "")
		u.waitRun(t, a.RunID, "completed")
		if msgs := u.messages(t, a.ConversationID); len(msgs) != 2 || msgs[0].Content != long {
			t.Fatalf("the longest message was not stored trimmed: %d messages", len(msgs))
		}
	})
}

// TestChatRateLimited: at MAX_QUEUED_RUNS_PER_USER unfinished runs, a new
// message is 429 with Retry-After and stores nothing, while an idempotent
// replay and other users go through; once a run ends, messages are
// accepted again.
func TestChatRateLimited(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p, env: map[string]string{"MAX_QUEUED_RUNS_PER_USER": "2"}})
		u := s.newUser(t)
		one := u.chatAsync(t, "add buy milk "+holdMarker, "", "Idempotency-Key", "first")
		u.chatAsync(t, "add call mom "+holdMarker, "")
		p.waitEntered(t, "add buy milk", "add call mom")
		before := counts(t, u.id)

		for _, tt := range []struct {
			name, body string
			headers    []string
		}{
			{"sync, new conversation", chatRequest("add pay rent", ""), nil},
			{"async, new conversation", chatRequest("add pay rent", ""), []string{"Prefer", "respond-async"}},
			{"into a conversation", chatRequest("add pay rent", one.ConversationID), []string{"Prefer", "respond-async"}},
			{"with a new key", chatRequest("add pay rent", ""), []string{"Idempotency-Key", "second"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := u.do(t, http.MethodPost, u.path("/chat"), tt.body, tt.headers...)
				r.wantProblem(t, http.StatusTooManyRequests, "RATE_LIMITED")
				if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n <= 0 {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
				if got := counts(t, u.id); got != before {
					t.Fatalf("rows after 429: %+v, want %+v", got, before)
				}
			})
		}
		// A replay is no new message: it is not counted against the cap.
		replay := u.chatAsync(t, "add buy milk "+holdMarker, "", "Idempotency-Key", "first")
		if replay.RunID != one.RunID {
			t.Fatalf("the replay answered run %s, want %s", replay.RunID, one.RunID)
		}
		// The cap is per user.
		s.newUser(t).chat(t, "add pay rent", "")

		p.releaseOne(t)
		p.releaseOne(t)
		u.waitRun(t, one.RunID, "completed")
		eventually(t, "both runs to finish", func() bool { return countUnfinished(t, u.id) == 0 }, nil)
		u.chat(t, "add pay rent", "")
	})
}

// TestChatNATSDown: while NATS is unreachable, POST /chat answers 503
// with Retry-After and stores nothing, and /readyz names nats; once NATS
// is back, so is the service.
func TestChatNATSDown(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{cuttable: true})
		u := s.newUser(t)
		conv := u.chat(t, "add buy milk", "").ConversationID
		before := counts(t, u.id)

		s.natsDown(t)
		for _, tt := range []struct {
			name, body string
			headers    []string
		}{
			{"sync, new conversation", chatRequest("add call mom", ""), nil},
			{"async, new conversation", chatRequest("add call mom", ""), []string{"Prefer", "respond-async"}},
			{"into a conversation", chatRequest("add call mom", conv), nil},
			{"with a key", chatRequest("add call mom", conv), []string{"Idempotency-Key", "k1"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := u.do(t, http.MethodPost, u.path("/chat"), tt.body, tt.headers...)
				r.wantProblem(t, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
				if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n <= 0 {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
				if got := counts(t, u.id); got != before {
					t.Fatalf("rows after 503: %+v, want %+v", got, before)
				}
			})
		}
		p := u.do(t, http.MethodGet, "/readyz", "").wantProblem(t, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		if !strings.Contains(p.Detail, "nats") || strings.Contains(p.Detail, "postgres") {
			t.Fatalf("readyz detail %q: it should name nats only", p.Detail)
		}

		// NATS back: ready again, and a message is answered end to end.
		s.natsUp(t)
		u.do(t, http.MethodGet, "/readyz", "").want(t, http.StatusOK)
		a := u.chat(t, "add call mom", conv)
		wantCalls(t, a, "add_task")
	})
}

// TestChatCancel: a queued run ends cancelled at once and never runs
// while the runs after it do; a running run stops, keeps what it produced
// and ends cancelled, and the worker goes on; a sync request awaiting a
// run that is cancelled answers with it; a finished run cannot be
// cancelled. One worker slot: a queued run's request is still in the
// stream when it is cancelled.
func TestChatCancel(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p, env: map[string]string{"WORKER_CONCURRENCY": "1"}})
		u := s.newUser(t)

		t.Run("queued run", func(t *testing.T) {
			first := u.chatAsync(t, "add buy milk "+holdMarker, "")
			p.waitEntered(t, "add buy milk")
			q := u.chatAsync(t, "add call mom", first.ConversationID)
			after := eventsCursor(t, u, q)
			var r run
			u.do(t, http.MethodPost, u.path("/runs/"+q.RunID+"/cancel"), "").want(t, http.StatusAccepted).decode(t, &r)
			if r.ID != q.RunID || r.Status != "cancelled" || r.Error == nil || r.Error.Code != chat.CodeCancelled || r.StartedAt != nil || r.FinishedAt == nil || r.Attempts != 0 {
				t.Fatalf("cancelled run %+v", r)
			}
			waitFinalEvent(t, s, q.ConversationID, after, q.RunID)
			later := u.chatAsync(t, "add pay the bills", first.ConversationID)

			// The conversation's first run ends; the cancelled one never
			// starts, the one after it does.
			p.releaseOne(t)
			u.waitRun(t, first.RunID, "completed")
			u.waitRun(t, later.RunID, "completed")
			s.waitQueueSettled(t)
			if r := u.run(t, q.RunID); r.Status != "cancelled" || r.Attempts != 0 || r.StartedAt != nil {
				t.Fatalf("the cancelled run ran: %+v", r)
			}
			wantSequence(t, s.events(t, q.ConversationID, after), q.RunID, `run.queued run.cancelled`)
			for _, m := range u.messages(t, q.ConversationID) {
				if m.RunID == q.RunID && m.Role == chat.RoleAssistant {
					t.Fatalf("the cancelled run answered: %+v", m)
				}
			}
			if hasTitle(u.tasks(t), "Call mom") {
				t.Fatal("the cancelled run's tool ran")
			}
			u.do(t, http.MethodPost, u.path("/runs/"+q.RunID+"/cancel"), "").wantProblem(t, http.StatusConflict, "RUN_FINISHED")
		})

		t.Run("running run", func(t *testing.T) {
			h := u.chatAsync(t, "add pay rent "+holdMarker, "")
			p.waitEntered(t, "add pay rent")
			after := eventsCursor(t, u, h)
			var r run
			u.do(t, http.MethodPost, u.path("/runs/"+h.RunID+"/cancel"), "").want(t, http.StatusAccepted).decode(t, &r)
			if r.Status != "running" {
				t.Fatalf("a running run's cancel answered %+v; it stays running until its worker ends it", r)
			}
			r = u.waitRun(t, h.RunID, "cancelled")
			if r.Error == nil || r.Error.Code != chat.CodeCancelled || r.StartedAt == nil || r.FinishedAt == nil || r.Attempts != 1 {
				t.Fatalf("cancelled run %+v", r)
			}
			evs := waitFinalEvent(t, s, h.ConversationID, after, h.RunID)
			wantSequence(t, evs, h.RunID, `run.queued run.started message.delta message.completed run.cancelled`)

			// What it produced is kept: the text streamed before the cancel.
			msgs := u.messages(t, h.ConversationID)
			if len(msgs) != 2 || msgs[1].Role != chat.RoleAssistant || msgs[1].Content != heldText || len(msgs[1].ToolCalls) != 0 {
				t.Fatalf("messages of the cancelled run: %+v", msgs)
			}
			if hasTitle(u.tasks(t), "Pay rent") {
				t.Fatal("the cancelled run's tool ran")
			}
			// The worker moves on, in the same conversation.
			next := u.chat(t, "add walk the dog", h.ConversationID)
			wantCalls(t, next, "add_task")
			u.do(t, http.MethodPost, u.path("/runs/"+h.RunID+"/cancel"), "").wantProblem(t, http.StatusConflict, "RUN_FINISHED")
		})

		t.Run("running run awaited in the sync mode", func(t *testing.T) {
			body := chatRequest("add call the plumber "+holdMarker, "")
			waited := u.start(t, http.MethodPost, u.path("/chat"), body, "Idempotency-Key", "sync-cancel")
			p.waitEntered(t, "add call the plumber")
			var runID string
			err := testDB.DB.NewSelect().Table("runs").Column("id").Where("user_id = ? AND status = 'running'", u.id).Scan(context.Background(), &runID)
			if err != nil {
				t.Fatal(err)
			}
			u.do(t, http.MethodPost, u.path("/runs/"+runID+"/cancel"), "").want(t, http.StatusAccepted)

			// The waiting request answers with the run's end and what it
			// produced, exactly as a replay of it does.
			live := waited().want(t, http.StatusOK)
			var a answer
			live.decode(t, &a)
			var e struct{ Code string }
			decodeJSON(t, a.Error, &e)
			if a.RunID != runID || a.Status != "cancelled" || e.Code != chat.CodeCancelled || a.Response != heldText || len(a.ToolCalls) != 0 {
				t.Fatalf("sync answer of a cancelled run: %s", live.body)
			}
			replayed := u.do(t, http.MethodPost, u.path("/chat"), body, "Idempotency-Key", "sync-cancel").want(t, http.StatusOK)
			if !sameJSON(t, live.body, replayed.body) {
				t.Fatalf("the answer awaited was %s, replayed %s", live.body, replayed.body)
			}
		})

		t.Run("finished run", func(t *testing.T) {
			done := u.chat(t, "add feed the cat", "")
			u.do(t, http.MethodPost, u.path("/runs/"+done.RunID+"/cancel"), "").wantProblem(t, http.StatusConflict, "RUN_FINISHED")
			if r := u.run(t, done.RunID); r.Status != "completed" || r.Error != nil {
				t.Fatalf("run after a refused cancel: %+v", r)
			}
			for _, id := range []string{"0b0e8d9c-52a4-4a6e-9f38-3c1f1f6f2a10", "not-a-run"} {
				u.do(t, http.MethodPost, u.path("/runs/"+id+"/cancel"), "").wantProblem(t, http.StatusNotFound, "NOT_FOUND")
			}
		})
	})
}

// TestChatDeleteConversationMidRun: deleting a conversation whose run is
// in the model, with two more queued behind it (one awaited by a sync
// request, which then answers at once), removes its rows and events; the
// worker drops the runs without looping on them and, with its only slot
// free again, serves the next run of another conversation.
func TestChatDeleteConversationMidRun(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		p := newGatedProvider()
		s := newStack(t, ns, stackOptions{model: p, env: map[string]string{"WORKER_CONCURRENCY": "1", "CHAT_SYNC_TIMEOUT": "5s"}})
		u := s.newUser(t)
		other := u.chat(t, "add buy milk", "")
		h := u.chatAsync(t, "add call mom "+holdMarker, "")
		conv := h.ConversationID
		p.waitEntered(t, "add call mom")
		behind := u.chatAsync(t, "add feed the cat", conv)
		// A sync request waits for a third run of the conversation.
		waited := u.start(t, http.MethodPost, u.path("/chat"), chatRequest("add water the plants", conv))
		eventually(t, "the sync request's run", func() bool {
			n, err := testDB.DB.NewSelect().Table("runs").Where("conversation_id = ?", conv).Count(context.Background())
			return err == nil && n == 3
		}, nil)
		// The delta streamed before the hold is stored, so nothing of the
		// run can still be on its way when the events are purged.
		eventually(t, "the held run's delta", func() bool {
			return slices.ContainsFunc(s.events(t, conv, 0), func(ev chat.Event) bool { return ev.Type == chat.EventMessageDelta })
		}, nil)

		u.do(t, http.MethodDelete, u.path("/conversations/"+conv), "").want(t, http.StatusNoContent)
		u.do(t, http.MethodDelete, u.path("/conversations/"+conv), "").wantProblem(t, http.StatusNotFound, "NOT_FOUND")
		// The waiting request learns at once that its run ended, instead of
		// waiting out CHAT_SYNC_TIMEOUT for an answer that never comes.
		var ended answer
		waited().want(t, http.StatusOK).decode(t, &ended)
		var endErr struct{ Code string }
		decodeJSON(t, ended.Error, &endErr)
		if ended.ConversationID != conv || ended.Status != "cancelled" || endErr.Code != chat.CodeCancelled || ended.Response != "" {
			t.Fatalf("answer of the sync request: %+v", ended)
		}
		for _, path := range []string{"/conversations/" + conv, "/conversations/" + conv + "/messages", "/runs/" + h.RunID, "/runs/" + behind.RunID} {
			u.do(t, http.MethodGet, u.path(path), "").wantProblem(t, http.StatusNotFound, "NOT_FOUND")
		}
		for _, q := range []struct {
			table, where string
			args         []any
		}{
			{"messages", "conversation_id = ?", []any{conv}},
			{"runs", "conversation_id = ?", []any{conv}},
			{"tool_rounds", "run_id IN (?, ?, ?)", []any{h.RunID, behind.RunID, ended.RunID}},
		} {
			n, err := testDB.DB.NewSelect().Table(q.table).Where(q.where, q.args...).Count(context.Background())
			if err != nil || n != 0 {
				t.Fatalf("%d %s rows of the deleted conversation (%v)", n, q.table, err)
			}
		}
		if evs := s.events(t, conv, 0); len(evs) != 0 {
			t.Fatalf("%d events of the deleted conversation remain", len(evs))
		}

		// The one worker slot serves the next run.
		u.chat(t, "add pay rent", other.ConversationID)
		s.waitQueueSettled(t)
		p.noneEntered(t)
		if evs := s.events(t, conv, 0); len(evs) != 0 {
			t.Fatalf("the worker published %d events for the deleted conversation: first %s", len(evs), evs[0].Type)
		}
		if hasTitle(u.tasks(t), "Call mom") {
			t.Fatal("the deleted conversation's run applied its tool")
		}
		if got := counts(t, u.id); got != (rowCounts{conversations: 1, messages: 4, runs: 2, toolRounds: 2}) {
			t.Fatalf("rows: %+v", got)
		}
	})
}

// TestChatConversations: the list (most recently updated first, with the
// newest message's preview), get, rename, and paging of conversations and
// messages with limit=1 in both orders.
func TestChatConversations(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{})
		u := s.newUser(t)
		c1 := u.chat(t, "add buy milk", "").ConversationID
		c2 := u.chat(t, "hello", "").ConversationID
		c3 := u.chat(t, "show my tasks", "").ConversationID

		type conversation struct {
			ID        string    `json:"id"`
			Title     string    `json:"title"`
			CreatedAt time.Time `json:"created_at"`
			UpdatedAt time.Time `json:"updated_at"`
			Preview   *string   `json:"last_message_preview"`
		}
		listAll := func() []conversation {
			t.Helper()
			var l list[conversation]
			u.do(t, http.MethodGet, u.path("/conversations"), "").want(t, http.StatusOK).decode(t, &l)
			if l.NextCursor != nil {
				t.Fatalf("next_cursor %q on a short list", *l.NextCursor)
			}
			return l.Data
		}
		wantOrder := func(got []conversation, want ...string) {
			t.Helper()
			ids := make([]string, len(got))
			for i, c := range got {
				ids[i] = c.ID
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("conversations %v, want %v", ids, want)
			}
		}

		got := listAll()
		wantOrder(got, c3, c2, c1)
		for i, title := range []string{"show my tasks", "hello", "add buy milk"} {
			c := got[i]
			msgs := u.messages(t, c.ID)
			newest := []rune(msgs[len(msgs)-1].Content)
			if c.Title != title || c.Preview == nil || *c.Preview != string(newest[:min(len(newest), chat.PreviewLen)]) {
				t.Fatalf("conversation %d: %+v, newest message %q", i, c, string(newest))
			}
		}

		// A new message moves its conversation to the front.
		u.chat(t, "add call mom", c1)
		wantOrder(listAll(), c1, c3, c2)

		// Rename: trimmed, and the conversation is now the newest.
		var renamed conversation
		u.do(t, http.MethodPatch, u.path("/conversations/"+c2), `{"title":"  Greetings  "}`).want(t, http.StatusOK).decode(t, &renamed)
		if renamed.ID != c2 || renamed.Title != "Greetings" {
			t.Fatalf("renamed %+v", renamed)
		}
		wantOrder(listAll(), c2, c1, c3)
		var fields map[string]json.RawMessage
		u.do(t, http.MethodGet, u.path("/conversations/"+c2), "").want(t, http.StatusOK).decode(t, &fields)
		var keys []string
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"created_at", "id", "title", "updated_at"}) || string(fields["title"]) != `"Greetings"` {
			t.Fatalf("GET conversation %v", fields)
		}
		for _, tt := range []struct{ name, body string }{
			{"empty", `{"title":""}`},
			{"white space", `{"title":"   "}`},
			{"missing", `{}`},
			{"null", `{"title":null}`},
			{"201 code points", jsonString(map[string]string{"title": strings.Repeat("ü", 201)})},
		} {
			t.Run("rename "+tt.name, func(t *testing.T) {
				p := u.do(t, http.MethodPatch, u.path("/conversations/"+c2), tt.body).wantProblem(t, http.StatusBadRequest, "VALIDATION_FAILED")
				if len(p.Errors) != 1 || p.Errors[0].Field != "title" {
					t.Fatalf("errors %+v", p.Errors)
				}
			})
		}
		wantOrder(listAll(), c2, c1, c3)
		if got := listAll(); got[0].Title != "Greetings" {
			t.Fatalf("a refused rename changed the title to %q", got[0].Title)
		}

		// Paging, one at a time.
		var paged []string
		walk(t, u, "/conversations?limit=1", func(raw json.RawMessage) {
			var c conversation
			decodeJSON(t, raw, &c)
			paged = append(paged, c.ID)
		})
		if !slices.Equal(paged, []string{c2, c1, c3}) {
			t.Fatalf("paged conversations %v", paged)
		}
		all := u.messages(t, c1)
		if len(all) != 4 {
			t.Fatalf("%d messages in a two-turn conversation", len(all))
		}
		var asc, pagedAsc, pagedDesc []string
		for _, m := range all {
			asc = append(asc, m.ID)
		}
		for order, into := range map[string]*[]string{"asc": &pagedAsc, "desc": &pagedDesc} {
			walk(t, u, "/conversations/"+c1+"/messages?limit=1&order="+order, func(raw json.RawMessage) {
				var m message
				decodeJSON(t, raw, &m)
				*into = append(*into, m.ID)
			})
		}
		if !slices.Equal(pagedAsc, asc) {
			t.Fatalf("paged ascending %v, want %v", pagedAsc, asc)
		}
		slices.Reverse(pagedDesc)
		if !slices.Equal(pagedDesc, asc) {
			t.Fatalf("paged descending (reversed) %v, want %v", pagedDesc, asc)
		}

		// Bad paging parameters and unknown resources.
		var first list[message]
		u.do(t, http.MethodGet, u.path("/conversations/"+c1+"/messages?limit=1"), "").want(t, http.StatusOK).decode(t, &first)
		for _, q := range []string{"limit=0", "limit=201", "cursor=garbage", "order=desc&cursor=" + url.QueryEscape(*first.NextCursor), "order=sideways"} {
			u.do(t, http.MethodGet, u.path("/conversations/"+c1+"/messages?"+q), "").wantProblem(t, http.StatusBadRequest, "VALIDATION_FAILED")
		}
		const unknown = "0b0e8d9c-52a4-4a6e-9f38-3c1f1f6f2a10"
		for _, path := range []string{"/conversations/" + unknown, "/conversations/nope", "/conversations/" + unknown + "/messages", "/runs/" + unknown, "/runs/nope"} {
			u.do(t, http.MethodGet, u.path(path), "").wantProblem(t, http.StatusNotFound, "NOT_FOUND")
		}
		u.do(t, http.MethodPatch, u.path("/conversations/"+unknown), `{"title":"x"}`).wantProblem(t, http.StatusNotFound, "NOT_FOUND")
		u.do(t, http.MethodDelete, u.path("/conversations/"+unknown), "").wantProblem(t, http.StatusNotFound, "NOT_FOUND")
	})
}

// walk follows a list's next_cursor from path, calling f with each item,
// and fails on a repeated item or a loop.
func walk(t *testing.T, u *apiUser, path string, f func(json.RawMessage)) {
	t.Helper()
	seen := map[string]bool{}
	next := path
	for range 100 {
		var l list[json.RawMessage]
		u.do(t, http.MethodGet, u.path(next), "").want(t, http.StatusOK).decode(t, &l)
		for _, item := range l.Data {
			if seen[string(item)] {
				t.Fatalf("item repeated while paging %s: %s", path, item)
			}
			seen[string(item)] = true
			f(item)
		}
		if l.NextCursor == nil {
			return
		}
		sep := "&"
		if !strings.Contains(path, "?") {
			sep = "?"
		}
		next = path + sep + "cursor=" + url.QueryEscape(*l.NextCursor)
	}
	t.Fatalf("paging %s did not end", path)
}

// wantCalls checks the answer's tool calls by name, in order, each with
// an id and JSON (never a JSON string) arguments and result.
func wantCalls(t *testing.T, a answer, names ...string) []toolCall {
	t.Helper()
	var got []string
	for _, c := range a.ToolCalls {
		got = append(got, c.Name)
	}
	if !slices.Equal(got, names) {
		t.Fatalf("tool calls %v, want %v: %+v", got, names, a)
	}
	for _, c := range a.ToolCalls {
		if c.ID == "" || !strings.HasPrefix(string(c.Arguments), "{") {
			t.Fatalf("tool call %s: id %q, arguments %s", c.Name, c.ID, c.Arguments)
		}
		want := "{"
		if c.Name == "list_tasks" {
			want = "["
		}
		if !strings.HasPrefix(string(c.Result), want) {
			t.Fatalf("tool call %s: result %s is not a JSON %s", c.Name, c.Result, map[string]string{"{": "object", "[": "array"}[want])
		}
	}
	return a.ToolCalls
}

// toolResult is the result of the tools that act on one task.
type toolResult struct {
	TaskID int64  `json:"task_id"`
	Status string `json:"status"`
	Title  string `json:"title"`
}

// created checks an add_task result and returns the new task's id.
func created(t *testing.T, c toolCall, title string) int64 {
	t.Helper()
	var r toolResult
	decodeJSON(t, c.Result, &r)
	if r.Status != "created" || r.Title != title || r.TaskID <= 0 {
		t.Fatalf("add_task result %s, want %q created", c.Result, title)
	}
	return r.TaskID
}

func wantResult(t *testing.T, c toolCall, taskID int64, status string) {
	t.Helper()
	var r toolResult
	decodeJSON(t, c.Result, &r)
	if r.Status != status || r.TaskID != taskID {
		t.Fatalf("%s result %s, want task %d %s", c.Name, c.Result, taskID, status)
	}
}

func hasTask(tasks []task, id int64, title string) bool {
	return slices.ContainsFunc(tasks, func(t task) bool { return t.ID == id && t.Title == title })
}

func hasTitle(tasks []task, title string) bool {
	return slices.ContainsFunc(tasks, func(t task) bool { return strings.EqualFold(t.Title, title) })
}

// clean is a message as the model reads it: without the hold marker.
func clean(msg string) string { return strings.TrimSpace(strings.ReplaceAll(msg, holdMarker, "")) }

// countUnfinished counts a user's queued and running runs.
func countUnfinished(t *testing.T, userID string) int {
	t.Helper()
	n, err := testDB.DB.NewSelect().Table("runs").Where("user_id = ?", userID).Where("status IN ('queued', 'running')").Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// waitFinalEvent waits until the run's final event is on the stream after
// the cursor and returns the run's events from there.
func waitFinalEvent(t *testing.T, s *stack, conversationID string, after uint64, runID string) []chat.Event {
	t.Helper()
	var evs []chat.Event
	eventually(t, "run "+runID+"'s final event", func() bool {
		evs = evs[:0]
		for _, ev := range s.events(t, conversationID, after) {
			if ev.RunID == runID {
				evs = append(evs, ev)
			}
		}
		return len(evs) > 0 && chat.FinalEvent(evs[len(evs)-1].Type)
	}, func() string { return eventTypes(evs) })
	return evs
}

// wantSequence checks that the run's events, in stream order, spell
// pattern: event types separated by single spaces, as a regular expression.
func wantSequence(t *testing.T, evs []chat.Event, runID, pattern string) {
	t.Helper()
	var mine []chat.Event
	for _, ev := range evs {
		if ev.RunID == runID {
			mine = append(mine, ev)
		}
	}
	if got := eventTypes(mine); !regexp.MustCompile(`^` + pattern + `$`).MatchString(got) {
		t.Fatalf("run %s's events:\n  %s\nwant\n  %s", runID, got, pattern)
	}
}

func eventTypes(evs []chat.Event) string {
	types := make([]string, len(evs))
	for i, ev := range evs {
		types[i] = ev.Type
	}
	return strings.Join(types, " ")
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	decodeJSON(t, a, &va)
	decodeJSON(t, b, &vb)
	return reflect.DeepEqual(va, vb)
}

func wantJSON(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	if !sameJSON(t, got, []byte(want)) {
		t.Fatalf("%s %s, want %s", what, got, want)
	}
}
