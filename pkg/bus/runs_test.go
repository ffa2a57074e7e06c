package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/reqctx"
)

func TestConfigValidate(t *testing.T) {
	ok := bus.Config{URL: "nats://127.0.0.1:4222"}
	tests := []struct {
		name string
		edit func(*bus.Config)
		want string // "" = valid; else a substring of the error
	}{
		{"defaults", func(*bus.Config) {}, ""},
		{"everything set", func(c *bus.Config) {
			*c = bus.Config{URL: "tls://a:4222, nats://b:4222", Prefix: "chat_2-x", Replicas: 3,
				EventsMaxAge: time.Hour, DuplicateWindow: time.Minute, AckWait: time.Second,
				MaxDeliver: 3, MaxAckPending: 10, ClientName: "api", ConnectTimeout: time.Second,
				ReconnectWait: time.Second, PublishTimeout: time.Second}
		}, ""},
		{"no url", func(c *bus.Config) { c.URL = " " }, "NATS_URL is required"},
		{"http url", func(c *bus.Config) { c.URL = "http://127.0.0.1:4222" }, "NATS_URL must be"},
		{"one bad url of two", func(c *bus.Config) { c.URL = "nats://a:1,b:2" }, "NATS_URL must be"},
		{"url with password not echoed", func(c *bus.Config) { c.URL = "http://u:s3cret@h" }, "NATS_URL must be"},
		{"prefix upper case", func(c *bus.Config) { c.Prefix = "TaskChat" }, "NATS_PREFIX"},
		{"prefix with dot", func(c *bus.Config) { c.Prefix = "a.b" }, "NATS_PREFIX"},
		{"prefix wildcard", func(c *bus.Config) { c.Prefix = "*" }, "NATS_PREFIX"},
		{"prefix too long", func(c *bus.Config) { c.Prefix = "a" + strings.Repeat("b", 32) }, "NATS_PREFIX"},
		{"replicas 6", func(c *bus.Config) { c.Replicas = 6 }, "NATS_STREAM_REPLICAS"},
		{"replicas negative", func(c *bus.Config) { c.Replicas = -1 }, "NATS_STREAM_REPLICAS"},
		{"events max age negative", func(c *bus.Config) { c.EventsMaxAge = -time.Second }, "EVENTS_MAX_AGE"},
		{"duplicate window negative", func(c *bus.Config) { c.DuplicateWindow = -time.Second }, "NATS_DUPLICATE_WINDOW"},
		{"duplicate window above max age", func(c *bus.Config) { c.EventsMaxAge = time.Minute; c.DuplicateWindow = time.Hour }, "must not exceed EVENTS_MAX_AGE"},
		{"duplicate default above short max age", func(c *bus.Config) { c.EventsMaxAge = time.Minute }, "must not exceed EVENTS_MAX_AGE"},
		{"ack wait negative", func(c *bus.Config) { c.AckWait = -1 }, "RUN_ACK_WAIT"},
		{"max deliver negative", func(c *bus.Config) { c.MaxDeliver = -1 }, "RUN_MAX_DELIVER"},
		{"max ack pending negative", func(c *bus.Config) { c.MaxAckPending = -1 }, "RUN_MAX_ACK_PENDING"},
		{"connect timeout negative", func(c *bus.Config) { c.ConnectTimeout = -1 }, "NATS_CONNECT_TIMEOUT"},
		{"reconnect wait negative", func(c *bus.Config) { c.ReconnectWait = -1 }, "NATS_RECONNECT_WAIT"},
		{"publish timeout negative", func(c *bus.Config) { c.PublishTimeout = -1 }, "NATS_PUBLISH_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("Validate() echoes the password: %v", err)
			}
		})
	}
}

func TestStreamNames(t *testing.T) {
	if got := (bus.Config{}).RunsStream(); got != "TASKCHAT_RUNS" {
		t.Errorf("RunsStream() = %q", got)
	}
	if got := (bus.Config{Prefix: "dev-1"}).EventsStream(); got != "DEV-1_EVENTS" {
		t.Errorf("EventsStream() = %q", got)
	}
}

func TestConnectUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// Port 1 on loopback refuses connections.
	_, err := bus.Connect(ctx, bus.Config{URL: "nats://127.0.0.1:1", ConnectTimeout: 100 * time.Millisecond})
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Connect = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Connect took %s after its context ended", d)
	}
}

func TestConnectDeclaresIdempotently(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		bustest.Connect(t, cfg)
		bustest.Connect(t, cfg) // a second declaration of the same settings

		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				b, err := bus.Connect(ctx, cfg)
				if err == nil {
					b.Close()
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent Connect: %v", err)
			}
		}

		js := bustest.JetStream(t, s.URL)
		runs := bustest.StreamInfo(t, js, cfg.RunsStream())
		if runs.Config.Retention != jetstream.WorkQueuePolicy || runs.Config.Storage != jetstream.FileStorage ||
			runs.Config.Duplicates != cfg.DuplicateWindow || len(runs.Config.Subjects) != 1 ||
			runs.Config.Subjects[0] != cfg.Prefix+".runs" || runs.Config.Replicas != 1 {
			t.Errorf("runs stream config = %+v", runs.Config)
		}
		events := bustest.StreamInfo(t, js, cfg.EventsStream())
		if events.Config.Retention != jetstream.LimitsPolicy || events.Config.Storage != jetstream.FileStorage ||
			events.Config.MaxAge != cfg.EventsMaxAge || !events.Config.AllowDirect ||
			events.Config.Duplicates != cfg.DuplicateWindow || len(events.Config.Subjects) != 1 ||
			events.Config.Subjects[0] != cfg.Prefix+".events.*" {
			t.Errorf("events stream config = %+v", events.Config)
		}
		ci := bustest.ConsumerInfo(t, js, cfg)
		if ci.Config.AckPolicy != jetstream.AckExplicitPolicy || ci.Config.AckWait != time.Second ||
			ci.Config.MaxDeliver != 5 || ci.Config.MaxAckPending != bus.DefaultMaxAckPending || ci.Config.Durable != bus.ConsumerName {
			t.Errorf("consumer config = %+v", ci.Config)
		}

		// Changed settings update what exists.
		cfg.AckWait = 2 * time.Second
		cfg.MaxDeliver = 7
		cfg.MaxAckPending = 50
		cfg.EventsMaxAge = 2 * time.Hour
		bustest.Connect(t, cfg)
		ci = bustest.ConsumerInfo(t, js, cfg)
		if ci.Config.AckWait != 2*time.Second || ci.Config.MaxDeliver != 7 || ci.Config.MaxAckPending != 50 {
			t.Errorf("after a changed Connect, consumer config = AckWait %s MaxDeliver %d MaxAckPending %d",
				ci.Config.AckWait, ci.Config.MaxDeliver, ci.Config.MaxAckPending)
		}
		if got := bustest.StreamInfo(t, js, cfg.EventsStream()).Config.MaxAge; got != 2*time.Hour {
			t.Errorf("after a changed Connect, events MaxAge = %s", got)
		}
	})
}

func TestConnectWithoutDeclaring(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		js := bustest.JetStream(t, s.URL)

		_, err := bus.Connect(ctx, cfg, bus.WithoutDeclaring())
		if !errors.Is(err, bus.ErrNotDeclared) || !strings.Contains(err.Error(), cfg.Prefix) {
			t.Fatalf("Connect before any declaration = %v, want ErrNotDeclared naming the prefix", err)
		}
		if _, err := js.Stream(ctx, cfg.RunsStream()); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("the runs stream after a Connect without declaring: %v, want none", err)
		}

		worker := bustest.Connect(t, cfg)
		// The tool's own settings differ from the services'; looking up
		// must not apply them.
		tool := cfg
		tool.AckWait = 9 * time.Second
		tool.MaxDeliver = 2
		tool.EventsMaxAge = 3 * time.Hour
		b, err := bus.Connect(ctx, tool, bus.WithoutDeclaring())
		if err != nil {
			t.Fatalf("Connect without declaring: %v", err)
		}
		t.Cleanup(b.Close)
		if ci := bustest.ConsumerInfo(t, js, cfg); ci.Config.AckWait != cfg.AckWait || ci.Config.MaxDeliver != cfg.MaxDeliver {
			t.Errorf("consumer changed: AckWait %s MaxDeliver %d", ci.Config.AckWait, ci.Config.MaxDeliver)
		}
		if got := bustest.StreamInfo(t, js, cfg.EventsStream()).Config.MaxAge; got != cfg.EventsMaxAge {
			t.Errorf("events MaxAge changed to %s", got)
		}
		r := run()
		publishRun(t, b, r)
		ds := fetch(t, worker, 1, 2*time.Second)
		if len(ds) != 1 || ds[0].Request.RunID != r.RunID {
			t.Fatalf("the worker fetched %+v, want the tool's run", ds)
		}
		if err := ds[0].Ack(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReady(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		if !b.Connected() {
			t.Fatal("Connected() = false after Connect")
		}
		if err := b.Ready(context.Background()); err != nil {
			t.Fatalf("Ready = %v", err)
		}
	})
}

func TestPublishRunDedupe(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		b := bustest.Connect(t, cfg)
		r := run()
		publishRun(t, b, r)
		publishRun(t, b, r) // the same run id: a duplicate, not an error
		if got := bustest.StreamInfo(t, bustest.JetStream(t, s.URL), cfg.RunsStream()).State.Msgs; got != 1 {
			t.Fatalf("after the same run twice, stream holds %d messages, want 1", got)
		}
		publishRun(t, b, run())
		if got := bustest.StreamInfo(t, bustest.JetStream(t, s.URL), cfg.RunsStream()).State.Msgs; got != 2 {
			t.Fatalf("after another run, stream holds %d messages, want 2", got)
		}
	})
}

func TestPublishRunRefusesMissingIDs(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		for _, r := range []bus.RunRequest{
			{UserID: "u", ConversationID: newUUID()},
			{RunID: "r", ConversationID: newUUID()},
			{RunID: "r", UserID: "u"},
			{RunID: "r\r\nX: y", UserID: "u", ConversationID: newUUID()},
		} {
			if err := b.PublishRun(context.Background(), r); !errors.Is(err, bus.ErrInvalidID) {
				t.Errorf("PublishRun(%+v) = %v, want ErrInvalidID", r, err)
			}
		}
	})
}

func TestFetchTakesOnlyMax(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		b := bustest.Connect(t, cfg)
		want := map[string]bool{}
		for range 5 {
			r := run()
			want[r.RunID] = true
			publishRun(t, b, r)
		}
		ds := fetch(t, b, 2, time.Second)
		if len(ds) != 2 {
			t.Fatalf("Fetch(2) returned %d deliveries", len(ds))
		}
		ci := bustest.ConsumerInfo(t, bustest.JetStream(t, s.URL), cfg)
		if ci.NumPending != 3 || ci.NumAckPending != 2 {
			t.Fatalf("after Fetch(2) of 5: pending %d, ack pending %d; want 3 and 2 (no hoarding)", ci.NumPending, ci.NumAckPending)
		}
		rest := fetch(t, b, 10, time.Second)
		if len(rest) != 3 {
			t.Fatalf("Fetch(10) of the remaining 3 returned %d", len(rest))
		}
		for _, d := range append(ds, rest...) {
			if d.Err != nil || !want[d.Request.RunID] || d.NumDelivered != 1 || d.Request.V != bus.RunVersion {
				t.Errorf("delivery %+v (err %v)", d.Request, d.Err)
			}
			delete(want, d.Request.RunID)
			if err := d.Ack(context.Background()); err != nil {
				t.Errorf("Ack: %v", err)
			}
		}
		// Ack waits for the server's confirmation: the work queue is empty now.
		if got := bustest.StreamInfo(t, bustest.JetStream(t, s.URL), cfg.RunsStream()).State.Msgs; got != 0 {
			t.Fatalf("after acking all, stream holds %d messages", got)
		}
	})
}

func TestFetchWaits(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))

		start := time.Now()
		if ds := fetch(t, b, 3, 300*time.Millisecond); len(ds) != 0 {
			t.Fatalf("Fetch on an empty queue returned %d", len(ds))
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Fatalf("empty Fetch with wait 300ms returned after %s", d)
		}

		// A message arriving during a long wait is returned at once, not at
		// the end of the wait, even though max is larger.
		got := make(chan []*bus.Delivery, 1)
		go func() {
			ds, _ := b.Fetch(context.Background(), 4, 20*time.Second)
			got <- ds
		}()
		// The pull must be waiting at the server before the publish, or the
		// no-wait pull would take it; either way the Fetch returns it fast.
		r := run()
		publishRun(t, b, r)
		select {
		case ds := <-got:
			if len(ds) != 1 || ds[0].Request.RunID != r.RunID {
				t.Fatalf("Fetch returned %d deliveries", len(ds))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Fetch(4, 20s) did not return within 5s of a message arriving")
		}

		// A cancelled context ends the wait (a worker shutting down).
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(200*time.Millisecond, cancel)
		start = time.Now()
		ds, err := b.Fetch(ctx, 1, 20*time.Second)
		if len(ds) != 0 || !errors.Is(err, context.Canceled) {
			t.Fatalf("Fetch with a cancelled context = %d, %v", len(ds), err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("Fetch cancelled after 200ms returned after %s", d)
		}

		// A context deadline shorter than wait is the wait.
		dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer dcancel()
		start = time.Now()
		if ds, err := b.Fetch(dctx, 1, 20*time.Second); len(ds) != 0 || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
			t.Fatalf("Fetch with a 300ms deadline = %d, %v", len(ds), err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("Fetch with a 300ms deadline returned after %s", d)
		}
	})
}

func TestAckWaitRedelivers(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		r := run()
		publishRun(t, b, r)
		first := fetch(t, b, 1, time.Second)
		if len(first) != 1 || first[0].NumDelivered != 1 {
			t.Fatalf("first Fetch = %d deliveries", len(first))
		}
		// No ack: after AckWait (1s) it comes back.
		again := fetch(t, b, 1, 5*time.Second)
		if len(again) != 1 || again[0].Request.RunID != r.RunID || again[0].NumDelivered != 2 {
			t.Fatalf("redelivery = %+v", again)
		}
		if err := again[0].Ack(context.Background()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	})
}

func TestNakWithDelay(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		publishRun(t, b, run())
		ds := fetch(t, b, 1, time.Second)
		if len(ds) != 1 {
			t.Fatalf("Fetch = %d", len(ds))
		}
		start := time.Now()
		if err := ds[0].NakWithDelay(400 * time.Millisecond); err != nil {
			t.Fatalf("NakWithDelay: %v", err)
		}
		if now := fetch(t, b, 1, 0); len(now) != 0 {
			t.Fatal("a message nakked with a delay came back at once")
		}
		again := fetch(t, b, 1, 5*time.Second)
		if len(again) != 1 || again[0].NumDelivered != 2 {
			t.Fatalf("after the delay: %d deliveries", len(again))
		}
		if d := time.Since(start); d < 350*time.Millisecond {
			t.Fatalf("redelivered after %s, before the 400ms delay", d)
		}
		if err := again[0].Ack(context.Background()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	})
}

func TestTermRemoves(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		b := bustest.Connect(t, cfg)
		publishRun(t, b, run())
		ds := fetch(t, b, 1, time.Second)
		if len(ds) != 1 {
			t.Fatalf("Fetch = %d", len(ds))
		}
		if err := ds[0].Term(); err != nil {
			t.Fatalf("Term: %v", err)
		}
		// Past AckWait (1s), nothing comes back.
		if again := fetch(t, b, 1, 1500*time.Millisecond); len(again) != 0 {
			t.Fatalf("a terminated message came back (delivery %d)", again[0].NumDelivered)
		}
		js := bustest.JetStream(t, s.URL)
		eventually(t, 2*time.Second, "the work queue to drop the terminated message", func() bool {
			return bustest.StreamInfo(t, js, cfg.RunsStream()).State.Msgs == 0
		})
	})
}

func TestMaxDeliverCaps(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		cfg.MaxDeliver = 2
		b := bustest.Connect(t, cfg)
		publishRun(t, b, run())
		for i := 1; i <= 2; i++ {
			ds := fetch(t, b, 1, 3*time.Second)
			if len(ds) != 1 || ds[0].NumDelivered != uint64(i) {
				t.Fatalf("delivery %d: got %d deliveries", i, len(ds))
			}
			if err := ds[0].NakWithDelay(10 * time.Millisecond); err != nil {
				t.Fatalf("NakWithDelay: %v", err)
			}
		}
		if ds := fetch(t, b, 1, 1500*time.Millisecond); len(ds) != 0 {
			t.Fatalf("delivered a %d. time with MaxDeliver 2", ds[0].NumDelivered)
		}
	})
}

func TestInProgressHoldsTheMessage(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s)) // AckWait 1s
		publishRun(t, b, run())
		ds := fetch(t, b, 1, time.Second)
		if len(ds) != 1 {
			t.Fatalf("Fetch = %d", len(ds))
		}
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					done <- nil
					return
				case <-tick.C:
					if err := ds[0].InProgress(); err != nil {
						done <- err
						return
					}
				}
			}
		}()
		// Well past AckWait: still held.
		if again := fetch(t, b, 1, 2500*time.Millisecond); len(again) != 0 {
			t.Fatalf("redelivered while in progress (delivery %d)", again[0].NumDelivered)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("InProgress: %v", err)
		}
		if err := ds[0].Ack(context.Background()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	})
}

func TestUndecodableRequest(t *testing.T) {
	bodies := []struct{ name, body string }{
		{"not json", "{nope"},
		{"other version", `{"v":2,"run_id":"r","user_id":"u","conversation_id":"c"}`},
		{"missing run id", `{"v":1,"user_id":"u","conversation_id":"c"}`},
	}
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		b := bustest.Connect(t, cfg)
		nc, err := nats.Connect(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		for _, tt := range bodies {
			if _, err := js.Publish(context.Background(), cfg.Prefix+".runs", []byte(tt.body)); err != nil {
				t.Fatalf("publish %s: %v", tt.name, err)
			}
			ds := fetch(t, b, 1, time.Second)
			if len(ds) != 1 {
				t.Fatalf("%s: Fetch = %d", tt.name, len(ds))
			}
			if !errors.Is(ds[0].Err, bus.ErrBadRequest) || ds[0].Request != (bus.RunRequest{}) {
				t.Errorf("%s: Err = %v, Request = %+v", tt.name, ds[0].Err, ds[0].Request)
			}
			if err := ds[0].Term(); err != nil {
				t.Fatalf("Term: %v", err)
			}
		}
	})
}

func TestHeadersReachDeliveryContext(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		tp := reqctx.NewTraceparent()
		ctx := reqctx.WithTraceparent(reqctx.WithUserID(reqctx.WithRequestID(context.Background(), "req-42"), "user-7"), tp)
		r := run()
		if err := b.PublishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		publishRun(t, b, run()) // no ids, no traceparent in its context
		ds := fetch(t, b, 2, time.Second)
		if len(ds) != 2 {
			t.Fatalf("Fetch = %d", len(ds))
		}
		if ds[0].Request.RunID != r.RunID {
			ds[0], ds[1] = ds[1], ds[0]
		}
		c := ds[0].Ctx
		if reqctx.RequestID(c) != "req-42" || reqctx.UserID(c) != "user-7" || reqctx.Traceparent(c) != tp {
			t.Errorf("delivery context: request %q user %q traceparent %q; want req-42 user-7 %s",
				reqctx.RequestID(c), reqctx.UserID(c), reqctx.Traceparent(c), tp)
		}
		c = ds[1].Ctx
		if reqctx.RequestID(c) != "" || reqctx.UserID(c) != "" || !reqctx.ValidTraceparent(reqctx.Traceparent(c)) {
			t.Errorf("delivery without ids: request %q user %q traceparent %q",
				reqctx.RequestID(c), reqctx.UserID(c), reqctx.Traceparent(c))
		}
		for _, d := range ds {
			if err := d.Ack(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestUnavailableWhileServerDown(t *testing.T) {
	s := bustest.Embedded(t) // only a server of our own can be stopped
	cfg := newConfig(t, s)
	b := bustest.Connect(t, cfg)
	s.Embedded.Shutdown()
	eventually(t, 5*time.Second, "the bus to notice the server is gone", func() bool { return !b.Connected() })

	start := time.Now()
	err := b.PublishRun(context.Background(), run())
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("PublishRun with the server down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("PublishRun took %s to fail", d)
	}
	if err := b.Ready(context.Background()); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Ready with the server down = %v", err)
	}
	if err := b.PublishCancel(context.Background(), "r1"); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("PublishCancel with the server down = %v", err)
	}
	if _, err := b.PublishEvent(context.Background(), event(newUUID(), "r1"), "m1"); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("PublishEvent with the server down = %v", err)
	}

	// Back on the same port and storage: the bus reconnects, and the run
	// refused above was not buffered and sent behind the caller's back.
	again := s.Restart(t)
	t.Cleanup(again.Shutdown)
	eventually(t, 5*time.Second, "the bus to reconnect", func() bool { return b.Connected() })
	if err := b.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after the restart = %v", err)
	}
	if ds := fetch(t, b, 10, 300*time.Millisecond); len(ds) != 0 {
		t.Fatalf("%d run requests arrived that were refused while the server was down", len(ds))
	}
	publishRun(t, b, run())
	if got := bustest.StreamInfo(t, bustest.JetStream(t, again.ClientURL()), cfg.RunsStream()).State.Msgs; got != 1 {
		t.Fatalf("after the restart, the runs stream holds %d messages, want 1", got)
	}
}

// TestStreamsAreBounded: both streams carry a size bound (nothing a client
// can grow is unbounded): the events stream drops its oldest events past
// EventsMaxBytes, the work queue refuses new requests past RunsMaxMsgs.
func TestStreamsAreBounded(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		cfg.EventsMaxBytes = 8 << 20
		cfg.RunsMaxMsgs = 5000
		bustest.Connect(t, cfg)
		js := bustest.JetStream(t, s.URL)
		events := bustest.StreamInfo(t, js, cfg.EventsStream()).Config
		if events.MaxBytes != 8<<20 || events.Discard != jetstream.DiscardOld {
			t.Errorf("events stream: MaxBytes %d, discard %v; want %d, old", events.MaxBytes, events.Discard, 8<<20)
		}
		runs := bustest.StreamInfo(t, js, cfg.RunsStream()).Config
		if runs.MaxMsgs != 5000 || runs.Discard != jetstream.DiscardNew {
			t.Errorf("runs stream: MaxMsgs %d, discard %v; want 5000, new", runs.MaxMsgs, runs.Discard)
		}
	})
}
