package chatworker_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/llm"
	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// TestCrashAfterToolRoundWithAModel: the OpenAI-compatible provider on a
// fake model that, like a real one, makes a new call id every time it is
// asked to act. The worker dies while the model answers after the tool
// round. Its successor resumes from the ledger: the model sees the
// recorded call and its result instead of being asked to act again, so
// the task is added once and the run has one answer.
func TestCrashAfterToolRoundWithAModel(t *testing.T) {
	h := newHarness(t, bustest.Embedded(t), 30*time.Second)
	fake := llmtest.New(t)
	var (
		acted  atomic.Int64 // answers with a tool call
		held   atomic.Bool
		hold   = make(chan struct{})
		answer = "Added 'Buy milk' to your list."
	)
	t.Cleanup(func() { close(hold) })
	fake.Respond(func(r llmtest.Request) llmtest.Response {
		if last := r.Messages[len(r.Messages)-1]; last.Role != "tool" {
			n := acted.Add(1)
			return llmtest.Response{Chunks: llmtest.ToolCall(0, fmt.Sprintf("call_%d", n), agent.ToolAddTask, `{"title":"Buy milk"}`)}
		}
		if held.CompareAndSwap(false, true) {
			// The first worker dies while this answer is on its way.
			return llmtest.Response{Chunks: llmtest.Text(answer), Hold: hold}
		}
		return llmtest.Response{Chunks: llmtest.Text(answer)}
	})
	p, err := llm.New(llm.Config{BaseURL: fake.URL(), Model: "test-model", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}

	a := h.startWorker("a", workerConfig(2), p)
	turn := h.send("", "remember to buy milk")
	fake.WaitRequests(t, 2) // round 0 answered, round 1 held
	if ledger, err := h.store.Ledger(t.Context(), h.user, turn.Run.ID); err != nil || len(ledger) != 1 || ledger[0].CallID != "call_1" {
		t.Fatalf("ledger before the crash = %+v, %v; want call_1", ledger, err)
	}
	a.crash()
	h.startRelay()
	h.startWorker("b", workerConfig(2), p)
	run := h.waitRun(turn.Run.ID, lease+relayInterval+settle)
	if run.Status != chat.RunCompleted || run.Attempts != 2 {
		t.Fatalf("run = %+v, want completed in attempt 2", run)
	}

	if !wantReplayed(t, h, &acted, turn, answer) {
		t.FailNow()
	}
	// The retry's first request carries the recorded round.
	reqs := fake.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d model requests, want 3", len(reqs))
	}
	msgs := reqs[2].Messages
	if n := len(msgs); n < 2 || msgs[n-2].Role != "assistant" || len(msgs[n-2].ToolCalls) != 1 || msgs[n-2].ToolCalls[0].ID != "call_1" || msgs[n-1].ToolCallID != "call_1" {
		t.Errorf("the retry asked the model with %+v, want the recorded call_1 and its result last", msgs)
	}
}

// TestRequeuedFailedRunReplaysItsLedger: a run fails after its tool round
// (the model refuses the next request), and chatctl requeues it, which
// starts its attempts over (the next one is attempt 1, like a new run's)
// but keeps its tool rounds. The next attempt must replay them: the model
// is not asked to act again, and the task is added once.
func TestRequeuedFailedRunReplaysItsLedger(t *testing.T) {
	h := newHarness(t, bustest.Embedded(t), 30*time.Second)
	fake := llmtest.New(t)
	var (
		acted   atomic.Int64 // answers with a tool call
		refused atomic.Bool
		answer  = "Added 'Buy milk' to your list."
	)
	fake.Respond(func(r llmtest.Request) llmtest.Response {
		if last := r.Messages[len(r.Messages)-1]; last.Role != "tool" {
			n := acted.Add(1)
			return llmtest.Response{Chunks: llmtest.ToolCall(0, fmt.Sprintf("call_%d", n), agent.ToolAddTask, `{"title":"Buy milk"}`)}
		}
		if refused.CompareAndSwap(false, true) {
			return llmtest.Response{Status: 400, Error: "refused once"}
		}
		return llmtest.Response{Chunks: llmtest.Text(answer)}
	})
	p, err := llm.New(llm.Config{BaseURL: fake.URL(), Model: "test-model", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	h.startWorker("a", workerConfig(2), p)
	turn := h.send("", "remember to buy milk")
	run := h.waitRun(turn.Run.ID, settle)
	if run.Status != chat.RunFailed || run.Error == nil || run.Error.Code != chat.CodeAIRejected {
		t.Fatalf("run = %+v, want failed with %s", run, chat.CodeAIRejected)
	}
	if ledger, err := h.store.Ledger(t.Context(), h.user, turn.Run.ID); err != nil || len(ledger) != 1 || ledger[0].CallID != "call_1" {
		t.Fatalf("ledger of the failed run = %+v, %v; want call_1", ledger, err)
	}

	if _, err := chat.NewMaintenance(testDB.DB).RequeueRun(t.Context(), turn.Run.ID); err != nil {
		t.Fatal(err)
	}
	if run := h.run(turn.Run.ID); run.Status != chat.RunQueued || run.Attempts != 0 {
		t.Fatalf("requeued run %+v, want queued with its attempts started over", run)
	}
	h.publishAs(turn, "requeued") // as chatctl does, under a new message id
	run = h.waitRun(turn.Run.ID, settle)
	if run.Status != chat.RunCompleted || run.Attempts != 1 {
		t.Fatalf("run = %+v, want completed in attempt 1", run)
	}
	wantReplayed(t, h, &acted, turn, answer)
}

// wantReplayed checks that turn's run, retried after recording call_1
// (add_task "Buy milk"), replayed it: the model acted once, the task was
// added once, and the one answer carries call_1. It reports whether the
// answer was as wanted.
func wantReplayed(t *testing.T, h *harness, acted *atomic.Int64, turn chat.Turn, answer string) bool {
	t.Helper()
	if n := acted.Load(); n != 1 {
		t.Errorf("the model was asked to act %d times, want once", n)
	}
	if tasks := h.tasks(); len(tasks) != 1 || tasks[0].Title != "Buy milk" {
		t.Errorf("tasks = %+v, want one Buy milk", tasks)
	}
	answers := h.assistant(turn.Conversation.ID)
	if len(answers) != 1 || answers[0].Content != answer || len(answers[0].ToolCalls) != 1 || answers[0].ToolCalls[0].ID != "call_1" {
		t.Errorf("assistant messages = %+v, want one answer with call_1", answers)
		return false
	}
	return true
}
