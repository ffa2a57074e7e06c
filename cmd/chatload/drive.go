package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/todo"
)

// client is one simulated person: a user of their own (so that the
// per-user lock and cap of CreateTurn never make clients wait for each
// other) chatting in one conversation at a time.
type client struct {
	user, token string
	// conv is the current conversation ("" starts a new one); turns counts
	// the turns sent in it.
	conv  string
	turns int
}

// next is called after each answered turn: a conversation ends after
// perConv turns.
func (c *client) next(conv string, perConv int) {
	c.conv, c.turns = conv, c.turns+1
	if c.turns >= perConv {
		c.conv, c.turns = "", 0
	}
}

// newClients creates n users the way chatctl does (authstore) and mints
// each a token as the todo app's front end does (HS256 with the shared
// secret).
func newClients(ctx context.Context, db bun.IDB, secret string, n int) ([]*client, error) {
	store := authstore.NewStore(db)
	out := make([]*client, n)
	for i := range out {
		u := authstore.User{ID: authstore.NewID(), Name: "Load User"}
		u.Email = u.ID + "@chatload.invalid"
		if err := store.CreateUser(ctx, &u); err != nil {
			return nil, fmt.Errorf("create load user: %w", err)
		}
		tok, err := auth.SignHS256(secret, auth.TokenClaims{UserID: u.ID, Email: u.Email, Name: u.Name, TTL: time.Hour})
		if err != nil {
			return nil, err
		}
		out[i] = &client{user: u.ID, token: tok}
	}
	return out, nil
}

// deleteClients deletes the clients' users and, through the foreign keys,
// everything they own.
func deleteClients(ctx context.Context, db bun.IDB, clients []*client) error {
	store := authstore.NewStore(db)
	var errs []error
	for _, c := range clients {
		if err := store.DeleteUser(ctx, c.user); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// driver performs turns. turn returns once c's message is answered for
// good; it is called from many goroutines, but never for one client twice
// at once.
type driver interface {
	turn(ctx context.Context, c *client) error
}

// pipeline drives the real pipeline over HTTP: POST /api/{user}/chat.
type pipeline struct {
	base    string // the API's base URL
	http    *http.Client
	message string
	perConv int
	// finals is set in the async mode: the POST asks for 202 and the turn
	// ends when the run's final event arrives.
	finals *finals
}

// chatAnswer is the part of POST /chat's answers (200 and 202) a turn reads.
type chatAnswer struct {
	ConversationID string `json:"conversation_id"`
	RunID          string `json:"run_id"`
	Status         string `json:"status"`
}

func (p *pipeline) turn(ctx context.Context, c *client) error {
	body, err := json.Marshal(map[string]string{"message": p.message, "conversation_id": c.conv})
	if err != nil {
		return err
	}
	if c.conv == "" {
		body, _ = json.Marshal(map[string]string{"message": p.message})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/api/"+url.PathEscape(c.user)+"/chat", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	want := http.StatusOK
	if p.finals != nil {
		req.Header.Set("Prefer", "respond-async")
		want = http.StatusAccepted
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("post chat: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("post chat: read answer: %w", err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("post chat: %d %s", resp.StatusCode, truncate(b, 300))
	}
	var a chatAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("post chat: decode answer: %w", err)
	}
	if p.finals != nil {
		status, err := p.finals.wait(ctx, a.RunID)
		if err != nil {
			return err
		}
		a.Status = status
	}
	if a.Status != string(chat.RunCompleted) {
		return fmt.Errorf("post chat: run %s ended %q", a.RunID, a.Status)
	}
	c.next(a.ConversationID, p.perConv)
	return nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// finals matches run events to the async turns waiting for them. A final
// event may arrive before the 202 that names its run: it is kept until
// its turn asks.
type finals struct {
	mu      sync.Mutex
	arrived map[string]string      // run id → final status, nobody waiting yet
	waiting map[string]chan string // run id → its waiting turn
	timeout time.Duration
}

func newFinals(timeout time.Duration) *finals {
	return &finals{arrived: map[string]string{}, waiting: map[string]chan string{}, timeout: timeout}
}

// deliver takes every run event (bus.SubscribeEvents); it never blocks.
func (f *finals) deliver(ev chat.Event) {
	if !chat.FinalEvent(ev.Type) {
		return
	}
	status := map[string]string{
		chat.EventRunCompleted: string(chat.RunCompleted),
		chat.EventRunFailed:    string(chat.RunFailed),
		chat.EventRunCancelled: string(chat.RunCancelled),
	}[ev.Type]
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.waiting[ev.RunID]; ok {
		delete(f.waiting, ev.RunID)
		ch <- status // buffered
		return
	}
	f.arrived[ev.RunID] = status
}

// wait returns the final status of runID once its event arrived.
func (f *finals) wait(ctx context.Context, runID string) (string, error) {
	f.mu.Lock()
	if s, ok := f.arrived[runID]; ok {
		delete(f.arrived, runID)
		f.mu.Unlock()
		return s, nil
	}
	ch := make(chan string, 1)
	f.waiting[runID] = ch
	f.mu.Unlock()
	t := time.NewTimer(f.timeout)
	defer t.Stop()
	select {
	case s := <-ch:
		return s, nil
	case <-t.C:
	case <-ctx.Done():
	}
	f.mu.Lock()
	delete(f.waiting, runID)
	f.mu.Unlock()
	return "", fmt.Errorf("run %s: no final event within %s", runID, f.timeout)
}

// baseline makes the pipeline's database commits for a turn directly, with
// no HTTP, no queue and no events: what the API's CreateTurn and a
// worker's claim, history, tool transaction and finish cost on their own,
// on the same pool. The ratio of the pipeline's rate to this one is what
// the queue, HTTP and the events cost.
type baseline struct {
	db      *bun.DB
	agent   *agent.Agent
	message string
	perConv int
	owner   string
	lease   time.Duration
	history int
}

func (b *baseline) turn(ctx context.Context, c *client) error {
	store := chat.NewStore(b.db)
	// The API: the user message and the queued run, one transaction.
	t, err := store.CreateTurn(ctx, c.user, chat.NewTurn{ConversationID: c.conv, Message: b.message, MaxUnfinished: 5})
	if err != nil {
		return err
	}
	run := t.Run
	// The worker: claim, read the history and the ledger, run the agent
	// (each tool call's effect and ledger entry in one transaction), write
	// the answer and the final status, look for the conversation's next run.
	claim, err := store.ClaimRun(ctx, c.user, run.ID, b.owner, b.lease)
	if err != nil {
		return err
	}
	if claim.Outcome != chat.ClaimOK {
		return fmt.Errorf("claim run %s: %s", run.ID, claim.Outcome)
	}
	history, ledger, err := store.RunInput(ctx, c.user, run.ID, b.history)
	if err != nil {
		return err
	}
	if len(ledger) > 0 {
		return fmt.Errorf("run %s: a new run has a ledger", run.ID)
	}
	in := agent.Input{History: make([]agent.Message, len(history))}
	for i, m := range history {
		// Text only: the offline agent reads the last user message.
		in.History[i] = agent.Message{Role: m.Role, Content: m.Content}
	}
	res, err := b.agent.Run(ctx, in, &baselineTools{db: b.db, run: run}, nil)
	if err != nil {
		return err
	}
	calls := make([]chat.ToolCall, len(res.Calls))
	for i, c := range res.Calls {
		calls[i] = chat.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments, Result: c.Result}
	}
	_, _, err = store.FinishRun(ctx, c.user, run.ID, b.owner, chat.Finish{
		Status: chat.RunCompleted,
		Answer: &chat.Answer{Content: res.Text, ToolCalls: calls, Model: res.Model},
	})
	if err != nil {
		return err
	}
	if _, _, err := store.NextQueuedRun(ctx, c.user, run.ConversationID); err != nil {
		return err
	}
	c.next(run.ConversationID, b.perConv)
	return nil
}

// baselineTools applies a tool call as the worker does: look the position
// up in the ledger, then the effect and the ledger entry in one
// transaction.
type baselineTools struct {
	db  *bun.DB
	run chat.Run
}

func (t *baselineTools) RunTool(ctx context.Context, round, index int, text string, call agent.Call) (json.RawMessage, error) {
	userID, runID := t.run.UserID, t.run.ID
	if e, ok, err := chat.NewStore(t.db).LookupToolCall(ctx, userID, runID, round, index); err != nil || ok {
		return e.Result, err
	}
	var result json.RawMessage
	err := t.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := agent.Exec(ctx, todo.NewStore(tx), userID, call)
		if err != nil {
			return err
		}
		stored, _, err := chat.NewStore(tx).RecordToolCall(ctx, userID, runID, chat.LedgerEntry{
			Round: round, Index: index, Text: text,
			CallID: call.ID, Name: call.Name, Arguments: call.Arguments, Result: res,
		})
		result = stored.Result
		return err
	})
	return result, err
}
