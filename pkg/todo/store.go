package todo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/validate"
)

// Store keeps tasks in Postgres. It holds a bun.IDB, so a Store made over a
// bun.Tx runs inside that transaction. It is safe for concurrent use when
// its IDB is (a *bun.DB is; a bun.Tx is not).
//
// Every method acts for one user: its queries match only rows whose user_id
// is userID, so another user's task is reported as ErrNotFound. Rule
// violations are *validate.Error; other failures are wrapped with the
// operation's name, and wrap pgdb.ErrUnavailable when the database could
// not be reached or could not answer in time.
type Store struct {
	db bun.IDB
}

// NewStore returns a Store over db (a *bun.DB, bun.Tx or bun.Conn).
func NewStore(db bun.IDB) *Store {
	return &Store{db: db}
}

// scope restricts a query to userID's rows. Every select, update and delete
// of this package is built by selectTasks, updateTask or deleteTask, which
// apply it; nothing else reads or changes the table.
func scope(userID string) func(bun.QueryBuilder) bun.QueryBuilder {
	return func(q bun.QueryBuilder) bun.QueryBuilder {
		return q.Where("?TableAlias.user_id = ?", userID)
	}
}

// selectTasks starts a select of userID's tasks into dest.
func (s *Store) selectTasks(userID string, dest any) *bun.SelectQuery {
	return s.db.NewSelect().Model(dest).ApplyQueryBuilder(scope(userID))
}

// updateTask starts an update of userID's task id that returns the new row
// into dest.
func (s *Store) updateTask(userID string, id int64, dest *Task) *bun.UpdateQuery {
	return s.db.NewUpdate().Model(dest).
		ApplyQueryBuilder(scope(userID)).
		Where("?TableAlias.id = ?", id).
		Returning("*")
}

// deleteTask starts a delete of userID's task id.
func (s *Store) deleteTask(userID string, id int64) *bun.DeleteQuery {
	return s.db.NewDelete().Model((*Task)(nil)).
		ApplyQueryBuilder(scope(userID)).
		Where("?TableAlias.id = ?", id)
}

// Create stores a new, not completed task of userID after checking in
// against the rules (see NewTask.Normalize). It returns ErrUserNotFound when
// no such user exists.
func (s *Store) Create(ctx context.Context, userID string, in NewTask) (Task, error) {
	in, err := in.Normalize()
	if err != nil {
		return Task{}, err
	}
	t := Task{UserID: userID, Title: in.Title, Description: in.Description}
	// id is GENERATED ALWAYS; the timestamps take their column defaults.
	err = s.db.NewInsert().Model(&t).
		ExcludeColumn("id", "created_at", "updated_at").
		Returning("*").
		Scan(ctx)
	if err != nil {
		return Task{}, translate("create task", err)
	}
	return t.utc(), nil
}

// Get returns userID's task id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, userID string, id int64) (Task, error) {
	var t Task
	err := s.selectTasks(userID, &t).Where("?TableAlias.id = ?", id).Scan(ctx)
	if err != nil {
		return Task{}, translate("get task", err)
	}
	return t.utc(), nil
}

// sortKey is how List orders by one ListParams.Sort: the row's key
// expression and the same expression over the cursor's value. ORDER BY and
// the cursor comparison use the pair, so that pages meet exactly, and each
// key is the middle of an index on (user_id, key, id) in
// schema/todo.pg.hcl, so that a page is an index range scan.
type sortKey struct {
	row, cursor string
}

var sortKeys = map[string]sortKey{
	SortCreated: {"t.created_at", "?::timestamptz"},
	SortUpdated: {"t.updated_at", "?::timestamptz"},
	// Case-insensitive: "alpha" before "Beta" before "zebra".
	SortTitle: {"lower(t.title)", "lower(?)"},
}

// List returns one page of userID's tasks, filtered, ordered and continued
// as p says (see ListParams). Invalid parameters, a malformed cursor and a
// cursor made for another sort or order are *validate.Error values.
func (s *Store) List(ctx context.Context, userID string, p ListParams) (Page, error) {
	l, err := p.normalize()
	if err != nil {
		return Page{}, err
	}
	tasks := make([]Task, 0, l.limit+1)
	q := s.selectTasks(userID, &tasks)
	switch l.status {
	case StatusPending:
		q = q.Where("NOT t.completed")
	case StatusCompleted:
		q = q.Where("t.completed")
	}
	if l.query != "" {
		pattern := "%" + escapeLike(l.query) + "%"
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where(`t.title ILIKE ? ESCAPE '\'`, pattern).
				WhereOr(`t.description ILIKE ? ESCAPE '\'`, pattern)
		})
	}
	key := sortKeys[l.sort]
	cmp, dir := ">", "ASC"
	if l.order == OrderDesc {
		cmp, dir = "<", "DESC"
	}
	if c := l.after; c != nil {
		var after any
		if c.Time != nil {
			after = time.UnixMicro(*c.Time).UTC()
		} else {
			after = *c.Title
		}
		q = q.Where("("+key.row+", t.id) "+cmp+" ("+key.cursor+", ?)", after, c.ID)
	}
	q = q.OrderExpr(key.row + " " + dir + ", t.id " + dir).Limit(int64(l.limit) + 1)
	if err := q.Scan(ctx); err != nil {
		return Page{}, translate("list tasks", err)
	}
	var page Page
	if len(tasks) > l.limit {
		tasks = tasks[:l.limit]
		page.NextCursor = cursorAfter(tasks[len(tasks)-1], l.sort, l.order)
	}
	for i := range tasks {
		tasks[i] = tasks[i].utc()
	}
	page.Tasks = tasks
	return page, nil
}

// Update applies p (see Patch) to userID's task id in one statement, sets
// updated_at to now() and returns the new row. It returns ErrNotFound when
// there is no such task, and a *validate.Error for an invalid or empty Patch.
func (s *Store) Update(ctx context.Context, userID string, id int64, p Patch) (Task, error) {
	p, err := p.Normalize()
	if err != nil {
		return Task{}, err
	}
	var t Task
	q := s.updateTask(userID, id, &t).Set("updated_at = now()")
	if p.Title != nil {
		q = q.Set("title = ?", *p.Title)
	}
	switch {
	case p.ClearDescription:
		q = q.Set("description = NULL")
	case p.Description != nil:
		q = q.Set("description = ?", *p.Description)
	}
	if p.Completed != nil {
		q = q.Set("completed = ?", *p.Completed)
	}
	if err := q.Scan(ctx); err != nil {
		return Task{}, translate("update task", err)
	}
	return t.utc(), nil
}

// Delete removes userID's task id, or returns ErrNotFound.
func (s *Store) Delete(ctx context.Context, userID string, id int64) error {
	res, err := s.deleteTask(userID, id).Exec(ctx)
	if err != nil {
		return translate("delete task", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return translate("delete task", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// ToggleComplete flips the completed flag of userID's task id (what PATCH
// …/complete does), sets updated_at and returns the new row, or ErrNotFound.
func (s *Store) ToggleComplete(ctx context.Context, userID string, id int64) (Task, error) {
	var t Task
	err := s.updateTask(userID, id, &t).
		Set("completed = NOT completed").
		Set("updated_at = now()").
		Scan(ctx)
	if err != nil {
		return Task{}, translate("toggle task", err)
	}
	return t.utc(), nil
}

// SetCompleted sets the completed flag of userID's task id to done (what the
// complete_task tool does) and returns the row, or ErrNotFound. It is
// idempotent: when the flag already has that value nothing changes, not even
// updated_at.
func (s *Store) SetCompleted(ctx context.Context, userID string, id int64, done bool) (Task, error) {
	var t Task
	err := s.updateTask(userID, id, &t).
		Set("updated_at = CASE WHEN completed = ? THEN updated_at ELSE now() END", done).
		Set("completed = ?", done).
		Scan(ctx)
	if err != nil {
		return Task{}, translate("set task completed", err)
	}
	return t.utc(), nil
}

// utc returns t with its times in UTC; the driver hands them back in the
// local zone.
func (t Task) utc() Task {
	t.CreatedAt = t.CreatedAt.UTC()
	t.UpdatedAt = t.UpdatedAt.UTC()
	return t
}

// escapeLike makes s match itself inside a LIKE pattern whose escape
// character is a backslash.
func escapeLike(s string) string {
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\', '%', '_':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}

// Constraints of the tasks table whose violation is a rule violation.
var checkFields = map[string]string{
	"tasks_title_length":       "title",
	"tasks_description_length": "description",
}

// translate maps a database error to the package's errors: no row →
// ErrNotFound; a CHECK violation → *validate.Error (the rules are checked
// first, so this is a second line of defence); the user foreign key →
// ErrUserNotFound; anything else is wrapped with op, and also with
// pgdb.ErrUnavailable when the database could not be reached or could not
// answer in time (see pgdb.Unavailable).
func translate(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23514": // check_violation
			field := checkFields[pgErr.ConstraintName]
			if field != "" {
				return validate.Field(field, "is too long or empty")
			}
		case "23503": // foreign_key_violation
			if pgErr.ConstraintName == "tasks_user_id_fkey" {
				return fmt.Errorf("%s: %w", op, ErrUserNotFound)
			}
		}
	}
	return fmt.Errorf("%s: %w", op, pgdb.MarkUnavailable(err))
}
