package app_test

// How long ChatKit's rendering takes to show a run's first text: from a
// worker's first message.delta (its arrival at a plain NATS subscriber on
// the events subjects, i.e. as it was published) to the first text_delta
// on the ChatKit stream, against the same path to the message.delta frame
// of POST /chat's own event stream (the baseline: follower, hub, HTTP,
// without the rendering). Run it with
//
//	go test ./cmd/internal/app -run '^$' -bench ChatKitFirstDelta -benchtime 300x

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
)

// deltaClock records when each conversation's and run's first
// message.delta was published.
type deltaClock struct {
	mu    sync.Mutex
	first map[string]time.Time
	got   chan struct{}
}

func newDeltaClock(b *testing.B, s *stack) *deltaClock {
	b.Helper()
	nc, err := nats.Connect(s.ns.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	dc := &deltaClock{first: map[string]time.Time{}, got: make(chan struct{}, 1)}
	_, err = nc.Subscribe(s.cfg.NATS.Prefix+".events.>", func(m *nats.Msg) {
		at := time.Now()
		var ev chat.Event
		if json.Unmarshal(m.Data, &ev) != nil || ev.Type != chat.EventMessageDelta {
			return
		}
		dc.mu.Lock()
		defer dc.mu.Unlock()
		for _, k := range []string{ev.ConversationID, ev.RunID} {
			if _, ok := dc.first[k]; !ok {
				dc.first[k] = at
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	return dc
}

// since returns how long after the first delta of key (a conversation or
// run id) at was; it waits for that delta's record (the subscriber may
// hear it after the API).
func (dc *deltaClock) since(b *testing.B, key string, at time.Time) time.Duration {
	b.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		dc.mu.Lock()
		t, ok := dc.first[key]
		dc.mu.Unlock()
		if ok {
			return at.Sub(t)
		}
		if time.Now().After(deadline) {
			b.Fatalf("no message.delta of %s seen on NATS", key)
		}
		<-time.After(time.Millisecond)
	}
}

func BenchmarkChatKitFirstDelta(b *testing.B) {
	s := newStack(b, bustest.Embedded(b), stackOptions{})
	dc := newDeltaClock(b, s)
	u := s.newUser(b)

	report := func(b *testing.B, lat []time.Duration) {
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("chatkit", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			st, r := u.chatkitStream(b, "", ckRequest("threads.create", map[string]any{"input": ckInput("hello")}))
			if st == nil {
				b.Fatalf("threads.create: %d %s", r.status, r.body)
			}
			var conv string
			var at time.Time
			for at.IsZero() {
				e := st.next(b)
				switch e.kind() {
				case "thread.created":
					conv = e.str("thread.id")
				case "assistant_message.content_part.text_delta":
					at = time.Now()
				}
			}
			st.rest(b)
			lat = append(lat, dc.since(b, conv, at))
		}
		report(b, lat)
	})
	b.Run("baseline-sse", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			st, r := u.postStream(b, "hello", "")
			if st == nil {
				b.Fatalf("POST /chat: %d %s", r.status, r.body)
			}
			var (
				at  time.Time
				run string
			)
			for {
				f := st.next(b)
				if f.event == chat.EventMessageDelta && at.IsZero() {
					at = time.Now()
					var d chat.MessageDeltaData
					if err := json.Unmarshal([]byte(f.data), &d); err != nil {
						b.Fatal(err)
					}
					run = d.RunID
				}
				if chat.FinalEvent(f.event) {
					break
				}
			}
			lat = append(lat, dc.since(b, run, at))
		}
		report(b, lat)
	})
}
