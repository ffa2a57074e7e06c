package chat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/pgdb"
)

// ErrLeaseLost means the worker no longer holds the run: it is not running,
// or another worker took it over after the lease expired. The worker stops
// working on it without writing anything.
var ErrLeaseLost = errors.New("chat: run lease lost")

// Store keeps conversations, messages, runs and the ledger in Postgres. It
// holds a bun.IDB, so a Store made over a bun.Tx runs inside that
// transaction (its multi-statement methods then run inline instead of in a
// transaction of their own). It is safe for concurrent use when its IDB is
// (a *bun.DB is; a bun.Tx is not).
//
// Every method acts for one user: its queries match only rows whose user_id
// is userID, so another user's conversation, message or run is reported as
// ErrNotFound, exactly like a missing one, and nothing of it changes. An id
// that is not a UUID is ErrNotFound too, found without a query. Rule
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

// scope restricts a query to userID's rows of the query's model table.
// Every query of Store is built by one of the helpers below (or applies
// scope itself to a subquery), so none reads or changes another user's rows;
// Maintenance, the one cross-user path, is a separate type.
func scope(userID string) func(bun.QueryBuilder) bun.QueryBuilder {
	return func(q bun.QueryBuilder) bun.QueryBuilder {
		return q.Where("?TableAlias.user_id = ?", userID)
	}
}

// selectFrom starts a select of userID's rows of model's table, scanned
// into model (a typed nil: the caller names the destination at Scan).
func (s *Store) selectFrom(userID string, model any) *bun.SelectQuery {
	return s.db.NewSelect().Model(model).ApplyQueryBuilder(scope(userID))
}

// update starts an update of userID's rows of model's table.
func (s *Store) update(userID string, model any) *bun.UpdateQuery {
	return s.db.NewUpdate().Model(model).ApplyQueryBuilder(scope(userID))
}

// insert starts an insert of row, whose user_id the caller has set to the
// acting user (inserts have no WHERE to scope).
func (s *Store) insert(row any) *bun.InsertQuery {
	return s.db.NewInsert().Model(row)
}

// inTx runs fn with a Store in one transaction: a new one when s is over a
// *bun.DB or bun.Conn, the caller's when s is over a bun.Tx (fn then runs
// inline, and the caller commits or rolls back). An error of fn comes back
// unchanged (fn translates its own); failing to begin or commit is
// translated with op.
func (s *Store) inTx(ctx context.Context, op string, fn func(ctx context.Context, tx *Store) error) error {
	var run func(context.Context, *sql.TxOptions, func(context.Context, bun.Tx) error) error
	switch db := s.db.(type) {
	case *bun.DB:
		run = db.RunInTx
	case bun.Conn:
		run = db.RunInTx
	default:
		return fn(ctx, s)
	}
	var fnErr error
	err := run(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		fnErr = fn(ctx, &Store{db: tx})
		return fnErr
	})
	if err != nil && err != fnErr { //nolint:errorlint // identity: was it fn's own error?
		return translate(op, err)
	}
	return err
}

// translate maps a database error to the package's errors: nil stays nil;
// no row and a broken foreign key (the conversation, run or user was
// deleted meanwhile) → ErrNotFound; a second assistant message for a run →
// ErrRunFinished; anything else is wrapped with op, and also with
// pgdb.ErrUnavailable when the database could not be reached or could not
// answer in time.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23503": // foreign_key_violation
			return ErrNotFound
		case pgErr.Code == "23505" && pgErr.ConstraintName == "messages_run_assistant_key": // unique_violation
			return ErrRunFinished
		}
	}
	return fmt.Errorf("%s: %w", op, pgdb.MarkUnavailable(err))
}

// parseID returns s in the canonical lower-case form when it is a UUID
// written as 8-4-4-4-12 hexadecimal digits, the only form the API shows.
func parseID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
			continue
		}
		if !isHex(c) {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// newID returns a fresh UUID. Version 7 ids grow with time, so the primary
// key indexes take new rows at their right edge.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// interval renders d as a Postgres interval literal, exact to the
// microsecond (what timestamptz holds).
func interval(d time.Duration) string {
	return fmt.Sprintf("%d microseconds", d.Microseconds())
}

// unfinished are the statuses of runs that still have to end. Queries
// filter with r.status IN (?) over this list, the predicate of the partial
// indexes on unfinished runs.
var unfinished = bun.List([]RunStatus{RunQueued, RunRunning})

// conversationRow maps the conversations table.
type conversationRow struct {
	bun.BaseModel `bun:"table:conversations,alias:c"`

	ID        string    `bun:"id,pk,type:uuid"`
	UserID    string    `bun:"user_id,notnull"`
	Title     string    `bun:"title,notnull"`
	CreatedAt time.Time `bun:"created_at,nullzero,notnull,default:now()"`
	UpdatedAt time.Time `bun:"updated_at,nullzero,notnull,default:now()"`

	// Preview is filled by ListConversations only.
	Preview *string `bun:"last_message_preview,scanonly"`
	// UnfinishedRuns is the user's queued and running runs, where
	// CreateTurn asks (for its cap).
	UnfinishedRuns int `bun:"unfinished_runs,scanonly"`
}

func (c conversationRow) wire() Conversation {
	return Conversation{
		ID:                 c.ID,
		Title:              c.Title,
		CreatedAt:          c.CreatedAt.UTC(),
		UpdatedAt:          c.UpdatedAt.UTC(),
		LastMessagePreview: c.Preview,
	}
}

// messageRow maps the messages table.
type messageRow struct {
	bun.BaseModel `bun:"table:messages,alias:m"`

	ID             string     `bun:"id,pk,type:uuid"`
	Seq            int64      `bun:"seq,notnull"`
	ConversationID string     `bun:"conversation_id,notnull,type:uuid"`
	UserID         string     `bun:"user_id,notnull"`
	RunID          string     `bun:"run_id,notnull,type:uuid"`
	Role           string     `bun:"role,notnull"`
	Content        string     `bun:"content,notnull"`
	ToolCalls      []ToolCall `bun:"tool_calls,notnull,type:jsonb"`
	Model          *string    `bun:"model"`
	Feedback       *string    `bun:"feedback"`
	CreatedAt      time.Time  `bun:"created_at,nullzero,notnull,default:now()"`

	// RunHasLedger is filled by RunInput only: whether the run whose input
	// is read has tool rounds.
	RunHasLedger bool `bun:"run_has_ledger,scanonly"`
}

func (m messageRow) wire() Message {
	calls := m.ToolCalls
	if calls == nil {
		calls = []ToolCall{}
	}
	var model, feedback string
	if m.Model != nil {
		model = *m.Model
	}
	if m.Feedback != nil {
		feedback = *m.Feedback
	}
	return Message{
		ID:             m.ID,
		ConversationID: m.ConversationID,
		RunID:          m.RunID,
		Role:           m.Role,
		Content:        m.Content,
		ToolCalls:      calls,
		Model:          model,
		Feedback:       feedback,
		CreatedAt:      m.CreatedAt.UTC(),
	}
}

// runRow maps the runs table.
type runRow struct {
	bun.BaseModel `bun:"table:runs,alias:r"`

	ID                 string     `bun:"id,pk,type:uuid"`
	Seq                int64      `bun:"seq,notnull"`
	UserID             string     `bun:"user_id,notnull"`
	ConversationID     string     `bun:"conversation_id,notnull,type:uuid"`
	MessageID          string     `bun:"message_id,notnull,type:uuid"`
	AssistantMessageID string     `bun:"assistant_message_id,notnull,type:uuid"`
	Status             RunStatus  `bun:"status,notnull"`
	Attempts           int        `bun:"attempts,notnull"`
	ErrorCode          *string    `bun:"error_code"`
	ErrorMessage       *string    `bun:"error_message"`
	IdempotencyKey     *string    `bun:"idempotency_key"`
	RequestHash        *string    `bun:"request_hash"`
	LeaseOwner         *string    `bun:"lease_owner"`
	LeaseExpiresAt     *time.Time `bun:"lease_expires_at"`
	CancelRequested    bool       `bun:"cancel_requested,notnull"`
	CreatedAt          time.Time  `bun:"created_at,nullzero,notnull,default:now()"`
	StartedAt          *time.Time `bun:"started_at"`
	FinishedAt         *time.Time `bun:"finished_at"`
	UpdatedAt          time.Time  `bun:"updated_at,nullzero,notnull,default:now()"`
	PromptTokens       *int       `bun:"prompt_tokens"`
	CompletionTokens   *int       `bun:"completion_tokens"`

	// LeaseLive is lease_expires_at > now() and KeyFresh is created_at
	// within IdempotencyWindow, by the database's clock, where a query asks.
	LeaseLive bool `bun:"lease_live,scanonly"`
	KeyFresh  bool `bun:"key_fresh,scanonly"`
	// CreateTurn reads its new message's created_at and its Position with
	// the run it inserts.
	MessageCreatedAt time.Time `bun:"message_created_at,scanonly"`
	Position         int       `bun:"position,scanonly"`
}

func (r runRow) wire() Run {
	run := Run{
		ID:                 r.ID,
		ConversationID:     r.ConversationID,
		MessageID:          r.MessageID,
		AssistantMessageID: r.AssistantMessageID,
		Status:             r.Status,
		Attempts:           r.Attempts,
		CreatedAt:          r.CreatedAt.UTC(),
		StartedAt:          utcPtr(r.StartedAt),
		FinishedAt:         utcPtr(r.FinishedAt),
		UserID:             r.UserID,
	}
	if r.ErrorCode != nil {
		run.Error = &RunError{Code: *r.ErrorCode}
		if r.ErrorMessage != nil {
			run.Error.Message = *r.ErrorMessage
		}
	}
	if r.PromptTokens != nil && r.CompletionTokens != nil {
		run.Usage = &Usage{PromptTokens: *r.PromptTokens, CompletionTokens: *r.CompletionTokens}
	}
	return run
}

// leaseHeldBy reports whether the run is running under owner's lease
// (expired or not: nobody else took it yet).
func (r runRow) leaseHeldBy(owner string) bool {
	return r.Status == RunRunning && r.LeaseOwner != nil && *r.LeaseOwner == owner
}

// toolRoundRow maps the tool_rounds table (the ledger).
type toolRoundRow struct {
	bun.BaseModel `bun:"table:tool_rounds,alias:tr"`

	RunID     string          `bun:"run_id,pk,type:uuid"`
	Round     int             `bun:"round,pk"`
	Idx       int             `bun:"idx,pk"`
	UserID    string          `bun:"user_id,notnull"`
	Text      string          `bun:"text,notnull"`
	CallID    string          `bun:"call_id,notnull"`
	Name      string          `bun:"name,notnull"`
	Arguments json.RawMessage `bun:"arguments,notnull,type:jsonb"`
	Result    json.RawMessage `bun:"result,notnull,type:jsonb"`
	CreatedAt time.Time       `bun:"created_at,nullzero,notnull,default:now()"`
}

func (t toolRoundRow) wire() LedgerEntry {
	return LedgerEntry{
		Round:     t.Round,
		Index:     t.Idx,
		Text:      t.Text,
		CallID:    t.CallID,
		Name:      t.Name,
		Arguments: t.Arguments,
		Result:    t.Result,
	}
}

// Models returns the bun models of the store's tables, for checks that
// compare them with the applied schema (pkg/dbschema's tests). They are
// opaque values to every other caller.
func Models() []any {
	return []any{(*conversationRow)(nil), (*messageRow)(nil), (*runRow)(nil), (*toolRoundRow)(nil)}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
