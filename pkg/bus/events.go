package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/taskchat/taskchat/pkg/chat"
)

// conversationSubject returns the event subject of conversationID, which
// must be a UUID in its canonical 36-character form (either case; the
// subject uses lowercase, as Postgres prints it).
func (b *Bus) conversationSubject(conversationID string) (string, error) {
	id, ok := canonicalUUID(conversationID)
	if !ok {
		return "", fmt.Errorf("%w: conversation id %q is not a UUID", ErrInvalidID, truncate(conversationID, 40))
	}
	return b.cfg.eventsSubject(id), nil
}

func canonicalUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// eventMsg encodes ev for its conversation's subject.
func (b *Bus) eventMsg(ctx context.Context, ev chat.Event, msgID string) (*nats.Msg, error) {
	subject, err := b.conversationSubject(ev.ConversationID)
	if err != nil {
		return nil, err
	}
	if msgID != "" && !idSafe(msgID) {
		return nil, fmt.Errorf("%w: message id is not printable ASCII of at most %d bytes", ErrInvalidID, maxHeaderValue)
	}
	if ev.V == 0 {
		ev.V = chat.EventVersion
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return newMsg(ctx, subject, msgID, data), nil
}

// PublishEvent publishes ev on its conversation's subject and waits for
// the stream's acknowledgement, returning the event's stream sequence (the
// first one's, for a duplicate msgID inside the duplicate window). An
// empty msgID gets a random one, so a retried publish is then stored
// twice. ev.V is set to chat.EventVersion when zero. A conversation id that
// is not a UUID is refused with ErrInvalidID; NATS failures wrap
// ErrUnavailable.
func (b *Bus) PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error) {
	m, err := b.eventMsg(ctx, ev, msgID)
	if err != nil {
		return 0, fmt.Errorf("publish event: %w", err)
	}
	ctx, cancel := withTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if !b.nc.IsConnected() {
		return 0, fmt.Errorf("publish event: %w: %s", ErrUnavailable, b.nc.Status())
	}
	ack, err := b.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("publish event: %w", unavailable(err))
	}
	return ack.Sequence, nil
}

// EventPublisher publishes the events of one run without waiting for each
// acknowledgement, with at most maxPending unacknowledged at a time.
// Publish and Flush may be called from several goroutines; errors are
// sticky: Flush returns the first one until the publisher is dropped. Use
// one per run.
type EventPublisher struct {
	b    *Bus
	slot chan struct{} // one token per unacknowledged publish

	mu       sync.Mutex
	pending  []jetstream.PubAckFuture
	waiting  bool          // a goroutine is waiting for pending acks
	idle     chan struct{} // closed when pending becomes empty
	firstErr error
}

// NewEventPublisher returns an EventPublisher allowing maxPending
// unacknowledged publishes (at least 1).
func (b *Bus) NewEventPublisher(maxPending int) *EventPublisher {
	maxPending = max(maxPending, 1)
	idle := make(chan struct{})
	close(idle)
	return &EventPublisher{b: b, slot: make(chan struct{}, maxPending), idle: idle}
}

// Publish sends ev like PublishEvent but returns once it is sent, blocking
// first while maxPending publishes await their acknowledgement (or until
// ctx ends). Its error covers the send; a later failure of the
// acknowledgement is reported by Flush.
func (p *EventPublisher) Publish(ctx context.Context, ev chat.Event, msgID string) error {
	m, err := p.b.eventMsg(ctx, ev, msgID)
	if err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	select {
	case p.slot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("publish event: waiting for a free slot: %w", ctx.Err())
	}
	if !p.b.nc.IsConnected() {
		<-p.slot
		return p.fail(fmt.Errorf("publish event: %w: %s", ErrUnavailable, p.b.nc.Status()))
	}
	f, err := p.b.js.PublishMsgAsync(m)
	if err != nil {
		<-p.slot
		return p.fail(fmt.Errorf("publish event: %w", unavailable(err)))
	}
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.idle = make(chan struct{})
	}
	p.pending = append(p.pending, f)
	if !p.waiting {
		p.waiting = true
		go p.wait()
	}
	p.mu.Unlock()
	return nil
}

// wait resolves pending futures in publish order (acks come back in that
// order) and exits when none is left.
func (p *EventPublisher) wait() {
	for {
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.waiting = false
			close(p.idle)
			p.mu.Unlock()
			return
		}
		f := p.pending[0]
		p.mu.Unlock()

		var err error
		select {
		case <-f.Ok():
		case e := <-f.Err():
			err = fmt.Errorf("publish event: %w", unavailable(e))
		}

		p.mu.Lock()
		p.pending[0] = nil
		p.pending = p.pending[1:]
		if err != nil && p.firstErr == nil {
			p.firstErr = err
		}
		p.mu.Unlock()
		<-p.slot
	}
}

func (p *EventPublisher) fail(err error) error {
	p.mu.Lock()
	if p.firstErr == nil {
		p.firstErr = err
	}
	p.mu.Unlock()
	return err
}

// Flush waits until every publish so far is acknowledged (or failed) and
// returns the first error the publisher has seen, or ctx's error when it
// ends first.
func (p *EventPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
		return fmt.Errorf("flush events: %w", ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}

// LastEventSeq returns the stream sequence of the conversation's newest
// event, or 0 when it has none (by a direct get of the last message on its
// subject).
func (b *Bus) LastEventSeq(ctx context.Context, conversationID string) (uint64, error) {
	subject, err := b.conversationSubject(conversationID)
	if err != nil {
		return 0, fmt.Errorf("last event: %w", err)
	}
	m, err := b.events.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last event: %w", unavailable(err))
	}
	return m.Sequence, nil
}

// StreamLastSeq returns the newest sequence of the events stream (0 when
// it is empty): a cursor just before anything published from now on.
func (b *Bus) StreamLastSeq(ctx context.Context) (uint64, error) {
	info, err := b.events.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("events stream info: %w", unavailable(err))
	}
	return info.State.LastSeq, nil
}

// replayInactive is how long the server keeps a replay consumer whose
// reader vanished before deleting it.
const replayInactive = 30 * time.Second

// ReadEvents returns up to max events of the conversation with a stream
// sequence above afterSeq, in stream order, Seq filled in. It reads them
// through a short-lived consumer of its own — ordered (no acks, in memory,
// one filter subject, starting at afterSeq+1) — deleted before returning,
// so the cost is two API calls plus the messages however many there are.
// Events that expired (EventsMaxAge) or were purged are simply absent; an
// event that does not decode is skipped. Seq numbers are the stream's, so
// they grow but are not consecutive within a conversation.
func (b *Bus) ReadEvents(ctx context.Context, conversationID string, afterSeq uint64, max int) ([]chat.Event, error) {
	subject, err := b.conversationSubject(conversationID)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	if max < 1 {
		return nil, errors.New("read events: max must be at least 1")
	}
	ctx, cancel := withTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	name := "replay_" + nuid.Next()
	cons, err := b.js.CreateConsumer(ctx, b.cfg.EventsStream(), jetstream.ConsumerConfig{
		Name:              name,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       afterSeq + 1,
		FilterSubject:     subject,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: replayInactive,
	})
	if err != nil {
		return nil, fmt.Errorf("read events: create replay consumer: %w", unavailable(err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.PublishTimeout)
		defer cancel()
		if err := b.js.DeleteConsumer(dctx, b.cfg.EventsStream(), name); err != nil {
			b.log.Debug("delete replay consumer", slog.String("consumer", name), slog.Any("error", err))
		}
	}()
	want := int(min(cons.CachedInfo().NumPending, uint64(max)))
	events := make([]chat.Event, 0, want)
	var lastStream, lastConsumer uint64
	for got := 0; got < want; {
		msgs, err := collect(cons.FetchNoWait(want - got))
		if err != nil {
			return nil, fmt.Errorf("read events: %w", unavailable(err))
		}
		if len(msgs) == 0 {
			break // expired or purged since the consumer was made
		}
		for _, m := range msgs {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read events: %w", err)
			}
			// An ordered consumer's deliveries are consecutive; a gap means
			// a message was lost on the way, and the caller's cursor would
			// skip it for good.
			if md.Sequence.Consumer != lastConsumer+1 || md.Sequence.Stream <= lastStream {
				return nil, fmt.Errorf("read events: %w: replay out of order", ErrUnavailable)
			}
			lastStream, lastConsumer = md.Sequence.Stream, md.Sequence.Consumer
			var ev chat.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				b.log.Warn("skip undecodable event", slog.String("subject", m.Subject()), slog.Uint64("seq", md.Sequence.Stream), slog.Any("error", err))
				continue
			}
			ev.Seq = md.Sequence.Stream
			events = append(events, ev)
		}
	}
	return events, nil
}

// PurgeEvents deletes every stored event of the conversation.
func (b *Bus) PurgeEvents(ctx context.Context, conversationID string) error {
	subject, err := b.conversationSubject(conversationID)
	if err != nil {
		return fmt.Errorf("purge events: %w", err)
	}
	if err := b.events.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return fmt.Errorf("purge events: %w", unavailable(err))
	}
	return nil
}

// SubscribeEvents calls f with every event published from now on, of
// every conversation, through one core NATS subscription (Seq is 0: core
// subscribers do not see stream sequences; a publish retried under the
// same message id may be seen twice). f runs on the subscription's one
// goroutine, so it must be quick (hand off to channels). stop
// unsubscribes; events that do not decode are skipped.
func (b *Bus) SubscribeEvents(f func(chat.Event)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(b.cfg.eventsWildcard(), func(m *nats.Msg) {
		var ev chat.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			b.log.Warn("skip undecodable event", slog.String("subject", m.Subject), slog.Any("error", err))
			return
		}
		f(ev)
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe events: %w", unavailable(err))
	}
	if err := b.registered(sub); err != nil {
		return nil, fmt.Errorf("subscribe events: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// EventBounds returns the first and last sequence of the events stream:
// a cursor below first-1 may have lost events to retention, one above
// last was never handed out (the stream was reset). An empty stream has
// first = last+1 (or both 0 when nothing was ever stored).
func (b *Bus) EventBounds(ctx context.Context) (first, last uint64, err error) {
	info, err := b.events.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("events stream info: %w", unavailable(err))
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// FollowEvents calls f with every event stored from now on, of every
// conversation, in stream order, Seq filled in from the stream sequence.
// It uses one ordered consumer (deliver new, in memory, no acks) that the
// client recreates from the last sequence seen after a disconnect, so a
// process follows the whole stream through one consumer, however many
// clients it serves. f runs on the consumer's one goroutine, so it must be
// quick. stop ends the consumer; events that do not decode are skipped.
func (b *Bus) FollowEvents(ctx context.Context, f func(chat.Event)) (stop func(), err error) {
	cons, err := b.js.OrderedConsumer(ctx, b.cfg.EventsStream(), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", unavailable(err))
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			b.log.Warn("skip event without metadata", slog.String("subject", m.Subject()), slog.Any("error", err))
			return
		}
		var ev chat.Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			b.log.Warn("skip undecodable event", slog.String("subject", m.Subject()), slog.Uint64("seq", md.Sequence.Stream), slog.Any("error", err))
			return
		}
		ev.Seq = md.Sequence.Stream
		f(ev)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		b.log.Debug("follow events", slog.Any("error", err))
	}))
	if err != nil {
		return nil, fmt.Errorf("follow events: consume: %w", unavailable(err))
	}
	return cc.Stop, nil
}
