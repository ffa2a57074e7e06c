package chatworker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/todo"
)

// toolRunner runs the agent's tool calls for one run: each call's effect
// and its ledger entry commit in one transaction, so a retried run finds
// the call recorded and never applies it twice.
type toolRunner struct {
	w   *Worker
	run chat.Run
}

// errAlreadyRecorded rolls back a transaction whose call another attempt
// recorded first.
var errAlreadyRecorded = errors.New("tool call already recorded")

// RunTool implements agent.ToolRunner.
func (t *toolRunner) RunTool(ctx context.Context, round, index int, text string, call agent.Call) (json.RawMessage, error) {
	userID, runID := t.run.UserID, t.run.ID
	if e, ok, err := chat.NewStore(t.w.db).LookupToolCall(ctx, userID, runID, round, index); err != nil {
		return nil, fmt.Errorf("look up tool call: %w", err)
	} else if ok {
		return e.Result, nil
	}
	var result json.RawMessage
	err := t.w.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// The effect commits only while this worker holds the run: a
		// worker that lost its lease (paused past it) must not change the
		// user's tasks behind the new holder's back.
		if err := chat.NewStore(tx).HoldLease(ctx, userID, runID, t.w.cfg.Owner); err != nil {
			return err
		}
		res, err := agent.Exec(ctx, todo.NewStore(tx), userID, call)
		if err != nil {
			return err
		}
		stored, inserted, err := chat.NewStore(tx).RecordToolCall(ctx, userID, runID, chat.LedgerEntry{
			Round: round, Index: index, Text: text,
			CallID: call.ID, Name: call.Name, Arguments: jsonObject(call.Arguments), Result: res,
		})
		if err != nil {
			return err
		}
		if !inserted {
			result = stored.Result
			return errAlreadyRecorded
		}
		result = stored.Result
		return nil
	})
	if err != nil && !errors.Is(err, errAlreadyRecorded) {
		return nil, fmt.Errorf("run tool %s: %w", call.Name, err)
	}
	return result, nil
}

// jsonObject returns arguments when they are a JSON object, else the text
// wrapped as {"raw": "…"}: a model may send invalid JSON, but events and
// the ledger hold objects.
func jsonObject(arguments json.RawMessage) json.RawMessage {
	if b := bytes.TrimSpace(arguments); json.Valid(b) && len(b) > 0 && b[0] == '{' {
		return b
	}
	raw, _ := json.Marshal(map[string]string{"raw": string(arguments)})
	return raw
}
