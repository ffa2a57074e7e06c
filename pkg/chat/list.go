package chat

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskchat/taskchat/pkg/validate"
)

// Values of ListParams.Order.
const (
	OrderAsc  = "asc"
	OrderDesc = "desc"
)

// Bounds of ListParams.
const (
	DefaultLimit = 50
	MaxLimit     = 200
	maxCursorLen = 1024 // bytes of an encoded cursor; a real one is far shorter
)

// ListParams selects one page of a list.
type ListParams struct {
	// Limit is the page size, 1–200; 0 means DefaultLimit.
	Limit int
	// Cursor is the previous page's NextCursor of the same list (the same
	// conversation's messages in the same order); "" starts at the
	// beginning.
	Cursor string
	// Order applies to messages: "asc" (oldest first, the default) or
	// "desc". Conversations come most recently updated first; their Order
	// must be "" or "desc".
	Order string
	// After, instead of Cursor, starts the page right after the row with
	// this id: a message of the same conversation (ListMessages), or a
	// conversation (ListConversationsByCreation). This is how ChatKit
	// pages. An id that is not such a row of the user's is ErrNotFound.
	After string
}

// ConversationPage is one page of a user's conversations. NextCursor is ""
// when there are no more.
type ConversationPage struct {
	Conversations []Conversation
	NextCursor    string
}

// MessagePage is one page of a conversation's messages. NextCursor is ""
// when there are no more.
type MessagePage struct {
	Messages   []Message
	NextCursor string
}

var limitMessage = fmt.Sprintf("must be an integer from 1 to %d", MaxLimit)

// cursor is the position after the last row of a page, and the list it
// belongs to: "conversations", or "messages <conversation id> <order>".
// Conversations continue after (Time, ID) of updated_at and id, messages
// after Seq. Times are Unix microseconds, exactly what timestamptz holds.
type cursor struct {
	List string `json:"l"`
	Time *int64 `json:"t,omitempty"`
	ID   string `json:"id,omitempty"`
	Seq  int64  `json:"s,omitempty"`
}

// Bounds of a cursor's time key.
var (
	minCursorTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxCursorTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

const conversationList = "conversations"

func conversationListName(string) string { return conversationList }

// messageListName names the list of one conversation's messages in order.
func messageListName(conversationID string) func(order string) string {
	return func(order string) string { return "messages " + conversationID + " " + order }
}

func (c cursor) encode() string {
	b, err := json.Marshal(c)
	if err != nil {
		panic("chat: encode cursor: " + err.Error()) // cannot happen: plain fields
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// listQuery is a validated ListParams with its cursor decoded.
type listQuery struct {
	limit int
	order string
	after *cursor
}

// normalize validates p for a list whose default order is defaultOrder and
// whose orders are allowed, and decodes its cursor, which must have been
// made for listName(order).
func (p ListParams) normalize(listName func(order string) string, defaultOrder string, allowed ...string) (listQuery, error) {
	var v validate.Errors
	l := listQuery{limit: p.Limit, order: p.Order}
	switch {
	case l.limit == 0:
		l.limit = DefaultLimit
	case l.limit < 1 || l.limit > MaxLimit:
		v.Add("limit", limitMessage)
	}
	if l.order == "" {
		l.order = defaultOrder
	}
	ok := false
	for _, o := range allowed {
		ok = ok || l.order == o
	}
	if !ok {
		v.Add("order", "must be one of "+strings.Join(allowed, ", "))
	}
	if v.Len() > 0 {
		return l, v.Err()
	}
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor, listName(l.order))
		if err != nil {
			return l, validate.Field("cursor", err.Error())
		}
		l.after = &c
	}
	return l, nil
}

// decodeCursor parses s and checks it belongs to list. Its errors are
// messages for the "cursor" field.
func decodeCursor(s, list string) (cursor, error) {
	var c cursor
	invalid := fmt.Errorf("is not a valid cursor")
	if len(s) > maxCursorLen {
		return c, invalid
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, invalid
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return c, invalid
	}
	if c.List != list {
		return c, fmt.Errorf("was made for a different list or order")
	}
	if list == conversationList {
		id, ok := parseID(c.ID)
		if !ok || c.Time == nil || *c.Time < minCursorTime || *c.Time > maxCursorTime || c.Seq != 0 {
			return c, invalid
		}
		c.ID = id
	} else if c.Seq < 1 || c.Time != nil || c.ID != "" {
		return c, invalid
	}
	return c, nil
}

// cleanText trims s and records on field what is wrong with it: not valid
// UTF-8 (which the SQL layer would silently turn into U+FFFD), a NUL
// (which Postgres text cannot hold), empty, or longer than max code points.
func cleanText(v *validate.Errors, field, s string, max int) string {
	if !utf8.ValidString(s) {
		v.Add(field, "must be valid UTF-8")
		return s
	}
	if strings.IndexByte(s, 0) >= 0 {
		v.Add(field, "must not contain NUL characters")
		return s
	}
	s = strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		v.Add(field, "is required")
	case n > max:
		v.Add(field, fmt.Sprintf("must be at most %d characters", max))
	}
	return s
}
