package httpapi

import (
	"errors"
	"testing"

	"github.com/taskchat/taskchat/pkg/chat"
)

const (
	convA = "11111111-1111-4111-8111-111111111111"
	convB = "22222222-2222-4222-8222-222222222222"
)

func ended(s *hubSub) bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

// TestEventHub: events reach only their conversation's streams; a full
// buffer ends only that stream; the per-user cap counts open streams;
// EndConversation and Close end streams; counts go back to zero.
func TestEventHub(t *testing.T) {
	h := NewEventHub(2)
	slow, err := h.subscribe("u1", convA, 2)
	if err != nil {
		t.Fatal(err)
	}
	fast, _ := h.subscribe("u1", convA, 2)
	if _, err := h.subscribe("u1", convB, 2); !errors.Is(err, errTooManyStreams) {
		t.Fatalf("third stream of u1: %v, want errTooManyStreams", err)
	}
	other, err := h.subscribe("u2", convB, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		h.Deliver(chat.Event{ConversationID: convA, Seq: uint64(i + 1)})
		if i < 2 {
			<-fast.ch // the fast reader keeps up
		}
	}
	if !ended(slow) || slow.reason != "overflow" {
		t.Fatalf("slow stream ended=%v reason=%q, want overflow", ended(slow), slow.reason)
	}
	if ended(fast) || ended(other) || len(other.ch) != 0 {
		t.Fatal("another stream was affected by the slow one")
	}
	if ev := <-fast.ch; ev.Seq != 3 {
		t.Fatalf("fast got seq %d, want 3", ev.Seq)
	}
	if n := h.Streams(); n != 2 {
		t.Fatalf("%d streams, want 2", n)
	}
	h.unsubscribe(slow) // the writer's deferred unsubscribe: no double count
	h.EndConversation(convB)
	if !ended(other) || other.reason != "deleted" {
		t.Fatal("EndConversation did not end the stream")
	}
	h.unsubscribe(fast)
	if n := h.Streams(); n != 0 || len(h.perUser) != 0 || len(h.convs) != 0 {
		t.Fatalf("hub not empty: %d streams, %v, %v", n, h.perUser, h.convs)
	}
	h.Close()
	if _, err := h.subscribe("u1", convA, 2); !errors.Is(err, errShuttingDown) {
		t.Fatalf("subscribe after Close: %v", err)
	}
}
