package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/reqctx"
)

// event returns a message.delta event of the conversation and run.
func event(conversationID, runID string) chat.Event {
	ev, err := chat.NewEvent(chat.EventMessageDelta, conversationID, runID, chat.MessageDeltaData{RunID: runID, Delta: "hi"})
	if err != nil {
		panic(err)
	}
	return ev
}

func deltaText(t *testing.T, ev chat.Event) string {
	t.Helper()
	if ev.Type != chat.EventMessageDelta {
		t.Fatalf("event type %q", ev.Type)
	}
	return strings.Trim(string(ev.Data), "{}")
}

func TestEventsPublishAndReplay(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		ctx := context.Background()
		conv, other := newUUID(), newUUID()

		// Noise on another conversation, interleaved.
		if _, err := b.PublishEvent(ctx, event(other, "r0"), "noise-1"); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
		p := b.NewEventPublisher(2)
		for i := range 10 {
			ev, _ := chat.NewEvent(chat.EventMessageDelta, conv, "r1", chat.MessageDeltaData{RunID: "r1", Delta: fmt.Sprint(i)})
			if err := p.Publish(ctx, ev, fmt.Sprintf("r1-%d", i)); err != nil {
				t.Fatalf("Publish %d: %v", i, err)
			}
			if i == 4 {
				if _, err := b.PublishEvent(ctx, event(other, "r0"), "noise-2"); err != nil {
					t.Fatalf("PublishEvent: %v", err)
				}
			}
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}

		all, err := b.ReadEvents(ctx, conv, 0, 100)
		if err != nil {
			t.Fatalf("ReadEvents: %v", err)
		}
		if len(all) != 10 {
			t.Fatalf("ReadEvents(after 0) = %d events, want 10", len(all))
		}
		for i, ev := range all {
			if want := fmt.Sprintf(`"run_id":"r1","message_id":"","delta":"%d"`, i); deltaText(t, ev) != want {
				t.Errorf("event %d data %s, want %s", i, ev.Data, want)
			}
			if ev.ConversationID != conv || ev.V != chat.EventVersion || ev.Seq == 0 || (i > 0 && ev.Seq <= all[i-1].Seq) {
				t.Errorf("event %d: conversation %s v %d seq %d", i, ev.ConversationID, ev.V, ev.Seq)
			}
		}

		const k = 3
		rest, err := b.ReadEvents(ctx, conv, all[k].Seq, 100)
		if err != nil {
			t.Fatalf("ReadEvents(after k): %v", err)
		}
		if len(rest) != 10-k-1 {
			t.Fatalf("ReadEvents(after seq of event %d) = %d events, want %d", k, len(rest), 10-k-1)
		}
		for i, ev := range rest {
			if ev.Seq != all[k+1+i].Seq || string(ev.Data) != string(all[k+1+i].Data) {
				t.Errorf("rest[%d] = seq %d, want seq %d", i, ev.Seq, all[k+1+i].Seq)
			}
		}
		firstThree, err := b.ReadEvents(ctx, conv, 0, 3)
		if err != nil || len(firstThree) != 3 || firstThree[2].Seq != all[2].Seq {
			t.Fatalf("ReadEvents(max 3) = %d events, %v", len(firstThree), err)
		}
		none, err := b.ReadEvents(ctx, conv, all[9].Seq, 100)
		if err != nil || len(none) != 0 {
			t.Fatalf("ReadEvents(after the last) = %d events, %v", len(none), err)
		}

		last, err := b.LastEventSeq(ctx, conv)
		if err != nil || last != all[9].Seq {
			t.Fatalf("LastEventSeq = %d, %v; want %d", last, err, all[9].Seq)
		}
		if last, err := b.LastEventSeq(ctx, newUUID()); err != nil || last != 0 {
			t.Fatalf("LastEventSeq of a silent conversation = %d, %v", last, err)
		}
		streamLast, err := b.StreamLastSeq(ctx)
		if err != nil || streamLast != all[9].Seq {
			t.Fatalf("StreamLastSeq = %d, %v; want %d", streamLast, err, all[9].Seq)
		}

		if err := b.PurgeEvents(ctx, conv); err != nil {
			t.Fatalf("PurgeEvents: %v", err)
		}
		if gone, err := b.ReadEvents(ctx, conv, 0, 100); err != nil || len(gone) != 0 {
			t.Fatalf("ReadEvents after purge = %d events, %v", len(gone), err)
		}
		if last, err := b.LastEventSeq(ctx, conv); err != nil || last != 0 {
			t.Fatalf("LastEventSeq after purge = %d, %v", last, err)
		}
		if kept, err := b.ReadEvents(ctx, other, 0, 100); err != nil || len(kept) != 2 {
			t.Fatalf("the other conversation after purge: %d events, %v; want 2", len(kept), err)
		}
	})
}

func TestPublishEventDedupe(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		ctx := context.Background()
		conv := newUUID()
		s1, err := b.PublishEvent(ctx, event(conv, "r1"), "r1-0")
		if err != nil {
			t.Fatal(err)
		}
		s2, err := b.PublishEvent(ctx, event(conv, "r1"), "r1-0")
		if err != nil || s2 != s1 {
			t.Fatalf("the same message id again = seq %d, %v; want %d", s2, err, s1)
		}
		// Upper case ids use the same (lowercase) subject.
		if _, err := b.PublishEvent(ctx, event(strings.ToUpper(conv), "r1"), "r1-1"); err != nil {
			t.Fatal(err)
		}
		evs, err := b.ReadEvents(ctx, conv, 0, 10)
		if err != nil || len(evs) != 2 {
			t.Fatalf("ReadEvents = %d, %v; want 2", len(evs), err)
		}
	})
}

func TestEventsRefuseNonUUIDConversations(t *testing.T) {
	s := bustest.Embedded(t)
	b := bustest.Connect(t, newConfig(t, s))
	ctx := context.Background()
	for _, id := range []string{"", "abc", "*", ">", "a.b", "user.id", strings.Repeat("a", 36),
		"0c2f1b9e-8d5a-4f6b-9c1d-2e3f4a5b6c7d.x", "0c2f1b9e_8d5a_4f6b_9c1d_2e3f4a5b6c7d"} {
		if _, err := b.PublishEvent(ctx, event(id, "r"), "m"); !errors.Is(err, bus.ErrInvalidID) {
			t.Errorf("PublishEvent(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := b.NewEventPublisher(1).Publish(ctx, event(id, "r"), "m"); !errors.Is(err, bus.ErrInvalidID) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := b.ReadEvents(ctx, id, 0, 1); !errors.Is(err, bus.ErrInvalidID) {
			t.Errorf("ReadEvents(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := b.LastEventSeq(ctx, id); !errors.Is(err, bus.ErrInvalidID) {
			t.Errorf("LastEventSeq(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := b.PurgeEvents(ctx, id); !errors.Is(err, bus.ErrInvalidID) {
			t.Errorf("PurgeEvents(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestEventPublisherBoundsAndReportsFailures(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		b := bustest.Connect(t, cfg)
		ctx := context.Background()
		// Without the events stream no acknowledgement ever comes: the
		// publisher holds its one slot until the publish fails.
		js := bustest.JetStream(t, s.URL)
		if err := js.DeleteStream(ctx, cfg.EventsStream()); err != nil {
			t.Fatal(err)
		}
		p := b.NewEventPublisher(1)
		conv := newUUID()
		if err := p.Publish(ctx, event(conv, "r"), "m1"); err != nil {
			t.Fatalf("first Publish: %v", err)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := p.Publish(short, event(conv, "r"), "m2"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish beyond maxPending = %v, want it to block until its context ends", err)
		}
		if err := p.Flush(ctx); !errors.Is(err, bus.ErrUnavailable) {
			t.Fatalf("Flush = %v, want ErrUnavailable", err)
		}
		if err := p.Flush(ctx); !errors.Is(err, bus.ErrUnavailable) {
			t.Fatalf("second Flush = %v, want the same sticky error", err)
		}
	})
}

func TestSubscribeEvents(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		api, worker := bustest.Connect(t, cfg), bustest.Connect(t, cfg)
		got := make(chan chat.Event, 10)
		stop, err := api.SubscribeEvents(func(ev chat.Event) { got <- ev })
		if err != nil {
			t.Fatal(err)
		}
		conv := newUUID()
		if _, err := worker.PublishEvent(context.Background(), event(conv, "r9"), "r9-0"); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			if ev.ConversationID != conv || ev.RunID != "r9" || ev.Seq != 0 {
				t.Fatalf("live event = %+v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no live event within 5s")
		}
		stop()
		if _, err := worker.PublishEvent(context.Background(), event(conv, "r9"), "r9-1"); err != nil {
			t.Fatal(err)
		}
		// A cancel round trip on the same connections orders after the
		// event: once it arrives, the stopped subscription would have had
		// the event too.
		cancelled := make(chan string, 1)
		stopCancel, err := api.SubscribeCancel(func(id string) { cancelled <- id })
		if err != nil {
			t.Fatal(err)
		}
		defer stopCancel()
		if err := worker.PublishCancel(context.Background(), "sync"); err != nil {
			t.Fatal(err)
		}
		<-cancelled
		select {
		case ev := <-got:
			t.Fatalf("event after stop: %+v", ev)
		default:
		}
	})
}

func TestCancelRoundTrip(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		cfg := newConfig(t, s)
		api, w1, w2 := bustest.Connect(t, cfg), bustest.Connect(t, cfg), bustest.Connect(t, cfg)
		var heard []chan string
		for _, w := range []*bus.Bus{w1, w2} {
			ch := make(chan string, 1)
			stop, err := w.SubscribeCancel(func(id string) { ch <- id })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			heard = append(heard, ch)
		}
		ctx := reqctx.WithRequestID(context.Background(), "req-1")
		if err := api.PublishCancel(ctx, "run-123"); err != nil {
			t.Fatalf("PublishCancel: %v", err)
		}
		for i, ch := range heard {
			select {
			case id := <-ch:
				if id != "run-123" {
					t.Errorf("worker %d heard %q", i, id)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("worker %d heard nothing within 5s", i)
			}
		}
		if err := api.PublishCancel(ctx, ""); !errors.Is(err, bus.ErrInvalidID) {
			t.Errorf("PublishCancel(\"\") = %v, want ErrInvalidID", err)
		}
	})
}

// TestFollowEvents: one follower sees every event stored after it started,
// of every conversation, in stream order, with the stream sequence as Seq
// (the ids ReadEvents gives), and nothing from before; EventBounds gives
// the stream's first and last sequence.
func TestFollowEvents(t *testing.T) {
	bustest.Each(t, func(t *testing.T, s bustest.Server) {
		b := bustest.Connect(t, newConfig(t, s))
		ctx := context.Background()
		conv, other := newUUID(), newUUID()
		before, err := b.PublishEvent(ctx, event(conv, "old"), "")
		if err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
		got := make(chan chat.Event, 100)
		stop, err := b.FollowEvents(ctx, func(ev chat.Event) { got <- ev })
		if err != nil {
			t.Fatalf("FollowEvents: %v", err)
		}
		defer stop()

		var want []uint64
		for i := range 6 {
			c := conv
			if i%2 == 1 {
				c = other
			}
			seq, err := b.PublishEvent(ctx, event(c, "r"), "")
			if err != nil {
				t.Fatalf("PublishEvent: %v", err)
			}
			want = append(want, seq)
		}
		for i, seq := range want {
			select {
			case ev := <-got:
				if ev.Seq != seq || ev.RunID != "r" {
					t.Fatalf("event %d: seq %d run %q, want seq %d run r (the one before the follower was %d)", i, ev.Seq, ev.RunID, seq, before)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("event %d (seq %d) never arrived", i, seq)
			}
		}
		replayed, err := b.ReadEvents(ctx, conv, before, 100)
		if err != nil {
			t.Fatalf("ReadEvents: %v", err)
		}
		if len(replayed) != 3 || replayed[0].Seq != want[0] || replayed[2].Seq != want[4] {
			t.Fatalf("replay seqs differ from the follower's: %+v", replayed)
		}
		first, last, err := b.EventBounds(ctx)
		if err != nil {
			t.Fatalf("EventBounds: %v", err)
		}
		if first != before || last != want[len(want)-1] {
			t.Fatalf("EventBounds = %d, %d, want %d, %d", first, last, before, want[len(want)-1])
		}
	})
}
