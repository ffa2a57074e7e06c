package chatworker_test

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/chat"
)

// TestRunCompletes follows one run through a worker: the tool applied,
// the answer written, the events published in order, the request acked.
func TestRunCompletes(t *testing.T) {
	each(t, func(t *testing.T, srv natsServer) {
		h := newHarness(t, srv, 0)
		p := &provider{f: func(_ context.Context, n int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
			if !afterTool(req) {
				return agent.Turn{Calls: []agent.Call{addTask(fmt.Sprintf("call_%d", n), "Buy milk")}}, nil
			}
			return reply("Added Buy milk.", onDelta), nil
		}}
		h.startWorker("a", workerConfig(2), p)
		turn := h.send("", "remember to buy milk")

		run := h.waitRun(turn.Run.ID, settle)
		if run.Status != chat.RunCompleted || run.Attempts != 1 || run.Error != nil {
			t.Fatalf("run = %+v, want completed in 1 attempt", run)
		}
		answers := h.assistant(turn.Conversation.ID)
		if len(answers) != 1 || answers[0].Content != "Added Buy milk." || answers[0].Model != testModel {
			t.Fatalf("assistant messages = %+v, want one \"Added Buy milk.\"", answers)
		}
		if calls := answers[0].ToolCalls; len(calls) != 1 || calls[0].ID != "call_1" || calls[0].Name != "add_task" {
			t.Errorf("tool calls = %+v, want call_1 add_task", calls)
		}
		if tasks := h.tasks(); len(tasks) != 1 || tasks[0].Title != "Buy milk" {
			t.Errorf("tasks = %+v, want Buy milk", tasks)
		}
		h.waitAcked(settle)
		evs := h.events(turn.Conversation.ID, turn.Run.ID)
		want := []string{chat.EventRunStarted, chat.EventToolCall, chat.EventToolResult,
			chat.EventMessageDelta, chat.EventMessageCompleted, chat.EventRunCompleted}
		if got := kinds(evs); !reflect.DeepEqual(got, want) {
			t.Fatalf("events = %v, want %v", got, want)
		}
		if d := payload[chat.RunStartedData](t, evs[0]); d.Attempt != 1 || d.RunID != turn.Run.ID {
			t.Errorf("run.started = %+v, want attempt 1 of %s", d, turn.Run.ID)
		}
		if d := payload[chat.MessageCompletedData](t, evs[len(evs)-2]); d.Message.ID != answers[0].ID {
			t.Errorf("message.completed names message %s, want %s", d.Message.ID, answers[0].ID)
		}
	})
}

// TestCrashedWorkerRunIsTakenOver kills a worker in the middle of a run —
// its connection and pool gone, no ack, no hand-back, its lease left
// behind — and checks that another worker completes the run once the lease
// has expired, through the relay or the request's redelivery: one answer,
// the tool applied once although every model call makes new call ids, and
// run.restarted then run.started for attempt 2.
func TestCrashedWorkerRunIsTakenOver(t *testing.T) {
	cases := []struct {
		name string
		// afterTool: the worker dies while the model answers round 1, its
		// tool round recorded; else while it answers round 0.
		afterTool bool
		// relay runs; without it the request's redelivery after AckWait
		// brings the run back.
		relay   bool
		ackWait time.Duration
		// within bounds the takeover, from the crash.
		within time.Duration
	}{
		{"after its tool round, through the relay", true, true, 30 * time.Second, lease + relayInterval + 2*time.Second},
		{"after its tool round, on redelivery", true, false, defaultAckWait, defaultAckWait + 2*time.Second},
		{"before its tool round, through the relay", false, true, 30 * time.Second, lease + relayInterval + 2*time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			each(t, func(t *testing.T, srv natsServer) {
				h := newHarness(t, srv, tc.ackWait)
				g := newGate()
				var held atomic.Bool
				var round0 atomic.Int64 // model calls asked for round 0
				p := &provider{f: func(ctx context.Context, n int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
					if !afterTool(req) {
						round0.Add(1)
					}
					if afterTool(req) == tc.afterTool && held.CompareAndSwap(false, true) {
						// The first worker dies here: the call never returns
						// before its context ends.
						_ = g.hold(ctx, "crash")
						return agent.Turn{}, ctx.Err()
					}
					if !afterTool(req) {
						// A new call id on every call, as a real model does.
						return agent.Turn{Calls: []agent.Call{addTask(fmt.Sprintf("call_%d", n), "Buy milk")}}, nil
					}
					return reply("Added Buy milk.", onDelta), nil
				}}
				a := h.startWorker("a", workerConfig(2), p)
				turn := h.send("", "remember to buy milk")
				g.wait(t, 1)
				if tc.afterTool {
					ledger, err := h.store.Ledger(context.Background(), h.user, turn.Run.ID)
					if err != nil || len(ledger) != 1 {
						t.Fatalf("ledger before the crash = %+v, %v; want the add_task call", ledger, err)
					}
				}

				a.crash()
				crashed := time.Now()
				if owner, status := h.lease(turn.Run.ID); owner != a.Owner() || status != chat.RunRunning {
					t.Fatalf("after the crash the run is %s held by %q, want running held by %s", status, owner, a.Owner())
				}
				if n := h.stream().Msgs; n != 1 {
					t.Fatalf("after the crash the work queue holds %d requests, want the unacked one", n)
				}

				if tc.relay {
					h.startRelay()
				}
				h.startWorker("b", workerConfig(2), p)
				run := h.waitRun(turn.Run.ID, tc.within)
				t.Logf("taken over and completed %s after the crash", time.Since(crashed).Round(time.Millisecond))
				if run.Status != chat.RunCompleted || run.Attempts != 2 {
					t.Fatalf("run = %+v, want completed in attempt 2", run)
				}
				if owner, _ := h.lease(turn.Run.ID); owner != "" {
					t.Errorf("finished run still leased to %q", owner)
				}

				// Replayed from the ledger: the model is not asked for round 0
				// again.
				wantCall, wantRound0 := "call_1", int64(1)
				if !tc.afterTool {
					// Asked again (the first call never answered), it makes a
					// new id.
					wantCall, wantRound0 = "call_2", 2
				}
				if got := round0.Load(); got != wantRound0 {
					t.Errorf("the model was asked for round 0 %d times, want %d", got, wantRound0)
				}
				answers := h.assistant(turn.Conversation.ID)
				if len(answers) != 1 {
					t.Fatalf("%d assistant messages, want 1: %+v", len(answers), answers)
				}
				if calls := answers[0].ToolCalls; len(calls) != 1 || calls[0].ID != wantCall {
					t.Errorf("answer's tool calls = %+v, want one, %s", calls, wantCall)
				}
				if tasks := h.tasks(); len(tasks) != 1 {
					t.Errorf("tasks = %+v, want the one Buy milk", tasks)
				}

				evs := h.events(turn.Conversation.ID, turn.Run.ID)
				want := []string{chat.EventRunStarted, chat.EventRunRestarted, chat.EventRunStarted, chat.EventToolCall, chat.EventToolResult,
					chat.EventMessageDelta, chat.EventMessageCompleted, chat.EventRunCompleted}
				if tc.afterTool {
					want = append([]string{chat.EventRunStarted, chat.EventToolCall, chat.EventToolResult}, want[1:]...)
				}
				if got := kinds(evs); !reflect.DeepEqual(got, want) {
					t.Fatalf("events = %v, want %v", got, want)
				}
				restarted := ofType(evs, chat.EventRunRestarted)
				if d := payload[chat.RunRestartedData](t, restarted[0]); d.Attempt != 2 {
					t.Errorf("run.restarted attempt = %d, want 2", d.Attempt)
				}
				started := ofType(evs, chat.EventRunStarted)
				if d := payload[chat.RunStartedData](t, started[1]); d.Attempt != 2 {
					t.Errorf("second run.started attempt = %d, want 2", d.Attempt)
				}
				for _, ev := range ofType(evs, chat.EventToolCall) {
					if d := payload[chat.ToolCallData](t, ev); d.CallID != wantCall {
						t.Errorf("tool.call id = %s, want %s in every attempt", d.CallID, wantCall)
					}
				}
			})
		})
	}
}
