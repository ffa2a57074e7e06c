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

// Maintenance is the one path over every user's runs, for the relay that
// republishes stuck runs and for chatctl. It is a type of its own, apart
// from Store, so that code handling a user's request or run cannot reach it
// by accident: only cmd wires it, into the relay and chatctl.
type Maintenance struct {
	db bun.IDB
}

// NewMaintenance returns a Maintenance over db.
func NewMaintenance(db bun.IDB) *Maintenance {
	return &Maintenance{db: db}
}

// RunRef names a run and whom it belongs to: what a run request carries.
type RunRef struct {
	UserID, ConversationID, RunID string
	Status                        RunStatus
}

// Bounds of maintenance listings.
const (
	DefaultRunListLimit = 100
	MaxRunListLimit     = 1000
)

// StaleRuns returns at most limit runs (0 means DefaultRunListLimit) that
// nobody is working on although they should be: first running runs whose
// lease expired before now (their worker died; a zero now means the
// database's clock), oldest expiry first; then queued runs that have been
// queued since before queuedBefore (by updated_at: a run handed back just
// now waits its turn like a new one, so the relay does not override the
// worker's retry delay) and are next in their conversation (no older run of it is
// unfinished: a queued run behind another waits for it, and the worker
// that finishes that one takes it), oldest first. The relay publishes them
// again; duplicates are harmless, since claims decide.
func (m *Maintenance) StaleRuns(ctx context.Context, queuedBefore, now time.Time, limit int) ([]RunRef, error) {
	limit, ok := runListLimit(limit)
	if !ok {
		return nil, validate.Field("limit", runLimitMessage)
	}
	var nowArg any // NULL: the database's now()
	if !now.IsZero() {
		nowArg = now.UTC()
	}
	expired := m.db.NewSelect().Model((*runRow)(nil)).
		Column("user_id", "conversation_id", "id", "status").
		Where("r.status = ?", RunRunning).
		Where("r.lease_expires_at < coalesce(?::timestamptz, now())", nowArg).
		OrderExpr("r.lease_expires_at").
		Limit(int64(limit))
	older := m.db.NewSelect().TableExpr("runs AS o").
		ColumnExpr("1").
		Where("o.conversation_id = r.conversation_id").
		Where("o.status IN (?)", unfinished).
		Where("o.seq < r.seq")
	queued := m.db.NewSelect().Model((*runRow)(nil)).
		Column("user_id", "conversation_id", "id", "status").
		Where("r.status = ?", RunQueued).
		Where("r.updated_at < ?", queuedBefore.UTC()).
		Where("NOT EXISTS (?)", older).
		OrderExpr("r.updated_at").
		Limit(int64(limit))
	var rows []runRow
	if err := expired.Scan(ctx, &rows); err != nil {
		return nil, translate("stale runs", err)
	}
	if len(rows) < limit {
		var more []runRow
		if err := queued.Limit(int64(limit-len(rows))).Scan(ctx, &more); err != nil {
			return nil, translate("stale runs", err)
		}
		rows = append(rows, more...)
	}
	refs := make([]RunRef, len(rows))
	for i, r := range rows {
		refs[i] = r.ref()
	}
	return refs, nil
}

func (r runRow) ref() RunRef {
	return RunRef{UserID: r.UserID, ConversationID: r.ConversationID, RunID: r.ID, Status: r.Status}
}

// RunFilter selects runs for ListRuns. Its conditions all apply.
type RunFilter struct {
	// Statuses keeps runs in one of these statuses; empty keeps all.
	Statuses []RunStatus
	// CreatedBefore keeps runs created before it; zero keeps all. With
	// Stuck it applies to the queued runs only.
	CreatedBefore time.Time
	// UserID keeps one user's runs; empty keeps every user's.
	UserID string
	// Stuck keeps the runs nobody is working on: queued runs (created
	// before CreatedBefore, when set) and running runs whose lease expired
	// by the database's clock. Unlike StaleRuns it keeps a queued run that
	// waits behind an older unfinished run of its conversation too: an
	// operator looks for every run that has waited too long, and the one
	// it waits for is in the list when that one is stuck.
	Stuck bool
	// NewestFirst orders the list newest first; by default it is oldest
	// first.
	NewestFirst bool
	// Limit bounds the list: 1–1000, 0 means DefaultRunListLimit.
	Limit int
}

// RunInfo is a run as an operator sees it: the run and who holds it.
type RunInfo struct {
	Run
	// LeaseOwner is the worker holding (or last holding) a running run,
	// "" when none; LeaseExpiresAt is when its lease ends (expired or not).
	LeaseOwner     string
	LeaseExpiresAt *time.Time
	// LeaseExpired: the run is running and its lease ended before now by
	// the database's clock: its worker died or stalled, and the relay
	// hands it to another.
	LeaseExpired bool
	// CancelRequested: the user asked to cancel the run while it ran.
	CancelRequested bool
}

func (r runRow) info() RunInfo {
	ri := RunInfo{Run: r.wire(), LeaseExpiresAt: utcPtr(r.LeaseExpiresAt), CancelRequested: r.CancelRequested}
	if r.LeaseOwner != nil {
		ri.LeaseOwner = *r.LeaseOwner
	}
	// lease_live is scanned only where a query asks for it (ListRuns and
	// GetRun do).
	ri.LeaseExpired = r.Status == RunRunning && r.LeaseExpiresAt != nil && !r.LeaseLive
	return ri
}

// ListRuns returns the runs of every user that f selects, oldest first
// unless f.NewestFirst (RunInfo.UserID says whose). It is the one listing
// over every user's runs. Unknown statuses and a bad limit are a
// *validate.Error on "status" and "limit". Queued, running and failed
// runs are listed through their indexes; other lists scan the table.
func (m *Maintenance) ListRuns(ctx context.Context, f RunFilter) ([]RunInfo, error) {
	var v validate.Errors
	for _, s := range f.Statuses {
		switch s {
		case RunQueued, RunRunning, RunCompleted, RunFailed, RunCancelled:
		default:
			v.Addf("status", "%q is not one of queued, running, completed, failed, cancelled", s)
		}
	}
	limit, ok := runListLimit(f.Limit)
	if !ok {
		v.Add("limit", runLimitMessage)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	var rows []runRow
	q := m.db.NewSelect().Model(&rows).
		ColumnExpr("r.*").
		ColumnExpr("coalesce(r.lease_expires_at > now(), false) AS lease_live")
	if len(f.Statuses) > 0 {
		q = q.Where("r.status IN (?)", bun.List(f.Statuses))
	}
	if f.UserID != "" {
		q = q.Where("r.user_id = ?", f.UserID)
	}
	var before any // NULL: no bound
	if !f.CreatedBefore.IsZero() {
		before = f.CreatedBefore.UTC()
	}
	if f.Stuck {
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.
				WhereGroup(" OR ", func(q *bun.SelectQuery) *bun.SelectQuery {
					q = q.Where("r.status = ?", RunQueued)
					if before != nil {
						q = q.Where("r.created_at < ?", before)
					}
					return q
				}).
				WhereGroup(" OR ", func(q *bun.SelectQuery) *bun.SelectQuery {
					return q.Where("r.status = ?", RunRunning).
						Where("r.lease_expires_at < now()")
				})
		})
	} else if before != nil {
		q = q.Where("r.created_at < ?", before)
	}
	if f.NewestFirst {
		q = q.OrderExpr("r.created_at DESC, r.seq DESC")
	} else {
		q = q.OrderExpr("r.created_at, r.seq")
	}
	if err := q.Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, translate("list runs", err)
	}
	out := make([]RunInfo, len(rows))
	for i, r := range rows {
		out[i] = r.info()
	}
	return out, nil
}

// GetRun returns run runID of whichever user, or ErrNotFound.
func (m *Maintenance) GetRun(ctx context.Context, runID string) (RunInfo, error) {
	id, ok := parseID(runID)
	if !ok {
		return RunInfo{}, ErrNotFound
	}
	var r runRow
	err := m.db.NewSelect().Model(&r).
		ColumnExpr("r.*").
		ColumnExpr("coalesce(r.lease_expires_at > now(), false) AS lease_live").
		Where("r.id = ?", id).
		Scan(ctx)
	if err != nil {
		return RunInfo{}, translate("get run", err)
	}
	return r.info(), nil
}

// RequeueRun puts run runID back in the queue for an operator: a running
// (stuck) or failed run becomes queued with no lease, no error and no
// finished_at; a failed run also starts its attempts over, so that
// RUN_MAX_ATTEMPTS does not end it again at once. Its ledger stays, so no
// tool is applied twice. The caller publishes the returned run. A queued
// run is returned as it is. ErrRunFinished for a completed or cancelled
// run, or a failed one that already wrote an answer; ErrNotFound for an
// unknown run.
func (m *Maintenance) RequeueRun(ctx context.Context, runID string) (RunRef, error) {
	const op = "requeue run"
	id, ok := parseID(runID)
	if !ok {
		return RunRef{}, ErrNotFound
	}
	answered := m.db.NewSelect().Model((*messageRow)(nil)).
		ColumnExpr("1").
		Where("m.run_id = r.id").
		Where("m.role = ?", RoleAssistant)
	var r runRow
	err := m.db.NewUpdate().Model(&r).
		Where("r.id = ?", id).
		Where("r.status IN (?)", bun.List([]RunStatus{RunRunning, RunFailed})).
		Where("NOT EXISTS (?)", answered).
		Set("attempts = CASE WHEN status = ? THEN 0 ELSE attempts END", RunFailed).
		Set("status = ?", RunQueued).
		Set("lease_owner = NULL").
		Set("lease_expires_at = NULL").
		Set("error_code = NULL").
		Set("error_message = NULL").
		Set("finished_at = NULL").
		Set("updated_at = now()").
		Returning("*").
		Scan(ctx)
	if err == nil {
		return r.ref(), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return RunRef{}, translate(op, err)
	}
	err = m.db.NewSelect().Model(&r).Where("r.id = ?", id).Scan(ctx)
	if err != nil {
		return RunRef{}, translate(op, err)
	}
	if r.Status == RunQueued {
		return r.ref(), nil
	}
	return RunRef{}, ErrRunFinished
}

var runLimitMessage = fmt.Sprintf("must be an integer from 1 to %d", MaxRunListLimit)

// runListLimit applies the default and bounds of a maintenance limit.
func runListLimit(n int) (int, bool) {
	switch {
	case n == 0:
		return DefaultRunListLimit, true
	case n < 1 || n > MaxRunListLimit:
		return 0, false
	}
	return n, true
}
