package chat

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/validate"
)

// cancelledByUser is the error a run cancelled by its user carries.
var cancelledByUser = RunError{Code: CodeCancelled, Message: "cancelled by the user"}

// GetRun returns userID's run runID, or ErrNotFound.
func (s *Store) GetRun(ctx context.Context, userID, runID string) (Run, error) {
	r, err := s.getRun(ctx, userID, runID, "get run")
	if err != nil {
		return Run{}, err
	}
	return r.wire(), nil
}

// getRun reads userID's run runID (any form of id), or ErrNotFound.
func (s *Store) getRun(ctx context.Context, userID, runID, op string) (runRow, error) {
	id, ok := parseID(runID)
	if !ok {
		return runRow{}, ErrNotFound
	}
	var r runRow
	if err := s.selectFrom(userID, &r).Where("r.id = ?", id).Scan(ctx); err != nil {
		return runRow{}, translate(op, err)
	}
	return r, nil
}

// CancelRun cancels userID's run runID and returns it: a queued run ends
// cancelled at once (error CANCELLED); a running one gets cancel_requested
// and stays running until its worker ends it (the caller signals the
// worker). It returns ErrRunFinished for a finished run and ErrNotFound
// for an unknown or foreign one. Cancelling a running run twice is fine.
func (s *Store) CancelRun(ctx context.Context, userID, runID string) (Run, error) {
	const op = "cancel run"
	id, ok := parseID(runID)
	if !ok {
		return Run{}, ErrNotFound
	}
	// One statement decides on the status it sees, so a claim racing it
	// either sees the run cancelled or sees cancel_requested.
	var r runRow
	err := s.update(userID, &r).
		Where("r.id = ?", id).
		Where("r.status IN (?)", unfinished).
		Set("status = CASE WHEN status = ? THEN ? ELSE status END", RunQueued, RunCancelled).
		Set("finished_at = CASE WHEN status = ? THEN now() ELSE finished_at END", RunQueued).
		Set("error_code = CASE WHEN status = ? THEN ? ELSE error_code END", RunQueued, cancelledByUser.Code).
		Set("error_message = CASE WHEN status = ? THEN ? ELSE error_message END", RunQueued, cancelledByUser.Message).
		Set("cancel_requested = true").
		Set("updated_at = now()").
		Returning("*").
		Scan(ctx)
	if err == nil {
		return r.wire(), nil
	}
	if err = translate(op, err); !errors.Is(err, ErrNotFound) {
		return Run{}, err
	}
	// Nothing to cancel: tell a finished run from a missing one.
	if _, err := s.getRun(ctx, userID, id, op); err != nil {
		return Run{}, err
	}
	return Run{}, ErrRunFinished
}

// ClaimOutcome is what ClaimRun decided.
type ClaimOutcome int

// The outcomes of ClaimRun.
const (
	// ClaimOK: the caller now holds the run (running, under its lease).
	ClaimOK ClaimOutcome = iota + 1
	// ClaimBusy: not now: another worker holds the run, or it is not the
	// run's turn in its conversation (an older run is unfinished, or
	// another is running). The run stays as it was; whoever finishes the
	// conversation's current run picks up the next (NextQueuedRun).
	ClaimBusy
	// ClaimFinished: the run already ended; Run says how.
	ClaimFinished
	// ClaimGone: no such run of the user (its conversation was deleted, or
	// the id is not a run's).
	ClaimGone
)

// String names the outcome, for logs.
func (o ClaimOutcome) String() string {
	switch o {
	case ClaimOK:
		return "ok"
	case ClaimBusy:
		return "busy"
	case ClaimFinished:
		return "finished"
	case ClaimGone:
		return "gone"
	}
	return fmt.Sprintf("ClaimOutcome(%d)", int(o))
}

// Claim is the result of ClaimRun.
type Claim struct {
	Outcome ClaimOutcome
	// Run is the run as it is after the claim (zero for ClaimGone). For
	// ClaimOK, Run.Attempts is the number of the attempt that starts.
	Run Run
	// Resumed: the run was running under an expired lease (its worker
	// died) and continues from its ledger.
	Resumed bool
	// CancelRequested: the user asked to cancel the run while it was
	// running; the claimer ends it cancelled instead of running it.
	CancelRequested bool
}

// ClaimRun makes owner (a worker's unique name) the holder of userID's run
// runID for lease, if it is the run's turn. In one transaction, under a
// row lock on the run's conversation (so claims and finishes of one
// conversation take turns):
//
//   - no such run → ClaimGone; a final run → ClaimFinished;
//   - running under a live lease, whoever holds it (owner included) →
//     ClaimBusy;
//   - queued, or running under an expired lease: if an older run of the
//     conversation is unfinished, or another of its runs is running under a
//     live lease → ClaimBusy; otherwise the run becomes running, attempts
//     grows by one, started_at is set on the first attempt, the lease is
//     owner's until now+lease (database clock) → ClaimOK.
//
// lease must be positive.
func (s *Store) ClaimRun(ctx context.Context, userID, runID, owner string, lease time.Duration) (Claim, error) {
	if owner == "" || lease <= 0 {
		return Claim{}, fmt.Errorf("claim run: owner %q and lease %v: need a name and a positive lease", owner, lease)
	}
	id, ok := parseID(runID)
	if !ok {
		return Claim{Outcome: ClaimGone}, nil
	}
	var c Claim
	err := s.inTx(ctx, "claim run", func(ctx context.Context, tx *Store) error {
		var err error
		c, err = tx.claim(ctx, userID, id, owner, lease)
		return err
	})
	if err != nil {
		return Claim{}, err
	}
	return c, nil
}

// claim is ClaimRun's transaction.
func (s *Store) claim(ctx context.Context, userID, id, owner string, lease time.Duration) (Claim, error) {
	const op = "claim run"
	convID, err := s.lockConversationOf(ctx, userID, id, op)
	if errors.Is(err, ErrNotFound) {
		return Claim{Outcome: ClaimGone}, nil
	}
	if err != nil {
		return Claim{}, err
	}
	// The usual case, a queued run whose turn it is, takes one statement.
	// It starts after the conversation's lock is held, so it sees every
	// claim and finish of the conversation that committed before, and it
	// locks the run (after the conversation) as it changes it.
	var r runRow
	err = start(s.update(userID, &r), owner, lease).
		Where("r.id = ?", id).
		Where("r.conversation_id = ?", convID).
		Where("r.status = ?", RunQueued).
		Where("NOT EXISTS (?)", s.blockers(userID, convID, bun.Safe("r.id"), bun.Safe("r.seq"))).
		Returning("*").
		Scan(ctx)
	switch {
	case err == nil:
		return Claim{Outcome: ClaimOK, Run: r.wire(), CancelRequested: r.CancelRequested}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Claim{}, translate(op, err)
	}
	// Anything else (gone, final, held, not its turn, or an expired lease
	// to take over): lock the run and decide on what it is now.
	r, err = s.lockRunRow(ctx, userID, id, op)
	if errors.Is(err, ErrNotFound) {
		return Claim{Outcome: ClaimGone}, nil
	}
	if err != nil {
		return Claim{}, err
	}
	switch {
	case r.Status.Final():
		return Claim{Outcome: ClaimFinished, Run: r.wire()}, nil
	case r.Status == RunRunning && r.LeaseLive:
		return Claim{Outcome: ClaimBusy, Run: r.wire()}, nil
	}
	blocked, err := s.blockers(userID, r.ConversationID, r.ID, r.Seq).Exists(ctx)
	if err != nil {
		return Claim{}, translate(op, err)
	}
	if blocked {
		return Claim{Outcome: ClaimBusy, Run: r.wire()}, nil
	}
	resumed := r.Status == RunRunning
	err = start(s.update(userID, &r), owner, lease).
		Where("r.id = ?", r.ID).
		Returning("*").
		Scan(ctx)
	if err != nil {
		return Claim{}, translate(op, err)
	}
	return Claim{Outcome: ClaimOK, Run: r.wire(), Resumed: resumed, CancelRequested: r.CancelRequested}, nil
}

// start sets what claiming a run changes: running under owner's lease
// until now+lease, one more attempt, started_at on the first.
func start(q *bun.UpdateQuery, owner string, lease time.Duration) *bun.UpdateQuery {
	return q.
		Set("status = ?", RunRunning).
		Set("attempts = attempts + 1").
		// clock_timestamp, not now(): now() is when this transaction began,
		// possibly before the conversation's previous run finished (its
		// finish held the lock this claim waited for), and started_at would
		// then precede that run's finished_at, as if the two had overlapped.
		Set("started_at = coalesce(started_at, clock_timestamp())").
		Set("lease_owner = ?", owner).
		Set("lease_expires_at = now() + ?::interval", interval(lease)).
		Set("updated_at = now()")
}

// blockers selects the runs of userID's conversation convID that keep its
// run (id, seq) from starting: an older unfinished one, or another running
// under a live lease. id and seq are values, or the columns of the run
// being claimed (bun.Safe) in a statement that changes it.
func (s *Store) blockers(userID, convID string, id, seq any) *bun.SelectQuery {
	return s.db.NewSelect().
		TableExpr("runs AS b").
		ColumnExpr("1").
		Where("b.user_id = ?", userID). // the scope, by hand: the alias is not the model's
		Where("b.conversation_id = ?", convID).
		Where("b.status IN (?)", unfinished).
		Where("b.id <> ?", id).
		WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("b.seq < ?", seq).
				WhereOr("b.status = ? AND b.lease_expires_at > now()", RunRunning)
		})
}

// lockRun locks userID's run id for the rest of the transaction, after
// locking its conversation, and reads it with LeaseLive set. Every
// transaction that changes a run and its conversation takes the two locks
// in this order, so they queue instead of deadlocking. ErrNotFound when
// the run or its conversation is gone.
func (s *Store) lockRun(ctx context.Context, userID, id, op string) (runRow, error) {
	if _, err := s.lockConversationOf(ctx, userID, id, op); err != nil {
		return runRow{}, err
	}
	return s.lockRunRow(ctx, userID, id, op)
}

// lockConversationOf locks the conversation of userID's run id for the rest
// of the transaction (lockRun's first lock) and returns its id.
// ErrNotFound when the run or its conversation is gone.
func (s *Store) lockConversationOf(ctx context.Context, userID, id, op string) (string, error) {
	convOfRun := s.selectFrom(userID, (*runRow)(nil)).Column("conversation_id").Where("r.id = ?", id)
	var convID string
	// NO KEY UPDATE: it does not hold off CreateTurn's foreign key checks,
	// only other claims and finishes (and deletes) of the conversation.
	err := s.selectFrom(userID, (*conversationRow)(nil)).
		Column("id").
		Where("c.id = (?)", convOfRun).
		For("NO KEY UPDATE").
		Scan(ctx, &convID)
	if err != nil {
		return "", translate(op, err)
	}
	return convID, nil
}

// lockRunRow locks userID's run id (lockRun's second lock: the caller
// holds its conversation's) and reads it with LeaseLive set.
func (s *Store) lockRunRow(ctx context.Context, userID, id, op string) (runRow, error) {
	var r runRow
	err := s.selectFrom(userID, &r).
		ColumnExpr("r.*").
		ColumnExpr("coalesce(r.lease_expires_at > now(), false) AS lease_live").
		Where("r.id = ?", id).
		For("UPDATE OF r").
		Scan(ctx)
	if err != nil {
		return runRow{}, translate(op, err)
	}
	return r, nil
}

// RenewLease extends owner's lease on userID's running run runID to
// now+lease (database clock) and reports whether the user asked to cancel
// it. It returns ErrLeaseLost when the run is no longer running under
// owner's lease (it finished, was handed back, or another worker took it
// over), and ErrNotFound when the run is gone. An expired lease that
// nobody took over is renewed.
func (s *Store) RenewLease(ctx context.Context, userID, runID, owner string, lease time.Duration) (cancelRequested bool, err error) {
	const op = "renew lease"
	if lease <= 0 {
		return false, fmt.Errorf("%s: lease %v is not positive", op, lease)
	}
	id, ok := parseID(runID)
	if !ok {
		return false, ErrNotFound
	}
	err = s.update(userID, (*runRow)(nil)).
		Where("r.id = ?", id).
		Where("r.status = ?", RunRunning).
		Where("r.lease_owner = ?", owner).
		Set("lease_expires_at = now() + ?::interval", interval(lease)).
		Returning("r.cancel_requested").
		Scan(ctx, &cancelRequested)
	if errors.Is(err, sql.ErrNoRows) {
		return false, s.leaseLost(ctx, userID, id, op)
	}
	return cancelRequested, translate(op, err)
}

// HoldLease checks, inside the caller's transaction, that owner still
// holds a live lease on userID's run runID, and keeps the run row locked
// (FOR SHARE) until that transaction ends, so no other worker can claim or
// finish the run meanwhile. The worker calls it before applying a tool's
// effect: a worker that lost its lease (paused, partitioned) must not
// change the user's tasks. ErrLeaseLost when the lease is not owner's or
// has expired; ErrNotFound when the run is gone.
func (s *Store) HoldLease(ctx context.Context, userID, runID, owner string) error {
	const op = "hold lease"
	id, ok := parseID(runID)
	if !ok {
		return ErrNotFound
	}
	var held string
	err := s.selectFrom(userID, (*runRow)(nil)).
		Column("r.id").
		Where("r.id = ?", id).
		Where("r.status = ?", RunRunning).
		Where("r.lease_owner = ?", owner).
		Where("r.lease_expires_at > clock_timestamp()").
		For("SHARE").
		Scan(ctx, &held)
	if errors.Is(err, sql.ErrNoRows) {
		return s.leaseLost(ctx, userID, id, op)
	}
	return translate(op, err)
}

// leaseLost explains why a statement conditioned on owner's lease of run
// id matched no row: ErrNotFound when the run is gone, else ErrLeaseLost.
func (s *Store) leaseLost(ctx context.Context, userID, id, op string) error {
	if _, err := s.getRun(ctx, userID, id, op); err != nil {
		return err
	}
	return ErrLeaseLost
}

// ReleaseRun hands userID's run runID back: when owner holds it, it becomes
// queued again with no lease (a worker shutting down calls it so that
// another takes the run at once, from its ledger). Its attempts stay
// counted. ErrLeaseLost when owner does not hold it; ErrNotFound when it
// is gone.
func (s *Store) ReleaseRun(ctx context.Context, userID, runID, owner string) error {
	const op = "release run"
	id, ok := parseID(runID)
	if !ok {
		return ErrNotFound
	}
	res, err := s.update(userID, (*runRow)(nil)).
		Where("r.id = ?", id).
		Where("r.status = ?", RunRunning).
		Where("r.lease_owner = ?", owner).
		Set("status = ?", RunQueued).
		Set("lease_owner = NULL").
		Set("lease_expires_at = NULL").
		Set("updated_at = now()").
		Exec(ctx)
	if err != nil {
		return translate(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return translate(op, err)
	}
	if n == 0 {
		return s.leaseLost(ctx, userID, id, op)
	}
	return nil
}

// History returns the conversation the model sees for userID's run runID:
// the last limit messages of the runs of its conversation accepted up to
// and including this one, oldest first, a user message before its run's
// answer. A run never sees the messages of later runs, even when they were
// written before it started, and it sees the answers of the runs before it
// even when they were written after its own message. ErrNotFound for an
// unknown run; limit must be positive (a *validate.Error on "limit").
func (s *Store) History(ctx context.Context, userID, runID string, limit int) ([]Message, error) {
	history, _, err := s.history(ctx, userID, runID, limit, false)
	return history, err
}

// RunInput returns what the model gets for userID's run runID: its History
// (limit messages) and its Ledger. It reads both in one statement when the
// ledger is empty (a run's first attempt, the usual case) and the ledger in
// a second one when it is not. Both are read after the claim committed, so
// they see every tool round an earlier holder of the run recorded. Errors
// as History's.
func (s *Store) RunInput(ctx context.Context, userID, runID string, limit int) ([]Message, []LedgerEntry, error) {
	history, hasLedger, err := s.history(ctx, userID, runID, limit, true)
	if err != nil {
		return nil, nil, err
	}
	if !hasLedger {
		return history, []LedgerEntry{}, nil
	}
	ledger, err := s.Ledger(ctx, userID, runID)
	if err != nil {
		return nil, nil, err
	}
	return history, ledger, nil
}

// history is History in one statement: the run's conversation and seq
// come from subqueries, so a missing run shows as no rows (then told apart
// from an empty history with a second query). With withLedger it also
// reports whether the run has tool rounds (true when it cannot tell from
// the rows: the caller then reads the ledger).
func (s *Store) history(ctx context.Context, userID, runID string, limit int, withLedger bool) ([]Message, bool, error) {
	const op = "load history"
	if limit < 1 {
		return nil, false, validate.Field("limit", "must be positive")
	}
	id, ok := parseID(runID)
	if !ok {
		return nil, false, ErrNotFound
	}
	// The run's own row, scoped to the user: no rows for another's run.
	runCol := func(col string) *bun.SelectQuery {
		return s.selectFrom(userID, (*runRow)(nil)).Column(col).Where("r.id = ?", id)
	}
	// A run has one user message and at most one answer, so the last limit
	// messages lie within the last limit runs.
	recent := s.selectFrom(userID, (*runRow)(nil)).
		Column("id", "seq").
		Where("r.conversation_id = (?)", runCol("conversation_id")).
		Where("r.seq <= (?)", runCol("seq")).
		OrderExpr("r.seq DESC").
		Limit(int64(limit))
	var rows []messageRow
	q := s.selectFrom(userID, &rows).
		ColumnExpr("m.*").
		Join("JOIN (?) AS rr ON rr.id = m.run_id", recent).
		Where("m.conversation_id = (?)", runCol("conversation_id")).
		Where("NOT (m.run_id = ? AND m.role = ?)", id, RoleAssistant).
		OrderExpr("rr.seq DESC, m.seq DESC").
		Limit(int64(limit))
	if withLedger {
		rounds := s.db.NewSelect().Model((*toolRoundRow)(nil)).ApplyQueryBuilder(scope(userID)).
			ColumnExpr("1").
			Where("tr.run_id = ?", id)
		q = q.ColumnExpr("EXISTS (?) AS run_has_ledger", rounds)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, false, translate(op, err)
	}
	if len(rows) == 0 {
		// No such run, or (its message gone) nothing to show.
		if _, err := s.getRun(ctx, userID, id, op); err != nil {
			return nil, false, err
		}
		return []Message{}, withLedger, nil
	}
	out := make([]Message, len(rows))
	for i, m := range rows {
		out[len(rows)-1-i] = m.wire()
	}
	return out, rows[0].RunHasLedger, nil
}

// RunAnswer returns the assistant message userID's run runID wrote, if it
// wrote one (an idempotent replay answers with it).
func (s *Store) RunAnswer(ctx context.Context, userID, runID string) (Message, bool, error) {
	const op = "run answer"
	id, ok := parseID(runID)
	if !ok {
		return Message{}, false, nil
	}
	var m messageRow
	err := s.selectFrom(userID, &m).
		Where("m.run_id = ?", id).
		Where("m.role = ?", RoleAssistant).
		Limit(1).
		Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return Message{}, false, nil
	}
	if err != nil {
		return Message{}, false, translate(op, err)
	}
	return m.wire(), true, nil
}

// NextQueuedRun returns the oldest queued run of userID's conversation
// conversationID, if any: the worker that finishes a run claims it next.
func (s *Store) NextQueuedRun(ctx context.Context, userID, conversationID string) (Run, bool, error) {
	const op = "next queued run"
	id, ok := parseID(conversationID)
	if !ok {
		return Run{}, false, nil
	}
	var r runRow
	err := s.selectFrom(userID, &r).
		Where("r.conversation_id = ?", id).
		Where("r.status IN (?)", unfinished). // the partial index's predicate
		Where("r.status = ?", RunQueued).
		OrderExpr("r.seq").
		Limit(1).
		Scan(ctx)
	if err != nil {
		if err = translate(op, err); errors.Is(err, ErrNotFound) {
			return Run{}, false, nil
		}
		return Run{}, false, err
	}
	return r.wire(), true, nil
}
