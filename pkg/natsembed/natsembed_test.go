package natsembed_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/natsembed"
)

func start(t *testing.T, cfg natsembed.Config) *natsembed.Server {
	t.Helper()
	s, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func jetStream(t *testing.T, s *natsembed.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func port(t *testing.T, s *natsembed.Server) int {
	t.Helper()
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != natsembed.DefaultHost {
		t.Fatalf("ClientURL %s is not on %s", s.ClientURL(), natsembed.DefaultHost)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartServesJetStreamAndKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s := start(t, natsembed.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	p := port(t, s)
	if p == 4222 || p == 0 {
		t.Fatalf("the default port is %d, want a random free one", p)
	}
	if !strings.Contains(logs.String(), "Server is ready") {
		t.Errorf("the logger did not receive the server's log: %q", logs.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js := jetStream(t, s)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "keep.a", []byte("x")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	s.Shutdown()

	// The same directory on the same port: the stream and its message are
	// still there.
	again := start(t, natsembed.Config{DataDir: dir, Port: p})
	st, err := jetStream(t, again).Stream(ctx, "KEEP")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("after restart: %v, %d messages; want 1", err, info.State.Msgs)
	}
}

func TestStartFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name string
		cfg  natsembed.Config
		want string
	}{
		{"no data dir", natsembed.Config{}, "data directory is required"},
		{"port out of range", natsembed.Config{DataDir: t.TempDir(), Port: 70000}, "out of range"},
		{"port taken", natsembed.Config{DataDir: t.TempDir(), Port: busyPort, ReadyTimeout: 2 * time.Second}, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := natsembed.Start(tt.cfg)
			if err == nil {
				s.Shutdown()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(strings.ToLower(err.Error()), tt.want) {
				t.Fatalf("Start = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
