package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunVersion is the version of the RunRequest envelope this code writes
// and understands.
const RunVersion = 1

// ErrBadRequest marks a run request body that cannot be used: not JSON,
// another envelope version, or an id missing. Such a message can never
// succeed: the worker terminates it.
var ErrBadRequest = errors.New("bus: undecodable run request")

// RunRequest asks a worker to execute a run. It names the run only; the
// worker reads everything else from Postgres, so a stale or repeated
// request is harmless.
type RunRequest struct {
	V              int    `json:"v"`
	RunID          string `json:"run_id"`
	UserID         string `json:"user_id"`
	ConversationID string `json:"conversation_id"`
	// MsgID, when set, replaces the run id as the Nats-Msg-Id: the relay
	// republishes with a fresh one, since the original may still be inside
	// the duplicate window and would be dropped. It is not sent.
	MsgID string `json:"-"`
}

// PublishRun publishes r on the runs subject with Nats-Msg-Id = r.RunID
// (or r.MsgID) and waits for JetStream's acknowledgement, bounded by ctx's deadline or
// else PublishTimeout. A duplicate inside the duplicate window is accepted
// silently (JetStream keeps the first). r.V is set to RunVersion when zero.
// Failures of NATS wrap ErrUnavailable; nothing is buffered for later.
func (b *Bus) PublishRun(ctx context.Context, r RunRequest) error {
	if r.V == 0 {
		r.V = RunVersion
	}
	if !idSafe(r.RunID) || r.UserID == "" || r.ConversationID == "" {
		return fmt.Errorf("publish run: %w: run, user and conversation ids are required", ErrInvalidID)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("publish run: %w", err)
	}
	ctx, cancel := withTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	// The connection does not buffer while reconnecting; failing here
	// before the request is sent keeps the error immediate.
	if !b.nc.IsConnected() {
		return fmt.Errorf("publish run: %w: %s", ErrUnavailable, b.nc.Status())
	}
	msgID := r.RunID
	if r.MsgID != "" {
		msgID = r.MsgID
	}
	if _, err := b.js.PublishMsg(ctx, newMsg(ctx, b.cfg.runsSubject(), msgID, data)); err != nil {
		return fmt.Errorf("publish run: %w", unavailable(err))
	}
	return nil
}

// Delivery is one run request handed to a worker. Exactly one of Ack,
// Term, NakWithDelay ends it (InProgress any number of times before);
// without one it is redelivered after AckWait, at most MaxDeliver times
// in all.
type Delivery struct {
	// Request is the decoded envelope; zero when Err is set.
	Request RunRequest
	// Err is set (wrapping ErrBadRequest) when the body did not decode:
	// the worker terminates the message.
	Err error
	// NumDelivered counts deliveries of this message, 1 the first time.
	NumDelivered uint64
	// StreamSeq is the message's sequence in the runs stream (for logs).
	StreamSeq uint64
	// Ctx carries the request id, user id and traceparent of the headers;
	// it is not cancelled when Fetch's context is.
	Ctx context.Context

	msg jetstream.Msg
}

// Ack acknowledges the delivery and waits for the server to confirm it,
// so the message is gone from the stream when Ack returns nil. An Ack
// after AckWait expired may still be accepted: handlers are idempotent.
func (d *Delivery) Ack(ctx context.Context) error {
	if err := d.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack run request: %w", unavailable(err))
	}
	return nil
}

// InProgress resets the delivery's AckWait timer; send it well inside
// AckWait during long steps.
func (d *Delivery) InProgress() error {
	if err := d.msg.InProgress(); err != nil {
		return fmt.Errorf("run request in progress: %w", unavailable(err))
	}
	return nil
}

// NakWithDelay hands the delivery back to be redelivered after delay; use a
// delay growing with NumDelivered.
func (d *Delivery) NakWithDelay(delay time.Duration) error {
	if err := d.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("nak run request: %w", unavailable(err))
	}
	return nil
}

// Term ends the delivery for good: the message is never redelivered. (Not
// TermWithReason: nats-server 2.9 ignores it and redelivers.)
func (d *Delivery) Term() error {
	if err := d.msg.Term(); err != nil {
		return fmt.Errorf("term run request: %w", unavailable(err))
	}
	return nil
}

// minPullWait is the shortest wait a blocking pull is sent with; shorter
// waits only ask for what is already there.
const minPullWait = 10 * time.Millisecond

// Fetch pulls at most max run requests from the shared consumer — pass the
// number of free run slots, never more: whatever a worker pulls runs its
// AckWait while it sits there. It returns as soon as at least one request
// is available (taking up to max that are there already), or empty and nil
// when none arrived within wait. A request whose body does not decode is
// returned too, with Err set. ctx ends the wait early: a deadline before
// wait just shortens it (empty, nil), a cancellation returns ctx's error
// when nothing arrived; messages that arrived are always returned. A
// request the server hands out just as a cancellation lands is redelivered
// after AckWait: cancel Fetch only when stopping.
func (b *Bus) Fetch(ctx context.Context, max int, wait time.Duration) ([]*Delivery, error) {
	if max < 1 {
		return nil, errors.New("fetch run requests: max must be at least 1")
	}
	msgs, err := collect(b.workers.FetchNoWait(max))
	if err != nil {
		return b.deliveries(ctx, msgs), fmt.Errorf("fetch run requests: %w", unavailable(err))
	}
	if len(msgs) == 0 && wait >= minPullWait && ctx.Err() == nil {
		// Wait for one, then take what else is there: a pull for max would
		// wait for all max to arrive.
		wctx, cancel := context.WithTimeout(ctx, wait)
		msgs, err = collect(b.workers.Fetch(1, jetstream.FetchContext(wctx)))
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return b.deliveries(ctx, msgs), fmt.Errorf("fetch run requests: %w", unavailable(err))
		}
		if len(msgs) == 1 && max > 1 {
			more, err := collect(b.workers.FetchNoWait(max - 1))
			msgs = append(msgs, more...)
			if err != nil {
				return b.deliveries(ctx, msgs), fmt.Errorf("fetch run requests: %w", unavailable(err))
			}
		}
	}
	if n := len(msgs); n > 0 && n < max {
		// A no-wait pull may hand over only part of what is waiting (the
		// server answers with what it has at hand): top up once, so free
		// slots are not left idle while requests wait.
		more, err := collect(b.workers.FetchNoWait(max - n))
		msgs = append(msgs, more...)
		if err != nil {
			return b.deliveries(ctx, msgs), fmt.Errorf("fetch run requests: %w", unavailable(err))
		}
	}
	if len(msgs) == 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("fetch run requests: %w", ctx.Err())
	}
	return b.deliveries(ctx, msgs), nil
}

// collect reads a batch to its end. Messages that arrived are returned
// even with an error.
func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, batch.Error()
}

func (b *Bus) deliveries(ctx context.Context, msgs []jetstream.Msg) []*Delivery {
	if len(msgs) == 0 {
		return nil
	}
	base := context.WithoutCancel(ctx)
	out := make([]*Delivery, 0, len(msgs))
	for _, m := range msgs {
		d := &Delivery{msg: m, Ctx: headerContext(base, m.Headers())}
		if md, err := m.Metadata(); err == nil {
			d.NumDelivered, d.StreamSeq = md.NumDelivered, md.Sequence.Stream
		}
		d.Request, d.Err = decodeRun(m.Data())
		out = append(out, d)
	}
	return out
}

func decodeRun(data []byte) (RunRequest, error) {
	var r RunRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return RunRequest{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if r.V != RunVersion {
		return RunRequest{}, fmt.Errorf("%w: envelope version %d, want %d", ErrBadRequest, r.V, RunVersion)
	}
	if r.RunID == "" || r.UserID == "" || r.ConversationID == "" {
		return RunRequest{}, fmt.Errorf("%w: an id is missing", ErrBadRequest)
	}
	return r, nil
}
