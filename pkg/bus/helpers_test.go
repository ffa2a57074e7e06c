package bus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/natsembed"
)

// machineURL is the machine's own nats-server (2.9 on these machines; CI
// starts it with -js). TEST_NATS_URL overrides it.
const machineURL = "nats://127.0.0.1:4222"

// testServer is one NATS server the suite runs against.
type testServer struct {
	name string
	url  string
	// emb is the embedded server, nil for the machine's; dir its data.
	emb *natsembed.Server
	dir string
}

var (
	machineOnce sync.Once
	machineErr  error
)

// servers returns the servers every test runs against: a fresh embedded
// server (nats-server/v2 as a library, current) and the machine's
// nats-server (2.9). The machine's server must be reachable: the same code
// has to work on both, so its absence fails the test.
func servers(t *testing.T) []testServer {
	t.Helper()
	return []testServer{embedded(t), machine(t)}
}

func embedded(t *testing.T) testServer {
	t.Helper()
	dir := t.TempDir()
	s, err := natsembed.Start(natsembed.Config{DataDir: dir, Port: natsembed.RandomPort})
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return testServer{name: "embedded", url: s.ClientURL(), emb: s, dir: dir}
}

func machine(t *testing.T) testServer {
	t.Helper()
	u := machineURL
	if v := os.Getenv("TEST_NATS_URL"); v != "" {
		u = v
	}
	machineOnce.Do(func() {
		pu, err := url.Parse(u)
		if err != nil {
			machineErr = err
			return
		}
		conn, err := net.DialTimeout("tcp", pu.Host, 2*time.Second)
		if err != nil {
			machineErr = err
			return
		}
		_ = conn.Close()
		nc, err := nats.Connect(u, nats.Timeout(2*time.Second))
		if err != nil {
			machineErr = err
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			machineErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, machineErr = js.AccountInfo(ctx)
	})
	if machineErr != nil {
		t.Fatalf("the machine's nats-server with JetStream at %s is not usable (CI starts it: nats-server -js -a 127.0.0.1 -p 4222): %v", u, machineErr)
	}
	return testServer{name: "machine", url: u}
}

// each runs f as a subtest against every server.
func each(t *testing.T, f func(t *testing.T, s testServer)) {
	t.Helper()
	for _, s := range servers(t) {
		t.Run(s.name, func(t *testing.T) { f(t, s) })
	}
}

// newConfig returns a Config for s with a prefix of its own (so tests on
// the shared machine server never meet) and short durations; the streams
// are deleted when the test ends.
func newConfig(t *testing.T, s testServer) bus.Config {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	cfg := bus.Config{
		URL:             s.url,
		Prefix:          "t" + hex.EncodeToString(b[:]),
		EventsMaxAge:    time.Hour,
		DuplicateWindow: time.Minute,
		AckWait:         time.Second,
		MaxDeliver:      5,
		ConnectTimeout:  time.Second,
		ReconnectWait:   50 * time.Millisecond,
		PublishTimeout:  2 * time.Second,
		ClientName:      "bus-test",
	}
	t.Cleanup(func() { deleteStreams(t, s, cfg) })
	return cfg
}

func deleteStreams(t *testing.T, s testServer, cfg bus.Config) {
	t.Helper()
	if s.emb != nil {
		return // the server and its directory go away with the test
	}
	js := inspector(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, name := range []string{cfg.RunsStream(), cfg.EventsStream()} {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", name, err)
		}
	}
}

// connect connects a Bus and closes it when the test ends.
func connect(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// inspector returns a plain JetStream client on s for looking at streams
// and consumers from outside the package.
func inspector(t *testing.T, s testServer) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.url)
	if err != nil {
		t.Fatalf("inspector connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("inspector jetstream: %v", err)
	}
	return js
}

func consumerInfo(t *testing.T, js jetstream.JetStream, cfg bus.Config) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, cfg.RunsStream(), bus.ConsumerName)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
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
