package chatworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	chatworker "github.com/taskchat/taskchat/workers/chat"
)

// TestToolCallAppliedOncePerPosition: attempts of one run that reach the
// same tool position — one after the other, or at the same time (a worker
// thought dead still running) — with the new call ids a model makes on
// every attempt apply the tool once and all get the recorded result. The
// next position is a call of its own.
func TestToolCallAppliedOncePerPosition(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		name := "one after the other"
		if concurrent {
			name = "at the same time"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, bustest.Embedded(t), 0)
			turn := h.turn("", "add a task")
			// Not running: the test calls its tool runner directly.
			w := chatworker.New(chatworker.Config{}, testDB.DB, h.bus, agent.New(agent.NewOffline()), nil)
			// Tools run only under the worker's lease.
			claim, err := h.store.ClaimRun(ctx, h.user, turn.Run.ID, w.Owner(), time.Minute)
			if err != nil || claim.Outcome != chat.ClaimOK {
				t.Fatalf("claim = %+v, %v", claim, err)
			}

			const attempts = 6
			results := make([]json.RawMessage, attempts)
			errs := make([]error, attempts)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range attempts {
				call := addTask(fmt.Sprintf("call_%d", i), fmt.Sprintf("Task %d", i))
				runOne := func() { results[i], errs[i] = chatworker.RunTool(ctx, w, claim.Run, 0, 0, call) }
				if !concurrent {
					runOne()
					continue
				}
				wg.Go(func() { <-start; runOne() })
			}
			close(start)
			wg.Wait()

			for i, err := range errs {
				if err != nil {
					t.Fatalf("attempt %d: %v", i, err)
				}
			}
			tasks := h.tasks()
			if len(tasks) != 1 {
				var titles []string
				for _, task := range tasks {
					titles = append(titles, task.Title)
				}
				t.Fatalf("tasks = %q, want exactly one", titles)
			}
			ledger, err := h.store.Ledger(ctx, h.user, turn.Run.ID)
			if err != nil || len(ledger) != 1 {
				t.Fatalf("ledger = %+v, %v; want one entry", ledger, err)
			}
			// The recorded call is the one whose task exists.
			var winner int
			if _, err := fmt.Sscanf(ledger[0].CallID, "call_%d", &winner); err != nil || tasks[0].Title != fmt.Sprintf("Task %d", winner) {
				t.Errorf("ledger records %s but the task is %q", ledger[0].CallID, tasks[0].Title)
			}
			for i, res := range results {
				if !sameJSON(t, res, ledger[0].Result) {
					t.Errorf("attempt %d got %s, want the recorded %s", i, res, ledger[0].Result)
				}
			}

			// Another position is another call.
			if _, err := chatworker.RunTool(ctx, w, turn.Run, 0, 1, addTask("call_x", "Second")); err != nil {
				t.Fatal(err)
			}
			if tasks := h.tasks(); len(tasks) != 2 {
				t.Errorf("after a call at the next position tasks = %+v, want two", tasks)
			}
		})
	}
}

func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// TestToolRefusedWithoutTheLease: a worker whose lease expired (paused past
// it; another worker may hold the run now) must not apply a tool.
func TestToolRefusedWithoutTheLease(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, bustest.Embedded(t), 0)
	turn := h.turn("", "add a task")
	w := chatworker.New(chatworker.Config{}, testDB.DB, h.bus, agent.New(agent.NewOffline()), nil)
	// A lease of a microsecond has expired by the time the tool runs.
	claim, err := h.store.ClaimRun(ctx, h.user, turn.Run.ID, w.Owner(), time.Microsecond)
	if err != nil || claim.Outcome != chat.ClaimOK {
		t.Fatalf("claim = %+v, %v", claim, err)
	}
	_, err = chatworker.RunTool(ctx, w, claim.Run, 0, 0, addTask("call_1", "Late task"))
	if !errors.Is(err, chat.ErrLeaseLost) {
		t.Fatalf("RunTool without the lease: err = %v, want chat.ErrLeaseLost", err)
	}
	if tasks := h.tasks(); len(tasks) != 0 {
		t.Fatalf("tasks = %+v, want none", tasks)
	}
	if ledger, err := h.store.Ledger(ctx, h.user, turn.Run.ID); err != nil || len(ledger) != 0 {
		t.Fatalf("ledger = %+v, %v; want empty", ledger, err)
	}
}
