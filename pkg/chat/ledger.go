package chat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/taskchat/taskchat/pkg/validate"
)

// LedgerEntry is one tool call of one round of a run, with its result.
// Round and Index are the call's position (rounds from 0, calls within a
// round from 0): a retried run's model calls get new ids, so positions,
// not CallIDs, identify what was already done. Text is the model's text of
// that round (the same on each call of the round). Arguments and Result
// are JSON; Postgres stores them as jsonb, so what comes back may differ in
// spacing and key order.
type LedgerEntry struct {
	Round, Index int
	Text         string
	CallID, Name string
	Arguments    json.RawMessage
	Result       json.RawMessage
}

// Ledger returns the ledger of userID's run runID, by round and index, or
// ErrNotFound for an unknown run.
func (s *Store) Ledger(ctx context.Context, userID, runID string) ([]LedgerEntry, error) {
	const op = "read ledger"
	id, ok := parseID(runID)
	if !ok {
		return nil, ErrNotFound
	}
	var rows []toolRoundRow
	err := s.selectFrom(userID, &rows).Where("tr.run_id = ?", id).OrderExpr("tr.round, tr.idx").Scan(ctx)
	if err != nil {
		return nil, translate(op, err)
	}
	if len(rows) == 0 {
		// Empty, or no such run?
		if _, err := s.getRun(ctx, userID, id, op); err != nil {
			return nil, err
		}
	}
	out := make([]LedgerEntry, len(rows))
	for i, r := range rows {
		out[i] = r.wire()
	}
	return out, nil
}

// RecordToolCall writes e into the ledger of userID's run runID unless an
// entry exists at its position, and returns the stored entry and whether
// this call wrote it; when it did not, the caller must use the stored
// result instead of its own (and undo its effect, which the shared
// transaction does when the caller rolls back). Call it on a Store over
// the transaction that applies the tool's effect, so both commit or
// neither does. Empty Arguments stand for {} and empty Result for null;
// other invalid JSON, negative positions and an empty Name are a
// *validate.Error. ErrNotFound for an unknown run.
func (s *Store) RecordToolCall(ctx context.Context, userID, runID string, e LedgerEntry) (LedgerEntry, bool, error) {
	const op = "record tool call"
	id, ok := parseID(runID)
	if !ok {
		return LedgerEntry{}, false, ErrNotFound
	}
	e, err := e.normalize()
	if err != nil {
		return LedgerEntry{}, false, err
	}
	// The run must be the user's: the foreign key alone would accept
	// another user's run id.
	if _, err := s.getRun(ctx, userID, id, op); err != nil {
		return LedgerEntry{}, false, err
	}
	row := toolRoundRow{
		RunID:     id,
		Round:     e.Round,
		Idx:       e.Index,
		UserID:    userID,
		Text:      e.Text,
		CallID:    e.CallID,
		Name:      e.Name,
		Arguments: e.Arguments,
		Result:    e.Result,
	}
	err = s.insert(&row).
		On("CONFLICT (run_id, round, idx) DO NOTHING").
		ExcludeColumn("created_at").
		Returning("*").
		Scan(ctx)
	switch {
	case err == nil:
		return row.wire(), true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return LedgerEntry{}, false, translate(op, err)
	}
	// The position was taken: return what is there.
	stored, found, err := s.LookupToolCall(ctx, userID, id, e.Round, e.Index)
	if err == nil && !found {
		err = fmt.Errorf("%s: entry (%d, %d) conflicted but cannot be read", op, e.Round, e.Index)
	}
	return stored, false, err
}

// normalize checks e and fills in the defaults of RecordToolCall.
func (e LedgerEntry) normalize() (LedgerEntry, error) {
	var v validate.Errors
	if e.Round < 0 {
		v.Add("round", "must not be negative")
	}
	if e.Index < 0 {
		v.Add("index", "must not be negative")
	}
	if e.Name == "" {
		v.Add("name", "is required")
	}
	e.Text, e.CallID, e.Name = modelText(e.Text), modelText(e.CallID), modelText(e.Name)
	if len(e.Arguments) == 0 {
		e.Arguments = json.RawMessage(`{}`)
	} else if !json.Valid(e.Arguments) {
		v.Add("arguments", "must be JSON")
	}
	if len(e.Result) == 0 {
		e.Result = json.RawMessage(`null`)
	} else if !json.Valid(e.Result) {
		v.Add("result", "must be JSON")
	}
	return e, v.Err()
}

// modelText makes text that came from a model storable: Postgres text
// holds neither NUL nor invalid UTF-8, and refusing a model's answer for
// them would fail the run for nothing the user did.
func modelText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// LookupToolCall returns the ledger entry of userID's run runID at (round,
// idx) and true, or false when there is none (or no such run).
func (s *Store) LookupToolCall(ctx context.Context, userID, runID string, round, idx int) (LedgerEntry, bool, error) {
	id, ok := parseID(runID)
	if !ok {
		return LedgerEntry{}, false, nil
	}
	var row toolRoundRow
	err := s.selectFrom(userID, &row).
		Where("tr.run_id = ?", id).
		Where("tr.round = ?", round).
		Where("tr.idx = ?", idx).
		Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return LedgerEntry{}, false, nil
	}
	if err != nil {
		return LedgerEntry{}, false, translate("look up tool call", err)
	}
	return row.wire(), true, nil
}

// Finish is how a run ends (FinishRun).
type Finish struct {
	// Status is RunCompleted, RunFailed or RunCancelled.
	Status RunStatus
	// Error is why a failed or cancelled run ended; nil takes
	// {AGENT_ERROR} for failed and {CANCELLED, "cancelled by the user"}
	// for cancelled runs. It is ignored for completed runs.
	Error *RunError
	// Answer, when not nil, becomes the run's assistant message (a
	// cancelled run keeps what was produced).
	Answer *Answer
	// Usage, when not nil, is stored as the run's token counts.
	Usage *Usage
}

// Answer is the assistant message a run writes.
type Answer struct {
	Content string
	// ToolCalls are the calls of all the run's rounds, in order.
	ToolCalls []ToolCall
	// Model names the model that answered ("" for none).
	Model string
}

// FinishRun ends userID's run runID as f says, in one transaction: the
// assistant message (id AssistantMessageID) when f.Answer is set, the
// final status, error, finished_at, no lease, and the conversation's
// updated_at. It returns the run and the message written (nil without an
// Answer).
//
// With owner set, the run must be running under owner's lease (expired or
// not, as long as nobody took it over), else ErrLeaseLost; with owner ""
// a queued or running run is finished whoever holds it (ending a poison
// message or a cancelled queued run). ErrRunFinished when the run already
// ended, so a run never gets two answers; ErrNotFound when it is gone.
func (s *Store) FinishRun(ctx context.Context, userID, runID, owner string, f Finish) (Run, *Message, error) {
	const op = "finish run"
	f, err := f.normalize()
	if err != nil {
		return Run{}, nil, err
	}
	id, ok := parseID(runID)
	if !ok {
		return Run{}, nil, ErrNotFound
	}
	var (
		run Run
		msg *Message
	)
	err = s.inTx(ctx, op, func(ctx context.Context, tx *Store) error {
		var err error
		run, msg, err = tx.finish(ctx, userID, id, owner, f)
		return err
	})
	if err != nil {
		return Run{}, nil, err
	}
	return run, msg, nil
}

// finish is FinishRun's transaction.
func (s *Store) finish(ctx context.Context, userID, id, owner string, f Finish) (Run, *Message, error) {
	const op = "finish run"
	r, err := s.lockRun(ctx, userID, id, op)
	if err != nil {
		return Run{}, nil, err
	}
	if r.Status.Final() {
		return Run{}, nil, ErrRunFinished
	}
	if owner != "" && !r.leaseHeldBy(owner) {
		return Run{}, nil, ErrLeaseLost
	}
	var msg *Message
	if a := f.Answer; a != nil {
		row := messageRow{
			ID:             r.AssistantMessageID,
			ConversationID: r.ConversationID,
			UserID:         userID,
			RunID:          r.ID,
			Role:           RoleAssistant,
			Content:        a.Content,
			ToolCalls:      a.ToolCalls,
		}
		if a.Model != "" {
			row.Model = &a.Model
		}
		if err := s.insert(&row).ExcludeColumn("seq", "created_at").Returning("*").Scan(ctx); err != nil {
			return Run{}, nil, translate(op, err)
		}
		m := row.wire()
		msg = &m
	}
	q := s.update(userID, &r).
		Where("r.id = ?", r.ID).
		Set("status = ?", f.Status).
		Set("finished_at = now()").
		Set("lease_owner = NULL").
		Set("lease_expires_at = NULL").
		Set("updated_at = now()")
	if f.Error != nil {
		q = q.Set("error_code = ?", f.Error.Code).Set("error_message = ?", f.Error.Message)
	} else {
		q = q.Set("error_code = NULL").Set("error_message = NULL")
	}
	if u := f.Usage; u != nil {
		q = q.Set("prompt_tokens = ?", u.PromptTokens).Set("completion_tokens = ?", u.CompletionTokens)
	}
	if err := q.Returning("*").Scan(ctx); err != nil {
		return Run{}, nil, translate(op, err)
	}
	_, err = s.update(userID, (*conversationRow)(nil)).
		Where("c.id = ?", r.ConversationID).
		Set("updated_at = now()").
		Exec(ctx)
	if err != nil {
		return Run{}, nil, translate(op, err)
	}
	return r.wire(), msg, nil
}

// normalize checks f and fills in FinishRun's defaults.
func (f Finish) normalize() (Finish, error) {
	var v validate.Errors
	switch f.Status {
	case RunCompleted:
		f.Error = nil
	case RunFailed:
		if f.Error == nil {
			f.Error = &RunError{Code: CodeAgentError, Message: "the assistant could not answer"}
		}
	case RunCancelled:
		if f.Error == nil {
			e := cancelledByUser
			f.Error = &e
		}
	default:
		v.Add("status", "must be completed, failed or cancelled")
	}
	if f.Error != nil {
		e := RunError{Code: modelText(f.Error.Code), Message: modelText(f.Error.Message)}
		f.Error = &e
	}
	if u := f.Usage; u != nil && (u.PromptTokens < 0 || u.CompletionTokens < 0 ||
		u.PromptTokens > math.MaxInt32 || u.CompletionTokens > math.MaxInt32) {
		v.Add("usage", "token counts must be from 0 to 2147483647")
	}
	if a := f.Answer; a != nil {
		c := *a
		c.Content, c.Model = modelText(c.Content), modelText(c.Model)
		calls := make([]ToolCall, len(c.ToolCalls))
		for i, tc := range c.ToolCalls {
			tc.ID, tc.Name = modelText(tc.ID), modelText(tc.Name)
			if len(tc.Arguments) == 0 {
				tc.Arguments = json.RawMessage(`{}`)
			} else if !json.Valid(tc.Arguments) {
				v.Addf("tool_calls", "call %d: arguments must be JSON", i)
			}
			if len(tc.Result) == 0 {
				tc.Result = json.RawMessage(`null`)
			} else if !json.Valid(tc.Result) {
				v.Addf("tool_calls", "call %d: result must be JSON", i)
			}
			calls[i] = tc
		}
		c.ToolCalls = calls
		f.Answer = &c
	}
	return f, v.Err()
}
