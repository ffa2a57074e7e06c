package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
)

// PublishCancel asks whichever worker holds runID to stop it, over core
// NATS: every process subscribed with SubscribeCancel hears it, none
// stores it. It returns once the server has the message (a flush round
// trip); a worker that is not listening at that moment never hears it, so
// the run's status in Postgres stays the authority. NATS failures wrap
// ErrUnavailable.
func (b *Bus) PublishCancel(ctx context.Context, runID string) error {
	return b.signal(ctx, b.cfg.cancelSubject(), "publish cancel", runID, runID)
}

// SubscribeCancel calls f with the run id of every cancel signal from now
// on. f runs on the subscription's one goroutine, so it must be quick.
// stop unsubscribes.
func (b *Bus) SubscribeCancel(f func(runID string)) (stop func(), err error) {
	return b.subscribeSignal(b.cfg.cancelSubject(), "subscribe cancel", f)
}

// PublishConversationDeleted tells every API replica that conversationID
// was deleted, over core NATS, so each ends the event streams it holds for
// it. Like PublishCancel it is a signal, not a record. NATS failures wrap
// ErrUnavailable.
func (b *Bus) PublishConversationDeleted(ctx context.Context, conversationID string) error {
	return b.signal(ctx, b.cfg.deletedSubject(), "publish conversation deleted", conversationID, "")
}

// SubscribeConversationDeleted calls f with the id of every conversation
// deleted from now on, on any replica. f runs on the subscription's one
// goroutine, so it must be quick. stop unsubscribes.
func (b *Bus) SubscribeConversationDeleted(f func(conversationID string)) (stop func(), err error) {
	return b.subscribeSignal(b.cfg.deletedSubject(), "subscribe conversation deleted", f)
}

// signal publishes id on a core subject and waits until the server has it.
func (b *Bus) signal(ctx context.Context, subject, op, id, msgID string) error {
	if !idSafe(id) {
		return fmt.Errorf("%s: %w: id is empty or not printable ASCII", op, ErrInvalidID)
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("%s: %w: %s", op, ErrUnavailable, b.nc.Status())
	}
	if err := b.nc.PublishMsg(newMsg(ctx, subject, msgID, []byte(id))); err != nil {
		return fmt.Errorf("%s: %w", op, unavailable(err))
	}
	ctx, cancel := withTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("%s: %w", op, unavailable(err))
	}
	return nil
}

// subscribeSignal calls f with the id of every signal on subject, once the
// server has the subscription.
func (b *Bus) subscribeSignal(subject, op string, f func(id string)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		if id := string(m.Data); idSafe(id) {
			f(id)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, unavailable(err))
	}
	if err := b.registered(sub); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// registered waits until the server has sub (a flush round trip), so a
// message published by another connection right after is delivered; on
// failure it drops sub.
func (b *Bus) registered(sub *nats.Subscription) error {
	if err := b.nc.FlushTimeout(b.cfg.PublishTimeout); err != nil {
		_ = sub.Unsubscribe()
		return unavailable(err)
	}
	return nil
}
