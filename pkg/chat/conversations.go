package chat

import (
	"context"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/validate"
)

// PreviewLen is how many code points of a conversation's newest message
// ListConversations shows.
const PreviewLen = 100

// GetConversation returns userID's conversation id, or ErrNotFound.
func (s *Store) GetConversation(ctx context.Context, userID, id string) (Conversation, error) {
	id, ok := parseID(id)
	if !ok {
		return Conversation{}, ErrNotFound
	}
	var c conversationRow
	if err := s.selectFrom(userID, &c).Where("c.id = ?", id).Scan(ctx); err != nil {
		return Conversation{}, translate("get conversation", err)
	}
	return c.wire(), nil
}

// ListConversations returns one page of userID's conversations, most
// recently updated first (ids break ties), each with LastMessagePreview:
// the first PreviewLen code points of its newest message (nil when it has
// none). p.Order must be "" or "desc". Invalid parameters and a cursor of
// another list are *validate.Error values. A conversation updated while a
// client pages moves to the front, so the client may miss or repeat it.
func (s *Store) ListConversations(ctx context.Context, userID string, p ListParams) (ConversationPage, error) {
	l, err := p.normalize(conversationListName, OrderDesc, OrderDesc)
	if err != nil {
		return ConversationPage{}, err
	}
	preview := s.selectFrom(userID, (*messageRow)(nil)).
		ColumnExpr("left(m.content, ?)", PreviewLen).
		Where("m.conversation_id = c.id").
		OrderExpr("m.seq DESC").
		Limit(1)
	rows := make([]conversationRow, 0, l.limit+1)
	q := s.selectFrom(userID, &rows).
		ColumnExpr("c.*").
		ColumnExpr("(?) AS last_message_preview", preview)
	if c := l.after; c != nil {
		q = q.Where("(c.updated_at, c.id) < (?::timestamptz, ?::uuid)", time.UnixMicro(*c.Time).UTC(), c.ID)
	}
	err = q.OrderExpr("c.updated_at DESC, c.id DESC").Limit(int64(l.limit) + 1).Scan(ctx)
	if err != nil {
		return ConversationPage{}, translate("list conversations", err)
	}
	var page ConversationPage
	if len(rows) > l.limit {
		rows = rows[:l.limit]
		last := rows[len(rows)-1]
		us := last.UpdatedAt.UnixMicro()
		page.NextCursor = cursor{List: conversationList, Time: &us, ID: last.ID}.encode()
	}
	page.Conversations = make([]Conversation, len(rows))
	for i, r := range rows {
		page.Conversations[i] = r.wire()
	}
	return page, nil
}

// RenameConversation sets the title of userID's conversation id (trimmed,
// 1–200 code points, else a *validate.Error on "title") and its updated_at,
// and returns it, or ErrNotFound.
func (s *Store) RenameConversation(ctx context.Context, userID, id, title string) (Conversation, error) {
	var v validate.Errors
	title = cleanText(&v, "title", title, MaxTitleLen)
	if err := v.Err(); err != nil {
		return Conversation{}, err
	}
	id, ok := parseID(id)
	if !ok {
		return Conversation{}, ErrNotFound
	}
	var c conversationRow
	err := s.update(userID, &c).
		Where("c.id = ?", id).
		Set("title = ?", title).
		Set("updated_at = now()").
		Returning("*").
		Scan(ctx)
	if err != nil {
		return Conversation{}, translate("rename conversation", err)
	}
	return c.wire(), nil
}

// DeleteConversation deletes userID's conversation id with its messages,
// runs and ledger (by cascade), or returns ErrNotFound. It returns the ids
// of the runs that were still queued or running, oldest first, so the
// caller can tell their workers to stop; those workers then find their run
// gone (ErrNotFound, ClaimGone). No run can be added to the conversation
// while it is being deleted.
func (s *Store) DeleteConversation(ctx context.Context, userID, id string) (unfinishedRunIDs []string, err error) {
	id, ok := parseID(id)
	if !ok {
		return nil, ErrNotFound
	}
	const op = "delete conversation"
	err = s.inTx(ctx, op, func(ctx context.Context, tx *Store) error {
		// The row lock holds off CreateTurn (its foreign key checks wait
		// for it), so the list below is complete.
		var found string
		err := tx.selectFrom(userID, (*conversationRow)(nil)).
			Column("id").
			Where("c.id = ?", id).
			For("UPDATE").
			Scan(ctx, &found)
		if err != nil {
			return translate(op, err)
		}
		unfinishedRunIDs = []string{}
		err = tx.selectFrom(userID, (*runRow)(nil)).
			Column("id").
			Where("r.conversation_id = ?", id).
			Where("r.status IN (?)", unfinished).
			OrderExpr("r.seq").
			Scan(ctx, &unfinishedRunIDs)
		if err != nil {
			return translate(op, err)
		}
		_, err = tx.db.NewDelete().Model((*conversationRow)(nil)).
			ApplyQueryBuilder(scope(userID)).
			Where("c.id = ?", id).
			Exec(ctx)
		return translate(op, err)
	})
	if err != nil {
		return nil, err
	}
	return unfinishedRunIDs, nil
}

// ListMessages returns one page of the messages of userID's conversation
// conversationID in seq order (p.Order "asc", the default, is oldest
// first), or ErrNotFound for an unknown or foreign conversation. Invalid
// parameters and a cursor of another list are *validate.Error values.
func (s *Store) ListMessages(ctx context.Context, userID, conversationID string, p ListParams) (MessagePage, error) {
	id, ok := parseID(conversationID)
	if !ok {
		return MessagePage{}, ErrNotFound
	}
	l, err := p.normalize(messageListName(id), OrderAsc, OrderAsc, OrderDesc)
	if err != nil {
		return MessagePage{}, err
	}
	const op = "list messages"
	exists, err := s.selectFrom(userID, (*conversationRow)(nil)).Where("c.id = ?", id).Exists(ctx)
	if err != nil {
		return MessagePage{}, translate(op, err)
	}
	if !exists {
		return MessagePage{}, ErrNotFound
	}
	rows := make([]messageRow, 0, l.limit+1)
	q := s.selectFrom(userID, &rows).Where("m.conversation_id = ?", id)
	cmp, dir := ">", "ASC"
	if l.order == OrderDesc {
		cmp, dir = "<", "DESC"
	}
	if p.After != "" {
		seq, err := s.messageSeq(ctx, userID, id, p.After)
		if err != nil {
			return MessagePage{}, err
		}
		l.after = &cursor{Seq: seq}
	}
	if c := l.after; c != nil {
		q = q.Where("m.seq "+cmp+" ?", c.Seq)
	}
	if err := q.OrderExpr("m.seq " + dir).Limit(int64(l.limit) + 1).Scan(ctx); err != nil {
		return MessagePage{}, translate(op, err)
	}
	var page MessagePage
	if len(rows) > l.limit {
		rows = rows[:l.limit]
		page.NextCursor = cursor{List: messageListName(id)(l.order), Seq: rows[len(rows)-1].Seq}.encode()
	}
	page.Messages = make([]Message, len(rows))
	for i, r := range rows {
		page.Messages[i] = r.wire()
	}
	return page, nil
}

// messageSeq returns the position of userID's message messageID in
// conversation conversationID (a canonical id), or ErrNotFound.
func (s *Store) messageSeq(ctx context.Context, userID, conversationID, messageID string) (int64, error) {
	id, ok := parseID(messageID)
	if !ok {
		return 0, ErrNotFound
	}
	var seq int64
	err := s.selectFrom(userID, (*messageRow)(nil)).
		Column("seq").
		Where("m.id = ?", id).
		Where("m.conversation_id = ?", conversationID).
		Scan(ctx, &seq)
	return seq, translate("find message", err)
}

// GetMessage returns userID's message messageID of conversation
// conversationID, or ErrNotFound.
func (s *Store) GetMessage(ctx context.Context, userID, conversationID, messageID string) (Message, error) {
	conv, ok1 := parseID(conversationID)
	id, ok2 := parseID(messageID)
	if !ok1 || !ok2 {
		return Message{}, ErrNotFound
	}
	var m messageRow
	err := s.selectFrom(userID, &m).Where("m.id = ?", id).Where("m.conversation_id = ?", conv).Scan(ctx)
	if err != nil {
		return Message{}, translate("get message", err)
	}
	return m.wire(), nil
}

// ListConversationsByCreation returns one page of userID's conversations
// in creation order (p.Order "desc", the default, is newest first; ids
// break ties), starting after the conversation p.After when it is set,
// and whether more follow. p.Cursor is not used. A conversation's place
// never changes, so pages neither skip nor repeat one. Invalid parameters
// are *validate.Error values; an unknown p.After is ErrNotFound.
func (s *Store) ListConversationsByCreation(ctx context.Context, userID string, p ListParams) ([]Conversation, bool, error) {
	l, err := ListParams{Limit: p.Limit, Order: p.Order}.normalize(conversationListName, OrderDesc, OrderAsc, OrderDesc)
	if err != nil {
		return nil, false, err
	}
	const op = "list conversations"
	rows := make([]conversationRow, 0, l.limit+1)
	q := s.selectFrom(userID, &rows)
	cmp, dir := "<", "DESC"
	if l.order == OrderAsc {
		cmp, dir = ">", "ASC"
	}
	if p.After != "" {
		id, ok := parseID(p.After)
		if !ok {
			return nil, false, ErrNotFound
		}
		var after conversationRow
		if err := s.selectFrom(userID, &after).Where("c.id = ?", id).Scan(ctx); err != nil {
			return nil, false, translate(op, err)
		}
		q = q.Where("(c.created_at, c.id) "+cmp+" (?::timestamptz, ?::uuid)", after.CreatedAt, after.ID)
	}
	err = q.OrderExpr("c.created_at " + dir + ", c.id " + dir).Limit(int64(l.limit) + 1).Scan(ctx)
	if err != nil {
		return nil, false, translate(op, err)
	}
	more := len(rows) > l.limit
	if more {
		rows = rows[:l.limit]
	}
	out := make([]Conversation, len(rows))
	for i, r := range rows {
		out[i] = r.wire()
	}
	return out, more, nil
}

// SetFeedback records kind (FeedbackPositive or FeedbackNegative, else a
// *validate.Error on "kind") on userID's messages messageIDs (at most
// MaxLimit, else a *validate.Error on "item_ids") of conversation
// conversationID, all or none: ErrNotFound when the conversation or any of
// the messages is not the user's.
func (s *Store) SetFeedback(ctx context.Context, userID, conversationID string, messageIDs []string, kind string) error {
	var v validate.Errors
	if kind != FeedbackPositive && kind != FeedbackNegative {
		v.Add("kind", "must be positive or negative")
	}
	if len(messageIDs) > MaxLimit {
		v.Addf("item_ids", "must list at most %d items", MaxLimit)
	}
	if err := v.Err(); err != nil {
		return err
	}
	conv, ok := parseID(conversationID)
	if !ok {
		return ErrNotFound
	}
	ids := make([]string, 0, len(messageIDs))
	seen := map[string]bool{}
	for _, m := range messageIDs {
		id, ok := parseID(m)
		if !ok {
			return ErrNotFound
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	const op = "set feedback"
	return s.inTx(ctx, op, func(ctx context.Context, tx *Store) error {
		exists, err := tx.selectFrom(userID, (*conversationRow)(nil)).Where("c.id = ?", conv).Exists(ctx)
		if err != nil {
			return translate(op, err)
		}
		if !exists {
			return ErrNotFound
		}
		if len(ids) == 0 {
			return nil
		}
		res, err := tx.update(userID, (*messageRow)(nil)).
			Where("m.conversation_id = ?", conv).
			Where("m.id IN (?)", bun.List(ids)).
			Set("feedback = ?", kind).
			Exec(ctx)
		if err != nil {
			return translate(op, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
			if err != nil {
				return translate(op, err)
			}
			return ErrNotFound // rolls the others back
		}
		return nil
	})
}
