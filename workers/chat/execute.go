package chatworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/chat"
)

// outcome is how executing a claimed run ended.
type outcome int

const (
	// outcomeDone: the run reached a final status (completed, failed,
	// cancelled) and its final event is published.
	outcomeDone outcome = iota
	// outcomeRetry: a transient failure; the run should be handed back.
	outcomeRetry
	// outcomeHandBack: the worker is shutting down; the run goes back to
	// the queue without counting as a failure.
	outcomeHandBack
	// outcomeLeaseLost: another worker holds the run now.
	outcomeLeaseLost
	// outcomeGone: the run or its conversation was deleted.
	outcomeGone
)

// execute runs a claimed run to its end: events, agent, answer, final
// status, final event. A run whose cancel was requested before this claim
// goes straight to its end. d is the run's message, kept in progress while
// the run lasts (nil when it has none).
func (w *Worker) execute(ctx context.Context, log *slog.Logger, run chat.Run, cancelRequested bool, d *bus.Delivery) outcome {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The per-run bound (AI_RUN_TIMEOUT) covers this attempt: a model that
	// keeps streaming, or keeps calling tools, is stopped here.
	runCtx, stopTimer := context.WithTimeoutCause(runCtx, w.cfg.RunTimeout, errRunTimeout)
	defer stopTimer()
	if cancelRequested {
		// Cancelled while its previous worker held it: end it at once.
		cancel(errCancelRequested)
	}
	w.mu.Lock()
	if w.running[run.ID] != nil {
		// This worker already runs it: its lease expired (a long pause) and
		// a redelivery claimed it for this same owner. The first goroutine
		// keeps it.
		w.mu.Unlock()
		return outcomeLeaseLost
	}
	w.running[run.ID] = cancel
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.running, run.ID)
		w.mu.Unlock()
	}()

	pub := w.queue.NewEventPublisher(w.cfg.EventBacklog)
	ev := newEmitter(context.WithoutCancel(runCtx), pub, run, log)
	if run.Attempts == 1 && time.Since(run.CreatedAt) < queuedEventWindow {
		// The API publishes run.queued after its commit; a worker that took
		// the run from Postgres at once (finishing the conversation's
		// previous run) could start it before that. Publishing it here under
		// the API's message id puts it first either way: JetStream keeps the
		// first of the two inside its duplicate window (2 minutes by
		// default; this stays well inside it).
		ev.publishID(runCtx, chat.EventRunQueued, chat.QueuedEventID(run.ID), chat.RunQueuedData{RunID: run.ID, MessageID: run.MessageID})
	}
	if run.Attempts > 1 {
		ev.publish(runCtx, chat.EventRunRestarted, "restarted", chat.RunRestartedData{RunID: run.ID, Attempt: run.Attempts})
	}
	ev.publish(runCtx, chat.EventRunStarted, "started", chat.RunStartedData{RunID: run.ID, Attempt: run.Attempts, MessageID: run.AssistantMessageID})

	// Keep the lease (and hear of cancel requests) while the agent works.
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		w.keepLease(runCtx, cancel, log, run, d)
	}()

	in, err := w.input(runCtx, run)
	var res agent.Result
	if err == nil {
		res, err = w.agent.Run(runCtx, in, &toolRunner{w: w, run: run}, ev)
	}
	cancel(nil) // stops keepLease; the cause of an earlier cancel stays
	<-renewed
	cause := context.Cause(runCtx)
	finishCtx := context.WithoutCancel(ctx)

	usage := runUsage(res.Usage)
	rerr := modelError(err)
	switch {
	case err == nil:
		return w.finish(finishCtx, log, ev, run, chat.Finish{
			Status: chat.RunCompleted,
			Answer: &chat.Answer{Content: res.Text, ToolCalls: toolCalls(res.Calls), Model: res.Model},
			Usage:  usage,
		})
	case errors.Is(cause, errCancelRequested):
		// What was produced is kept: the partial text and the calls made.
		f := chat.Finish{Status: chat.RunCancelled, Error: &chat.RunError{Code: chat.CodeCancelled, Message: "cancelled by the user"}, Usage: usage}
		if text := ev.text(); text != "" || len(res.Calls) > 0 {
			f.Answer = &chat.Answer{Content: text, ToolCalls: toolCalls(res.Calls), Model: w.agent.Model()}
		}
		return w.finish(finishCtx, log, ev, run, f)
	case errors.Is(cause, errRunTimeout):
		log.Warn("run timed out", "timeout", w.cfg.RunTimeout)
		return w.finish(finishCtx, log, ev, run, chat.Finish{Status: chat.RunFailed, Usage: usage,
			Error: &chat.RunError{Code: chat.CodeAITimeout, Message: fmt.Sprintf("the assistant took longer than %s", w.cfg.RunTimeout)}})
	case errors.Is(cause, errLeaseLost), errors.Is(err, chat.ErrLeaseLost), errors.Is(err, chat.ErrNotFound):
		if w.purgeIfGone(finishCtx, log, ev, run) {
			return outcomeGone
		}
		log.Warn("lease lost: another worker has the run")
		return outcomeLeaseLost
	case errors.Is(cause, errShutdown):
		log.Info("run handed back on shutdown")
		return outcomeHandBack
	case errors.Is(err, agent.ErrRoundsExceeded):
		return w.finish(finishCtx, log, ev, run, chat.Finish{Status: chat.RunFailed, Usage: usage,
			Error: &chat.RunError{Code: chat.CodeToolRoundsCapped, Message: "the assistant used too many tool rounds"}})
	case rerr != nil:
		// The provider retried what was worth retrying; running the
		// attempt again would only repeat that.
		log.Warn("model call failed", "code", rerr.Code, "err", err)
		return w.finish(finishCtx, log, ev, run, chat.Finish{Status: chat.RunFailed, Usage: usage, Error: rerr})
	case isTransient(err):
		log.Warn("run attempt failed; will retry", "err", err)
		return outcomeRetry
	default:
		log.Error("run attempt failed", "err", err)
		if run.Attempts >= w.cfg.MaxAttempts {
			return w.finish(finishCtx, log, ev, run, chat.Finish{Status: chat.RunFailed,
				Error: &chat.RunError{Code: chat.CodeAgentError, Message: "the assistant could not answer"}})
		}
		return outcomeRetry
	}
}

// modelError is the run error a provider failure ends the run with, or
// nil when err is not one. The messages are for the user: the details
// (status codes, the server's words) go to the log.
func modelError(err error) *chat.RunError {
	switch {
	case errors.Is(err, agent.ErrModelTimeout):
		return &chat.RunError{Code: chat.CodeAITimeout, Message: "the assistant's model took too long to answer"}
	case errors.Is(err, agent.ErrModelUnavailable):
		return &chat.RunError{Code: chat.CodeAIUnavailable, Message: "the assistant's model could not be reached; try again in a moment"}
	case errors.Is(err, agent.ErrModelRejected):
		return &chat.RunError{Code: chat.CodeAIRejected, Message: "the assistant's model refused the request; check the AI settings"}
	case errors.Is(err, agent.ErrBadResponse):
		return &chat.RunError{Code: chat.CodeAIBadResponse, Message: "the assistant's model sent an answer that could not be used"}
	}
	return nil
}

// runUsage is the usage to store on the run, nil when the model's server
// reported none.
func runUsage(u agent.Usage) *chat.Usage {
	if !u.Reported {
		return nil
	}
	return &chat.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
}

// finish writes the final status (and answer) in one transaction, then
// publishes message.completed and the final event, and waits until
// JetStream has them all: only then may the message be acked.
func (w *Worker) finish(ctx context.Context, log *slog.Logger, ev *emitter, run chat.Run, f chat.Finish) outcome {
	done, msg, err := chat.NewStore(w.db).FinishRun(ctx, run.UserID, run.ID, w.cfg.Owner, f)
	switch {
	case errors.Is(err, chat.ErrLeaseLost), errors.Is(err, chat.ErrRunFinished):
		return outcomeLeaseLost
	case errors.Is(err, chat.ErrNotFound):
		w.purgeIfGone(ctx, log, ev, run)
		return outcomeGone
	case err != nil:
		log.Warn("finish run", "err", err)
		return outcomeRetry
	}
	ev.publishFinal(ctx, done, msg)
	if err := ev.flush(ctx); err != nil {
		// The run is final in Postgres; its events may be incomplete. Acking
		// anyway is right: running it again would not change the outcome.
		log.Warn("publish run events", "err", err)
	}
	log.Info("run finished", "status", done.Status)
	return outcomeDone
}

// purgeIfGone reports whether run is gone (its conversation was deleted
// while it ran) and, if so, purges the conversation's events once more: the
// API purged them at the delete, but this run may have published a few
// since. Its own events are flushed first, so none land after the purge.
func (w *Worker) purgeIfGone(ctx context.Context, log *slog.Logger, ev *emitter, run chat.Run) bool {
	_, err := chat.NewStore(w.db).GetRun(ctx, run.UserID, run.ID)
	if !errors.Is(err, chat.ErrNotFound) {
		return false
	}
	_ = ev.flush(ctx) // failures only mean fewer events to purge
	if err := w.queue.PurgeEvents(ctx, run.ConversationID); err != nil {
		log.Warn("purge a deleted conversation's events", "err", err)
	}
	log.Info("run's conversation was deleted; run dropped")
	return true
}

// keepLease renews the run's lease every third of it, and with each
// renewal sends InProgress on the run's message d (when it has one), until
// ctx ends. A cancel request or a lost lease cancels the run with that
// cause.
//
// Without InProgress a run longer than AckWait had its message redelivered:
// the redelivery found the run busy and acked it, so the run's own nak
// (retry, shutdown) came too late and only the relay could bring the run
// back. AckWait must exceed a third of the lease for this to hold.
func (w *Worker) keepLease(ctx context.Context, cancel context.CancelCauseFunc, log *slog.Logger, run chat.Run, d *bus.Delivery) {
	t := time.NewTicker(w.cfg.Lease / 3)
	defer t.Stop()
	store := chat.NewStore(w.db)
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(renewed) >= w.cfg.Lease {
			// Renewals kept failing (or this process was paused) for a whole
			// lease: another worker may hold the run now. Stop before
			// producing anything more; the tool path checks the lease too.
			cancel(errLeaseLost)
			return
		}
		if d != nil {
			if err := d.InProgress(); err != nil {
				// NATS is away: the message may be redelivered, which finds
				// the run busy; the lease is what keeps the run ours.
				log.Warn("run request in progress", "err", err)
			}
		}
		cancelRequested, err := store.RenewLease(ctx, run.UserID, run.ID, w.cfg.Owner, w.cfg.Lease)
		switch {
		case errors.Is(err, chat.ErrLeaseLost), errors.Is(err, chat.ErrNotFound):
			cancel(errLeaseLost)
			return
		case err != nil:
			// Keep going: the lease is still good for two thirds of its time.
			log.Warn("renew lease", "err", err)
		case cancelRequested:
			// The cancel signal may have been missed (another replica, a
			// reconnect); the flag in Postgres is the source of truth.
			cancel(errCancelRequested)
			return
		default:
			renewed = time.Now()
		}
	}
}

// input loads the agent's input: the history window and the ledger (one
// query when the ledger is empty).
func (w *Worker) input(ctx context.Context, run chat.Run) (agent.Input, error) {
	history, ledger, err := chat.NewStore(w.db).RunInput(ctx, run.UserID, run.ID, w.cfg.HistoryMessages)
	if err != nil {
		return agent.Input{}, fmt.Errorf("load history and ledger: %w", err)
	}
	return agent.Input{History: agentHistory(history), Ledger: rounds(ledger)}, nil
}

// agentHistory turns stored messages into the model's view: each
// assistant message with tool calls becomes the calls, their results and
// the text.
func agentHistory(msgs []chat.Message) []agent.Message {
	out := make([]agent.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.Role == chat.RoleUser {
			out = append(out, agent.Message{Role: agent.RoleUser, Content: m.Content})
			continue
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]agent.Call, len(m.ToolCalls))
			for i, c := range m.ToolCalls {
				calls[i] = agent.Call{ID: c.ID, Name: c.Name, Arguments: c.Arguments}
			}
			out = append(out, agent.Message{Role: agent.RoleAssistant, Calls: calls})
			for _, c := range m.ToolCalls {
				out = append(out, agent.Message{Role: agent.RoleTool, CallID: c.ID, Name: c.Name, Content: string(c.Result)})
			}
		}
		out = append(out, agent.Message{Role: agent.RoleAssistant, Content: m.Content})
	}
	return out
}

// rounds groups ledger entries (ordered by round, index) into rounds.
func rounds(entries []chat.LedgerEntry) []agent.Round {
	var out []agent.Round
	for _, e := range entries {
		for len(out) <= e.Round {
			out = append(out, agent.Round{})
		}
		r := &out[e.Round]
		r.Text = e.Text
		r.Calls = append(r.Calls, agent.RecordedCall{
			Call:   agent.Call{ID: e.CallID, Name: e.Name, Arguments: e.Arguments},
			Result: e.Result,
		})
	}
	return out
}

// toolCalls turns the agent's calls into the message's tool calls.
func toolCalls(calls []agent.RecordedCall) []chat.ToolCall {
	out := make([]chat.ToolCall, len(calls))
	for i, c := range calls {
		out[i] = chat.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments, Result: c.Result}
	}
	return out
}

// emitter publishes a run's events with message ids that make a
// republished event a duplicate JetStream drops: run, attempt, sequence.
// It is the agent's Sink.
type emitter struct {
	pub  *bus.EventPublisher
	run  chat.Run
	log  *slog.Logger
	n    atomic.Int64
	buf  []byte // the answer's text so far (for a cancelled run)
	err  error  // the first publish error
	ctx  context.Context
	tool map[string]string // call id → name
}

// newEmitter returns an emitter publishing run's events; the Sink methods
// publish under ctx, whose request id and trace go into the headers.
func newEmitter(ctx context.Context, pub *bus.EventPublisher, run chat.Run, log *slog.Logger) *emitter {
	return &emitter{pub: pub, run: run, log: log, ctx: ctx, tool: map[string]string{}}
}

// publishFinal publishes a finished run's message.completed (when it wrote
// an answer) and its final event, under ids that make a republish a
// duplicate JetStream drops.
func (e *emitter) publishFinal(ctx context.Context, run chat.Run, msg *chat.Message) {
	if msg != nil {
		e.publishID(ctx, chat.EventMessageCompleted, chat.AnswerEventID(run.ID), chat.MessageCompletedData{RunID: run.ID, Message: *msg})
	}
	switch run.Status {
	case chat.RunCompleted:
		data := chat.RunCompletedData{RunID: run.ID, ToolCalls: []chat.ToolCall{}}
		if msg != nil {
			data.Response, data.ToolCalls = msg.Content, msg.ToolCalls
		}
		e.publishID(ctx, chat.EventRunCompleted, chat.FinalEventID(run.ID), data)
	case chat.RunCancelled:
		e.publishID(ctx, chat.EventRunCancelled, chat.FinalEventID(run.ID), chat.RunCancelledData{RunID: run.ID})
	case chat.RunFailed:
		data := chat.RunFailedData{RunID: run.ID, Error: chat.RunError{Code: chat.CodeAgentError}}
		if run.Error != nil {
			data.Error = *run.Error
			data.Retryable = run.Error.Retryable()
		}
		e.publishID(ctx, chat.EventRunFailed, chat.FinalEventID(run.ID), data)
	}
}

// queuedEventWindow bounds how old a run may be for its worker to publish
// run.queued too (see execute): inside it the API's copy and the worker's
// are deduplicated.
const queuedEventWindow = time.Minute

// publishID sends one event under the given message id.
func (e *emitter) publishID(ctx context.Context, typ, msgID string, payload any) {
	ev, err := chat.NewEvent(typ, e.run.ConversationID, e.run.ID, payload)
	if err != nil {
		e.remember(err)
		return
	}
	if err := e.pub.Publish(ctx, ev, msgID); err != nil {
		e.remember(err)
	}
}

// publish sends one event. A failure is remembered (flush returns it) but
// does not stop the run: its state is in Postgres, and clients reload over
// REST after a gap.
func (e *emitter) publish(ctx context.Context, typ, key string, payload any) {
	ev, err := chat.NewEvent(typ, e.run.ConversationID, e.run.ID, payload)
	if err != nil {
		e.remember(err)
		return
	}
	id := e.run.ID + "." + strconv.Itoa(e.run.Attempts) + "." + key + "." + strconv.FormatInt(e.n.Add(1), 10)
	if err := e.pub.Publish(ctx, ev, id); err != nil {
		e.remember(err)
	}
}

func (e *emitter) remember(err error) {
	if e.err == nil {
		e.err = err
		e.log.Warn("publish run event", "err", err)
	}
}

func (e *emitter) flush(ctx context.Context) error {
	if err := e.pub.Flush(ctx); err != nil {
		return err
	}
	return e.err
}

func (e *emitter) text() string { return string(e.buf) }

// Delta publishes message.delta.
func (e *emitter) Delta(text string) {
	e.buf = append(e.buf, text...)
	e.publish(e.ctx, chat.EventMessageDelta, "delta", chat.MessageDeltaData{RunID: e.run.ID, MessageID: e.run.AssistantMessageID, Delta: text})
}

// ToolCall publishes tool.call.
func (e *emitter) ToolCall(c agent.Call) {
	e.publish(e.ctx, chat.EventToolCall, "call", chat.ToolCallData{RunID: e.run.ID, CallID: c.ID, Name: c.Name, Arguments: jsonObject(c.Arguments)})
}

// ToolResult publishes tool.result.
func (e *emitter) ToolResult(c agent.Call, result json.RawMessage) {
	e.publish(e.ctx, chat.EventToolResult, "result", chat.ToolResultData{RunID: e.run.ID, CallID: c.ID, Name: c.Name, Result: result})
}
