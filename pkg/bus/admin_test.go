package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/bus/bustest"
)

// TestDeleteStreams: both streams of the prefix go, a second call is not
// an error, and another prefix's streams stay.
func TestDeleteStreams(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg, other := newConfig(t, s), newConfig(t, s)
		b := bustest.Connect(t, cfg)
		bustest.Connect(t, other)
		publishRun(t, b, run())

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := range 2 {
			if err := b.DeleteStreams(ctx); err != nil {
				t.Fatalf("DeleteStreams (call %d): %v", i+1, err)
			}
		}
		js := bustest.JetStream(t, s.URL)
		for _, name := range []string{cfg.RunsStream(), cfg.EventsStream()} {
			if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("stream %s after DeleteStreams: %v, want not found", name, err)
			}
		}
		for _, name := range []string{other.RunsStream(), other.EventsStream()} {
			bustest.StreamInfo(t, js, name)
		}
	})
}
