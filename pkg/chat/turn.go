package chat

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taskchat/taskchat/pkg/validate"
)

// IdempotencyWindow is how long an Idempotency-Key is kept: within it the
// same key returns the original turn; after it the key starts a new one.
const IdempotencyWindow = 24 * time.Hour

// Bounds of NewTurn.
const (
	// MaxIdempotencyKeyLen bounds an Idempotency-Key, in code points.
	MaxIdempotencyKeyLen = 255
	// MaxAutoTitleLen bounds the title a new conversation takes from its
	// first message, in code points.
	MaxAutoTitleLen = 60
)

// NewTurn is the input of CreateTurn: a user message and what the request
// carried with it.
type NewTurn struct {
	// ConversationID is the user's conversation to continue; "" starts a
	// new one, titled from the message.
	ConversationID string
	// Message is the user's text: trimmed, 1–4000 code points.
	Message string
	// IdempotencyKey is the request's Idempotency-Key ("" for none), at
	// most 255 code points; RequestHash identifies the request's body, so
	// that the key replayed with another body is refused.
	IdempotencyKey string
	RequestHash    string
	// MaxUnfinished caps the user's queued and running runs; 0 means no cap.
	MaxUnfinished int
}

// Turn is an accepted user message: its conversation, the message and the
// run that answers it.
type Turn struct {
	Conversation Conversation
	Message      Message
	Run          Run
	// Created is false when the Idempotency-Key matched an earlier turn,
	// which is returned as it is now.
	Created bool
	// Position is how many unfinished runs of the conversation were
	// accepted before this one (0: next to run).
	Position int
}

// CreateTurn accepts a user message: in one transaction it stores the
// message and a queued run answering it, in the user's conversation
// in.ConversationID or in a new one, and bumps the conversation's
// updated_at.
//
// Errors: a *validate.Error on "message" or "idempotency_key";
// ErrNotFound when in.ConversationID is not the user's (or the user does
// not exist);
// ErrIdempotencyKeyReused when in.IdempotencyKey was used within
// IdempotencyWindow with another RequestHash (with the same one, the
// original turn comes back with Created false, whatever the cap);
// ErrTooManyRuns when the user already has in.MaxUnfinished unfinished
// runs. The user's turns are serialised by a transaction-scoped advisory
// lock, so neither the key nor the cap can be raced by concurrent requests,
// on any replica. A key lives in its run's row, so it is forgotten when the
// conversation is deleted.
func (s *Store) CreateTurn(ctx context.Context, userID string, in NewTurn) (Turn, error) {
	var v validate.Errors
	in.Message = cleanText(&v, "message", in.Message, MaxMessageLen)
	if k := in.IdempotencyKey; k != "" {
		checkKey(&v, k)
	}
	if err := v.Err(); err != nil {
		return Turn{}, err
	}
	if in.ConversationID != "" {
		id, ok := parseID(in.ConversationID)
		if !ok {
			return Turn{}, ErrNotFound
		}
		in.ConversationID = id
	}
	var turn Turn
	err := s.inTx(ctx, "create turn", func(ctx context.Context, tx *Store) error {
		var err error
		turn, err = tx.createTurn(ctx, userID, in)
		return err
	})
	return turn, err
}

// createTurn is CreateTurn's transaction; in is valid. After the user's
// lock it takes two statements (three with an Idempotency-Key): the
// conversation's, which also counts the user's unfinished runs for the
// cap, and one inserting the message and the run, which also counts the
// conversation's unfinished runs before it.
func (s *Store) createTurn(ctx context.Context, userID string, in NewTurn) (Turn, error) {
	const op = "create turn"
	if err := s.lockUser(ctx, userID, op); err != nil {
		return Turn{}, err
	}
	if in.IdempotencyKey != "" {
		turn, found, err := s.replay(ctx, userID, in)
		if err != nil || found {
			return turn, err
		}
	}

	// The count rides on the conversation's statement, which starts after
	// the lock is held, so it sees every turn of the user that committed
	// before. A turn over the cap returns an error after that statement
	// changed the conversation: the transaction's rollback undoes it (over
	// a caller's transaction, the caller's, as for any error here).
	var conv conversationRow
	returning := "*"
	var args []any
	if in.MaxUnfinished > 0 {
		returning = "*, (?) AS unfinished_runs"
		args = []any{s.selectFrom(userID, (*runRow)(nil)).ColumnExpr("count(*)").Where("r.status IN (?)", unfinished)}
	}
	var err error
	if in.ConversationID != "" {
		// Bumping updated_at also checks the conversation is the user's,
		// and its row lock keeps it from being deleted under the new rows.
		err = s.update(userID, &conv).
			Where("c.id = ?", in.ConversationID).
			Set("updated_at = now()").
			Returning(returning, args...).
			Scan(ctx)
	} else {
		conv = conversationRow{ID: newID(), UserID: userID, Title: titleFrom(in.Message)}
		err = s.insert(&conv).ExcludeColumn("created_at", "updated_at").Returning(returning, args...).Scan(ctx)
	}
	if err = translate(op, err); errors.Is(err, ErrNotFound) {
		// The cap is checked first, as if the conversation came after it.
		if err := s.checkCap(ctx, userID, in.MaxUnfinished, op); err != nil {
			return Turn{}, err
		}
	}
	if err != nil {
		return Turn{}, err
	}
	if in.MaxUnfinished > 0 && conv.UnfinishedRuns >= in.MaxUnfinished {
		return Turn{}, ErrTooManyRuns
	}

	runID := newID()
	msg := messageRow{
		ID:             newID(),
		ConversationID: conv.ID,
		UserID:         userID,
		RunID:          runID,
		Role:           RoleUser,
		Content:        in.Message,
		ToolCalls:      []ToolCall{},
	}
	run := runRow{
		ID:                 runID,
		UserID:             userID,
		ConversationID:     conv.ID,
		MessageID:          msg.ID,
		AssistantMessageID: newID(),
		Status:             RunQueued,
	}
	if in.IdempotencyKey != "" {
		run.IdempotencyKey, run.RequestHash = &in.IdempotencyKey, &in.RequestHash
	}
	// The statement's snapshot has neither the new message nor the new
	// run: the count is of the runs accepted before it (the user's lock
	// keeps any other from being accepted meanwhile).
	before := s.selectFrom(userID, (*runRow)(nil)).
		ColumnExpr("count(*)").
		Where("r.conversation_id = ?", conv.ID).
		Where("r.status IN (?)", unfinished)
	err = s.insert(&run).
		With("m", s.insert(&msg).ExcludeColumn("seq", "created_at").Returning("created_at")).
		ExcludeColumn("seq", "created_at", "updated_at").
		Returning("*, (SELECT created_at FROM m) AS message_created_at, (?) AS position", before).
		Scan(ctx)
	if err != nil {
		return Turn{}, translate(op, err)
	}
	msg.CreatedAt = run.MessageCreatedAt
	return Turn{Conversation: conv.wire(), Message: msg.wire(), Run: run.wire(), Created: true, Position: run.Position}, nil
}

// lockUser serialises userID's turns until the transaction ends (a
// transaction-scoped advisory lock), so that neither an idempotency key
// nor the cap can be raced, on any replica.
func (s *Store) lockUser(ctx context.Context, userID, op string) error {
	_, err := s.db.NewRaw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", userID).Exec(ctx)
	return translate(op, err)
}

// checkCap returns ErrTooManyRuns when userID already has max unfinished
// runs; max 0 means no cap.
func (s *Store) checkCap(ctx context.Context, userID string, max int, op string) error {
	if max <= 0 {
		return nil
	}
	n, err := s.selectFrom(userID, (*runRow)(nil)).Where("r.status IN (?)", unfinished).Count(ctx)
	if err != nil {
		return translate(op, err)
	}
	if n >= int64(max) {
		return ErrTooManyRuns
	}
	return nil
}

// RetryTurn answers userID's user message messageID of conversation
// conversationID again: in one transaction it deletes the conversation's
// later messages, the run that answered the message and every later run
// (their ledgers go with them), and queues a new run for the message,
// which keeps its id and text. The returned Turn is the new one (Created,
// Position 0). Tool calls the deleted runs made stay made.
//
// Errors: ErrNotFound for an unknown or foreign conversation or message;
// a *validate.Error on "item_id" when the message is the assistant's;
// ErrConversationBusy while a run of the conversation is queued or
// running; ErrTooManyRuns at maxUnfinished unfinished runs (0: no cap).
// It takes the same per-user lock as CreateTurn.
func (s *Store) RetryTurn(ctx context.Context, userID, conversationID, messageID string, maxUnfinished int) (Turn, error) {
	conv, ok1 := parseID(conversationID)
	msgID, ok2 := parseID(messageID)
	if !ok1 || !ok2 {
		return Turn{}, ErrNotFound
	}
	var turn Turn
	err := s.inTx(ctx, "retry turn", func(ctx context.Context, tx *Store) error {
		var err error
		turn, err = tx.retryTurn(ctx, userID, conv, msgID, maxUnfinished)
		return err
	})
	return turn, err
}

// retryTurn is RetryTurn's transaction; the ids are canonical.
func (s *Store) retryTurn(ctx context.Context, userID, convID, msgID string, maxUnfinished int) (Turn, error) {
	const op = "retry turn"
	if err := s.lockUser(ctx, userID, op); err != nil {
		return Turn{}, err
	}
	var conv conversationRow
	err := s.update(userID, &conv).Where("c.id = ?", convID).Set("updated_at = now()").Returning("*").Scan(ctx)
	if err != nil {
		return Turn{}, translate(op, err)
	}
	var msg messageRow
	if err := s.selectFrom(userID, &msg).Where("m.id = ?", msgID).Where("m.conversation_id = ?", convID).Scan(ctx); err != nil {
		return Turn{}, translate(op, err)
	}
	if msg.Role != RoleUser {
		return Turn{}, validate.Field("item_id", "must be a user message")
	}
	busy, err := s.selectFrom(userID, (*runRow)(nil)).
		Where("r.conversation_id = ?", convID).
		Where("r.status IN (?)", unfinished).
		Exists(ctx)
	if err != nil {
		return Turn{}, translate(op, err)
	}
	if busy {
		return Turn{}, ErrConversationBusy
	}
	if err := s.checkCap(ctx, userID, maxUnfinished, op); err != nil {
		return Turn{}, err
	}
	var oldSeq int64
	if err := s.selectFrom(userID, (*runRow)(nil)).Column("seq").Where("r.id = ?", msg.RunID).Scan(ctx, &oldSeq); err != nil {
		return Turn{}, translate(op, err)
	}
	// What answers the message or came after it: the messages of its run and
	// of every later run (later user messages have later runs). An earlier
	// run's answer stays, even when it was written after this message (two
	// messages queued at once).
	laterRuns := s.selectFrom(userID, (*runRow)(nil)).Column("r.id").
		Where("r.conversation_id = ?", convID).
		Where("r.seq >= ?", oldSeq)
	_, err = s.db.NewDelete().Model((*messageRow)(nil)).ApplyQueryBuilder(scope(userID)).
		Where("m.conversation_id = ?", convID).
		Where("m.id <> ?", msg.ID).
		Where("m.run_id IN (?)", laterRuns).
		Exec(ctx)
	if err != nil {
		return Turn{}, translate(op, err)
	}
	_, err = s.db.NewDelete().Model((*runRow)(nil)).ApplyQueryBuilder(scope(userID)).
		Where("r.conversation_id = ?", convID).
		Where("r.seq >= ?", oldSeq).
		Exec(ctx)
	if err != nil {
		return Turn{}, translate(op, err)
	}
	run := runRow{ID: newID(), UserID: userID, ConversationID: convID, MessageID: msg.ID, AssistantMessageID: newID(), Status: RunQueued}
	if err := s.insert(&run).ExcludeColumn("seq", "created_at", "updated_at").Returning("*").Scan(ctx); err != nil {
		return Turn{}, translate(op, err)
	}
	err = s.update(userID, &msg).Where("m.id = ?", msg.ID).Set("run_id = ?", run.ID).Returning("*").Scan(ctx)
	if err != nil {
		return Turn{}, translate(op, err)
	}
	return Turn{Conversation: conv.wire(), Message: msg.wire(), Run: run.wire(), Created: true}, nil
}

// checkKey records what is wrong with a non-empty Idempotency-Key.
func checkKey(v *validate.Errors, k string) {
	const field = "idempotency_key"
	switch {
	case !utf8.ValidString(k):
		v.Add(field, "must be valid UTF-8")
	case strings.IndexByte(k, 0) >= 0:
		v.Add(field, "must not contain NUL characters")
	case strings.TrimSpace(k) != k:
		v.Add(field, "must not start or end with white space")
	case utf8.RuneCountInString(k) > MaxIdempotencyKeyLen:
		v.Addf(field, "must be at most %d characters", MaxIdempotencyKeyLen)
	}
}

// replay looks up in.IdempotencyKey: a key older than IdempotencyWindow is
// forgotten (found false); a fresh one with in.RequestHash gives the
// original turn; with another hash, ErrIdempotencyKeyReused.
func (s *Store) replay(ctx context.Context, userID string, in NewTurn) (Turn, bool, error) {
	const op = "look up idempotency key"
	var run runRow
	err := s.selectFrom(userID, &run).
		ColumnExpr("r.*").
		ColumnExpr("r.created_at > now() - ?::interval AS key_fresh", interval(IdempotencyWindow)).
		Where("r.idempotency_key = ?", in.IdempotencyKey).
		Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return Turn{}, false, nil
	}
	if err != nil {
		return Turn{}, false, translate(op, err)
	}
	if !run.KeyFresh {
		// Forget the old key so that the new turn can take it.
		_, err := s.update(userID, (*runRow)(nil)).
			Where("r.id = ?", run.ID).
			Set("idempotency_key = NULL").
			Set("request_hash = NULL").
			Exec(ctx)
		return Turn{}, false, translate(op, err)
	}
	if run.RequestHash == nil || *run.RequestHash != in.RequestHash {
		return Turn{}, false, ErrIdempotencyKeyReused
	}
	var conv conversationRow
	if err := s.selectFrom(userID, &conv).Where("c.id = ?", run.ConversationID).Scan(ctx); err != nil {
		return Turn{}, false, translate(op, err)
	}
	var msg messageRow
	if err := s.selectFrom(userID, &msg).Where("m.id = ?", run.MessageID).Scan(ctx); err != nil {
		return Turn{}, false, translate(op, err)
	}
	pos, err := s.position(ctx, run)
	if err != nil {
		return Turn{}, false, translate(op, err)
	}
	return Turn{Conversation: conv.wire(), Message: msg.wire(), Run: run.wire(), Position: pos}, true, nil
}

// position counts the unfinished runs of run's conversation accepted
// before it.
func (s *Store) position(ctx context.Context, run runRow) (int, error) {
	n, err := s.selectFrom(run.UserID, (*runRow)(nil)).
		Where("r.conversation_id = ?", run.ConversationID).
		Where("r.status IN (?)", unfinished).
		Where("r.seq < ?", run.Seq).
		Count(ctx)
	return int(n), err
}

// titleFrom makes a new conversation's title from its first message (valid
// and trimmed): the first line, cut to MaxAutoTitleLen code points at a word
// boundary when it is longer, ending in "…".
func titleFrom(msg string) string {
	line, _, _ := strings.Cut(msg, "\n")
	line = strings.TrimSpace(line)
	if utf8.RuneCountInString(line) <= MaxAutoTitleLen {
		return line
	}
	runes := []rune(line)
	keep := MaxAutoTitleLen - 1 // room for the ellipsis
	if !unicode.IsSpace(runes[keep]) {
		// Back up to the last space, unless the first word alone is too long.
		for i := keep - 1; i > 0; i-- {
			if unicode.IsSpace(runes[i]) {
				keep = i
				break
			}
		}
	}
	return strings.TrimRightFunc(string(runes[:keep]), unicode.IsSpace) + "…"
}
