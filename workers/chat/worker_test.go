package chatworker_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
)

// TestRunCompletes follows one run through a worker: the tool applied,
// the answer written, the events published in order, the request acked.
func TestRunCompletes(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
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
		// The test publishes no run.queued (the API does): the worker that
		// starts the run publishes it under the API's message id.
		want := []string{chat.EventRunQueued, chat.EventRunStarted, chat.EventToolCall, chat.EventToolResult,
			chat.EventMessageDelta, chat.EventMessageCompleted, chat.EventRunCompleted}
		if got := kinds(evs); !reflect.DeepEqual(got, want) {
			t.Fatalf("events = %v, want %v", got, want)
		}
		if d := payload[chat.RunQueuedData](t, evs[0]); d.RunID != turn.Run.ID || d.MessageID != turn.Message.ID {
			t.Errorf("run.queued = %+v, want run %s, message %s", d, turn.Run.ID, turn.Message.ID)
		}
		if d := payload[chat.RunStartedData](t, evs[1]); d.Attempt != 1 || d.RunID != turn.Run.ID {
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
			bustest.Each(t, func(t *testing.T, srv bustest.Server) {
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
				want := []string{chat.EventRunQueued, chat.EventRunStarted, chat.EventRunRestarted, chat.EventRunStarted, chat.EventToolCall, chat.EventToolResult,
					chat.EventMessageDelta, chat.EventMessageCompleted, chat.EventRunCompleted}
				if tc.afterTool {
					want = append([]string{chat.EventRunQueued, chat.EventRunStarted, chat.EventToolCall, chat.EventToolResult}, want[2:]...)
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

// TestRelayPublishesUnpublishedRun: the API committed a turn and died
// before publishing it. The relay publishes it once it has been queued
// for QueuedAfter, and a worker answers it.
func TestRelayPublishesUnpublishedRun(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
		h := newHarness(t, srv, 0)
		p := answering()
		h.startWorker("a", workerConfig(2), p)
		turn := h.turn("", "hello there") // never published
		relay := h.startRelay()

		run := h.waitRun(turn.Run.ID, relayQueuedAfter+relayInterval+settle)
		if run.Status != chat.RunCompleted || run.Attempts != 1 {
			t.Fatalf("run = %+v, want completed in 1 attempt", run)
		}
		if answers := h.assistant(turn.Conversation.ID); len(answers) != 1 || answers[0].Content != "You said: hello there" {
			t.Fatalf("assistant messages = %+v, want the one answer", answers)
		}
		h.waitAcked(settle)
		if n, err := relay.Pass(context.Background()); err != nil || n != 0 {
			t.Errorf("a relay pass after the answer published %d runs (%v), want none", n, err)
		}
	})
}

// TestWorkersShareTheLoad runs two workers of one slot each on one
// consumer: while each holds a run, the other runs go to whichever is
// free, and both end up answering.
func TestWorkersShareTheLoad(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
		h := newHarness(t, srv, 0)
		g := newGate()
		served := map[string]*atomic.Int64{}
		for _, name := range []string{"a", "b"} {
			n := &atomic.Int64{}
			served[name] = n
			h.startWorker(name, workerConfig(1), &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
				n.Add(1)
				if err := g.hold(ctx, name); err != nil {
					return agent.Turn{}, err
				}
				return reply(name+" answers "+lastUser(req), onDelta), nil
			}})
		}
		var turns []chat.Turn
		for i := range 6 {
			turns = append(turns, h.send("", fmt.Sprintf("message %d", i)))
		}
		// Each worker holds one run: with one slot each, both must have
		// pulled.
		if held := g.wait(t, 2); held[0] == held[1] {
			t.Fatalf("held runs are both %s's: the other worker pulled nothing", held[0])
		}
		g.release()
		for _, turn := range turns {
			if run := h.waitRun(turn.Run.ID, settle); run.Status != chat.RunCompleted || run.Attempts != 1 {
				t.Fatalf("run = %+v, want completed in 1 attempt", run)
			}
			if answers := h.assistant(turn.Conversation.ID); len(answers) != 1 {
				t.Fatalf("%d answers to %q, want 1", len(answers), turn.Message.Content)
			}
		}
		a, b := served["a"].Load(), served["b"].Load()
		t.Logf("worker a ran %d runs, worker b %d", a, b)
		if a == 0 || b == 0 || a+b != int64(len(turns)) {
			t.Errorf("workers ran %d and %d runs, want both some, %d in all", a, b, len(turns))
		}
		h.waitAcked(settle)
	})
}

// TestPoisonRunFails: a run whose model call fails every time ends failed
// after MaxAttempts attempts, with run.failed, and its request is acked:
// nothing loops.
func TestPoisonRunFails(t *testing.T) {
	const maxAttempts = 3
	cases := []struct {
		name     string
		err      error
		wantCode string
	}{
		{"permanent error", fmt.Errorf("model refused the request"), chat.CodeAgentError},
		{"transient error", fmt.Errorf("model overloaded: %w", agent.ErrTransient), chat.CodeAttemptsExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bustest.Each(t, func(t *testing.T, srv bustest.Server) {
				h := newHarness(t, srv, 0)
				p := &provider{f: func(context.Context, int, agent.Request, func(string)) (agent.Turn, error) {
					return agent.Turn{}, tc.err
				}}
				cfg := workerConfig(2)
				cfg.MaxAttempts = maxAttempts
				h.startWorker("a", cfg, p)
				turn := h.send("", "this one never works")

				run := h.waitRun(turn.Run.ID, settle)
				if run.Status != chat.RunFailed || run.Attempts != maxAttempts || run.Error == nil || run.Error.Code != tc.wantCode {
					t.Fatalf("run = %+v (error %+v), want failed %s after %d attempts", run, run.Error, tc.wantCode, maxAttempts)
				}
				h.waitAcked(settle)
				if n := p.calls.Load(); n != maxAttempts {
					t.Errorf("the model was called %d times, want %d", n, maxAttempts)
				}
				if answers := h.assistant(turn.Conversation.ID); len(answers) != 0 {
					t.Errorf("a failed run wrote answers %+v", answers)
				}
				evs := h.events(turn.Conversation.ID, turn.Run.ID)
				if n := len(ofType(evs, chat.EventRunStarted)); n != maxAttempts {
					t.Errorf("%d run.started events, want %d", n, maxAttempts)
				}
				if n := len(ofType(evs, chat.EventRunRestarted)); n != maxAttempts-1 {
					t.Errorf("%d run.restarted events, want %d", n, maxAttempts-1)
				}
				failed := ofType(evs, chat.EventRunFailed)
				if len(failed) != 1 || evs[len(evs)-1].Type != chat.EventRunFailed {
					t.Fatalf("events = %v, want one run.failed, last", kinds(evs))
				}
				if d := payload[chat.RunFailedData](t, failed[0]); d.Error.Code != tc.wantCode {
					t.Errorf("run.failed error = %+v, want %s", d.Error, tc.wantCode)
				}
				if n, err := h.newRelay().Pass(context.Background()); err != nil || n != 0 {
					t.Errorf("a relay pass republished %d runs (%v), want none", n, err)
				}
			})
		})
	}
}

// TestUndecodableRequestIsTermed: a request whose body cannot be decoded
// is terminated (never redelivered), and the worker goes on with the next.
func TestUndecodableRequestIsTermed(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
		h := newHarness(t, srv, 0)
		terminated := make(chan struct{}, 10)
		sub, err := h.nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+h.cfg.RunsStream()+".>", func(*nats.Msg) {
			terminated <- struct{}{}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		if err := h.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		p := answering()
		h.startWorker("a", workerConfig(1), p)
		bodies := []string{"not json", `{"v":99,"run_id":"r","user_id":"u","conversation_id":"c"}`, `{"v":1}`}
		for i, body := range bodies {
			if _, err := h.js.Publish(context.Background(), h.cfg.Prefix+".runs", []byte(body), jetstream.WithMsgID(fmt.Sprintf("garbage-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		timeout := time.After(settle)
		for range bodies {
			select {
			case <-terminated:
			case <-timeout:
				t.Fatalf("not every undecodable request was terminated within %s", settle)
			}
		}
		turn := h.send("", "and now a real one")
		if run := h.waitRun(turn.Run.ID, settle); run.Status != chat.RunCompleted {
			t.Fatalf("run after the garbage = %+v, want completed", run)
		}
		h.waitAcked(settle)
		if info := h.consumer(); info.NumRedelivered != 0 {
			t.Errorf("consumer has %d redelivered requests, want none", info.NumRedelivered)
		}
		if n := p.calls.Load(); n != 1 {
			t.Errorf("the model was called %d times, want once (for the real request)", n)
		}
	})
}

// TestRunsOfAConversationRunInOrder: a conversation's second run, whose
// request arrives while the first runs, is acked without running (not
// naked: that would burn deliveries) and stays queued; the worker that
// finishes the first runs it next, and it sees the first answer.
func TestRunsOfAConversationRunInOrder(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
		h := newHarness(t, srv, 0)
		g := newGate()
		var sawFirstAnswer atomic.Bool
		p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
			msg := lastUser(req)
			switch msg {
			case "first":
				if err := g.hold(ctx, msg); err != nil {
					return agent.Turn{}, err
				}
			case "second":
				for _, m := range req.Messages {
					if m.Role == agent.RoleAssistant && m.Content == "answer to first" {
						sawFirstAnswer.Store(true)
					}
				}
			}
			return reply("answer to "+msg, onDelta), nil
		}}
		h.startWorker("a", workerConfig(4), p)
		first := h.send("", "first")
		g.wait(t, 1)
		second := h.send(first.Conversation.ID, "second")
		// The second request is gone from the work queue (acked) while the
		// first run still holds its own.
		eventually(t, settle, "the second request to be acked", func() bool { return h.stream().Msgs == 1 })
		if run := h.run(second.Run.ID); run.Status != chat.RunQueued || run.Attempts != 0 {
			t.Fatalf("second run while the first runs = %+v, want queued, never attempted", run)
		}
		if info := h.consumer(); info.NumRedelivered != 0 {
			t.Errorf("%d requests redelivered, want none", info.NumRedelivered)
		}

		g.release()
		r1 := h.waitRun(first.Run.ID, settle)
		r2 := h.waitRun(second.Run.ID, settle)
		if r1.Status != chat.RunCompleted || r2.Status != chat.RunCompleted || r2.Attempts != 1 {
			t.Fatalf("runs = %+v, %+v; want both completed, the second in one attempt", r1, r2)
		}
		if r2.StartedAt.Before(*r1.FinishedAt) {
			t.Errorf("second run started at %v, before the first finished at %v", r2.StartedAt, r1.FinishedAt)
		}
		if !sawFirstAnswer.Load() {
			t.Error("the second run's history lacked the first answer")
		}
		// Messages list in the order they were written: the second user
		// message came before the first answer, the answers in run order.
		var got []string
		for _, m := range h.messages(first.Conversation.ID) {
			got = append(got, m.Content)
		}
		if want := []string{"first", "second", "answer to first", "answer to second"}; !reflect.DeepEqual(got, want) {
			t.Errorf("conversation = %q, want %q", got, want)
		}
		h.waitAcked(settle)
	})
}

// TestConcurrencyBound: runs of different conversations run at the same
// time, up to Concurrency, and a worker pulls only as many requests as it
// has free slots: the others stay pending in the consumer for other
// workers.
func TestConcurrencyBound(t *testing.T) {
	const runs = 3
	for _, concurrency := range []int{1, 2} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			bustest.Each(t, func(t *testing.T, srv bustest.Server) {
				h := newHarness(t, srv, 0)
				g := newGate()
				p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
					if err := g.hold(ctx, lastUser(req)); err != nil {
						return agent.Turn{}, err
					}
					return reply("done", onDelta), nil
				}}
				var turns []chat.Turn
				for i := range runs {
					turns = append(turns, h.send("", fmt.Sprintf("conversation %d", i)))
				}
				h.startWorker("a", workerConfig(concurrency), p)
				g.wait(t, concurrency)
				slotsFull := func() bool {
					info := h.consumer()
					return info.NumAckPending == concurrency && info.NumPending == uint64(runs-concurrency)
				}
				eventually(t, settle, fmt.Sprintf("%d requests pulled, %d pending", concurrency, runs-concurrency), slotsFull)
				consistently(t, 300*time.Millisecond, fmt.Sprintf("%d requests pulled, %d pending", concurrency, runs-concurrency), func() bool {
					return slotsFull() && len(g.entered) == 0
				})
				g.release()
				for _, turn := range turns {
					if run := h.waitRun(turn.Run.ID, settle); run.Status != chat.RunCompleted {
						t.Fatalf("run = %+v, want completed", run)
					}
				}
				h.waitAcked(settle)
			})
		})
	}
}

// TestFinishedRunRedeliveredIsAcked: a request for a run that already
// finished (a lost ack, a relay duplicate) is acked without running:
// no model call, no second answer, no event.
func TestFinishedRunRedeliveredIsAcked(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
		h := newHarness(t, srv, 0)
		p := answering()
		h.startWorker("a", workerConfig(2), p)
		turn := h.send("", "hello")
		done := h.waitRun(turn.Run.ID, settle)
		h.waitAcked(settle)
		events := len(h.events(turn.Conversation.ID, ""))

		h.publishAs(turn, turn.Run.ID+".again")
		last := h.stream().LastSeq
		eventually(t, settle, "the repeated request to be acked", func() bool {
			info := h.consumer()
			return info.AckFloor.Stream >= last && info.NumAckPending == 0
		})
		if h.stream().Msgs != 0 {
			t.Error("the repeated request is still in the work queue")
		}
		if n := p.calls.Load(); n != 1 {
			t.Errorf("the model was called %d times, want once", n)
		}
		if answers := h.assistant(turn.Conversation.ID); len(answers) != 1 {
			t.Errorf("%d answers, want 1", len(answers))
		}
		if n := len(h.events(turn.Conversation.ID, "")); n != events {
			t.Errorf("%d events after the repeat, want the %d before", n, events)
		}
		if run := h.run(turn.Run.ID); !reflect.DeepEqual(run, done) {
			t.Errorf("run after the repeat = %+v, want unchanged %+v", run, done)
		}
	})
}

// TestCancelRunningRun: a cancel request ends a running run cancelled,
// keeping the text produced so far, through the cancel signal at once or,
// when the signal was missed, through the flag the worker reads at its
// next lease renewal.
func TestCancelRunningRun(t *testing.T) {
	cases := []struct {
		name   string
		signal bool
		// lease: with the signal, too long for a renewal to notice first.
		lease  time.Duration
		within time.Duration
	}{
		{"through the cancel signal", true, 30 * time.Second, 2 * time.Second},
		{"through the flag at lease renewal", false, lease, lease + 2*time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bustest.Each(t, func(t *testing.T, srv bustest.Server) {
				h := newHarness(t, srv, 30*time.Second)
				g := newGate()
				p := &provider{f: func(ctx context.Context, _ int, _ agent.Request, onDelta func(string)) (agent.Turn, error) {
					onDelta("Working ")
					onDelta("on it")
					return agent.Turn{}, g.hold(ctx, "cancel me")
				}}
				cfg := workerConfig(2)
				cfg.Lease = tc.lease
				h.startWorker("a", cfg, p)
				turn := h.send("", "a long question")
				g.wait(t, 1)

				if _, err := h.store.CancelRun(context.Background(), h.user, turn.Run.ID); err != nil {
					t.Fatalf("CancelRun: %v", err)
				}
				if tc.signal {
					if err := h.bus.PublishCancel(context.Background(), turn.Run.ID); err != nil {
						t.Fatalf("PublishCancel: %v", err)
					}
				}
				run := h.waitRun(turn.Run.ID, tc.within)
				if run.Status != chat.RunCancelled || run.Error == nil || run.Error.Code != chat.CodeCancelled {
					t.Fatalf("run = %+v (error %+v), want cancelled", run, run.Error)
				}
				answers := h.assistant(turn.Conversation.ID)
				if len(answers) != 1 || answers[0].Content != "Working on it" {
					t.Fatalf("assistant messages = %+v, want the partial text kept", answers)
				}
				h.waitAcked(settle)
				evs := h.events(turn.Conversation.ID, turn.Run.ID)
				want := []string{chat.EventRunQueued, chat.EventRunStarted, chat.EventMessageDelta, chat.EventMessageCompleted, chat.EventRunCancelled}
				if got := kinds(evs); !reflect.DeepEqual(got, want) {
					t.Errorf("events = %v, want %v", got, want)
				}
				if n := p.calls.Load(); n != 1 {
					t.Errorf("the model was called %d times, want once", n)
				}
			})
		})
	}
}

// TestConversationDeletedMidRun: the conversation of a running run is
// deleted (as the API does it: rows gone, cancel signalled, events
// purged). The worker stops the run, acks its request and moves on; it
// neither loops nor writes events into the deleted conversation.
func TestConversationDeletedMidRun(t *testing.T) {
	for _, signal := range []bool{true, false} {
		name := "with the cancel signal"
		if !signal {
			name = "noticed at lease renewal"
		}
		t.Run(name, func(t *testing.T) {
			bustest.Each(t, func(t *testing.T, srv bustest.Server) {
				// A long AckWait: only the worker's own settlement can ack
				// the request within the test.
				h := newHarness(t, srv, 30*time.Second)
				g := newGate()
				stopped := make(chan struct{})
				p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
					if lastUser(req) == "doomed" {
						err := g.hold(ctx, "doomed")
						close(stopped)
						return agent.Turn{}, err
					}
					return reply("fine", onDelta), nil
				}}
				h.startWorker("a", workerConfig(1), p)
				turn := h.send("", "doomed")
				g.wait(t, 1)

				ctx := context.Background()
				ids, err := h.store.DeleteConversation(ctx, h.user, turn.Conversation.ID)
				if err != nil || len(ids) != 1 || ids[0] != turn.Run.ID {
					t.Fatalf("DeleteConversation = %v, %v; want the running run", ids, err)
				}
				if signal {
					if err := h.bus.PublishCancel(ctx, turn.Run.ID); err != nil {
						t.Fatal(err)
					}
				}
				if err := h.bus.PurgeEvents(ctx, turn.Conversation.ID); err != nil {
					t.Fatal(err)
				}
				select {
				case <-stopped:
				case <-time.After(lease + settle):
					t.Fatal("the run's model call was not stopped")
				}
				h.waitAcked(settle)
				if n := p.calls.Load(); n != 1 {
					t.Errorf("the model was called %d times, want once", n)
				}
				if evs := h.events(turn.Conversation.ID, ""); len(evs) != 0 {
					t.Errorf("events written into the deleted conversation: %v", kinds(evs))
				}
				if n, err := h.newRelay().Pass(ctx); err != nil || n != 0 {
					t.Errorf("a relay pass republished %d runs (%v), want none", n, err)
				}
				// The worker's one slot is free again.
				next := h.send("", "still there?")
				if run := h.waitRun(next.Run.ID, settle); run.Status != chat.RunCompleted {
					t.Fatalf("next run = %+v, want completed", run)
				}
			})
		})
	}
}

// TestRunEndedBeforeClaimIsNotRun: a request whose run was cancelled or
// deleted while queued is acked without calling the model. A run that
// ended recently gets its final event (again: JetStream keeps one, under
// its fixed id), in case whoever ended it died before publishing it.
func TestRunEndedBeforeClaimIsNotRun(t *testing.T) {
	cases := []struct {
		name   string
		events []string
		end    func(h *harness, turn chat.Turn) error
	}{
		{"cancelled while queued", []string{chat.EventRunCancelled}, func(h *harness, turn chat.Turn) error {
			run, err := h.store.CancelRun(context.Background(), h.user, turn.Run.ID)
			if err == nil && run.Status != chat.RunCancelled {
				err = fmt.Errorf("CancelRun left the run %s", run.Status)
			}
			return err
		}},
		{"conversation deleted while queued", nil, func(h *harness, turn chat.Turn) error {
			_, err := h.store.DeleteConversation(context.Background(), h.user, turn.Conversation.ID)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bustest.Each(t, func(t *testing.T, srv bustest.Server) {
				h := newHarness(t, srv, 0)
				p := answering()
				h.startWorker("a", workerConfig(2), p)
				turn := h.turn("", "never mind")
				if err := tc.end(h, turn); err != nil {
					t.Fatal(err)
				}
				h.publish(turn)
				h.waitAcked(settle)
				if n := p.calls.Load(); n != 0 {
					t.Errorf("the model was called %d times, want never", n)
				}
				if evs := h.events(turn.Conversation.ID, ""); !reflect.DeepEqual(kinds(evs), tc.events) {
					t.Errorf("events = %v, want %v", kinds(evs), tc.events)
				}
			})
		})
	}
}

// TestShutdown: when Run's ctx ends the worker stops pulling; a run that
// ends before stop is finished; one still going when stop ends is handed
// back — queued again, its attempt counted, its request naked — and
// another worker completes it.
func TestShutdown(t *testing.T) {
	t.Run("runs in flight are handed back", func(t *testing.T) {
		bustest.Each(t, func(t *testing.T, srv bustest.Server) {
			// A long AckWait: only the nak can bring the request back soon.
			h := newHarness(t, srv, 30*time.Second)
			g := newGate()
			var held atomic.Bool
			p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
				if held.CompareAndSwap(false, true) {
					return agent.Turn{}, g.hold(ctx, "slow")
				}
				return reply("You said: "+lastUser(req), onDelta), nil
			}}
			a := h.startWorker("a", workerConfig(2), p)
			turn := h.send("", "take your time")
			g.wait(t, 1)

			if err := a.shutdown(100 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if owner, status := h.lease(turn.Run.ID); owner != "" || status != chat.RunQueued {
				t.Fatalf("after shutdown the run is %s held by %q, want queued with no lease", status, owner)
			}
			if run := h.run(turn.Run.ID); run.Attempts != 1 {
				t.Errorf("after shutdown attempts = %d, want 1", run.Attempts)
			}
			if n := h.stream().Msgs; n != 1 {
				t.Fatalf("after shutdown the work queue holds %d requests, want the naked one", n)
			}

			h.startWorker("b", workerConfig(2), p)
			run := h.waitRun(turn.Run.ID, settle)
			if run.Status != chat.RunCompleted || run.Attempts != 2 {
				t.Fatalf("run = %+v, want completed in attempt 2", run)
			}
			if answers := h.assistant(turn.Conversation.ID); len(answers) != 1 || answers[0].Content != "You said: take your time" {
				t.Fatalf("assistant messages = %+v, want one answer", answers)
			}
			h.waitAcked(settle)
			evs := h.events(turn.Conversation.ID, turn.Run.ID)
			want := []string{chat.EventRunQueued, chat.EventRunStarted, chat.EventRunRestarted, chat.EventRunStarted,
				chat.EventMessageDelta, chat.EventMessageCompleted, chat.EventRunCompleted}
			if got := kinds(evs); !reflect.DeepEqual(got, want) {
				t.Errorf("events = %v, want %v", got, want)
			}
		})
	})
	t.Run("a chained run is handed back to the relay", func(t *testing.T) {
		bustest.Each(t, func(t *testing.T, srv bustest.Server) {
			h := newHarness(t, srv, 30*time.Second)
			g, g2 := newGate(), newGate()
			var held atomic.Bool
			p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
				msg := lastUser(req)
				if msg == "first" {
					if err := g.hold(ctx, msg); err != nil {
						return agent.Turn{}, err
					}
				}
				if msg == "second" && held.CompareAndSwap(false, true) {
					return agent.Turn{}, g2.hold(ctx, msg) // until the shutdown
				}
				return reply("answer to "+msg, onDelta), nil
			}}
			a := h.startWorker("a", workerConfig(2), p)
			first := h.send("", "first")
			g.wait(t, 1)
			second := h.send(first.Conversation.ID, "second")
			eventually(t, settle, "the second request to be acked", func() bool { return h.stream().Msgs == 1 })
			g.release()
			// The worker picks the second run up itself, with no message of
			// its own; it is held there when the worker shuts down.
			g2.wait(t, 1)
			if err := a.shutdown(100 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if run := h.run(second.Run.ID); run.Status != chat.RunQueued || run.Attempts != 1 {
				t.Fatalf("after shutdown the second run = %+v, want queued after 1 attempt", run)
			}
			h.startRelay()
			h.startWorker("b", workerConfig(2), p)
			if run := h.waitRun(second.Run.ID, relayInterval+settle); run.Status != chat.RunCompleted || run.Attempts != 2 {
				t.Fatalf("second run = %+v, want completed in attempt 2", run)
			}
			if answers := h.assistant(first.Conversation.ID); len(answers) != 2 {
				t.Errorf("%d answers, want 2", len(answers))
			}
		})
	})
	t.Run("runs that end before stop are finished", func(t *testing.T) {
		bustest.Each(t, func(t *testing.T, srv bustest.Server) {
			h := newHarness(t, srv, 0)
			g := newGate()
			p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
				if err := g.hold(ctx, lastUser(req)); err != nil {
					return agent.Turn{}, err
				}
				return reply("finished", onDelta), nil
			}}
			a := h.startWorker("a", workerConfig(2), p)
			turn := h.send("", "almost done")
			g.wait(t, 1)

			a.pull()
			// Pulling has stopped: a request sent now is not run here.
			other := h.send("", "for someone else")
			g.release()
			if err := a.shutdown(-1); err != nil {
				t.Fatal(err)
			}
			if run := h.run(turn.Run.ID); run.Status != chat.RunCompleted || run.Attempts != 1 {
				t.Fatalf("run = %+v, want completed in 1 attempt before Run returned", run)
			}
			if run := h.run(other.Run.ID); run.Status != chat.RunQueued || run.Attempts != 0 {
				t.Errorf("run sent after shutdown = %+v, want untouched", run)
			}
		})
	})
}

// TestLongRunIsNotRedelivered: a run that takes longer than AckWait keeps
// its request (in-progress acks), so no other worker is handed it, and
// the final ack settles it.
func TestLongRunIsNotRedelivered(t *testing.T) {
	bustest.Each(t, func(t *testing.T, srv bustest.Server) {
		const ackWait = time.Second
		h := newHarness(t, srv, ackWait)
		g := newGate()
		p := &provider{f: func(ctx context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
			if err := g.hold(ctx, lastUser(req)); err != nil {
				return agent.Turn{}, err
			}
			return reply("finally", onDelta), nil
		}}
		cfg := workerConfig(2)
		a := h.startWorker("a", cfg, p)
		turn := h.send("", "think hard")
		g.wait(t, 1)
		consistently(t, ackWait+500*time.Millisecond, "one delivery of the request", func() bool {
			info := h.consumer()
			return info.Delivered.Consumer == 1 && info.NumRedelivered == 0
		})
		g.release()
		if run := h.waitRun(turn.Run.ID, settle); run.Status != chat.RunCompleted || run.Attempts != 1 {
			t.Fatalf("run = %+v, want completed in 1 attempt", run)
		}
		h.waitAcked(settle)
		if logs := a.logs.String(); strings.Contains(logs, "settle run request") {
			t.Errorf("the final ack failed:\n%s", logs)
		}
	})
}

// TestPanickingRunFailsWithoutKillingTheWorker: a run whose model panics
// is recovered, handed back and retried until RUN_MAX_ATTEMPTS ends it;
// the worker goes on serving other runs.
func TestPanickingRunFailsWithoutKillingTheWorker(t *testing.T) {
	const maxAttempts = 2
	h := newHarness(t, bustest.Embedded(t), 0)
	p := &provider{f: func(_ context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
		if last := req.Messages[len(req.Messages)-1]; strings.Contains(last.Content, "panic") {
			panic("the model exploded")
		}
		onDelta("fine")
		return agent.Turn{Text: "fine"}, nil
	}}
	cfg := workerConfig(1)
	cfg.MaxAttempts = maxAttempts
	h.startWorker("a", cfg, p)
	bad := h.send("", "please panic")
	run := h.waitRun(bad.Run.ID, settle)
	if run.Status != chat.RunFailed || run.Error == nil || run.Error.Code != chat.CodeAttemptsExceeded {
		t.Fatalf("run = %+v (error %+v), want failed %s", run, run.Error, chat.CodeAttemptsExceeded)
	}
	if n := p.calls.Load(); n != maxAttempts {
		t.Errorf("the model was called %d times, want %d", n, maxAttempts)
	}
	good := h.send("", "hello")
	if run := h.waitRun(good.Run.ID, settle); run.Status != chat.RunCompleted {
		t.Fatalf("a later run = %+v, want completed: the worker must survive the panic", run)
	}
}

// TestRelayPublishesARunOncePerWait: while workers are behind, a stale run
// is published once per QueuedAfter, not on every pass (that would add
// load exactly when the workers are slowest).
func TestRelayPublishesARunOncePerWait(t *testing.T) {
	h := newHarness(t, bustest.Embedded(t), 0)
	turn := h.turn("", "nobody works today") // never published, no worker
	relay := h.newRelay()
	eventually(t, relayQueuedAfter+settle, "the relay publishes the stale run", func() bool {
		n, err := relay.Pass(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	if n, err := relay.Pass(context.Background()); err != nil || n != 0 {
		t.Fatalf("the next pass published %d runs (%v), want none: run %s was just published", n, err, turn.Run.ID)
	}
}
