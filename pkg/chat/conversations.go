package chat

import (
	"context"
	"time"

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
