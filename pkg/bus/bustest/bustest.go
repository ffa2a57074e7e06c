// Package bustest gives tests the NATS servers taskchat's bus runs on, for
// tests only: a fresh embedded server (nats-server/v2 as a library, the
// current release) and the machine's own nats-server (2.9, as deployed),
// with a subject prefix of each test's own whose streams are deleted when
// the test ends, and a plain JetStream client to look at streams and the
// workers' consumer from outside the bus. The same code has to work on
// both servers, so Each runs a test body against both and a missing
// machine server fails the test rather than skipping it.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/natsembed"
)

// DefaultMachineURL is the machine's own nats-server, which CI starts with
// JetStream (nats-server -js -a 127.0.0.1 -p 4222). The environment
// variable TEST_NATS_URL overrides it.
const DefaultMachineURL = "nats://127.0.0.1:4222"

// Server is one NATS server a test runs against.
type Server struct {
	// Name is "embedded" or "machine", the name of Each's subtest.
	Name string
	// URL is the server's client URL.
	URL string
	// Embedded is the in-process server, which a test may shut down and
	// Restart; nil for the machine's server, which tests cannot stop.
	Embedded *natsembed.Server
	// Dir is the embedded server's storage directory ("" for the machine's).
	Dir string
}

// Embedded starts a fresh embedded server with JetStream on a random
// loopback port and storage in a temporary directory; it shuts down when
// the test ends.
func Embedded(t testing.TB) Server {
	t.Helper()
	dir := t.TempDir()
	s, err := natsembed.Start(natsembed.Config{DataDir: dir, Port: natsembed.RandomPort})
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return Server{Name: "embedded", URL: s.ClientURL(), Embedded: s, Dir: dir}
}

// Restart starts the embedded server s again on its port and storage,
// after the test shut it down: clients reconnect to the same URL and find
// their streams. The caller shuts the new server down, after whatever uses
// it.
func (s Server) Restart(t *testing.T) *natsembed.Server {
	t.Helper()
	if s.Embedded == nil {
		t.Fatal("bustest: only an embedded server can be restarted")
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("restart embedded nats: %v", err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("restart embedded nats: port of %s: %v", s.URL, err)
	}
	again, err := natsembed.Start(natsembed.Config{DataDir: s.Dir, Port: port})
	if err != nil {
		t.Fatalf("restart embedded nats: %v", err)
	}
	return again
}

var (
	machineOnce sync.Once
	machineErr  error
)

// Machine returns the machine's nats-server (TEST_NATS_URL, default
// DefaultMachineURL), checked once per test binary to answer JetStream
// requests; when it does not, the test fails saying how CI starts it.
func Machine(t *testing.T) Server {
	t.Helper()
	u := MachineURL()
	machineOnce.Do(func() { machineErr = probe(u) })
	if machineErr != nil {
		t.Fatalf("the machine's nats-server with JetStream at %s is not usable (CI starts it: nats-server -js -a 127.0.0.1 -p 4222; TEST_NATS_URL points elsewhere): %v", u, machineErr)
	}
	return Server{Name: "machine", URL: u}
}

// MachineURL is the URL of the machine's nats-server: TEST_NATS_URL, or
// DefaultMachineURL without it.
func MachineURL() string {
	if v := os.Getenv("TEST_NATS_URL"); v != "" {
		return v
	}
	return DefaultMachineURL
}

// probe checks that u answers JetStream requests. A plain TCP dial first
// fails fast where nothing listens.
func probe(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", pu.Host, 2*time.Second)
	if err != nil {
		return err
	}
	_ = conn.Close()
	nc, err := nats.Connect(u, nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Each runs f as the subtest "embedded" against a fresh embedded server
// and as "machine" against the machine's nats-server.
func Each(t *testing.T, f func(t *testing.T, s Server)) {
	t.Helper()
	t.Run("embedded", func(t *testing.T) { f(t, Embedded(t)) })
	t.Run("machine", func(t *testing.T) { f(t, Machine(t)) })
}

// Prefix returns a subject prefix of the test's own (valid for
// bus.Config.Prefix), so tests sharing the machine's server never meet.
// On the machine's server the prefix's streams are deleted when the test
// ends; call Prefix before connecting anything that uses it, so that the
// deletion runs after those connections are closed. An embedded server's
// streams go with its directory.
func Prefix(t testing.TB, s Server) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	prefix := "t" + hex.EncodeToString(b[:])
	if s.Embedded == nil {
		t.Cleanup(func() { deleteStreams(t, s.URL, prefix) })
	}
	return prefix
}

// deleteStreams deletes prefix's streams on the server at u; a stream
// never created is no error.
func deleteStreams(t testing.TB, u, prefix string) {
	t.Helper()
	nc, err := nats.Connect(u, nats.Timeout(2*time.Second))
	if err != nil {
		t.Errorf("delete the streams of %s: %v", prefix, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("delete the streams of %s: %v", prefix, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := bus.Config{Prefix: prefix}
	for _, name := range []string{cfg.RunsStream(), cfg.EventsStream()} {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", name, err)
		}
	}
}

// Config returns a bus.Config for s with a Prefix of the test's own (see
// Prefix: its streams are deleted when the test ends); the caller sets the
// durations its test needs.
func Config(t *testing.T, s Server) bus.Config {
	t.Helper()
	return bus.Config{URL: s.URL, Prefix: Prefix(t, s)}
}

// Connect connects a Bus with cfg, declaring its streams and consumer as
// the services do, and closes it when the test ends (closing it earlier is
// harmless).
func Connect(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect bus: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// JetStream returns a plain JetStream client on the server at u, for
// looking at streams and consumers from outside the bus (its Conn for core
// NATS); it is closed when the test ends.
func JetStream(t *testing.T, u string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(u)
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

// StreamInfo returns the stream name's info, failing the test when it
// cannot.
func StreamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
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

// ConsumerInfo returns the info of the workers' consumer on cfg's runs
// stream, failing the test when it cannot.
func ConsumerInfo(t *testing.T, js jetstream.JetStream, cfg bus.Config) *jetstream.ConsumerInfo {
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
