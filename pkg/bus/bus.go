// Package bus owns taskchat's use of NATS JetStream: the streams and the
// consumer (declared here, created or updated at start by every service;
// chatctl only looks them up, WithoutDeclaring),
// the subjects, the versioned envelopes and their headers, and every
// publish, pull and replay the API and the workers do.
//
// Three subjects, all under one prefix (default "taskchat"):
//
//   - <prefix>.runs: run requests, in the work-queue stream <PREFIX>_RUNS,
//     deduplicated by Nats-Msg-Id = run id, pulled by the one durable pull
//     consumer "workers" that every worker shares;
//   - <prefix>.events.<conversation-uuid>: run events, in the stream
//     <PREFIX>_EVENTS (limits retention, EventsMaxAge, direct get allowed),
//     one subject per conversation — built from UUIDs only, never from user
//     ids, which may hold '.', '*' or '>';
//   - <prefix>.cancel: cancel signals on core NATS, body = run id.
//
// The code uses only what nats-server 2.9 and the current server both do:
// work queues, Nats-Msg-Id dedupe, InProgress, NakWithDelay, Term (never
// TermWithReason), one consumer on the work queue, consumers with a single
// filter subject, Direct Get. Every message carries the headers
// Nats-Msg-Id, traceparent, X-Request-Id and X-User-Id.
//
// Failures of NATS itself (down, reconnecting, no acknowledgement in time,
// stream missing) wrap ErrUnavailable. The connection never buffers
// publishes while it reconnects, so a publish that failed was not sent
// later behind the caller's back.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable marks a failure of NATS itself: not connected, no
// acknowledgement in time, JetStream or the stream not answering. Callers
// answer 503 (API) or retry later (workers).
var ErrUnavailable = errors.New("bus: NATS unavailable")

// ErrNotDeclared marks a Connect WithoutDeclaring that found the streams
// or the consumer missing: no API or worker has started against this
// server and prefix yet.
var ErrNotDeclared = errors.New("bus: streams not declared")

// ErrInvalidID marks a conversation or run id that cannot be used in a
// subject or a header.
var ErrInvalidID = errors.New("bus: invalid id")

// asyncMaxPending caps the asynchronous publishes of the whole connection;
// each EventPublisher has its own, smaller bound, so this only has to stay
// above their sum in practice.
const asyncMaxPending = 1 << 16

// Bus is one connection to NATS with taskchat's streams and consumer
// declared. It is safe for concurrent use.
type Bus struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	runs    jetstream.Stream
	events  jetstream.Stream
	workers jetstream.Consumer
	closed  chan struct{}
	// lookUpOnly: WithoutDeclaring was given.
	lookUpOnly bool

	closeOnce sync.Once
}

// Option changes how Connect sets a Bus up.
type Option func(*Bus)

// WithLogger sends the connection's events (disconnects, reconnects,
// asynchronous errors) to log; without it they are discarded.
func WithLogger(log *slog.Logger) Option {
	return func(b *Bus) {
		if log != nil {
			b.log = log
		}
	}
}

// WithoutDeclaring makes Connect look the streams and the consumer up
// instead of creating or updating them, so it changes nothing on the
// server. It is for tools like chatctl, which publish with whatever
// environment an operator has: declaring with it could reset the
// services' settings (a default EVENTS_MAX_AGE would shorten the events'
// life, a default RUN_ACK_WAIT the workers'). Connect then fails with
// ErrNotDeclared when they do not exist.
func WithoutDeclaring() Option {
	return func(b *Bus) { b.lookUpOnly = true }
}

// Connect connects to cfg.URL and creates or updates both streams and the
// workers' consumer. It retries the first connection until ctx ends (each
// dial bounded by ConnectTimeout), so a process may start before NATS;
// pass a context with a deadline. Afterwards the connection reconnects
// forever, buffering nothing meanwhile. Declaring is idempotent: the API
// and any number of workers may call Connect at the same time, and a
// changed setting (AckWait, MaxDeliver, MaxAckPending, EventsMaxAge, …)
// updates the existing stream or consumer.
func Connect(ctx context.Context, cfg Config, opts ...Option) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	b := &Bus{
		cfg:    cfg.withDefaults(),
		log:    slog.New(slog.DiscardHandler),
		closed: make(chan struct{}),
	}
	for _, o := range opts {
		o(b)
	}
	if err := b.dial(ctx); err != nil {
		return nil, err
	}
	js, err := jetstream.New(b.nc,
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending),
		jetstream.WithPublishAsyncTimeout(b.cfg.PublishTimeout),
		jetstream.WithDefaultTimeout(b.cfg.PublishTimeout),
	)
	if err != nil {
		b.nc.Close()
		return nil, fmt.Errorf("connect to nats: jetstream: %w", err)
	}
	b.js = js
	declare := b.declare
	if b.lookUpOnly {
		declare = b.lookUp
	}
	if err := declare(ctx); err != nil {
		b.nc.Close()
		return nil, err
	}
	return b, nil
}

// dial makes the first connection, retrying until ctx ends.
func (b *Bus) dial(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name(b.cfg.ClientName),
		nats.Timeout(b.cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(b.cfg.ReconnectWait),
		// Nothing is buffered while reconnecting: a publish fails at once
		// instead of being sent after the API has answered 503.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own Close: not worth a warning.
			if err == nil {
				b.log.Debug("nats connection closed")
				return
			}
			b.log.Warn("nats disconnected", slog.Any("error", err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("nats reconnected", slog.String("server", nc.ConnectedServerId()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{slog.Any("error", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			b.log.Error("nats asynchronous error", attrs...)
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			b.closeOnce.Do(func() { close(b.closed) })
		}),
	}
	backoff := 100 * time.Millisecond
	for {
		nc, err := nats.Connect(b.cfg.URL, opts...)
		if err == nil {
			b.nc = nc
			return nil
		}
		b.log.Warn("nats connect failed; retrying", slog.Any("error", err), slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to nats: %w: %w (%w)", ErrUnavailable, err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// declare creates or updates the streams and the consumer.
func (b *Bus) declare(ctx context.Context) error {
	c := b.cfg
	runs, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        c.RunsStream(),
		Description: "taskchat run requests, one per run, pulled by the workers",
		Subjects:    []string{c.runsSubject()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxMsgs:     c.RunsMaxMsgs,
		Discard:     jetstream.DiscardNew,
	})
	if err != nil {
		return err
	}
	events, err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        c.EventsStream(),
		Description: "taskchat run events, one subject per conversation",
		Subjects:    []string{c.eventsWildcard()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      c.EventsMaxAge,
		MaxBytes:    c.EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  c.DuplicateWindow,
		AllowDirect: true,
	})
	if err != nil {
		return err
	}
	// CreateOrUpdateConsumer is one request the server applies as create
	// or update, so concurrent callers all succeed.
	workers, err := b.js.CreateOrUpdateConsumer(ctx, c.RunsStream(), jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "taskchat workers: one durable pull consumer shared by all",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("declare consumer %s: %w", ConsumerName, declareErr(err))
	}
	b.runs, b.events, b.workers = runs, events, workers
	return nil
}

// lookUp finds the streams and the consumer as the services declared them.
func (b *Bus) lookUp(ctx context.Context) error {
	c := b.cfg
	notFound := func(what string, err error) error {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("look up %s: %w: start the API or a worker with NATS_PREFIX %q first", what, ErrNotDeclared, c.Prefix)
		}
		return fmt.Errorf("look up %s: %w", what, declareErr(err))
	}
	runs, err := b.js.Stream(ctx, c.RunsStream())
	if err != nil {
		return notFound("stream "+c.RunsStream(), err)
	}
	events, err := b.js.Stream(ctx, c.EventsStream())
	if err != nil {
		return notFound("stream "+c.EventsStream(), err)
	}
	workers, err := runs.Consumer(ctx, ConsumerName)
	if err != nil {
		return notFound("consumer "+ConsumerName, err)
	}
	b.runs, b.events, b.workers = runs, events, workers
	return nil
}

// ensureStream creates the stream or updates it to cfg. Two processes
// starting together may both find it missing; the loser of the create
// race then updates.
func (b *Bus) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	for range 3 {
		s, err := b.js.UpdateStream(ctx, cfg)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("declare stream %s: %w", cfg.Name, declareErr(err))
		}
		s, err = b.js.CreateStream(ctx, cfg)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("declare stream %s: %w", cfg.Name, declareErr(err))
		}
	}
	return nil, fmt.Errorf("declare stream %s: created and deleted concurrently", cfg.Name)
}

// Close drains the connection (subscriptions finish the messages they
// hold, pending publishes are flushed) and waits until it is closed.
func (b *Bus) Close() {
	if err := b.nc.Drain(); err != nil {
		// Not connected: nothing can be drained.
		b.nc.Close()
	}
	<-b.closed
}

// Connected reports whether the connection is up right now.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Ready checks that NATS is connected and JetStream answers, for /readyz.
// Its error wraps ErrUnavailable.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats ready: %w: %s", ErrUnavailable, strings.ToLower(b.nc.Status().String()))
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("nats ready: %w", unavailable(err))
	}
	return nil
}

// Config returns the configuration in use, defaults applied.
func (b *Bus) Config() Config { return b.cfg }

// unavailable wraps err from the NATS client in ErrUnavailable: every
// error it returns means the server, JetStream or the stream did not do
// what was asked.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// declareErr wraps err in ErrUnavailable unless the server answered with an
// error of its own (a stream that cannot be changed that way, subjects
// taken by another stream): that is a configuration problem, not an
// outage.
func declareErr(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return err
	}
	return unavailable(err)
}
