package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/taskchat/taskchat/pkg/chat"
)

func TestCreateTurnNewConversation(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "  Remind me to pay the bills \n"})
	if err != nil {
		t.Fatal(err)
	}
	c, m, r := turn.Conversation, turn.Message, turn.Run
	if !turn.Created || turn.Position != 0 {
		t.Errorf("Created %v, Position %d, want true, 0", turn.Created, turn.Position)
	}
	if c.ID == "" || c.Title != "Remind me to pay the bills" || c.LastMessagePreview != nil {
		t.Errorf("conversation %+v", c)
	}
	if m.ID == "" || m.ConversationID != c.ID || m.RunID != r.ID || m.Role != chat.RoleUser ||
		m.Content != "Remind me to pay the bills" || m.ToolCalls == nil || len(m.ToolCalls) != 0 || m.Model != "" {
		t.Errorf("message %+v", m)
	}
	if r.ID == "" || r.ConversationID != c.ID || r.MessageID != m.ID || r.AssistantMessageID == "" ||
		r.AssistantMessageID == m.ID || r.Status != chat.RunQueued || r.Attempts != 0 || r.Error != nil ||
		r.StartedAt != nil || r.FinishedAt != nil || r.UserID != user {
		t.Errorf("run %+v", r)
	}
	wantUTC(t, "turn", c.CreatedAt, c.UpdatedAt, m.CreatedAt, r.CreatedAt)
	got, err := s.GetConversation(ctx, user, c.ID)
	if err != nil || got.ID != c.ID || got.Title != c.Title || !got.UpdatedAt.Equal(c.UpdatedAt) {
		t.Errorf("GetConversation = %+v, %v", got, err)
	}
	if run, err := s.GetRun(ctx, user, r.ID); err != nil || run.ID != r.ID || run.Status != chat.RunQueued || run.MessageID != m.ID {
		t.Errorf("GetRun = %+v, %v", run, err)
	}
	// The message comes back as stored, though it is inserted with the run.
	stored := messageStrings(t, s, user, c.ID, func(m chat.Message) string { return fmt.Sprintf("%s %s %s", m.ID, m.Content, m.CreatedAt) })
	if want := fmt.Sprintf("%s %s %s", m.ID, m.Content, m.CreatedAt); len(stored) != 1 || stored[0] != want {
		t.Errorf("stored messages %q, want [%q]", stored, want)
	}
}

func TestCreateTurnExistingConversation(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurn(t, s, user, "", "first")
	second := mustTurn(t, s, user, strings.ToUpper(first.Conversation.ID), "second")
	third := mustTurn(t, s, user, first.Conversation.ID, "third")
	if second.Conversation.ID != first.Conversation.ID || third.Conversation.ID != first.Conversation.ID {
		t.Fatalf("turns went to conversations %s, %s, want %s", second.Conversation.ID, third.Conversation.ID, first.Conversation.ID)
	}
	if second.Conversation.Title != "first" {
		t.Errorf("title changed to %q", second.Conversation.Title)
	}
	if !third.Conversation.UpdatedAt.After(first.Conversation.UpdatedAt) {
		t.Errorf("updated_at %v not bumped past %v", third.Conversation.UpdatedAt, first.Conversation.UpdatedAt)
	}
	if first.Position != 0 || second.Position != 1 || third.Position != 2 {
		t.Errorf("positions %d, %d, %d, want 0, 1, 2", first.Position, second.Position, third.Position)
	}
	// Once the first run ends, a new turn is behind the other two only.
	answer(t, s, user, first.Run.ID, "done")
	if fourth := mustTurn(t, s, user, first.Conversation.ID, "fourth"); fourth.Position != 2 {
		t.Errorf("fourth position %d, want 2", fourth.Position)
	}
	page, err := s.ListMessages(ctx, user, first.Conversation.ID, chat.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range page.Messages {
		texts = append(texts, m.Content)
	}
	if got := strings.Join(texts, ","); got != "first,second,third,done,fourth" {
		t.Errorf("messages %s", got)
	}
}

func TestCreateTurnTitles(t *testing.T) {
	s, user := newStore(t)
	long := strings.Repeat("abcdefg ", 10) // 80 code points, spaces at 7, 15, … 55, 63
	tests := []struct {
		name, message, want string
	}{
		{"short", "Buy milk", "Buy milk"},
		{"first line only", "Groceries\nmilk, eggs\nbread", "Groceries"},
		{"CRLF", "Groceries\r\nmilk", "Groceries"},
		{"exactly 60", strings.Repeat("x", 60), strings.Repeat("x", 60)},
		{"cut at a word", long, strings.TrimSpace(strings.Repeat("abcdefg ", 7)) + "…"},
		{"space right at the cut", strings.Repeat("a", 59) + " tail", strings.Repeat("a", 59) + "…"},
		{"one long word is cut hard", strings.Repeat("ж", 80), strings.Repeat("ж", 59) + "…"},
		{"code points, not bytes", strings.Repeat("😀 ", 40), strings.TrimSpace(strings.Repeat("😀 ", 30)) + "…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			turn := mustTurn(t, s, user, "", tc.message)
			if turn.Conversation.Title != tc.want {
				t.Errorf("title %q, want %q", turn.Conversation.Title, tc.want)
			}
			if n := len([]rune(turn.Conversation.Title)); n > chat.MaxAutoTitleLen {
				t.Errorf("title has %d code points", n)
			}
		})
	}
}

func TestCreateTurnInvalid(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	other, otherUser := newStore(t)
	foreign := mustTurn(t, other, otherUser, "", "not yours")
	before := snapshot(t, user)
	tests := []struct {
		name   string
		in     chat.NewTurn
		fields []string
		err    error
	}{
		{name: "empty", in: chat.NewTurn{Message: ""}, fields: []string{"message"}},
		{name: "white space only", in: chat.NewTurn{Message: " \t\n "}, fields: []string{"message"}},
		{name: "too long", in: chat.NewTurn{Message: strings.Repeat("ö", 4001)}, fields: []string{"message"}},
		{name: "NUL", in: chat.NewTurn{Message: "a\x00b"}, fields: []string{"message"}},
		{name: "invalid UTF-8", in: chat.NewTurn{Message: "a\xffb"}, fields: []string{"message"}},
		{name: "key with spaces", in: chat.NewTurn{Message: "hi", IdempotencyKey: " k "}, fields: []string{"idempotency_key"}},
		{name: "key too long", in: chat.NewTurn{Message: "hi", IdempotencyKey: strings.Repeat("k", 256)}, fields: []string{"idempotency_key"}},
		{name: "message and key", in: chat.NewTurn{Message: "", IdempotencyKey: "a\x00"}, fields: []string{"message", "idempotency_key"}},
		{name: "malformed conversation id", in: chat.NewTurn{Message: "hi", ConversationID: "not-a-uuid"}, err: chat.ErrNotFound},
		{name: "unknown conversation", in: chat.NewTurn{Message: "hi", ConversationID: "0190a0a0-0000-7000-8000-000000000000"}, err: chat.ErrNotFound},
		{name: "another user's conversation", in: chat.NewTurn{Message: "hi", ConversationID: foreign.Conversation.ID}, err: chat.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateTurn(ctx, user, tc.in)
			if tc.err != nil {
				wantErr(t, err, tc.err)
			} else {
				wantFields(t, err, tc.fields...)
			}
		})
	}
	if after := snapshot(t, user); after != before {
		t.Errorf("failed turns stored rows:\n%s", after)
	}
	t.Run("longest message", func(t *testing.T) {
		msg := strings.Repeat("😀", 4000)
		if turn := mustTurn(t, s, user, "", "  "+msg+"  "); turn.Message.Content != msg {
			t.Errorf("stored %d code points", len([]rune(turn.Message.Content)))
		}
	})
}

func TestCreateTurnIdempotency(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	in := chat.NewTurn{Message: "add milk", IdempotencyKey: "key-1", RequestHash: "h1", MaxUnfinished: 1}
	first, err := s.CreateTurn(ctx, user, in)
	if err != nil || !first.Created {
		t.Fatalf("first: %+v, %v", first, err)
	}
	t.Run("same key and hash returns the original turn, over the cap", func(t *testing.T) {
		again, err := s.CreateTurn(ctx, user, in)
		if err != nil {
			t.Fatal(err)
		}
		if again.Created || again.Run.ID != first.Run.ID || again.Message.ID != first.Message.ID ||
			again.Conversation.ID != first.Conversation.ID || again.Message.Content != "add milk" {
			t.Errorf("replay %+v, want the turn of run %s", again, first.Run.ID)
		}
	})
	t.Run("same key, another hash", func(t *testing.T) {
		_, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "add eggs", IdempotencyKey: "key-1", RequestHash: "h2"})
		wantErr(t, err, chat.ErrIdempotencyKeyReused)
	})
	t.Run("the replay shows the run as it is now", func(t *testing.T) {
		answer(t, s, user, first.Run.ID, "added")
		again, err := s.CreateTurn(ctx, user, in)
		if err != nil || again.Created || again.Run.Status != chat.RunCompleted {
			t.Fatalf("replay after completion: %+v, %v", again, err)
		}
	})
	t.Run("keys are per user", func(t *testing.T) {
		other, otherUser := newStore(t)
		turn, err := other.CreateTurn(ctx, otherUser, chat.NewTurn{Message: "mine", IdempotencyKey: "key-1", RequestHash: "h2"})
		if err != nil || !turn.Created || turn.Run.ID == first.Run.ID {
			t.Fatalf("other user's turn %+v, %v", turn, err)
		}
	})
	t.Run("a key older than the window starts a new turn", func(t *testing.T) {
		if _, err := testDB.DB.NewRaw("UPDATE runs SET created_at = now() - interval '24 hours 1 second' WHERE id = ?", first.Run.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		turn, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "add eggs", IdempotencyKey: "key-1", RequestHash: "h2"})
		if err != nil || !turn.Created || turn.Run.ID == first.Run.ID {
			t.Fatalf("turn %+v, %v", turn, err)
		}
		if st := rawRun(t, first.Run.ID); st.IdempotencyKey != nil {
			t.Errorf("old run still holds key %q", *st.IdempotencyKey)
		}
	})
	t.Run("a key just inside the window still replays", func(t *testing.T) {
		turn := mustKeyed(t, s, user, "key-2", "h")
		if _, err := testDB.DB.NewRaw("UPDATE runs SET created_at = now() - interval '23 hours 59 minutes' WHERE id = ?", turn.Run.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		again := mustKeyed(t, s, user, "key-2", "h")
		if again.Created || again.Run.ID != turn.Run.ID {
			t.Fatalf("replay %+v", again)
		}
	})
}

func mustKeyed(t *testing.T, s *chat.Store, user, key, hash string) chat.Turn {
	t.Helper()
	turn, err := s.CreateTurn(context.Background(), user, chat.NewTurn{Message: "keyed " + key, IdempotencyKey: key, RequestHash: hash})
	if err != nil {
		t.Fatalf("CreateTurn(key %s): %v", key, err)
	}
	return turn
}

func TestCreateTurnConcurrentSameKey(t *testing.T) {
	s, user := newStore(t)
	const n = 10
	turns := make([]chat.Turn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			turns[i], errs[i] = s.CreateTurn(context.Background(), user, chat.NewTurn{
				Message: "once", IdempotencyKey: "same", RequestHash: "h", MaxUnfinished: 5,
			})
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if turns[i].Created {
			created++
		}
		if turns[i].Run.ID != turns[0].Run.ID || turns[i].Message.ID != turns[0].Message.ID {
			t.Errorf("goroutine %d got run %s, goroutine 0 run %s", i, turns[i].Run.ID, turns[0].Run.ID)
		}
	}
	if created != 1 {
		t.Errorf("%d goroutines created the turn, want 1", created)
	}
	if got := count(t, "SELECT count(*) FROM runs WHERE user_id = ?", user); got != 1 {
		t.Errorf("%d runs stored, want 1", got)
	}
	if got := count(t, "SELECT count(*) FROM messages WHERE user_id = ?", user); got != 1 {
		t.Errorf("%d messages stored, want 1", got)
	}
}

func TestCreateTurnCap(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	var ids []string
	for i := range 3 {
		ids = append(ids, mustTurnCapped(t, s, user, i).Run.ID)
	}
	_, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "one too many", MaxUnfinished: 3})
	wantErr(t, err, chat.ErrTooManyRuns)
	t.Run("running runs count", func(t *testing.T) {
		mustClaim(t, s, user, ids[0], "w", chat.ClaimOK)
		_, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "still too many", MaxUnfinished: 3})
		wantErr(t, err, chat.ErrTooManyRuns)
	})
	t.Run("a finished run frees a place", func(t *testing.T) {
		mustComplete(t, s, user, ids[0], "w", "ok")
		mustTurnCapped(t, s, user, 3)
		_, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "full again", MaxUnfinished: 3})
		wantErr(t, err, chat.ErrTooManyRuns)
	})
	t.Run("no cap with zero", func(t *testing.T) {
		if _, err := s.CreateTurn(ctx, user, chat.NewTurn{Message: "uncapped"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("other users are not counted", func(t *testing.T) {
		other, otherUser := newStore(t)
		mustTurnCapped(t, other, otherUser, 0)
	})
}

// TestCreateTurnCapAndConversation checks the cap together with the
// conversation named: over the cap nothing changes, and the cap is reported
// before an unknown conversation.
func TestCreateTurnCapAndConversation(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first := mustTurnCapped(t, s, user, 0)
	conv := first.Conversation
	mustTurnCapped(t, s, user, 1)
	mustTurnCapped(t, s, user, 2)
	const unknown = "0190a0a0-0000-7000-8000-000000000000"

	_, err := s.CreateTurn(ctx, user, chat.NewTurn{ConversationID: conv.ID, Message: "over", MaxUnfinished: 3})
	wantErr(t, err, chat.ErrTooManyRuns)
	if got, err := s.GetConversation(ctx, user, conv.ID); err != nil || !got.UpdatedAt.Equal(conv.UpdatedAt) {
		t.Errorf("after a refused turn the conversation is %+v, %v; want updated_at %v", got, err, conv.UpdatedAt)
	}
	if got := count(t, "SELECT count(*) FROM messages WHERE user_id = ?", user); got != 3 {
		t.Errorf("%d messages stored, want 3", got)
	}
	_, err = s.CreateTurn(ctx, user, chat.NewTurn{ConversationID: unknown, Message: "over", MaxUnfinished: 3})
	wantErr(t, err, chat.ErrTooManyRuns)
	_, err = s.CreateTurn(ctx, user, chat.NewTurn{ConversationID: unknown, Message: "room", MaxUnfinished: 4})
	wantErr(t, err, chat.ErrNotFound)

	turn, err := s.CreateTurn(ctx, user, chat.NewTurn{ConversationID: conv.ID, Message: "room", MaxUnfinished: 4})
	if err != nil || !turn.Created || turn.Position != 1 || turn.Conversation.ID != conv.ID {
		t.Errorf("turn under the cap = %+v, %v; want created at position 1", turn, err)
	}
}

func mustTurnCapped(t *testing.T, s *chat.Store, user string, i int) chat.Turn {
	t.Helper()
	turn, err := s.CreateTurn(context.Background(), user, chat.NewTurn{Message: fmt.Sprintf("message %d", i), MaxUnfinished: 3})
	if err != nil {
		t.Fatalf("turn %d: %v", i, err)
	}
	return turn
}

func TestCreateTurnConcurrentCap(t *testing.T) {
	s, user := newStore(t)
	const n, maxRuns = 10, 4
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := s.CreateTurn(context.Background(), user, chat.NewTurn{Message: fmt.Sprintf("m%d", i), MaxUnfinished: maxRuns})
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	ok, capped := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, chat.ErrTooManyRuns):
			capped++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != maxRuns || capped != n-maxRuns {
		t.Errorf("%d accepted, %d capped, want %d and %d", ok, capped, maxRuns, n-maxRuns)
	}
	if got := count(t, "SELECT count(*) FROM runs WHERE user_id = ? AND status IN ('queued', 'running')", user); got != maxRuns {
		t.Errorf("%d unfinished runs stored, want %d", got, maxRuns)
	}
}

// exchange stores message in conv ("" for a new conversation), answers it
// with text after recording one tool call in its run's ledger, and
// returns the turn and the answer.
func exchange(t *testing.T, s *chat.Store, user, conv, message string) (chat.Turn, *chat.Message) {
	t.Helper()
	turn := mustTurn(t, s, user, conv, message)
	mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
	e := chat.LedgerEntry{CallID: "c-" + message, Name: "list_tasks", Arguments: json.RawMessage(`{}`), Result: json.RawMessage(`[]`)}
	if _, _, err := s.RecordToolCall(context.Background(), user, turn.Run.ID, e); err != nil {
		t.Fatal(err)
	}
	_, msg := mustComplete(t, s, user, turn.Run.ID, "w", "re: "+message)
	return turn, msg
}

func TestRetryTurn(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	first, _ := exchange(t, s, user, "", "one")
	conv := first.Conversation.ID
	second, secondAnswer := exchange(t, s, user, conv, "two")
	third, _ := exchange(t, s, user, conv, "three")
	// Another conversation of the user's is not touched.
	elsewhere, _ := exchange(t, s, user, "", "elsewhere")
	before := messageStrings(t, s, user, elsewhere.Conversation.ID, roleContent)

	turn, err := s.RetryTurn(ctx, user, conv, second.Message.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !turn.Created || turn.Position != 0 || turn.Conversation.ID != conv || turn.Message.ID != second.Message.ID ||
		turn.Message.Content != "two" || turn.Message.RunID != turn.Run.ID {
		t.Errorf("turn %+v", turn)
	}
	if r := turn.Run; r.ID == second.Run.ID || r.Status != chat.RunQueued || r.MessageID != second.Message.ID ||
		r.AssistantMessageID == "" || r.AssistantMessageID == secondAnswer.ID || r.ConversationID != conv {
		t.Errorf("new run %+v", r)
	}
	if got, want := messageStrings(t, s, user, conv, roleContent), []string{"user:one", "assistant:re: one", "user:two"}; !slices.Equal(got, want) {
		t.Errorf("messages after the retry %v, want %v", got, want)
	}
	// The runs that answered the message and every later one are gone,
	// ledgers and all; the earlier one stays.
	for _, id := range []string{second.Run.ID, third.Run.ID} {
		_, err := s.GetRun(ctx, user, id)
		wantErr(t, err, chat.ErrNotFound)
		if n := count(t, "SELECT count(*) FROM tool_rounds WHERE run_id = ?", id); n != 0 {
			t.Errorf("run %s keeps %d ledger rows", id, n)
		}
	}
	if r, err := s.GetRun(ctx, user, first.Run.ID); err != nil || r.Status != chat.RunCompleted {
		t.Errorf("first run %+v, %v", r, err)
	}
	if n := count(t, "SELECT count(*) FROM tool_rounds WHERE run_id = ?", first.Run.ID); n != 1 {
		t.Errorf("first run has %d ledger rows, want 1", n)
	}
	if got := messageStrings(t, s, user, elsewhere.Conversation.ID, roleContent); !slices.Equal(got, before) {
		t.Errorf("other conversation %v, was %v", got, before)
	}

	t.Run("busy while the new run is unfinished", func(t *testing.T) {
		_, err := s.RetryTurn(ctx, user, conv, first.Message.ID, 0)
		wantErr(t, err, chat.ErrConversationBusy)
		mustClaim(t, s, user, turn.Run.ID, "w2", chat.ClaimOK)
		_, err = s.RetryTurn(ctx, user, conv, first.Message.ID, 0)
		wantErr(t, err, chat.ErrConversationBusy)
	})

	t.Run("the new run answers as any run", func(t *testing.T) {
		_, msg := mustComplete(t, s, user, turn.Run.ID, "w2", "re: two, again")
		if msg.ID != turn.Run.AssistantMessageID {
			t.Errorf("answer id %s, want %s", msg.ID, turn.Run.AssistantMessageID)
		}
		want := []string{"user:one", "assistant:re: one", "user:two", "assistant:re: two, again"}
		if got := messageStrings(t, s, user, conv, roleContent); !slices.Equal(got, want) {
			t.Errorf("messages %v, want %v", got, want)
		}
	})

	t.Run("the last message, and the first", func(t *testing.T) {
		last := mustTurn(t, s, user, conv, "four") // unanswered: cancel it
		if _, err := s.CancelRun(ctx, user, last.Run.ID); err != nil {
			t.Fatal(err)
		}
		again, err := s.RetryTurn(ctx, user, conv, last.Message.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(messageStrings(t, s, user, conv, roleContent)); n != 5 {
			t.Errorf("%d messages after retrying the last one, want 5", n)
		}
		mustClaim(t, s, user, again.Run.ID, "w3", chat.ClaimOK)
		mustComplete(t, s, user, again.Run.ID, "w3", "re: four")
		if _, err := s.RetryTurn(ctx, user, conv, first.Message.ID, 0); err != nil {
			t.Fatal(err)
		}
		if got := messageStrings(t, s, user, conv, roleContent); !slices.Equal(got, []string{"user:one"}) {
			t.Errorf("after retrying the first message: %v", got)
		}
	})
}

// TestRetryTurnKeepsEarlierAnswers: with two messages queued at once, the
// first one's answer is written after the second message. Retrying the
// second removes what answers it and what came after it, never the first
// message's answer, however late it was written.
func TestRetryTurnKeepsEarlierAnswers(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	one := mustTurn(t, s, user, "", "one")
	conv := one.Conversation.ID
	two := mustTurn(t, s, user, conv, "two")
	for _, turn := range []chat.Turn{one, two} {
		mustClaim(t, s, user, turn.Run.ID, "w", chat.ClaimOK)
		mustComplete(t, s, user, turn.Run.ID, "w", "re: "+turn.Message.Content)
	}
	want := []string{"user:one", "user:two", "assistant:re: one", "assistant:re: two"}
	if got := messageStrings(t, s, user, conv, roleContent); !slices.Equal(got, want) {
		t.Fatalf("messages %v, want %v", got, want)
	}
	if _, err := s.RetryTurn(ctx, user, conv, two.Message.ID, 0); err != nil {
		t.Fatal(err)
	}
	want = []string{"user:one", "user:two", "assistant:re: one"}
	if got := messageStrings(t, s, user, conv, roleContent); !slices.Equal(got, want) {
		t.Errorf("messages after retrying two %v, want %v", got, want)
	}
	if r, err := s.GetRun(ctx, user, one.Run.ID); err != nil || r.Status != chat.RunCompleted {
		t.Errorf("the first run %+v, %v: want it kept, completed", r, err)
	}
}

func TestRetryTurnRefused(t *testing.T) {
	ctx := context.Background()
	s, user := newStore(t)
	turn, answer := exchange(t, s, user, "", "one")
	conv := turn.Conversation.ID
	stranger := newUserOnly(t)
	strangerTurn, _ := exchange(t, s, stranger, "", "mine")
	mine, theirs := snapshot(t, user), snapshot(t, stranger)
	for _, tc := range []struct {
		name, user, conv, msg string
		max                   int
		want                  error
	}{
		{"unknown conversation", user, "0195f3a0-0000-7000-8000-000000000000", turn.Message.ID, 0, chat.ErrNotFound},
		{"unknown message", user, conv, "0195f3a0-0000-7000-8000-000000000000", 0, chat.ErrNotFound},
		{"not ids", user, "x", "y", 0, chat.ErrNotFound},
		{"a message of another conversation", user, conv, strangerTurn.Message.ID, 0, chat.ErrNotFound},
		{"another user's conversation", stranger, conv, turn.Message.ID, 0, chat.ErrNotFound},
		{"another user's message in their own conversation", stranger, strangerTurn.Conversation.ID, turn.Message.ID, 0, chat.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.RetryTurn(ctx, tc.user, tc.conv, tc.msg, tc.max)
			wantErr(t, err, tc.want)
		})
	}
	t.Run("an assistant message", func(t *testing.T) {
		_, err := s.RetryTurn(ctx, user, conv, answer.ID, 0)
		wantFields(t, err, "item_id")
	})
	t.Run("the cap counts the user's unfinished runs", func(t *testing.T) {
		mustTurn(t, s, user, "", "queued elsewhere")
		mine = snapshot(t, user)
		_, err := s.RetryTurn(ctx, user, conv, turn.Message.ID, 1)
		wantErr(t, err, chat.ErrTooManyRuns)
		if snapshot(t, user) != mine {
			t.Errorf("a retry over the cap changed the user's rows")
		}
		if _, err := s.RetryTurn(ctx, user, conv, turn.Message.ID, 2); err != nil {
			t.Fatalf("under the cap: %v", err)
		}
		mine = snapshot(t, user)
	})
	if got := snapshot(t, user); got != mine {
		t.Errorf("a refused retry changed the user's rows")
	}
	if got := snapshot(t, stranger); got != theirs {
		t.Errorf("a refused retry changed the stranger's rows")
	}
}

func roleContent(m chat.Message) string { return string(m.Role) + ":" + m.Content }
