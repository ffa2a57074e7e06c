package chat_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/chat"
)

// backdate sets a run's created_at to ago before now.
func backdate(t *testing.T, runID string, ago time.Duration) {
	t.Helper()
	_, err := testDB.DB.NewRaw("UPDATE runs SET created_at = now() - ? * interval '1 microsecond', updated_at = now() - ? * interval '1 microsecond' WHERE id = ?", ago.Microseconds(), ago.Microseconds(), runID).Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
}

// staleIDs returns the ids StaleRuns reports among ids, in its order.
func staleIDs(t *testing.T, m *chat.Maintenance, queuedBefore, now time.Time, ids ...string) []string {
	t.Helper()
	refs, err := m.StaleRuns(context.Background(), queuedBefore, now, chat.MaxRunListLimit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range refs {
		if slices.Contains(ids, r.RunID) {
			out = append(out, r.RunID)
		}
	}
	return out
}

func TestStaleRuns(t *testing.T) {
	ctx := context.Background()
	m := chat.NewMaintenance(testDB.DB)
	s, user := newStore(t)
	_, other := newStore(t)

	// Conversation A: an orphaned running run (its lease expired) with a
	// queued run behind it.
	orphan := mustTurn(t, s, user, "", "orphan")
	behind := mustTurn(t, s, user, orphan.Conversation.ID, "behind the orphan")
	mustClaim(t, s, user, orphan.Run.ID, "dead", chat.ClaimOK)
	expireLease(t, orphan.Run.ID)
	// Conversation B: a queued run nobody claimed (its publish was lost).
	lost := mustTurn(t, s, other, "", "lost publish")
	// Conversation C: a healthy running run and a young queued run.
	healthy := mustTurn(t, s, user, "", "healthy")
	mustClaim(t, s, user, healthy.Run.ID, "alive", chat.ClaimOK)
	young := mustTurn(t, s, user, "", "young")
	for _, id := range []string{orphan.Run.ID, behind.Run.ID, lost.Run.ID, healthy.Run.ID} {
		backdate(t, id, time.Hour)
	}
	all := []string{orphan.Run.ID, behind.Run.ID, lost.Run.ID, healthy.Run.ID, young.Run.ID}
	queuedBefore := time.Now().Add(-time.Minute)

	got := staleIDs(t, m, queuedBefore, time.Time{}, all...)
	if want := []string{orphan.Run.ID, lost.Run.ID}; !slices.Equal(got, want) {
		t.Errorf("stale %v, want the orphan then the lost run %v", got, want)
	}
	refs, err := m.StaleRuns(ctx, queuedBefore, time.Time{}, chat.MaxRunListLimit)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if r.RunID == lost.Run.ID && (r.UserID != other || r.ConversationID != lost.Conversation.ID || r.Status != chat.RunQueued) {
			t.Errorf("ref %+v", r)
		}
		if r.RunID == orphan.Run.ID && (r.UserID != user || r.Status != chat.RunRunning) {
			t.Errorf("ref %+v", r)
		}
	}
	t.Run("now from the caller", func(t *testing.T) {
		got := staleIDs(t, m, queuedBefore, time.Now().Add(2*lease), all...)
		if !slices.Contains(got, healthy.Run.ID) {
			t.Errorf("a lease expired by the caller's clock is not stale: %v", got)
		}
	})
	t.Run("a run handed back just now waits its turn", func(t *testing.T) {
		// Created an hour ago, but queued again a moment ago (a worker's
		// retry): the relay leaves it to the worker's retry delay.
		if _, err := testDB.DB.NewRaw("UPDATE runs SET updated_at = now() WHERE id = ?", lost.Run.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		defer backdate(t, lost.Run.ID, time.Hour)
		if got := staleIDs(t, m, queuedBefore, time.Time{}, all...); slices.Contains(got, lost.Run.ID) {
			t.Errorf("stale %v includes the run queued again a moment ago", got)
		}
	})
	t.Run("limit", func(t *testing.T) {
		refs, err := m.StaleRuns(ctx, queuedBefore, time.Time{}, 1)
		if err != nil || len(refs) != 1 {
			t.Fatalf("refs %+v, %v", refs, err)
		}
		_, err = m.StaleRuns(ctx, queuedBefore, time.Time{}, -1)
		wantFields(t, err, "limit")
	})
	t.Run("the run behind becomes stale once the orphan ends", func(t *testing.T) {
		if _, _, err := s.FinishRun(ctx, user, orphan.Run.ID, "", chat.Finish{Status: chat.RunFailed}); err != nil {
			t.Fatal(err)
		}
		if got := staleIDs(t, m, queuedBefore, time.Time{}, all...); !slices.Equal(got, []string{behind.Run.ID, lost.Run.ID}) &&
			!slices.Equal(got, []string{lost.Run.ID, behind.Run.ID}) {
			t.Errorf("stale %v", got)
		}
	})
}

func TestListRuns(t *testing.T) {
	ctx := context.Background()
	m := chat.NewMaintenance(testDB.DB)
	s, user := newStore(t)
	_, other := newStore(t)
	failed := mustTurn(t, s, user, "", "failed")
	if _, _, err := s.FinishRun(ctx, user, failed.Run.ID, "", chat.Finish{Status: chat.RunFailed, Error: &chat.RunError{Code: chat.CodeAgentError, Message: "x"}}); err != nil {
		t.Fatal(err)
	}
	stuck := mustTurn(t, s, user, "", "stuck")
	backdate(t, stuck.Run.ID, 2*time.Hour)
	// An orphan: running under a lease that expired (its worker died).
	orphan := mustTurn(t, s, user, "", "orphan")
	mustClaim(t, s, user, orphan.Run.ID, "dead-worker", chat.ClaimOK)
	expireLease(t, orphan.Run.ID)
	// A healthy running run and a young queued one: not stuck.
	healthy := mustTurn(t, s, user, "", "healthy")
	mustClaim(t, s, user, healthy.Run.ID, "live-worker", chat.ClaimOK)
	fresh := mustTurn(t, s, user, "", "fresh")
	// Another user's old queued run.
	foreign := mustTurn(t, s, other, "", "foreign")
	backdate(t, foreign.Run.ID, time.Hour)
	// And its orphan, which a list of the first user's stuck runs leaves out.
	foreignOrphan := mustTurn(t, s, other, "", "foreign orphan")
	mustClaim(t, s, other, foreignOrphan.Run.ID, "dead-worker", chat.ClaimOK)
	expireLease(t, foreignOrphan.Run.ID)

	mine := []string{failed.Run.ID, stuck.Run.ID, orphan.Run.ID, healthy.Run.ID, fresh.Run.ID, foreign.Run.ID, foreignOrphan.Run.ID}
	ids := func(runs []chat.RunInfo) []string {
		var out []string
		for _, r := range runs {
			if slices.Contains(mine, r.ID) {
				out = append(out, r.ID)
			}
		}
		return out
	}
	halfHourAgo := time.Now().Add(-30 * time.Minute)
	tests := []struct {
		name string
		f    chat.RunFilter
		want []string
	}{
		{"failed", chat.RunFilter{Statuses: []chat.RunStatus{chat.RunFailed}}, []string{failed.Run.ID}},
		{"old queued", chat.RunFilter{Statuses: []chat.RunStatus{chat.RunQueued}, CreatedBefore: halfHourAgo}, []string{stuck.Run.ID, foreign.Run.ID}},
		{"all, oldest first", chat.RunFilter{}, []string{stuck.Run.ID, foreign.Run.ID, failed.Run.ID, orphan.Run.ID, healthy.Run.ID, fresh.Run.ID, foreignOrphan.Run.ID}},
		{"all, newest first", chat.RunFilter{NewestFirst: true}, []string{foreignOrphan.Run.ID, fresh.Run.ID, healthy.Run.ID, orphan.Run.ID, failed.Run.ID, foreign.Run.ID, stuck.Run.ID}},
		{"one user's", chat.RunFilter{UserID: other}, []string{foreign.Run.ID, foreignOrphan.Run.ID}},
		{"stuck: expired leases and old queued runs", chat.RunFilter{Stuck: true, CreatedBefore: halfHourAgo}, []string{stuck.Run.ID, foreign.Run.ID, orphan.Run.ID, foreignOrphan.Run.ID}},
		{"stuck without an age: every queued run", chat.RunFilter{Stuck: true}, []string{stuck.Run.ID, foreign.Run.ID, orphan.Run.ID, fresh.Run.ID, foreignOrphan.Run.ID}},
		{"stuck and running", chat.RunFilter{Stuck: true, CreatedBefore: halfHourAgo, Statuses: []chat.RunStatus{chat.RunRunning}}, []string{orphan.Run.ID, foreignOrphan.Run.ID}},
		{"stuck, one user's", chat.RunFilter{Stuck: true, CreatedBefore: halfHourAgo, UserID: user}, []string{stuck.Run.ID, orphan.Run.ID}},
		{"stuck and failed: none", chat.RunFilter{Stuck: true, Statuses: []chat.RunStatus{chat.RunFailed}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.Limit = chat.MaxRunListLimit
			runs, err := m.ListRuns(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(runs); !slices.Equal(got, tt.want) {
				t.Errorf("runs %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("what a run shows", func(t *testing.T) {
		runs, err := m.ListRuns(ctx, chat.RunFilter{UserID: user, Statuses: []chat.RunStatus{chat.RunRunning, chat.RunFailed}})
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]chat.RunInfo{}
		for _, r := range runs {
			byID[r.ID] = r
		}
		o, h, f := byID[orphan.Run.ID], byID[healthy.Run.ID], byID[failed.Run.ID]
		if o.LeaseOwner != "dead-worker" || o.LeaseExpiresAt == nil || !o.LeaseExpired || o.UserID != user || o.ConversationID != orphan.Conversation.ID || o.Attempts != 1 {
			t.Errorf("orphan %+v", o)
		}
		if h.LeaseOwner != "live-worker" || h.LeaseExpiresAt == nil || h.LeaseExpired {
			t.Errorf("healthy %+v", h)
		}
		if f.LeaseExpired || f.Error == nil || f.Error.Code != chat.CodeAgentError {
			t.Errorf("failed %+v", f)
		}
	})
	t.Run("limit keeps the first", func(t *testing.T) {
		runs, err := m.ListRuns(ctx, chat.RunFilter{UserID: user, NewestFirst: true, Limit: 1})
		if err != nil || len(runs) != 1 || runs[0].ID != fresh.Run.ID {
			t.Errorf("runs %+v, %v; want only the newest", runs, err)
		}
	})
	_, err := m.ListRuns(ctx, chat.RunFilter{Statuses: []chat.RunStatus{"stuck"}, Limit: 5000})
	wantFields(t, err, "status", "limit")
}

func TestMaintenanceGetRun(t *testing.T) {
	ctx := context.Background()
	m := chat.NewMaintenance(testDB.DB)
	s, user := newStore(t)
	turn := mustTurn(t, s, user, "", "held")
	mustClaim(t, s, user, turn.Run.ID, "w-get", chat.ClaimOK)
	r, err := m.GetRun(ctx, strings.ToUpper(turn.Run.ID))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != turn.Run.ID || r.UserID != user || r.Status != chat.RunRunning || r.LeaseOwner != "w-get" || r.LeaseExpired {
		t.Errorf("run %+v", r)
	}
	expireLease(t, turn.Run.ID)
	if r, err := m.GetRun(ctx, turn.Run.ID); err != nil || !r.LeaseExpired {
		t.Errorf("after the lease expired: %+v, %v", r, err)
	}
	for _, id := range []string{"0190a0a0-0000-7000-8000-000000000000", "x"} {
		_, err := m.GetRun(ctx, id)
		wantErr(t, err, chat.ErrNotFound)
	}
}

func TestRequeueRun(t *testing.T) {
	ctx := context.Background()
	m := chat.NewMaintenance(testDB.DB)
	s, user := newStore(t)
	t.Run("failed", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "failed")
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
		if _, _, err := s.FinishRun(ctx, user, turn.Run.ID, "w", chat.Finish{Status: chat.RunFailed, Error: &chat.RunError{Code: chat.CodeAttemptsExceeded, Message: "x"}}); err != nil {
			t.Fatal(err)
		}
		ref, err := m.RequeueRun(ctx, turn.Run.ID)
		if err != nil || ref != (chat.RunRef{UserID: user, ConversationID: turn.Conversation.ID, RunID: turn.Run.ID, Status: chat.RunQueued}) {
			t.Fatalf("ref %+v, %v", ref, err)
		}
		st := rawRun(t, turn.Run.ID)
		if st.Status != "queued" || st.ErrorCode != nil || st.FinishedAt != nil || st.Attempts != 0 {
			t.Errorf("requeued %+v", st)
		}
		if c := mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK); c.Run.Attempts != 1 {
			t.Errorf("attempt %d after requeue", c.Run.Attempts)
		}
	})
	t.Run("running", func(t *testing.T) {
		turn := mustTurn(t, s, user, "", "stuck")
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
		if _, err := m.RequeueRun(ctx, turn.Run.ID); err != nil {
			t.Fatal(err)
		}
		st := rawRun(t, turn.Run.ID)
		if st.Status != "queued" || st.LeaseOwner != nil || st.LeaseExpiresAt != nil || st.Attempts != 1 {
			t.Errorf("requeued %+v", st)
		}
		_, err := s.RenewLease(ctx, user, turn.Run.ID, "w", lease)
		wantErr(t, err, chat.ErrLeaseLost)
		if ref, err := m.RequeueRun(ctx, turn.Run.ID); err != nil || ref.Status != chat.RunQueued {
			t.Errorf("requeue of a queued run: %+v, %v", ref, err)
		}
	})
	t.Run("finished", func(t *testing.T) {
		done := mustTurn(t, s, user, "", "done")
		answer(t, s, user, done.Run.ID, "ok")
		_, err := m.RequeueRun(ctx, done.Run.ID)
		wantErr(t, err, chat.ErrRunFinished)
		cancelled := mustTurn(t, s, user, "", "cancelled")
		if _, err := s.CancelRun(ctx, user, cancelled.Run.ID); err != nil {
			t.Fatal(err)
		}
		_, err = m.RequeueRun(ctx, cancelled.Run.ID)
		wantErr(t, err, chat.ErrRunFinished)
		answered := mustTurn(t, s, user, "", "failed with an answer")
		if _, _, err := s.FinishRun(ctx, user, answered.Run.ID, "", chat.Finish{Status: chat.RunFailed, Answer: &chat.Answer{Content: "partial"}}); err != nil {
			t.Fatal(err)
		}
		_, err = m.RequeueRun(ctx, answered.Run.ID)
		wantErr(t, err, chat.ErrRunFinished)
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := m.RequeueRun(ctx, "0190a0a0-0000-7000-8000-000000000000")
		wantErr(t, err, chat.ErrNotFound)
		_, err = m.RequeueRun(ctx, "x")
		wantErr(t, err, chat.ErrNotFound)
	})
}
