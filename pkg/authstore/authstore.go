// Package authstore stores Better Auth's users, sessions and accounts: bun
// models of Better Auth's tables and a store over them. It only reads and
// writes rows; verifying credentials is package auth's job, which reads
// users and sessions through this store.
//
// Better Auth (the front end's auth library) owns the rows; taskchat's Atlas
// schema owns the tables (schema/auth.pg.hcl). Column names are camelCase as
// Better Auth expects; bun quotes them itself, but raw SQL fragments must
// quote them by hand ("userId", "expiresAt").
//
// Store implements the auth package's Store interface without importing it.
package authstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/pgdb"
)

// ErrNotFound is returned by GetUser, UpdateUser and the Delete methods when
// no row matched. The lookups used for authentication (UserExists,
// SessionUser) report "not found" as false / "" with a nil error instead.
var ErrNotFound = errors.New("authstore: not found")

// ErrEmailTaken is returned (wrapped) by CreateUser and UpdateUser when
// another user already has the email: Better Auth signs users in by email,
// so the schema keeps it unique. Nothing was written.
var ErrEmailTaken = errors.New("authstore: email belongs to another user")

// DefaultListLimit is the page size ListUsers, ListSessions and
// ListAccounts use when given a limit <= 0.
const DefaultListLimit = 100

// User is a row of Better Auth's "user" table.
type User struct {
	bun.BaseModel `bun:"table:user,alias:u"`

	ID            string    `bun:"id,pk" json:"id"`
	Name          string    `bun:"name,notnull" json:"name"`
	Email         string    `bun:"email,notnull" json:"email"`
	EmailVerified bool      `bun:"emailVerified,notnull" json:"emailVerified"`
	Image         *string   `bun:"image" json:"image,omitempty"`
	CreatedAt     time.Time `bun:"createdAt,nullzero,notnull" json:"createdAt"`
	UpdatedAt     time.Time `bun:"updatedAt,nullzero,notnull" json:"updatedAt"`
}

// Session is a row of Better Auth's session table. Token is a bearer
// credential: it is never encoded to JSON, so listing sessions cannot leak it.
type Session struct {
	bun.BaseModel `bun:"table:session,alias:s"`

	ID        string    `bun:"id,pk" json:"id"`
	ExpiresAt time.Time `bun:"expiresAt,notnull" json:"expiresAt"`
	Token     string    `bun:"token,notnull" json:"-"`
	CreatedAt time.Time `bun:"createdAt,nullzero,notnull" json:"createdAt"`
	UpdatedAt time.Time `bun:"updatedAt,nullzero,notnull" json:"updatedAt"`
	IPAddress *string   `bun:"ipAddress" json:"ipAddress,omitempty"`
	UserAgent *string   `bun:"userAgent" json:"userAgent,omitempty"`
	UserID    string    `bun:"userId,notnull" json:"userId"`
}

// Active reports whether the session is still valid at now (Better Auth's
// rule: "expiresAt" strictly after now).
func (s Session) Active(now time.Time) bool { return s.ExpiresAt.After(now) }

// Account is a row of Better Auth's account table: one way a user signs in.
// ProviderID is "credential" for email and password, or an OAuth provider
// ("google", "github", …) whose own id for the user is AccountID.
//
// It deliberately has no fields for the credential columns ("accessToken",
// "refreshToken", "idToken", "password"): taskchat never needs them, and a
// column the model does not map is never selected, so it cannot be printed,
// logged or encoded by mistake.
type Account struct {
	bun.BaseModel `bun:"table:account,alias:a"`

	ID                    string     `bun:"id,pk" json:"id"`
	AccountID             string     `bun:"accountId,notnull" json:"accountId"`
	ProviderID            string     `bun:"providerId,notnull" json:"providerId"`
	UserID                string     `bun:"userId,notnull" json:"userId"`
	AccessTokenExpiresAt  *time.Time `bun:"accessTokenExpiresAt" json:"accessTokenExpiresAt,omitempty"`
	RefreshTokenExpiresAt *time.Time `bun:"refreshTokenExpiresAt" json:"refreshTokenExpiresAt,omitempty"`
	Scope                 *string    `bun:"scope" json:"scope,omitempty"`
	Issuer                *string    `bun:"issuer" json:"issuer,omitempty"`
	CreatedAt             time.Time  `bun:"createdAt,nullzero,notnull" json:"createdAt"`
	UpdatedAt             time.Time  `bun:"updatedAt,nullzero,notnull" json:"updatedAt"`
}

// UserPatch holds the fields UpdateUser changes; a nil field stays as it is.
type UserPatch struct {
	Name          *string
	Email         *string
	EmailVerified *bool
}

// Empty reports whether the patch changes nothing.
func (p UserPatch) Empty() bool { return p.Name == nil && p.Email == nil && p.EmailVerified == nil }

// Store reads and writes Better Auth's tables. It holds a bun.IDB, so it
// works on a pool or inside a transaction; it is safe for concurrent use
// when its IDB is. Errors name the operation; when the database could not
// be reached or could not answer in time they wrap pgdb.ErrUnavailable.
type Store struct {
	db bun.IDB
}

// NewStore returns a Store over db.
func NewStore(db bun.IDB) *Store { return &Store{db: db} }

// UserExists reports whether a "user" row with id exists. A missing user is
// (false, nil); a non-nil error means the database could not answer.
func (s *Store) UserExists(ctx context.Context, id string) (bool, error) {
	ok, err := s.db.NewSelect().Model((*User)(nil)).Where("u.id = ?", id).Exists(ctx)
	if err != nil {
		return false, wrap("user exists", err)
	}
	return ok, nil
}

// GetUser returns the user with id, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (*User, error) {
	u := new(User)
	if err := s.db.NewSelect().Model(u).Where("u.id = ?", id).Scan(ctx); err != nil {
		return nil, translate("get user", err)
	}
	return u, nil
}

// SessionUser returns the "userId" of the session whose token is token and
// whose "expiresAt" is after now. When there is no such session it returns
// ("", nil); a non-nil error means the database could not answer.
func (s *Store) SessionUser(ctx context.Context, token string, now time.Time) (string, error) {
	q, err := boundQuerier(s.db)
	if err != nil {
		return "", fmt.Errorf("session user: %w", err)
	}
	var userID string
	err = q.QueryRowContext(ctx, sessionUserQuery, token, now).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", wrap("session user", err)
	}
	return userID, nil
}

// sessionUserQuery looks a session token up with the token as a bind
// parameter. bun writes arguments into the SQL text, which Postgres shows to
// anyone who can read pg_stat_activity and writes to its log on errors and
// slow statements; a session token is a credential, so it travels apart.
const sessionUserQuery = `SELECT "userId" FROM session WHERE token = $1 AND "expiresAt" > $2 LIMIT 1`

// querier runs a query with bind parameters ($1, $2, …), as database/sql
// does.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// boundQuerier returns the database/sql handle under db, whose queries send
// their arguments as bind parameters (bun's own methods interpolate them).
func boundQuerier(db bun.IDB) (querier, error) {
	switch db := db.(type) {
	case *bun.DB:
		return db.DB, nil
	case bun.Tx:
		return db.Tx, nil
	case *bun.Tx:
		return db.Tx, nil
	case bun.Conn:
		return db.Conn, nil
	case *bun.Conn:
		return db.Conn, nil
	}
	return nil, fmt.Errorf("no database/sql handle under %T", db)
}

// CreateUser inserts u. An empty ID gets a new Better Auth style id (NewID);
// zero timestamps become the current time.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	if u.ID == "" {
		u.ID = NewID()
	}
	now := time.Now().UTC()
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = now
	}
	if _, err := s.db.NewInsert().Model(u).Exec(ctx); err != nil {
		return translate("insert user", err)
	}
	return nil
}

// CreateSession inserts sess. Empty ID and Token get new Better Auth style
// ids (NewID); zero CreatedAt/UpdatedAt become the current time. ExpiresAt
// and UserID must be set.
func (s *Store) CreateSession(ctx context.Context, sess *Session) error {
	if sess.UserID == "" {
		return errors.New("insert session: empty user id")
	}
	if sess.ExpiresAt.IsZero() {
		return errors.New("insert session: zero expiresAt")
	}
	if sess.ID == "" {
		sess.ID = NewID()
	}
	if sess.Token == "" {
		sess.Token = NewID()
	}
	now := time.Now().UTC()
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now
	}
	if sess.UpdatedAt.IsZero() {
		sess.UpdatedAt = now
	}
	if _, err := s.db.NewInsert().Model(sess).Exec(ctx); err != nil {
		return wrap("insert session", err)
	}
	return nil
}

// ListUsers returns up to limit users, newest first (DefaultListLimit when
// limit <= 0).
func (s *Store) ListUsers(ctx context.Context, limit int) ([]User, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	users := []User{}
	err := s.db.NewSelect().Model(&users).
		OrderExpr("? DESC, ? DESC", bun.Ident("u.createdAt"), bun.Ident("u.id")).
		Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, wrap("list users", err)
	}
	return users, nil
}

// ListSessions returns up to limit sessions of userID (of every user when
// userID is ""), newest first, expired ones included (see Session.Active);
// DefaultListLimit when limit <= 0. Token is left empty: a listing is for
// people to read, and the token column is never even selected.
func (s *Store) ListSessions(ctx context.Context, userID string, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	sessions := []Session{}
	q := s.db.NewSelect().Model(&sessions).
		ExcludeColumn("token").
		OrderExpr("? DESC, ? DESC", bun.Ident("s.createdAt"), bun.Ident("s.id")).
		Limit(int64(limit))
	if userID != "" {
		q = q.Where("? = ?", bun.Ident("s.userId"), userID)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, wrap("list sessions", err)
	}
	return sessions, nil
}

// CreateAccount inserts a. An empty ID gets a new Better Auth style id
// (NewID); zero CreatedAt/UpdatedAt become the current time. UserID,
// ProviderID and AccountID must be set. The credential columns stay NULL
// (see Account).
func (s *Store) CreateAccount(ctx context.Context, a *Account) error {
	if a.UserID == "" || a.ProviderID == "" || a.AccountID == "" {
		return errors.New("insert account: user id, provider id and account id are required")
	}
	if a.ID == "" {
		a.ID = NewID()
	}
	now := time.Now().UTC()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = now
	}
	if _, err := s.db.NewInsert().Model(a).Exec(ctx); err != nil {
		return translate("insert account", err)
	}
	return nil
}

// ListAccounts returns up to limit accounts of userID (of every user when
// userID is ""), newest first; DefaultListLimit when limit <= 0.
func (s *Store) ListAccounts(ctx context.Context, userID string, limit int) ([]Account, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	accounts := []Account{}
	q := s.db.NewSelect().Model(&accounts).
		OrderExpr("? DESC, ? DESC", bun.Ident("a.createdAt"), bun.Ident("a.id")).
		Limit(int64(limit))
	if userID != "" {
		q = q.Where("? = ?", bun.Ident("a.userId"), userID)
	}
	if err := q.Scan(ctx); err != nil {
		return nil, wrap("list accounts", err)
	}
	return accounts, nil
}

// UpdateUser applies patch to the user with id in one statement, sets
// "updatedAt" to the database's now() (the clock of the column defaults) and
// returns the updated row. It returns ErrNotFound when there is no such user
// and an error wrapping ErrEmailTaken when another user has patch.Email; in
// both cases nothing changed. An empty patch is an error: touching only
// "updatedAt" is never what a caller means.
func (s *Store) UpdateUser(ctx context.Context, id string, patch UserPatch) (*User, error) {
	if patch.Empty() {
		return nil, errors.New("update user: nothing to change")
	}
	u := new(User)
	q := s.db.NewUpdate().Model(u).
		Set("? = now()", bun.Ident("updatedAt")).
		Where("? = ?", bun.Ident("u.id"), id).
		Returning("*")
	if patch.Name != nil {
		q = q.Set("name = ?", *patch.Name)
	}
	if patch.Email != nil {
		q = q.Set("email = ?", *patch.Email)
	}
	if patch.EmailVerified != nil {
		q = q.Set("? = ?", bun.Ident("emailVerified"), *patch.EmailVerified)
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return nil, translate("update user", err)
	}
	if err := affected("update user", res); err != nil {
		return nil, err
	}
	return u, nil
}

// DeleteUser deletes the user with id; the database cascades to its
// sessions and accounts. It returns ErrNotFound when there is no such user.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	res, err := s.db.NewDelete().Model((*User)(nil)).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return wrap("delete user", err)
	}
	return affected("delete user", res)
}

// DeleteSession deletes the session with id (its id, not its token), which
// signs it out. It returns ErrNotFound when there is no such session.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	res, err := s.db.NewDelete().Model((*Session)(nil)).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return wrap("delete session", err)
	}
	return affected("delete session", res)
}

// emailConstraint is the unique index on "user".email (schema/auth.pg.hcl).
const emailConstraint = "user_email_key"

// translate maps a driver error to the package's sentinels (no row →
// ErrNotFound, the email's unique index → ErrEmailTaken), so callers decide
// on them without parsing SQLSTATE codes; anything else is wrapped with op.
func translate(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == emailConstraint { // unique_violation
		return fmt.Errorf("%s: %w", op, ErrEmailTaken)
	}
	return wrap(op, err)
}

func affected(op string, res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return wrap(op, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// wrap names the failed operation; an error of a database that could not be
// reached or could not answer in time also wraps pgdb.ErrUnavailable.
func wrap(op string, err error) error {
	return fmt.Errorf("%s: %w", op, pgdb.MarkUnavailable(err))
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewID returns 32 random characters from [A-Za-z0-9], the shape of Better
// Auth's default user ids and session tokens.
func NewID() string {
	const n = 32
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+).
		for _, b := range buf {
			// 248 = 4*62: rejecting larger bytes keeps the choice uniform.
			if b < 248 && len(out) < n {
				out = append(out, idAlphabet[int(b)%len(idAlphabet)])
			}
		}
	}
	return string(out)
}
