package bus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
)

// newConfig returns a Config for s with a prefix of its own (its streams
// deleted when the test ends) and short durations.
func newConfig(t *testing.T, s bustest.Server) bus.Config {
	t.Helper()
	cfg := bustest.Config(t, s)
	cfg.EventsMaxAge = time.Hour
	cfg.DuplicateWindow = time.Minute
	cfg.AckWait = time.Second
	cfg.MaxDeliver = 5
	cfg.ConnectTimeout = time.Second
	cfg.ReconnectWait = 50 * time.Millisecond
	cfg.PublishTimeout = 2 * time.Second
	cfg.ClientName = "bus-test"
	return cfg
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// newUUID returns a random version-4 UUID in canonical form.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// run returns a run request with fresh ids.
func run() bus.RunRequest {
	return bus.RunRequest{RunID: newUUID(), UserID: "user" + newUUID()[:8], ConversationID: newUUID()}
}

func publishRun(t *testing.T, b *bus.Bus, r bus.RunRequest) {
	t.Helper()
	if err := b.PublishRun(context.Background(), r); err != nil {
		t.Fatalf("PublishRun: %v", err)
	}
}

// fetch fetches and fails the test on error.
func fetch(t *testing.T, b *bus.Bus, max int, wait time.Duration) []*bus.Delivery {
	t.Helper()
	ds, err := b.Fetch(context.Background(), max, wait)
	if err != nil {
		t.Fatalf("Fetch(%d, %s): %v", max, wait, err)
	}
	return ds
}
