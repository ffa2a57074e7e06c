package httpapi

import (
	"testing"

	"github.com/taskchat/taskchat/pkg/chat"
)

// TestRunWaiterWakesEveryWaiter: two sync requests with one
// Idempotency-Key wait for the same run; both must be woken by its final
// event, and only by a final event.
func TestRunWaiterWakesEveryWaiter(t *testing.T) {
	w := NewRunWaiter()
	a, stopA := w.wait("run-1", "conv-1")
	defer stopA()
	b, stopB := w.wait("run-1", "conv-1")
	defer stopB()
	other, stopOther := w.wait("run-2", "conv-1")
	defer stopOther()

	w.Deliver(chat.Event{Type: chat.EventMessageDelta, RunID: "run-1"})
	select {
	case ev := <-a:
		t.Fatalf("woken by %s", ev.Type)
	default:
	}
	w.Deliver(chat.Event{Type: chat.EventRunCompleted, RunID: "run-1"})
	for name, ch := range map[string]<-chan chat.Event{"first": a, "second": b} {
		select {
		case ev := <-ch:
			if ev.Type != chat.EventRunCompleted {
				t.Fatalf("%s waiter got %s", name, ev.Type)
			}
		default:
			t.Fatalf("the %s waiter was not woken", name)
		}
	}
	select {
	case ev := <-other:
		t.Fatalf("another run's waiter got %s", ev.Type)
	default:
	}
	// A stopped waiter is forgotten: delivering later neither blocks nor panics.
	stopOther()
	w.Deliver(chat.Event{Type: chat.EventRunFailed, RunID: "run-2"})
	if len(w.m) != 0 {
		t.Fatalf("waiters left behind: %v", w.m)
	}
}

// TestRunWaiterEndConversation: a deleted conversation's runs end without
// a worker, and their run.cancelled may be purged from the stream before
// the follower reads it: the delete itself wakes their waiters, here and
// (through the deleted signal) on every replica.
func TestRunWaiterEndConversation(t *testing.T) {
	w := NewRunWaiter()
	a, stopA := w.wait("run-1", "conv-1")
	defer stopA()
	b, stopB := w.wait("run-2", "conv-2")
	defer stopB()
	w.EndConversation("conv-1")
	select {
	case ev := <-a:
		if ev.Type != chat.EventRunCancelled || ev.RunID != "run-1" || ev.ConversationID != "conv-1" {
			t.Fatalf("woken by %+v, want run.cancelled of run-1", ev)
		}
	default:
		t.Fatal("the deleted conversation's waiter was not woken")
	}
	select {
	case ev := <-b:
		t.Fatalf("another conversation's waiter got %s", ev.Type)
	default:
	}
	// The run's own final event, should it come after all, finds no one.
	w.Deliver(chat.Event{Type: chat.EventRunCancelled, RunID: "run-1"})
	if _, ok := w.m["run-1"]; ok {
		t.Fatal("the ended run is still waited for")
	}
}
