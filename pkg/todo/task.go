// Package todo owns the user's tasks: the Task model, the rules a task's text
// must satisfy, and a user-scoped store over the "tasks" table.
//
// Every store method takes the id of the user it acts for and restricts its
// query to that user's rows, so another user's task is indistinguishable from
// a missing one (both are ErrNotFound). Rule violations are *validate.Error
// values naming the offending fields; the store checks the rules before
// touching the database.
package todo

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/validate"
)

// Limits on a task's text, counted in Unicode code points after trimming
// surrounding white space (the schema's CHECK constraints use the same counts).
const (
	MaxTitleLen       = 200
	MaxDescriptionLen = 1000
)

// ErrNotFound is returned when a task does not exist or belongs to another
// user; callers cannot tell the two apart.
var ErrNotFound = errors.New("task not found")

// ErrUserNotFound is returned by Create when the owning user row does not
// exist (the tasks.user_id foreign key failed).
var ErrUserNotFound = errors.New("user not found")

// Task is one to-do item of one user. Times are UTC with microsecond
// precision (what Postgres stores); Description is nil when absent and then
// encodes as JSON null.
type Task struct {
	bun.BaseModel `bun:"table:tasks,alias:t" json:"-"`

	ID          int64     `bun:"id,pk,autoincrement" json:"id"`
	UserID      string    `bun:"user_id,notnull" json:"user_id"`
	Title       string    `bun:"title,notnull" json:"title"`
	Description *string   `bun:"description" json:"description"`
	Completed   bool      `bun:"completed,notnull" json:"completed"`
	CreatedAt   time.Time `bun:"created_at,nullzero,notnull,default:now()" json:"created_at"`
	UpdatedAt   time.Time `bun:"updated_at,nullzero,notnull,default:now()" json:"updated_at"`
}

// NewTask is the input of Create.
type NewTask struct {
	// Title is required: 1–200 code points after trimming.
	Title string
	// Description is optional: at most 1000 code points after trimming. Nil,
	// or text that is empty after trimming, stores NULL.
	Description *string
}

// Normalize checks n against the rules and returns it with its text trimmed
// (and an all-white-space description turned into nil). Create calls it; a
// caller may call it first to report errors early.
func (n NewTask) Normalize() (NewTask, error) {
	var v validate.Errors
	n.Title = cleanTitle(&v, n.Title)
	n.Description = cleanDescription(&v, n.Description)
	return n, v.Err()
}

// Patch is the input of Update (PUT): nil fields stay as they are, and at
// least one change is required.
//
// Description has three states: nil and ClearDescription false leaves it
// unchanged; ClearDescription true sets it to NULL (JSON "description": null);
// a non-nil Description sets it (text that is empty after trimming also sets
// NULL, as in NewTask). Setting both Description and ClearDescription is a
// *validate.Error.
type Patch struct {
	Title            *string
	Description      *string
	ClearDescription bool
	Completed        *bool
}

// Normalize checks p against the rules and returns it with its text trimmed.
// A description that is empty after trimming becomes ClearDescription.
func (p Patch) Normalize() (Patch, error) {
	var v validate.Errors
	if p.Title == nil && p.Description == nil && !p.ClearDescription && p.Completed == nil {
		v.Add("", "at least one of title, description or completed is required")
		return p, v.Err()
	}
	if p.Title != nil {
		t := cleanTitle(&v, *p.Title)
		p.Title = &t
	}
	if p.Description != nil {
		if p.ClearDescription {
			v.Add("description", "cannot both set and clear the description")
		} else if d := cleanDescription(&v, p.Description); d == nil {
			p.Description, p.ClearDescription = nil, true
		} else {
			p.Description = d
		}
	}
	return p, v.Err()
}

// cleanTitle trims a title and records what is wrong with it.
func cleanTitle(v *validate.Errors, s string) string {
	s = strings.TrimSpace(s)
	if msg := checkText(s); msg != "" {
		v.Add("title", msg)
		return s
	}
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		v.Add("title", "is required")
	case n > MaxTitleLen:
		v.Add("title", fmt.Sprintf("must be at most %d characters", MaxTitleLen))
	}
	return s
}

// cleanDescription trims a description; nil or all white space gives nil.
func cleanDescription(v *validate.Errors, p *string) *string {
	if p == nil {
		return nil
	}
	s := strings.TrimSpace(*p)
	if msg := checkText(s); msg != "" {
		v.Add("description", msg)
		return &s
	}
	if s == "" {
		return nil
	}
	if utf8.RuneCountInString(s) > MaxDescriptionLen {
		v.Add("description", fmt.Sprintf("must be at most %d characters", MaxDescriptionLen))
	}
	return &s
}

// checkText rejects what Postgres text cannot hold (NUL) and invalid UTF-8,
// which the SQL layer would otherwise silently turn into U+FFFD.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "must not contain NUL characters"
	}
	return ""
}
