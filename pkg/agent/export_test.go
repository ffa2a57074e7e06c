package agent

import (
	"context"
	"time"
)

// WithPause replaces the offline provider's wait between words, so a test
// sees each pause without waiting for it.
func WithPause(f func(ctx context.Context, d time.Duration) error) OfflineOption {
	return func(o *offline) { o.pause = f }
}
