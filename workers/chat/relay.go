package chatworker

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/chat"
)

// Defaults of RelayConfig.
const (
	DefaultRelayInterval    = 5 * time.Second
	DefaultRelayQueuedAfter = 15 * time.Second
	DefaultRelayBatch       = 500
)

// RelayConfig tunes the relay.
type RelayConfig struct {
	// Interval is how often it looks for stale runs (RELAY_INTERVAL).
	Interval time.Duration
	// QueuedAfter is how long a run may stay queued and unclaimed before it
	// is published again (RELAY_QUEUED_AFTER).
	QueuedAfter time.Duration
	// Batch bounds the runs republished per pass.
	Batch int
}

func (c RelayConfig) withDefaults() RelayConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultRelayInterval
	}
	if c.QueuedAfter <= 0 {
		c.QueuedAfter = DefaultRelayQueuedAfter
	}
	if c.Batch <= 0 {
		c.Batch = DefaultRelayBatch
	}
	return c
}

// Publisher publishes run requests (*bus.Bus implements it).
type Publisher interface {
	PublishRun(ctx context.Context, req bus.RunRequest) error
}

// Relay publishes again the runs that would otherwise be stuck: queued
// runs nobody claimed for QueuedAfter (the API crashed between its commit
// and its publish, or a worker handed the run back), and running runs
// whose lease expired (their worker died). A duplicate is harmless: the
// claim in Postgres decides who runs what. Every worker process runs one;
// they may overlap.
type Relay struct {
	cfg   RelayConfig
	maint *chat.Maintenance
	pub   Publisher
	log   *slog.Logger
	now   func() time.Time

	// published remembers when this relay last published each run, so a
	// run still waiting (workers behind) is not published again every pass.
	published map[string]time.Time
}

// NewRelay returns a relay over db publishing through pub.
func NewRelay(cfg RelayConfig, db bun.IDB, pub Publisher, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{cfg: cfg.withDefaults(), maint: chat.NewMaintenance(db), pub: pub, log: log, now: time.Now, published: map[string]time.Time{}}
}

// Run makes a pass every Interval until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("relay pass", "err", err)
		}
	}
}

// Pass publishes every stale run it has not published within QueuedAfter
// and reports how many it published. Pass is not safe for concurrent use;
// Run calls it from one goroutine.
func (r *Relay) Pass(ctx context.Context) (int, error) {
	now := r.now()
	refs, err := r.maint.StaleRuns(ctx, now.Add(-r.cfg.QueuedAfter), now, r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	for id, at := range r.published {
		if now.Sub(at) >= r.cfg.QueuedAfter {
			delete(r.published, id)
		}
	}
	n := 0
	for _, ref := range refs {
		if _, recent := r.published[ref.RunID]; recent {
			continue // published less than QueuedAfter ago: give it time
		}
		// A new message id per pass: the original id may still be inside
		// JetStream's duplicate window, which would drop the republish.
		req := bus.RunRequest{V: bus.RunVersion, RunID: ref.RunID, UserID: ref.UserID, ConversationID: ref.ConversationID,
			MsgID: ref.RunID + ".relay." + strconv.FormatInt(now.UnixNano(), 36)}
		if err := r.pub.PublishRun(ctx, req); err != nil {
			return n, err
		}
		r.published[ref.RunID] = now
		r.log.Info("run republished", "run_id", ref.RunID, "user_id", ref.UserID, "status", ref.Status)
		n++
	}
	return n, nil
}
