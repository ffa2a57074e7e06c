package chat_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/validate"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "chat", &testDB)) }

// lease is the lease tests claim with: long enough never to expire by
// itself during a test; tests that need an expired lease expire it.
const lease = time.Minute

// newStore returns a store over the package's database and a fresh user.
func newStore(t *testing.T) (*chat.Store, string) {
	t.Helper()
	return chat.NewStore(testDB.DB), dbtest.CreateUser(t, testDB.DB, "")
}

// mustTurn accepts message in conversationID ("" for a new one) or fails
// the test.
func mustTurn(t *testing.T, s *chat.Store, userID, conversationID, message string) chat.Turn {
	t.Helper()
	turn, err := s.CreateTurn(context.Background(), userID, chat.NewTurn{ConversationID: conversationID, Message: message})
	if err != nil {
		t.Fatalf("CreateTurn(%q): %v", message, err)
	}
	return turn
}

// mustClaim claims a run and fails unless the outcome is want.
func mustClaim(t *testing.T, s *chat.Store, userID, runID, owner string, want chat.ClaimOutcome) chat.Claim {
	t.Helper()
	c, err := s.ClaimRun(context.Background(), userID, runID, owner, lease)
	if err != nil {
		t.Fatalf("ClaimRun(%s, %s): %v", runID, owner, err)
	}
	if c.Outcome != want {
		t.Fatalf("ClaimRun(%s, %s) = %v, want %v (run %+v)", runID, owner, c.Outcome, want, c.Run)
	}
	return c
}

// mustComplete finishes a run owner holds with answer text.
func mustComplete(t *testing.T, s *chat.Store, userID, runID, owner, text string) (chat.Run, *chat.Message) {
	t.Helper()
	run, msg, err := s.FinishRun(context.Background(), userID, runID, owner, chat.Finish{
		Status: chat.RunCompleted,
		Answer: &chat.Answer{Content: text, Model: "offline"},
	})
	if err != nil {
		t.Fatalf("FinishRun(%s): %v", runID, err)
	}
	return run, msg
}

// answer runs one queued run to completion: claim, then finish with text.
func answer(t *testing.T, s *chat.Store, userID, runID, text string) *chat.Message {
	t.Helper()
	mustClaim(t, s, userID, runID, "w-answer", chat.ClaimOK)
	_, msg := mustComplete(t, s, userID, runID, "w-answer", text)
	return msg
}

// expireLease moves a running run's lease into the past, as if its worker
// had died a while ago.
func expireLease(t *testing.T, runID string) {
	t.Helper()
	res, err := testDB.DB.NewRaw("UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = ? AND status = 'running'", runID).
		Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("expire lease of %s: %d rows, want 1 running run", runID, n)
	}
}

// runRow is a run's row as stored, read past the store's scoping.
type runState struct {
	Status          string     `bun:"status"`
	Attempts        int        `bun:"attempts"`
	LeaseOwner      *string    `bun:"lease_owner"`
	LeaseExpiresAt  *time.Time `bun:"lease_expires_at"`
	CancelRequested bool       `bun:"cancel_requested"`
	ErrorCode       *string    `bun:"error_code"`
	IdempotencyKey  *string    `bun:"idempotency_key"`
	FinishedAt      *time.Time `bun:"finished_at"`
	UpdatedAt       time.Time  `bun:"updated_at"`
}

func rawRun(t *testing.T, runID string) runState {
	t.Helper()
	var st runState
	err := testDB.DB.NewRaw("SELECT status, attempts, lease_owner, lease_expires_at, cancel_requested, error_code, idempotency_key, finished_at, updated_at FROM runs WHERE id = ?", runID).
		Scan(context.Background(), &st)
	if err != nil {
		t.Fatalf("read run %s: %v", runID, err)
	}
	return st
}

// count runs a counting query past the store's scoping.
func count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := testDB.DB.NewRaw(query, args...).Scan(context.Background(), &n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// snapshot is every chat row of a user, as text, to show that a failed or
// foreign call changed nothing.
func snapshot(t *testing.T, userID string) string {
	t.Helper()
	var s string
	err := testDB.DB.NewRaw(`SELECT concat_ws('|',
		(SELECT string_agg(c::text, ',' ORDER BY c.id) FROM conversations c WHERE user_id = ?0),
		(SELECT string_agg(m::text, ',' ORDER BY m.seq) FROM messages m WHERE user_id = ?0),
		(SELECT string_agg(r::text, ',' ORDER BY r.seq) FROM runs r WHERE user_id = ?0),
		(SELECT string_agg(l::text, ',' ORDER BY l.run_id, l.round, l.idx) FROM tool_rounds l WHERE user_id = ?0))`, userID).
		Scan(context.Background(), &s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantErr fails unless errors.Is(err, want).
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}

// wantFields fails unless err is a *validate.Error naming exactly fields.
func wantFields(t *testing.T, err error, fields ...string) {
	t.Helper()
	list, ok := validate.Fields(err)
	if !ok {
		t.Fatalf("error = %v (%T), want *validate.Error on %q", err, err, fields)
	}
	got := make([]string, len(list))
	for i, f := range list {
		got[i] = f.Field
		if f.Message == "" {
			t.Errorf("field %q has no message", f.Field)
		}
	}
	if !reflect.DeepEqual(got, fields) {
		t.Fatalf("validation fields = %q, want %q (%v)", got, fields, err)
	}
}

// wantUTC fails unless every time is in time.UTC and not zero.
func wantUTC(t *testing.T, what string, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if tm.IsZero() || tm.Location() != time.UTC {
			t.Errorf("%s: time %v is zero or not UTC", what, tm)
		}
	}
}

// messageStrings lists a conversation's messages, oldest first, each as
// show says.
func messageStrings(t *testing.T, s *chat.Store, user, conv string, show func(chat.Message) string) []string {
	t.Helper()
	page, err := s.ListMessages(context.Background(), user, conv, chat.ListParams{Limit: chat.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range page.Messages {
		out = append(out, show(m))
	}
	return out
}
