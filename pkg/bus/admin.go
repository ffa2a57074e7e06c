package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// DeleteStreams deletes both streams of b's prefix, and with them the
// workers' consumer, every queued run request and every event. It is for
// throwaway prefixes (a load run or a test on a shared server); no service
// calls it. A stream already gone is not an error; failures of NATS wrap
// ErrUnavailable.
func (b *Bus) DeleteStreams(ctx context.Context) error {
	var errs []error
	for _, name := range []string{b.cfg.RunsStream(), b.cfg.EventsStream()} {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("delete stream %s: %w", name, declareErr(err)))
		}
	}
	return errors.Join(errs...)
}
