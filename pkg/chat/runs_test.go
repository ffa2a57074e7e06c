package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

func TestCancelRun(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	t.Run("queued ends at once", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "cancel me")
		run, err := s.CancelRun(ctx, user, turn.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != chat.RunCancelled || run.FinishedAt == nil || run.Error == nil ||
			*run.Error != (chat.RunError{Code: chat.CodeCancelled, Message: "cancelled by the user"}) {
			t.Errorf("cancelled run %+v", run)
		}
		if st := rawRun(t, turn.Run.ID); st.Status != "cancelled" || st.FinishedAt == nil {
			t.Errorf("stored %+v", st)
		}
		_, err = s.CancelRun(ctx, user, turn.Run.ID)
		wantErr(t, err, chat.ErrRunFinished)
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimFinished)
	})
	t.Run("running is asked to stop", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "stop me")
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
		run, err := s.CancelRun(ctx, user, turn.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != chat.RunRunning || run.FinishedAt != nil || run.Error != nil {
			t.Errorf("run %+v, want still running", run)
		}
		if st := rawRun(t, turn.Run.ID); !st.CancelRequested || st.LeaseOwner == nil || *st.LeaseOwner != "w" {
			t.Errorf("stored %+v, want cancel requested, lease kept", st)
		}
		if _, err := s.CancelRun(ctx, user, turn.Run.ID); err != nil {
			t.Errorf("second cancel of a running run: %v", err)
		}
		cancel, err := s.RenewLease(ctx, user, turn.Run.ID, "w", lease)
		if err != nil || !cancel {
			t.Errorf("RenewLease = %v, %v; want cancel requested", cancel, err)
		}
		run, msg, err := s.FinishRun(ctx, user, turn.Run.ID, "w", chat.Finish{Status: chat.RunCancelled, Answer: &chat.Answer{Content: "partial"}})
		if err != nil {
			t.Fatal(err)
		}
		if run.Status != chat.RunCancelled || run.Error == nil || run.Error.Code != chat.CodeCancelled || msg == nil || msg.Content != "partial" {
			t.Errorf("finished %+v, message %+v", run, msg)
		}
		_, err = s.CancelRun(ctx, user, turn.Run.ID)
		wantErr(t, err, chat.ErrRunFinished)
	})
	t.Run("a taken-over run keeps the request", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "orphan")
		mustClaim(t, s, user, turn.Run.ID, "dead", chat.ClaimOK)
		if _, err := s.CancelRun(ctx, user, turn.Run.ID); err != nil {
			t.Fatal(err)
		}
		expireLease(t, turn.Run.ID)
		c := mustClaim(t, s, user, turn.Run.ID, "heir", chat.ClaimOK)
		if !c.CancelRequested || !c.Resumed {
			t.Errorf("claim %+v, want CancelRequested and Resumed", c)
		}
	})
	t.Run("a run handed back keeps the request", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "handed back")
		mustClaim(t, s, user, turn.Run.ID, "leaving", chat.ClaimOK)
		if _, err := s.CancelRun(ctx, user, turn.Run.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseRun(ctx, user, turn.Run.ID, "leaving"); err != nil {
			t.Fatal(err)
		}
		c := mustClaim(t, s, user, turn.Run.ID, "next", chat.ClaimOK)
		if !c.CancelRequested || c.Resumed || c.Run.Attempts != 2 {
			t.Errorf("claim %+v, want CancelRequested at attempt 2, not Resumed", c)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := s.CancelRun(ctx, user, "0190a0a0-0000-7000-8000-000000000000")
		wantErr(t, err, chat.ErrNotFound)
		_, err = s.CancelRun(ctx, user, "x")
		wantErr(t, err, chat.ErrNotFound)
	})
}

func TestClaimOrder(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "one")
	conv := first.Conversation.ID
	second := mustTurn(t, s, user, conv, "two")
	elsewhere := mustTurn(t, s, user, "", "other conversation")

	mustClaim(t, s, user, second.Run.ID, "w2", chat.ClaimBusy) // its elder is queued
	if st := rawRun(t, second.Run.ID); st.Status != "queued" || st.Attempts != 0 || st.LeaseOwner != nil {
		t.Errorf("a busy claim changed the run: %+v", st)
	}
	c := mustClaim(t, s, user, first.Run.ID, "w1", chat.ClaimOK)
	if c.Run.Status != chat.RunRunning || c.Run.Attempts != 1 || c.Run.StartedAt == nil || c.Resumed || c.CancelRequested {
		t.Errorf("claim %+v", c)
	}
	if st := rawRun(t, first.Run.ID); st.LeaseOwner == nil || *st.LeaseOwner != "w1" || st.LeaseExpiresAt == nil {
		t.Errorf("stored lease %+v", st)
	}
	mustClaim(t, s, user, elsewhere.Run.ID, "w3", chat.ClaimOK) // other conversations run in parallel
	mustClaim(t, s, user, second.Run.ID, "w2", chat.ClaimBusy)  // its elder is running
	mustClaim(t, s, user, first.Run.ID, "w2", chat.ClaimBusy)   // someone else's live lease
	mustClaim(t, s, user, first.Run.ID, "w1", chat.ClaimBusy)   // even its own

	next, ok, err := s.NextQueuedRun(ctx, user, conv)
	if err != nil || !ok || next.ID != second.Run.ID {
		t.Fatalf("NextQueuedRun = %+v, %v, %v; want %s", next, ok, err, second.Run.ID)
	}
	mustComplete(t, s, user, first.Run.ID, "w1", "answer one")
	mustClaim(t, s, user, first.Run.ID, "w1", chat.ClaimFinished)
	c = mustClaim(t, s, user, second.Run.ID, "w1", chat.ClaimOK)
	if c.Run.Attempts != 1 {
		t.Errorf("second run attempt %d", c.Run.Attempts)
	}
	if _, ok, err := s.NextQueuedRun(ctx, user, conv); ok || err != nil {
		t.Errorf("NextQueuedRun with none queued: %v, %v", ok, err)
	}
	t.Run("malformed or unknown ids", func(t *testing.T) {
		mustClaim(t, s, user, "not-a-uuid", "w", chat.ClaimGone)
		mustClaim(t, s, user, "0190a0a0-0000-7000-8000-000000000000", "w", chat.ClaimGone)
		if _, ok, err := s.NextQueuedRun(ctx, user, "nope"); ok || err != nil {
			t.Errorf("NextQueuedRun(nope) = %v, %v", ok, err)
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		if _, err := s.ClaimRun(ctx, user, second.Run.ID, "", lease); err == nil {
			t.Error("claim without owner succeeded")
		}
		if _, err := s.ClaimRun(ctx, user, second.Run.ID, "w", 0); err == nil {
			t.Error("claim with zero lease succeeded")
		}
	})
}

func TestClaimExpiredLease(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "one")
	second := mustTurn(t, s, user, first.Conversation.ID, "two")
	mustClaim(t, s, user, first.Run.ID, "dead", chat.ClaimOK)
	expireLease(t, first.Run.ID)

	// The younger run still waits: its elder is unfinished, if orphaned.
	mustClaim(t, s, user, second.Run.ID, "heir", chat.ClaimBusy)
	c := mustClaim(t, s, user, first.Run.ID, "heir", chat.ClaimOK)
	if !c.Resumed || c.Run.Attempts != 2 {
		t.Errorf("claim %+v, want Resumed at attempt 2", c)
	}
	if st := rawRun(t, first.Run.ID); st.LeaseOwner == nil || *st.LeaseOwner != "heir" {
		t.Errorf("lease owner %v", st.LeaseOwner)
	}
	t.Run("the dead worker lost it", func(t *testing.T) {
		_, err := s.RenewLease(ctx, user, first.Run.ID, "dead", lease)
		wantErr(t, err, chat.ErrLeaseLost)
		_, _, err = s.FinishRun(ctx, user, first.Run.ID, "dead", chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{Content: "zombie"}})
		wantErr(t, err, chat.ErrLeaseLost)
		wantErr(t, s.ReleaseRun(ctx, user, first.Run.ID, "dead"), chat.ErrLeaseLost)
		if n := count(t, "SELECT count(*) FROM messages WHERE run_id = ? AND role = 'assistant'", first.Run.ID); n != 0 {
			t.Errorf("%d assistant messages written by a worker without the lease", n)
		}
	})
	t.Run("an expired lease nobody took is still its owner's", func(t *testing.T) {
		expireLease(t, first.Run.ID)
		if _, err := s.RenewLease(ctx, user, first.Run.ID, "heir", lease); err != nil {
			t.Fatal(err)
		}
		mustClaim(t, s, user, first.Run.ID, "third", chat.ClaimBusy)
	})
}

func TestClaimConcurrent(t *testing.T) {
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "race")
	const n = 5
	claims := make([]chat.Claim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			claims[i], errs[i] = s.ClaimRun(context.Background(), user, turn.Run.ID, fmt.Sprintf("w%d", i), lease)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		switch claims[i].Outcome {
		case chat.ClaimOK:
			ok++
		case chat.ClaimBusy:
		default:
			t.Errorf("claim %d: %v", i, claims[i].Outcome)
		}
	}
	if ok != 1 {
		t.Fatalf("%d claims succeeded, want 1", ok)
	}
	if st := rawRun(t, turn.Run.ID); st.Attempts != 1 {
		t.Errorf("attempts %d, want 1", st.Attempts)
	}
}

// TestClaimConcurrentConversation checks that of two runs of one
// conversation claimed at the same time, never both run.
func TestClaimConcurrentConversation(t *testing.T) {
	s, user := newStore(t)
	for round := range 5 {
		first := mustTurn(t, s, user, "", fmt.Sprintf("round %d", round))
		second := mustTurn(t, s, user, first.Conversation.ID, "second")
		// The elder's worker died, so the younger's claim sees it as unfinished
		// but not live; the younger must still wait.
		mustClaim(t, s, user, first.Run.ID, "dead", chat.ClaimOK)
		expireLease(t, first.Run.ID)
		var wg sync.WaitGroup
		out := make([]chat.ClaimOutcome, 2)
		for i, id := range []string{first.Run.ID, second.Run.ID} {
			wg.Go(func() {
				c, err := s.ClaimRun(context.Background(), user, id, fmt.Sprintf("w%d", i), lease)
				if err != nil {
					t.Error(err)
				}
				out[i] = c.Outcome
			})
		}
		wg.Wait()
		if out[0] != chat.ClaimOK || out[1] != chat.ClaimBusy {
			t.Fatalf("round %d: outcomes %v, %v; want ok, busy", round, out[0], out[1])
		}
	}
}

func TestRenewAndRelease(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "renew")
	id := turn.Run.ID
	mustClaim(t, s, user, id, "w", chat.ClaimOK)
	before := rawRun(t, id)
	cancel, err := s.RenewLease(ctx, user, id, "w", 2*lease)
	if err != nil || cancel {
		t.Fatalf("RenewLease = %v, %v", cancel, err)
	}
	if after := rawRun(t, id); !after.LeaseExpiresAt.After(*before.LeaseExpiresAt) {
		t.Errorf("lease %v not extended past %v", after.LeaseExpiresAt, before.LeaseExpiresAt)
	}
	_, err = s.RenewLease(ctx, user, id, "other", lease)
	wantErr(t, err, chat.ErrLeaseLost)
	if _, err := s.RenewLease(ctx, user, id, "w", 0); err == nil {
		t.Error("renewal with zero lease succeeded")
	}

	wantErr(t, s.ReleaseRun(ctx, user, id, "other"), chat.ErrLeaseLost)
	if err := s.ReleaseRun(ctx, user, id, "w"); err != nil {
		t.Fatal(err)
	}
	st := rawRun(t, id)
	if st.Status != "queued" || st.LeaseOwner != nil || st.LeaseExpiresAt != nil || st.Attempts != 1 {
		t.Errorf("released run %+v", st)
	}
	wantErr(t, s.ReleaseRun(ctx, user, id, "w"), chat.ErrLeaseLost)
	_, err = s.RenewLease(ctx, user, id, "w", lease)
	wantErr(t, err, chat.ErrLeaseLost)
	c := mustClaim(t, s, user, id, "w2", chat.ClaimOK)
	if c.Resumed || c.Run.Attempts != 2 {
		t.Errorf("claim after release %+v", c)
	}
	t.Run("unknown run", func(t *testing.T) {
		_, err := s.RenewLease(ctx, user, "0190a0a0-0000-7000-8000-000000000000", "w", lease)
		wantErr(t, err, chat.ErrNotFound)
		wantErr(t, s.ReleaseRun(ctx, user, "0190a0a0-0000-7000-8000-000000000000", "w"), chat.ErrNotFound)
		wantErr(t, s.ReleaseRun(ctx, user, "x", "w"), chat.ErrNotFound)
	})
}

func TestFinishRun(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "add milk")
	mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
	calls := []chat.ToolCall{{ID: "call_1", Name: "add_task", Arguments: json.RawMessage(`{"title": "milk"}`), Result: json.RawMessage(`{"task_id":1,"status":"created","title":"milk"}`)}}
	run, msg, err := s.FinishRun(ctx, user, turn.Run.ID, "w", chat.Finish{
		Status: chat.RunCompleted,
		Error:  &chat.RunError{Code: "IGNORED", Message: "for a completed run"},
		Answer: &chat.Answer{Content: "Added milk.\x00", ToolCalls: calls, Model: "offline"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != chat.RunCompleted || run.Error != nil || run.FinishedAt == nil || run.StartedAt == nil {
		t.Errorf("run %+v", run)
	}
	wantUTC(t, "run", run.CreatedAt, *run.StartedAt, *run.FinishedAt)
	if msg == nil || msg.ID != turn.Run.AssistantMessageID || msg.RunID != turn.Run.ID || msg.Role != chat.RoleAssistant ||
		msg.Content != "Added milk." || msg.Model != "offline" || len(msg.ToolCalls) != 1 ||
		msg.ToolCalls[0].ID != "call_1" || string(msg.ToolCalls[0].Arguments) != `{"title": "milk"}` {
		t.Fatalf("message %+v", msg)
	}
	if st := rawRun(t, turn.Run.ID); st.LeaseOwner != nil || st.LeaseExpiresAt != nil {
		t.Errorf("lease left behind: %+v", st)
	}
	conv, _ := s.GetConversation(ctx, user, turn.Conversation.ID)
	if !conv.UpdatedAt.After(turn.Conversation.UpdatedAt) {
		t.Errorf("conversation updated_at not bumped")
	}
	t.Run("its answer, by run", func(t *testing.T) {
		got, ok, err := s.RunAnswer(ctx, user, turn.Run.ID)
		if err != nil || !ok || got.ID != msg.ID || got.Content != "Added milk." {
			t.Fatalf("RunAnswer = %+v, %v, %v; want %s", got, ok, err, msg.ID)
		}
		other := chat.NewStore(testDB.DB)
		stranger := dbtest.CreateUser(t, testDB.DB, "")
		if _, ok, err := other.RunAnswer(ctx, stranger, turn.Run.ID); ok || err != nil {
			t.Fatalf("another user's RunAnswer = %v, %v; want not found", ok, err)
		}
	})
	t.Run("a second finish", func(t *testing.T) {
		for _, owner := range []string{"w", ""} {
			_, _, err := s.FinishRun(ctx, user, turn.Run.ID, owner, chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{Content: "again"}})
			wantErr(t, err, chat.ErrRunFinished)
		}
		if n := count(t, "SELECT count(*) FROM messages WHERE run_id = ? AND role = 'assistant'", turn.Run.ID); n != 1 {
			t.Errorf("%d assistant messages, want 1", n)
		}
	})
	t.Run("the unique index holds a second answer off", func(t *testing.T) {
		_, err := testDB.DB.NewRaw(`INSERT INTO messages (id, conversation_id, user_id, run_id, role, content)
			VALUES (gen_random_uuid(), ?, ?, ?, 'assistant', 'sneaky')`, turn.Conversation.ID, user, turn.Run.ID).Exec(ctx)
		if err == nil || !strings.Contains(err.Error(), "messages_run_assistant_key") {
			t.Fatalf("second assistant message: %v", err)
		}
	})
	t.Run("failed without an answer", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "fail")
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
		run, msg, err := s.FinishRun(ctx, user, turn.Run.ID, "w", chat.Finish{Status: chat.RunFailed, Error: &chat.RunError{Code: chat.CodeAttemptsExceeded, Message: "gave up"}})
		if err != nil || msg != nil || run.Status != chat.RunFailed || run.Error == nil || run.Error.Code != chat.CodeAttemptsExceeded {
			t.Fatalf("run %+v, message %v, %v", run, msg, err)
		}
		if n := count(t, "SELECT count(*) FROM messages WHERE run_id = ?", turn.Run.ID); n != 1 {
			t.Errorf("%d messages, want the user's only", n)
		}
	})
	t.Run("failed takes a default error", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "fail")
		run, _, err := s.FinishRun(ctx, user, turn.Run.ID, "", chat.Finish{Status: chat.RunFailed})
		if err != nil || run.Error == nil || run.Error.Code != chat.CodeAgentError || run.StartedAt != nil {
			t.Fatalf("run %+v, %v", run, err)
		}
	})
	t.Run("a queued run ended without owner", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "poison")
		_, _, err := s.FinishRun(ctx, user, turn.Run.ID, "w", chat.Finish{Status: chat.RunFailed})
		wantErr(t, err, chat.ErrLeaseLost)
		run, _, err := s.FinishRun(ctx, user, turn.Run.ID, "", chat.Finish{Status: chat.RunCancelled})
		if err != nil || run.Status != chat.RunCancelled || run.Error == nil || run.Error.Code != chat.CodeCancelled {
			t.Fatalf("run %+v, %v", run, err)
		}
	})
	t.Run("a running run ended without owner", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "stuck")
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
		run, _, err := s.FinishRun(ctx, user, turn.Run.ID, "", chat.Finish{Status: chat.RunFailed, Error: &chat.RunError{Code: chat.CodeAttemptsExceeded, Message: "x"}})
		if err != nil || run.Status != chat.RunFailed {
			t.Fatalf("run %+v, %v", run, err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "bad finish")
		tests := []struct {
			name   string
			f      chat.Finish
			fields []string
		}{
			{"status not final", chat.Finish{Status: chat.RunRunning}, []string{"status"}},
			{"no status", chat.Finish{}, []string{"status"}},
			{"arguments not JSON", chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{ToolCalls: []chat.ToolCall{{Name: "x", Arguments: json.RawMessage(`{`)}}}}, []string{"tool_calls"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := s.FinishRun(ctx, user, turn.Run.ID, "", tc.f)
				wantFields(t, err, tc.fields...)
			})
		}
		if st := rawRun(t, turn.Run.ID); st.Status != "queued" {
			t.Errorf("an invalid finish changed the run: %+v", st)
		}
	})
	t.Run("empty tool call JSON is stored as defaults", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "defaults")
		_, msg, err := s.FinishRun(ctx, user, turn.Run.ID, "", chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{ToolCalls: []chat.ToolCall{{ID: "c", Name: "list_tasks"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if tc := msg.ToolCalls[0]; string(tc.Arguments) != `{}` || string(tc.Result) != `null` || msg.Model != "" {
			t.Errorf("message %+v", msg)
		}
	})
}

func TestLedger(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "ledger")
	id := turn.Run.ID
	mustClaim(t, s, user, id, "w", chat.ClaimOK)
	if got, err := s.Ledger(ctx, user, id); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty ledger = %#v, %v", got, err)
	}
	entries := []chat.LedgerEntry{
		{Round: 1, Index: 0, Text: "now completing", CallID: "b1", Name: "complete_task", Arguments: json.RawMessage(`{"task_id":3}`), Result: json.RawMessage(`{"status":"completed"}`)},
		{Round: 0, Index: 1, Text: "let me look", CallID: "a2", Name: "list_tasks", Arguments: json.RawMessage(`{"status":"all"}`), Result: json.RawMessage(`[]`)},
		{Round: 0, Index: 0, Text: "let me look", CallID: "a1", Name: "list_tasks", Arguments: json.RawMessage(`{}`), Result: json.RawMessage(`[{"id":3}]`)},
	}
	for _, e := range entries {
		got, inserted, err := s.RecordToolCall(ctx, user, id, e)
		if err != nil || !inserted || got.CallID != e.CallID || got.Round != e.Round || got.Index != e.Index {
			t.Fatalf("RecordToolCall(%+v) = %+v, %v, %v", e, got, inserted, err)
		}
	}
	t.Run("a retry at a taken position gets the first entry", func(t *testing.T) {
		retry := chat.LedgerEntry{Round: 0, Index: 1, Text: "different", CallID: "new-id", Name: "list_tasks", Result: json.RawMessage(`"other"`)}
		got, inserted, err := s.RecordToolCall(ctx, user, id, retry)
		if err != nil || inserted {
			t.Fatalf("retry inserted=%v, %v", inserted, err)
		}
		if got.CallID != "a2" || got.Text != "let me look" || string(got.Result) != `[]` {
			t.Errorf("retry got %+v, want the first entry", got)
		}
	})
	got, err := s.Ledger(ctx, user, id)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range got {
		order = append(order, fmt.Sprintf("%d.%d:%s", e.Round, e.Index, e.CallID))
	}
	if want := []string{"0.0:a1", "0.1:a2", "1.0:b1"}; !slices.Equal(order, want) {
		t.Errorf("ledger order %v, want %v", order, want)
	}
	e, ok, err := s.LookupToolCall(ctx, user, id, 1, 0)
	if err != nil || !ok || e.Name != "complete_task" || string(e.Arguments) != `{"task_id": 3}` {
		t.Errorf("LookupToolCall = %+v, %v, %v", e, ok, err)
	}
	if _, ok, err := s.LookupToolCall(ctx, user, id, 2, 0); ok || err != nil {
		t.Errorf("LookupToolCall of a free position = %v, %v", ok, err)
	}
	t.Run("in the transaction of the effect", func(t *testing.T) {
		tx, err := testDB.DB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, inserted, err := chat.NewStore(tx).RecordToolCall(ctx, user, id, chat.LedgerEntry{Round: 2, Name: "add_task", CallID: "c"}); err != nil || !inserted {
			t.Fatalf("in tx: %v, %v", inserted, err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := s.LookupToolCall(ctx, user, id, 2, 0); ok {
			t.Error("a rolled back entry is in the ledger")
		}
	})
	t.Run("invalid", func(t *testing.T) {
		tests := []struct {
			name   string
			e      chat.LedgerEntry
			fields []string
		}{
			{"negative round", chat.LedgerEntry{Round: -1, Name: "x"}, []string{"round"}},
			{"negative index", chat.LedgerEntry{Index: -1, Name: "x"}, []string{"index"}},
			{"no name", chat.LedgerEntry{}, []string{"name"}},
			{"bad JSON", chat.LedgerEntry{Name: "x", Arguments: json.RawMessage(`{`), Result: json.RawMessage(`nope`)}, []string{"arguments", "result"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := s.RecordToolCall(ctx, user, id, tc.e)
				wantFields(t, err, tc.fields...)
			})
		}
	})
	t.Run("unknown run", func(t *testing.T) {
		_, err := s.Ledger(ctx, user, "0190a0a0-0000-7000-8000-000000000000")
		wantErr(t, err, chat.ErrNotFound)
		_, _, err = s.RecordToolCall(ctx, user, "0190a0a0-0000-7000-8000-000000000000", chat.LedgerEntry{Name: "x"})
		wantErr(t, err, chat.ErrNotFound)
	})
}

func TestHistory(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "q1")
	conv := first.Conversation.ID
	answer(t, s, user, first.Run.ID, "a1")
	// Two messages accepted back to back: the second's run must see the
	// first's answer, written after the second message was stored.
	second := mustTurn(t, s, user, conv, "q2")
	third := mustTurn(t, s, user, conv, "q3")
	answer(t, s, user, second.Run.ID, "a2")
	fourth := mustTurn(t, s, user, conv, "q4") // later: no run before it may see it

	contents := func(ms []chat.Message) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Content)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name  string
		run   string
		limit int
		want  string
	}{
		{"first run sees its question only", first.Run.ID, 10, "q1"},
		{"second run sees the first answer, not q3 or q4", second.Run.ID, 10, "q1,a1,q2"},
		{"third run sees every earlier answer, user before answer", third.Run.ID, 10, "q1,a1,q2,a2,q3"},
		{"the limit keeps the newest", third.Run.ID, 3, "q2,a2,q3"},
		{"a limit of one is its own question", fourth.Run.ID, 1, "q4"},
		{"fourth run", fourth.Run.ID, 100, "q1,a1,q2,a2,q3,q4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.History(ctx, user, tc.run, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if c := contents(got); c != tc.want {
				t.Errorf("history %s, want %s", c, tc.want)
			}
		})
	}
	t.Run("a finished run does not see its own answer", func(t *testing.T) {
		got, err := s.History(ctx, user, second.Run.ID, 10)
		if err != nil || contents(got) != "q1,a1,q2" {
			t.Errorf("history %s, %v", contents(got), err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		_, err := s.History(ctx, user, first.Run.ID, 0)
		wantFields(t, err, "limit")
		_, err = s.History(ctx, user, "0190a0a0-0000-7000-8000-000000000000", 5)
		wantErr(t, err, chat.ErrNotFound)
	})
}

// TestRunInput checks that RunInput returns History and Ledger whatever the
// attempt: a failed run that chatctl requeued starts its attempts over but
// keeps its tool rounds, and its next attempt must replay them.
func TestRunInput(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "q1")
	answer(t, s, user, first.Run.ID, "a1")
	turn := mustTurn(t, s, user, first.Conversation.ID, "q2")
	id := turn.Run.ID
	if c := mustClaim(t, s, user, id, "w1", chat.ClaimOK); c.Run.Attempts != 1 {
		t.Fatalf("first claim at attempt %d", c.Run.Attempts)
	}
	check := func(t *testing.T, wantLedger []string) {
		t.Helper()
		history, ledger, err := s.RunInput(ctx, user, id, 10)
		if err != nil {
			t.Fatal(err)
		}
		want, err := s.History(ctx, user, id, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(history) != 3 || !slices.EqualFunc(history, want, func(a, b chat.Message) bool { return a.ID == b.ID && a.Content == b.Content }) {
			t.Errorf("history %+v, want %+v", history, want)
		}
		got := []string{}
		for _, e := range ledger {
			got = append(got, fmt.Sprintf("%d.%d:%s", e.Round, e.Index, e.CallID))
		}
		if ledger == nil || !slices.Equal(got, wantLedger) {
			t.Errorf("ledger %v (nil: %v), want %v", got, ledger == nil, wantLedger)
		}
	}
	t.Run("first attempt: no ledger", func(t *testing.T) { check(t, []string{}) })

	for _, e := range []chat.LedgerEntry{
		{Round: 0, Index: 0, CallID: "a1", Name: "add_task"},
		{Round: 0, Index: 1, CallID: "a2", Name: "add_task"},
	} {
		if _, ok, err := s.RecordToolCall(ctx, user, id, e); err != nil || !ok {
			t.Fatalf("RecordToolCall: %v, %v", ok, err)
		}
	}
	t.Run("with tool rounds", func(t *testing.T) { check(t, []string{"0.0:a1", "0.1:a2"}) })
	t.Run("a failed run requeued to attempt 1 replays its ledger", func(t *testing.T) {
		if _, _, err := s.FinishRun(ctx, user, id, "w1", chat.Finish{Status: chat.RunFailed}); err != nil {
			t.Fatal(err)
		}
		if _, err := chat.NewMaintenance(testDB.DB).RequeueRun(ctx, id); err != nil {
			t.Fatal(err)
		}
		if c := mustClaim(t, s, user, id, "w2", chat.ClaimOK); c.Run.Attempts != 1 {
			t.Fatalf("claim after the requeue at attempt %d, want 1", c.Run.Attempts)
		}
		check(t, []string{"0.0:a1", "0.1:a2"})
	})
	t.Run("errors", func(t *testing.T) {
		_, _, err := s.RunInput(ctx, user, id, 0)
		wantFields(t, err, "limit")
		for _, bad := range []string{"0190a0a0-0000-7000-8000-000000000000", "nope"} {
			_, _, err = s.RunInput(ctx, user, bad, 5)
			wantErr(t, err, chat.ErrNotFound)
		}
	})
}

// TestIsolation checks that another user gets ErrNotFound (or its
// equivalent) from every method on a user's conversation, messages and
// runs, and that none of the user's rows change.
func TestIsolation(t *testing.T) {
	ctx := context.Background()
	s, alice := newStore(t)
	bob := newUserOnly(t)
	done := mustTurn(t, s, alice, "", "alice's question")
	conv := done.Conversation.ID
	mustClaim(t, s, alice, done.Run.ID, "wa", chat.ClaimOK)
	if _, _, err := s.RecordToolCall(ctx, alice, done.Run.ID, chat.LedgerEntry{Name: "add_task", CallID: "c"}); err != nil {
		t.Fatal(err)
	}
	mustComplete(t, s, alice, done.Run.ID, "wa", "alice's answer")
	running := mustTurn(t, s, alice, conv, "running")
	mustClaim(t, s, alice, running.Run.ID, "wa", chat.ClaimOK)
	queued := mustTurn(t, s, alice, conv, "queued")
	before := snapshot(t, alice)

	notFound := []struct {
		name string
		call func() error
	}{
		{"GetConversation", func() error { _, err := s.GetConversation(ctx, bob, conv); return err }},
		{"RenameConversation", func() error { _, err := s.RenameConversation(ctx, bob, conv, "mine"); return err }},
		{"DeleteConversation", func() error { _, err := s.DeleteConversation(ctx, bob, conv); return err }},
		{"ListMessages", func() error { _, err := s.ListMessages(ctx, bob, conv, chat.ListParams{}); return err }},
		{"CreateTurn into it", func() error {
			_, err := s.CreateTurn(ctx, bob, chat.NewTurn{ConversationID: conv, Message: "hi"})
			return err
		}},
		{"GetRun", func() error { _, err := s.GetRun(ctx, bob, done.Run.ID); return err }},
		{"CancelRun queued", func() error { _, err := s.CancelRun(ctx, bob, queued.Run.ID); return err }},
		{"CancelRun running", func() error { _, err := s.CancelRun(ctx, bob, running.Run.ID); return err }},
		{"RenewLease", func() error { _, err := s.RenewLease(ctx, bob, running.Run.ID, "wa", lease); return err }},
		{"ReleaseRun", func() error { return s.ReleaseRun(ctx, bob, running.Run.ID, "wa") }},
		{"History", func() error { _, err := s.History(ctx, bob, done.Run.ID, 10); return err }},
		{"RunInput", func() error { _, _, err := s.RunInput(ctx, bob, running.Run.ID, 10); return err }},
		{"Ledger", func() error { _, err := s.Ledger(ctx, bob, done.Run.ID); return err }},
		{"RecordToolCall", func() error {
			_, _, err := s.RecordToolCall(ctx, bob, running.Run.ID, chat.LedgerEntry{Name: "delete_task", CallID: "x"})
			return err
		}},
		{"FinishRun with owner", func() error {
			_, _, err := s.FinishRun(ctx, bob, running.Run.ID, "wa", chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{Content: "bob"}})
			return err
		}},
		{"FinishRun without owner", func() error {
			_, _, err := s.FinishRun(ctx, bob, queued.Run.ID, "", chat.Finish{Status: chat.RunCancelled})
			return err
		}},
	}
	for _, tc := range notFound {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.call(), chat.ErrNotFound)
		})
	}
	t.Run("ClaimRun", func(t *testing.T) {
		mustClaim(t, s, bob, queued.Run.ID, "wb", chat.ClaimGone)
		expireLease(t, running.Run.ID)
		mustClaim(t, s, bob, running.Run.ID, "wb", chat.ClaimGone)
		if _, err := s.RenewLease(ctx, alice, running.Run.ID, "wa", lease); err != nil { // undo the expiry
			t.Fatal(err)
		}
		before = snapshot(t, alice)
	})
	t.Run("LookupToolCall", func(t *testing.T) {
		if _, ok, err := s.LookupToolCall(ctx, bob, done.Run.ID, 0, 0); ok || err != nil {
			t.Errorf("bob looked up alice's ledger: %v, %v", ok, err)
		}
	})
	t.Run("NextQueuedRun", func(t *testing.T) {
		if _, ok, err := s.NextQueuedRun(ctx, bob, conv); ok || err != nil {
			t.Errorf("bob found alice's queued run: %v, %v", ok, err)
		}
	})
	t.Run("lists", func(t *testing.T) {
		page, err := s.ListConversations(ctx, bob, chat.ListParams{})
		if err != nil || len(page.Conversations) != 0 {
			t.Errorf("bob lists %+v, %v", page, err)
		}
	})
	t.Run("idempotency keys", func(t *testing.T) {
		k := mustKeyed(t, s, alice, "shared", "h1")
		before = snapshot(t, alice)
		other := mustKeyed(t, s, bob, "shared", "h2")
		if !other.Created || other.Run.ID == k.Run.ID {
			t.Errorf("bob's key matched alice's turn")
		}
	})
	if after := snapshot(t, alice); after != before {
		t.Errorf("alice's rows changed:\nbefore %s\nafter  %s", before, after)
	}
}

func newUserOnly(t *testing.T) string {
	t.Helper()
	_, user := newStore(t)
	return user
}

// TestStoreUnavailable checks that every method reports a database that
// cannot be reached as pgdb.ErrUnavailable (the API answers 503, the
// worker retries), whether or not it opens a transaction.
func TestStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	db := dbtest.PoolAt(t, pgdb.Config{URL: dbtest.UnreachableURL})
	s, m := chat.NewStore(db), chat.NewMaintenance(db)
	const user, id = "someone", "0190a0a0-0000-7000-8000-000000000000"
	tests := []struct {
		name string
		call func() error
	}{
		{"CreateTurn", func() error { _, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "hi"}); return err }},
		{"GetConversation", func() error { _, err := s.GetConversation(ctx, user, id); return err }},
		{"ListConversations", func() error { _, err := s.ListConversations(ctx, user, chat.ListParams{}); return err }},
		{"RenameConversation", func() error { _, err := s.RenameConversation(ctx, user, id, "t"); return err }},
		{"DeleteConversation", func() error { _, err := s.DeleteConversation(ctx, user, id); return err }},
		{"ListMessages", func() error { _, err := s.ListMessages(ctx, user, id, chat.ListParams{}); return err }},
		{"GetRun", func() error { _, err := s.GetRun(ctx, user, id); return err }},
		{"CancelRun", func() error { _, err := s.CancelRun(ctx, user, id); return err }},
		{"ClaimRun", func() error { _, err := s.ClaimRun(ctx, user, id, "w", lease); return err }},
		{"RenewLease", func() error { _, err := s.RenewLease(ctx, user, id, "w", lease); return err }},
		{"ReleaseRun", func() error { return s.ReleaseRun(ctx, user, id, "w") }},
		{"History", func() error { _, err := s.History(ctx, user, id, 5); return err }},
		{"RunInput", func() error { _, _, err := s.RunInput(ctx, user, id, 5); return err }},
		{"Ledger", func() error { _, err := s.Ledger(ctx, user, id); return err }},
		{"RecordToolCall", func() error { _, _, err := s.RecordToolCall(ctx, user, id, chat.LedgerEntry{Name: "x"}); return err }},
		{"LookupToolCall", func() error { _, _, err := s.LookupToolCall(ctx, user, id, 0, 0); return err }},
		{"FinishRun", func() error {
			_, _, err := s.FinishRun(ctx, user, id, "w", chat.Finish{Status: chat.RunCompleted})
			return err
		}},
		{"NextQueuedRun", func() error { _, _, err := s.NextQueuedRun(ctx, user, id); return err }},
		{"StaleRuns", func() error { _, err := m.StaleRuns(ctx, time.Now(), time.Time{}, 10); return err }},
		{"ListRuns", func() error { _, err := m.ListRuns(ctx, chat.RunFilter{}); return err }},
		{"RequeueRun", func() error { _, err := m.RequeueRun(ctx, id); return err }},
		{"GetRun (maintenance)", func() error { _, err := m.GetRun(ctx, id); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, pgdb.ErrUnavailable) {
				t.Fatalf("err = %v, want pgdb.ErrUnavailable", err)
			}
		})
	}
}
