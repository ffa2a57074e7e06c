// Package chatworker is the chat run consumer (workers/chat): it pulls run
// requests from the work queue, claims each run in Postgres, runs the agent
// for the run's user, publishes the run's events as they happen, writes the
// answer and the final status in one transaction, and only then acks.
//
// The properties it keeps (see the README's architecture section):
//   - One run at a time per conversation, in acceptance order: the claim
//     lives in Postgres (chat.Store.ClaimRun). A message whose run is not
//     its conversation's turn is acked, not naked, and the worker that
//     finishes a run picks the conversation's next queued run itself.
//   - Exactly one answer and one effect: tool calls are recorded by
//     position (run, round, index) in the same transaction as their effect,
//     and a retried run continues from the recorded rounds.
//   - Nothing is lost: a failure hands the run back (queued) and naks with a
//     delay that grows with the delivery count; a worker that dies leaves a
//     lease that expires, and the relay publishes the run again.
//   - Bounded: WORKER_CONCURRENCY runs per process, and the worker pulls
//     only as many messages as it has free slots.
package chatworker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/reqctx"
)

// Defaults of Config.
const (
	DefaultConcurrency     = 16
	DefaultLease           = 30 * time.Second
	DefaultMaxAttempts     = 5
	DefaultHistoryMessages = 40
	DefaultFetchWait       = time.Second
	DefaultEventBacklog    = 256
	DefaultNakDelay        = time.Second
	DefaultMaxNakDelay     = 30 * time.Second
	DefaultRunTimeout      = 5 * time.Minute
)

// Config tunes a Worker. The zero value of each field means its default.
type Config struct {
	// Concurrency is how many runs one process works on at once
	// (WORKER_CONCURRENCY).
	Concurrency int
	// Lease is how long a claimed run stays this worker's without renewal
	// (RUN_LEASE); it is renewed every third of it. A dead worker's runs
	// are taken over once it has passed.
	Lease time.Duration
	// MaxAttempts ends a run failed after this many attempts
	// (RUN_MAX_ATTEMPTS).
	MaxAttempts int
	// HistoryMessages bounds the history the agent sees
	// (AI_HISTORY_MESSAGES).
	HistoryMessages int
	// RunTimeout bounds one attempt of a run: model calls and tools
	// together (AI_RUN_TIMEOUT). The run then fails with AI_TIMEOUT.
	RunTimeout time.Duration
	// FetchWait bounds one pull; it is how quickly an idle worker notices
	// shutdown.
	FetchWait time.Duration
	// EventBacklog bounds the events published but not yet acknowledged by
	// JetStream, per run.
	EventBacklog int
	// NakDelay is the first redelivery delay after a transient failure; it
	// doubles with each delivery up to MaxNakDelay.
	NakDelay, MaxNakDelay time.Duration
	// Owner names this worker in run leases (default host-pid-random).
	Owner string
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.HistoryMessages <= 0 {
		c.HistoryMessages = DefaultHistoryMessages
	}
	if c.RunTimeout <= 0 {
		c.RunTimeout = DefaultRunTimeout
	}
	if c.FetchWait <= 0 {
		c.FetchWait = DefaultFetchWait
	}
	if c.EventBacklog <= 0 {
		c.EventBacklog = DefaultEventBacklog
	}
	if c.NakDelay <= 0 {
		c.NakDelay = DefaultNakDelay
	}
	if c.MaxNakDelay <= 0 {
		c.MaxNakDelay = DefaultMaxNakDelay
	}
	if c.Owner == "" {
		c.Owner = newOwner()
	}
	return c
}

// Validate reports settings that cannot work, naming their variables.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 0 || c.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("WORKER_CONCURRENCY must be from 1 to 1024, got %d", c.Concurrency))
	}
	if c.Lease < 0 || (c.Lease > 0 && c.Lease < time.Second) {
		errs = append(errs, fmt.Errorf("RUN_LEASE must be at least 1s, got %s", c.Lease))
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("RUN_MAX_ATTEMPTS must be from 1 to 100, got %d", c.MaxAttempts))
	}
	if c.HistoryMessages < 0 || c.HistoryMessages > 1000 {
		errs = append(errs, fmt.Errorf("AI_HISTORY_MESSAGES must be from 1 to 1000, got %d", c.HistoryMessages))
	}
	if c.RunTimeout < 0 || (c.RunTimeout > 0 && c.RunTimeout < time.Second) {
		errs = append(errs, fmt.Errorf("AI_RUN_TIMEOUT must be at least 1s, got %s", c.RunTimeout))
	}
	return errors.Join(errs...)
}

func newOwner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Queue is what the worker needs of the bus (*bus.Bus implements it).
type Queue interface {
	// Fetch pulls at most max run requests, waiting at most wait.
	Fetch(ctx context.Context, max int, wait time.Duration) ([]*bus.Delivery, error)
	// NewEventPublisher returns an asynchronous publisher with a bounded
	// backlog of unacknowledged events.
	NewEventPublisher(maxPending int) *bus.EventPublisher
	// SubscribeCancel calls f with the id of each run whose cancel is
	// requested, from any API replica.
	SubscribeCancel(f func(runID string)) (stop func(), err error)
	// PurgeEvents removes every event of a conversation.
	PurgeEvents(ctx context.Context, conversationID string) error
}

// Worker runs chat runs. Make it with New; Run blocks until its context
// ends.
type Worker struct {
	cfg   Config
	db    *bun.DB
	queue Queue
	agent *agent.Agent
	log   *slog.Logger
	// now reads the clock (tests pass a fixed one).
	now func() time.Time

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // run id → cancel of its run context

	// stopping closes when Run stops pulling: no conversation's next run
	// is started after that.
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// New returns a worker over db and queue running a. It panics on a nil
// dependency (a wiring bug).
func New(cfg Config, db *bun.DB, queue Queue, a *agent.Agent, log *slog.Logger) *Worker {
	if db == nil || queue == nil || a == nil {
		panic("chatworker: nil dependency")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{
		cfg: cfg.withDefaults(), db: db, queue: queue, agent: a, log: log,
		now: time.Now, running: map[string]context.CancelCauseFunc{},
		stopping: make(chan struct{}),
	}
}

// Owner is the name this worker writes into the leases it holds.
func (w *Worker) Owner() string { return w.cfg.Owner }

// Model names the model the worker's agent asks.
func (w *Worker) Model() string { return w.agent.Model() }

// Causes a run's context is cancelled with.
var (
	errCancelRequested = errors.New("run cancelled by the user")
	errLeaseLost       = errors.New("run lease lost")
	errShutdown        = errors.New("worker shutting down")
	errRunTimeout      = errors.New("run timed out")
)

// Run pulls and runs requests until ctx ends. Then it stops pulling and
// waits for the runs in flight, at most until stop ends: runs still going
// then are handed back (queued again, their message naked) for another
// worker. stop is usually ctx extended by the shutdown timeout.
func (w *Worker) Run(ctx, stop context.Context) error {
	unsubscribe, err := w.queue.SubscribeCancel(w.cancelRun)
	if err != nil {
		return fmt.Errorf("subscribe to cancel signals: %w", err)
	}
	defer unsubscribe()

	// Runs get their own context: ctx ending stops pulling, not running.
	runCtx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abort(nil)
	slots := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		if free == 0 {
			// Every slot is busy: wait for one to free up.
			select {
			case slots <- struct{}{}:
				<-slots
			case <-ctx.Done():
			}
			continue
		}
		ds, err := w.queue.Fetch(ctx, free, w.cfg.FetchWait)
		// Requests that arrived with an error are handled all the same:
		// dropping them would leave them to AckWait.
		for _, d := range ds {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				w.handle(runCtx, d)
			})
		}
		if err != nil && ctx.Err() == nil {
			w.log.Warn("fetch run requests", "err", err)
			w.pause(ctx)
		}
	}

	w.stoppingOnce.Do(func() { close(w.stopping) })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-stop.Done():
		abort(errShutdown)
		<-done
	}
	return nil
}

// isStopping reports whether Run has stopped pulling. A conversation's
// next run is then left queued for another worker (the relay publishes it).
func (w *Worker) isStopping() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// pause waits a moment after a failed pull (NATS reconnecting) or until ctx ends.
func (w *Worker) pause(ctx context.Context) {
	t := time.NewTimer(w.cfg.FetchWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// cancelRun cancels the run's context when this worker is running it.
func (w *Worker) cancelRun(runID string) {
	w.mu.Lock()
	cancel := w.running[runID]
	w.mu.Unlock()
	if cancel != nil {
		cancel(errCancelRequested)
	}
}

// handle processes one delivery and then the conversation's next queued
// runs, which this worker picks up itself.
func (w *Worker) handle(ctx context.Context, d *bus.Delivery) {
	// The delivery's context carries the request's ids and trace; ctx the
	// worker's cancellation.
	ctx = mergeValues(ctx, d.Ctx)
	log := reqctx.Logger(ctx, w.log)
	defer func() {
		// A panicking run must not take the process (in chatd, the API too)
		// down. Its lease expires and it is retried, and RUN_MAX_ATTEMPTS
		// ends a run that panics every time.
		if r := recover(); r != nil {
			log.Error("run panicked", "run_id", d.Request.RunID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			// Hand it back (when it got as far as being ours) and let it come
			// again after the growing delay: RUN_MAX_ATTEMPTS ends a run
			// that panics every time.
			if d.Err == nil {
				_ = chat.NewStore(w.db).ReleaseRun(context.WithoutCancel(ctx), d.Request.UserID, d.Request.RunID, w.cfg.Owner)
			}
			w.settle(ctx, log, d, settlement{kind: settleNak, delay: w.nakDelay(int(d.NumDelivered))})
		}
	}()
	if d.Err != nil {
		// It can never be decoded: redelivering it would not help.
		log.Error("undecodable run request", "err", d.Err)
		if err := d.Term(); err != nil {
			log.Warn("term run request", "err", err)
		}
		return
	}
	req := d.Request
	ctx = reqctx.WithUserID(ctx, req.UserID)
	log = log.With("user_id", req.UserID, "conversation_id", req.ConversationID)

	runLog := log.With("run_id", req.RunID)
	next, settle := w.process(ctx, runLog, req.UserID, req.RunID, d)
	w.settle(ctx, runLog, d, settle)
	for next != "" && ctx.Err() == nil && !w.isStopping() {
		// Runs picked up this way have no message of their own: theirs was
		// acked when they were not yet their conversation's turn. One handed
		// back is queued again, and the relay publishes it.
		runID := next
		next, _ = w.process(ctx, log.With("run_id", runID), req.UserID, runID, nil)
	}
}

// settlement says what to do with a delivery once its run is processed.
type settlement struct {
	kind  int
	delay time.Duration
}

const (
	settleAck = iota
	settleNak
	settleTerm
)

func (w *Worker) settle(ctx context.Context, log *slog.Logger, d *bus.Delivery, s settlement) {
	var err error
	switch s.kind {
	case settleAck:
		err = d.Ack(context.WithoutCancel(ctx))
	case settleNak:
		err = d.NakWithDelay(s.delay)
	case settleTerm:
		err = d.Term()
	}
	if err != nil {
		// The run's state is in Postgres; a lost ack only means a
		// redelivery, which finds the run finished and acks it.
		log.Warn("settle run request", "err", err)
	}
}

// nakDelay grows with the delivery count: NakDelay, 2×, 4×, … MaxNakDelay.
func (w *Worker) nakDelay(delivered int) time.Duration {
	d := w.cfg.NakDelay
	for i := 1; i < delivered && d < w.cfg.MaxNakDelay; i++ {
		d *= 2
	}
	return min(d, w.cfg.MaxNakDelay)
}

// process claims and runs one run. It returns the conversation's next
// queued run when this one finished (so the caller runs it next), and what
// to do with the run's message d (nil for a run picked up after the one
// before it: its message was acked already).
func (w *Worker) process(ctx context.Context, log *slog.Logger, userID, runID string, d *bus.Delivery) (next string, s settlement) {
	delivered := 1
	if d != nil {
		delivered = int(d.NumDelivered)
	}
	store := chat.NewStore(w.db)
	claim, err := store.ClaimRun(ctx, userID, runID, w.cfg.Owner, w.cfg.Lease)
	if err != nil {
		log.Warn("claim run", "err", err)
		return "", settlement{kind: settleNak, delay: w.nakDelay(delivered)}
	}
	switch claim.Outcome {
	case chat.ClaimGone:
		return "", settlement{kind: settleAck}
	case chat.ClaimFinished:
		// A redelivery of a finished run. Its worker may have died between
		// its final commit and its final event: publish them again (ids
		// that JetStream deduplicates inside its window, which a recent
		// finish is in).
		if f := claim.Run.FinishedAt; f != nil && time.Since(*f) < queuedEventWindow {
			w.republishFinal(ctx, log, claim.Run)
		}
		return "", settlement{kind: settleAck}
	case chat.ClaimBusy:
		// Not this run's turn, or another worker holds it. The worker that
		// finishes the conversation's current run picks this one up; the
		// relay covers that worker dying. Never nak for this: it would burn
		// deliveries.
		return "", settlement{kind: settleAck}
	}
	run := claim.Run
	log = log.With("attempt", run.Attempts)
	if run.Attempts > w.cfg.MaxAttempts {
		w.fail(ctx, log, run, chat.RunError{Code: chat.CodeAttemptsExceeded,
			Message: fmt.Sprintf("the run failed %d times", run.Attempts-1)})
		return w.nextOf(ctx, log, run), settlement{kind: settleAck}
	}

	outcome := w.execute(ctx, log, run, claim.CancelRequested, d)
	switch outcome {
	case outcomeDone:
		return w.nextOf(ctx, log, run), settlement{kind: settleAck}
	case outcomeLeaseLost, outcomeGone:
		return "", settlement{kind: settleAck}
	case outcomeHandBack:
		// Shutdown, not a failure: whatever the attempt, another worker
		// takes it from here.
		if err := store.ReleaseRun(context.WithoutCancel(ctx), userID, run.ID, w.cfg.Owner); err != nil {
			log.Warn("hand back run", "err", err)
		}
		return "", settlement{kind: settleNak, delay: w.cfg.NakDelay}
	default: // outcomeRetry
		if run.Attempts >= w.cfg.MaxAttempts {
			w.fail(ctx, log, run, chat.RunError{Code: chat.CodeAttemptsExceeded,
				Message: fmt.Sprintf("the run failed %d times", run.Attempts)})
			return w.nextOf(ctx, log, run), settlement{kind: settleAck}
		}
		if err := store.ReleaseRun(context.WithoutCancel(ctx), userID, run.ID, w.cfg.Owner); err != nil {
			// The lease will expire and the relay will publish it again.
			log.Warn("hand back run", "err", err)
		}
		return "", settlement{kind: settleNak, delay: w.nakDelay(delivered)}
	}
}

// nextOf returns the conversation's next queued run, if any.
func (w *Worker) nextOf(ctx context.Context, log *slog.Logger, run chat.Run) string {
	next, ok, err := chat.NewStore(w.db).NextQueuedRun(ctx, run.UserID, run.ConversationID)
	if err != nil {
		log.Warn("look up the conversation's next run", "err", err)
		return "" // the relay publishes it again
	}
	if !ok {
		return ""
	}
	return next.ID
}

// fail ends run failed and publishes run.failed (retryable when it ran
// out of attempts: sending the message again may succeed).
func (w *Worker) fail(ctx context.Context, log *slog.Logger, run chat.Run, rerr chat.RunError) {
	ctx = context.WithoutCancel(ctx)
	if _, _, err := chat.NewStore(w.db).FinishRun(ctx, run.UserID, run.ID, "", chat.Finish{Status: chat.RunFailed, Error: &rerr}); err != nil {
		log.Warn("mark run failed", "err", err)
		return
	}
	log.Warn("run failed", "code", rerr.Code)
	run.Status, run.Error = chat.RunFailed, &rerr
	pub := w.queue.NewEventPublisher(w.cfg.EventBacklog)
	ev := newEmitter(ctx, pub, run, log)
	ev.publishFinal(ctx, run, nil)
	if err := ev.flush(ctx); err != nil {
		log.Warn("publish run.failed", "err", err)
	}
}

// republishFinal publishes a finished run's last events again.
func (w *Worker) republishFinal(ctx context.Context, log *slog.Logger, run chat.Run) {
	msg, ok, err := chat.NewStore(w.db).RunAnswer(ctx, run.UserID, run.ID)
	if err != nil {
		log.Warn("read a finished run's answer", "err", err)
		return
	}
	var m *chat.Message
	if ok {
		m = &msg
	}
	ev := newEmitter(ctx, w.queue.NewEventPublisher(w.cfg.EventBacklog), run, log)
	ev.publishFinal(ctx, run, m)
	if err := ev.flush(ctx); err != nil {
		log.Warn("republish a finished run's events", "err", err)
	}
}

// mergeValues returns ctx (for cancellation) carrying the request id and
// trace of the delivery's context.
func mergeValues(ctx, values context.Context) context.Context {
	if id := reqctx.RequestID(values); id != "" {
		ctx = reqctx.WithRequestID(ctx, id)
	}
	if tp := reqctx.Traceparent(values); tp != "" {
		ctx = reqctx.WithTraceparent(ctx, tp)
	}
	return ctx
}

// isTransient reports whether err is worth another attempt.
func isTransient(err error) bool {
	return errors.Is(err, agent.ErrTransient) || errors.Is(err, pgdb.ErrUnavailable) || errors.Is(err, bus.ErrUnavailable)
}
