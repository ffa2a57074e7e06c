package todo

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/taskchat/taskchat/pkg/validate"
)

// Values of ListParams fields.
const (
	StatusAll       = "all"
	StatusPending   = "pending"
	StatusCompleted = "completed"

	SortCreated = "created"
	SortUpdated = "updated"
	SortTitle   = "title"

	OrderAsc  = "asc"
	OrderDesc = "desc"
)

// Bounds of ListParams.
const (
	DefaultLimit = 50
	MaxLimit     = 200
	MaxQueryLen  = 200  // code points of Query after trimming
	maxCursorLen = 4096 // bytes of an encoded cursor; a real one is far shorter
)

// ListParams selects and orders one page of a user's tasks. Empty strings
// take the defaults: Status "all", Sort "created", Order "desc", no Query.
type ListParams struct {
	// Status is "all", "pending" or "completed".
	Status string
	// Sort is "created", "updated" or "title"; ids break ties. Titles are
	// ordered case-insensitively, by lower(title) under the database
	// collation ("alpha", "Beta", "zebra"), the expression of their index.
	Sort string
	// Order is "asc" or "desc"; it applies to the sort key and the id.
	Order string
	// Query keeps tasks whose title or description contains it, case
	// insensitively; it is trimmed, and % _ \ match themselves.
	Query string
	// Limit is the page size, 1–200; 0 means DefaultLimit. An HTTP caller
	// should turn its "limit" parameter into Limit with ParseLimit, so that an
	// explicit limit=0 is rejected rather than defaulted.
	Limit int
	// Cursor is a previous Page's NextCursor, made with the same Sort and
	// Order; "" starts at the beginning. Status and Query may change between
	// pages: the cursor only marks a position in the order.
	Cursor string
}

// Page is one page of a list. NextCursor is "" when there are no more tasks.
type Page struct {
	Tasks      []Task
	NextCursor string
}

// ParseLimit turns a "limit" query parameter into ListParams.Limit: "" gives
// DefaultLimit; anything but an integer in 1–200 is a *validate.Error on
// field "limit".
func ParseLimit(s string) (int, error) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, limitError()
	}
	return n, nil
}

var limitMessage = fmt.Sprintf("must be an integer from 1 to %d", MaxLimit)

func limitError() error {
	return validate.Field("limit", limitMessage)
}

// listQuery is a validated ListParams with its cursor decoded.
type listQuery struct {
	status, sort, order, query string
	limit                      int
	after                      *cursor
}

// normalize validates p, applies the defaults and decodes the cursor.
func (p ListParams) normalize() (listQuery, error) {
	var v validate.Errors
	l := listQuery{status: p.Status, sort: p.Sort, order: p.Order, limit: p.Limit}
	switch l.status {
	case "":
		l.status = StatusAll
	case StatusAll, StatusPending, StatusCompleted:
	default:
		v.Add("status", "must be one of all, pending, completed")
	}
	switch l.sort {
	case "":
		l.sort = SortCreated
	case SortCreated, SortUpdated, SortTitle:
	default:
		v.Add("sort", "must be one of created, updated, title")
	}
	switch l.order {
	case "":
		l.order = OrderDesc
	case OrderAsc, OrderDesc:
	default:
		v.Add("order", "must be asc or desc")
	}
	l.query = strings.TrimSpace(p.Query)
	if msg := checkText(l.query); msg != "" {
		v.Add("q", msg)
	} else if utf8.RuneCountInString(l.query) > MaxQueryLen {
		v.Add("q", fmt.Sprintf("must be at most %d characters", MaxQueryLen))
	}
	switch {
	case l.limit == 0:
		l.limit = DefaultLimit
	case l.limit < 1 || l.limit > MaxLimit:
		v.Add("limit", limitMessage)
	}
	if v.Len() > 0 {
		// The cursor is checked against a valid sort and order only.
		return l, v.Err()
	}
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor, l.sort, l.order)
		if err != nil {
			v.Add("cursor", err.Error())
			return l, v.Err()
		}
		l.after = &c
	}
	return l, nil
}

// cursor is the position after the last task of a page: that task's sort
// key and id, and the sort and order the position belongs to. Time keys are
// Unix microseconds, exactly what timestamptz holds, so they survive the
// round trip whatever the time zone.
type cursor struct {
	Sort  string  `json:"s"`
	Order string  `json:"o"`
	ID    int64   `json:"id"`
	Time  *int64  `json:"t,omitempty"`
	Title *string `json:"k,omitempty"`
}

// Bounds of a cursor's time key: Postgres timestamptz covers far more, but
// no task is dated outside these years.
var (
	minCursorTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxCursorTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

// cursorAfter makes the cursor that continues after t.
func cursorAfter(t Task, sort, order string) string {
	c := cursor{Sort: sort, Order: order, ID: t.ID}
	switch sort {
	case SortCreated:
		us := t.CreatedAt.UnixMicro()
		c.Time = &us
	case SortUpdated:
		us := t.UpdatedAt.UnixMicro()
		c.Time = &us
	case SortTitle:
		c.Title = &t.Title
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic("todo: encode cursor: " + err.Error()) // cannot happen: plain fields
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses s and checks that it belongs to sort and order. Its
// errors are messages for the "cursor" field.
func decodeCursor(s, sort, order string) (cursor, error) {
	var c cursor
	if len(s) > maxCursorLen {
		return c, fmt.Errorf("is not a valid cursor")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return c, fmt.Errorf("is not a valid cursor")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return c, fmt.Errorf("is not a valid cursor")
	}
	if c.Sort != sort || c.Order != order {
		return c, fmt.Errorf("was made for a different sort or order")
	}
	if c.ID < 1 {
		return c, fmt.Errorf("is not a valid cursor")
	}
	switch sort {
	case SortCreated, SortUpdated:
		if c.Time == nil || c.Title != nil || *c.Time < minCursorTime || *c.Time > maxCursorTime {
			return c, fmt.Errorf("is not a valid cursor")
		}
	case SortTitle:
		if c.Title == nil || c.Time != nil || checkText(*c.Title) != "" || utf8.RuneCountInString(*c.Title) > MaxTitleLen {
			return c, fmt.Errorf("is not a valid cursor")
		}
	}
	return c, nil
}
