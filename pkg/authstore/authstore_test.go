package authstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "authstore", &testDB)) }

func newUser(t *testing.T, st *authstore.Store) authstore.User {
	t.Helper()
	id := authstore.NewID()
	u := authstore.User{ID: id, Name: "User " + id[:6], Email: id + "@example.test"}
	if err := st.CreateUser(context.Background(), &u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u
}

func newSession(t *testing.T, st *authstore.Store, userID string, expiresAt time.Time) authstore.Session {
	t.Helper()
	s := authstore.Session{UserID: userID, ExpiresAt: expiresAt}
	if err := st.CreateSession(context.Background(), &s); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s
}

func TestUserExists(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	u := newUser(t, st)
	viaDBTest := dbtest.CreateUser(t, testDB.DB, "")

	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"created through the store", u.ID, true},
		{"created through dbtest", viaDBTest, true},
		{"unknown id", authstore.NewID(), false},
		{"empty id", "", false},
		{"id that looks like SQL", "' OR 1=1 --", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.UserExists(ctx, tc.id)
			if err != nil {
				t.Fatalf("UserExists: %v", err)
			}
			if got != tc.want {
				t.Errorf("UserExists(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestSessionUser(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	u := newUser(t, st)
	now := time.Now().UTC().Truncate(time.Microsecond)
	live := newSession(t, st, u.ID, now.Add(time.Hour))
	expired := newSession(t, st, u.ID, now.Add(-time.Second))
	edge := newSession(t, st, u.ID, now)

	tests := []struct {
		name  string
		token string
		now   time.Time
		want  string
	}{
		{"live session", live.Token, now, u.ID},
		{"expired session", expired.Token, now, ""},
		{"expiresAt equal to now is expired", edge.Token, now, ""},
		{"just before expiresAt", edge.Token, now.Add(-time.Microsecond), u.ID},
		{"live session seen after it expires", live.Token, now.Add(2 * time.Hour), ""},
		{"unknown token", authstore.NewID(), now, ""},
		{"session id is not a token", live.ID, now, ""},
		{"empty token", "", now, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.SessionUser(ctx, tc.token, tc.now)
			if err != nil {
				t.Fatalf("SessionUser: %v", err)
			}
			if got != tc.want {
				t.Errorf("SessionUser = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("deleted session", func(t *testing.T) {
		s := newSession(t, st, u.ID, now.Add(time.Hour))
		if err := st.DeleteSession(ctx, s.ID); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		if got, err := st.SessionUser(ctx, s.Token, now); err != nil || got != "" {
			t.Errorf("SessionUser after delete = %q, %v; want \"\", nil", got, err)
		}
		if err := st.DeleteSession(ctx, s.ID); !errors.Is(err, authstore.ErrNotFound) {
			t.Errorf("second DeleteSession = %v, want ErrNotFound", err)
		}
	})
}

func TestDeleteUserCascades(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	u := newUser(t, st)
	s := newSession(t, st, u.ID, time.Now().Add(time.Hour))

	if err := st.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if ok, err := st.UserExists(ctx, u.ID); err != nil || ok {
		t.Errorf("UserExists after delete = %v, %v", ok, err)
	}
	if got, err := st.SessionUser(ctx, s.Token, time.Now()); err != nil || got != "" {
		t.Errorf("SessionUser after user delete = %q, %v", got, err)
	}
	if err := st.DeleteUser(ctx, u.ID); !errors.Is(err, authstore.ErrNotFound) {
		t.Errorf("second DeleteUser = %v, want ErrNotFound", err)
	}
}

func TestCreateSessionRequiresUser(t *testing.T) {
	st := authstore.NewStore(testDB.DB)
	tests := []struct {
		name string
		sess authstore.Session
	}{
		{"no user id", authstore.Session{ExpiresAt: time.Now().Add(time.Hour)}},
		{"no expiry", authstore.Session{UserID: "someone"}},
		{"unknown user (foreign key)", authstore.Session{UserID: authstore.NewID(), ExpiresAt: time.Now().Add(time.Hour)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.CreateSession(context.Background(), &tc.sess); err == nil {
				t.Fatal("CreateSession succeeded, want an error")
			}
		})
	}
}

func TestListUsersAndSessions(t *testing.T) {
	ctx := context.Background()
	// Run inside a transaction that is rolled back, so the counts below are
	// not disturbed by other tests' rows; this also shows Store works on a Tx.
	tx, err := testDB.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }() // undo the test's changes; ErrTxDone after an explicit Rollback is expected
	if _, err := tx.ExecContext(ctx, `DELETE FROM "user"`); err != nil {
		t.Fatal(err)
	}
	st := authstore.NewStore(tx)

	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var users []authstore.User
	for i := range 3 {
		u := authstore.User{Name: "n", Email: authstore.NewID() + "@example.test", CreatedAt: base.Add(time.Duration(i) * time.Minute)}
		if err := st.CreateUser(ctx, &u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	var sessions []authstore.Session
	for i, owner := range []string{users[0].ID, users[1].ID, users[0].ID} {
		s := authstore.Session{UserID: owner, ExpiresAt: base.Add(time.Hour), CreatedAt: base.Add(time.Duration(i) * time.Minute)}
		if err := st.CreateSession(ctx, &s); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}

	t.Run("users newest first", func(t *testing.T) {
		got, err := st.ListUsers(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{users[2].ID, users[1].ID, users[0].ID}
		if ids := userIDs(got); strings.Join(ids, ",") != strings.Join(want, ",") {
			t.Errorf("ListUsers = %v, want %v", ids, want)
		}
		if !got[0].CreatedAt.Equal(users[2].CreatedAt) || got[0].Email != users[2].Email || got[0].EmailVerified {
			t.Errorf("ListUsers[0] = %+v, want %+v", got[0], users[2])
		}
	})
	t.Run("users limit", func(t *testing.T) {
		got, err := st.ListUsers(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Errorf("len = %d, want 2", len(got))
		}
	})

	tests := []struct {
		name   string
		userID string
		limit  int
		want   []string
	}{
		{"all sessions newest first", "", 0, []string{sessions[2].ID, sessions[1].ID, sessions[0].ID}},
		{"one user's sessions", users[0].ID, 0, []string{sessions[2].ID, sessions[0].ID}},
		{"limit", "", 1, []string{sessions[2].ID}},
		{"user without sessions", users[2].ID, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.ListSessions(ctx, tc.userID, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ID)
				if s.Token != "" {
					t.Errorf("session %s listed with its token: a listing must not read credentials", s.ID)
				}
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ListSessions = %v, want %v", ids, tc.want)
			}
		})
	}
}

func userIDs(us []authstore.User) []string {
	var ids []string
	for _, u := range us {
		ids = append(ids, u.ID)
	}
	return ids
}

func TestSessionJSONOmitsToken(t *testing.T) {
	s := authstore.Session{ID: "id1", Token: "secret-token-value", UserID: "u"}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), s.Token) {
		t.Errorf("JSON %s contains the session token", b)
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9]{32}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := authstore.NewID()
		if !re.MatchString(id) {
			t.Fatalf("NewID() = %q, want 32 alphanumerics", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestStoreErrorsOnClosedPool(t *testing.T) {
	// A store whose database is unreachable must return errors, not
	// "not found" answers: auth turns these into 503s rather than 401s.
	db, err := pgdb.Open(context.Background(), pgdb.Config{URL: testDB.URL, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	st := authstore.NewStore(db)
	if _, err := st.UserExists(context.Background(), "x"); err == nil {
		t.Error("UserExists on a closed pool: nil error")
	}
	if _, err := st.SessionUser(context.Background(), "x", time.Now()); err == nil {
		t.Error("SessionUser on a closed pool: nil error")
	}
}

func TestGetUser(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	u := newUser(t, st)

	got, err := st.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if got.ID != u.ID || got.Email != u.Email || got.Name != u.Name || !got.CreatedAt.Equal(u.CreatedAt.Truncate(time.Microsecond)) {
		t.Errorf("GetUser = %+v, want %+v", got, u)
	}
	for _, id := range []string{authstore.NewID(), "", "' OR 1=1 --"} {
		if _, err := st.GetUser(ctx, id); !errors.Is(err, authstore.ErrNotFound) {
			t.Errorf("GetUser(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestCreateUserWithTakenEmail(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	u := newUser(t, st)

	tests := []struct {
		name      string
		user      authstore.User
		wantTaken bool
	}{
		{"another user with the same email", authstore.User{Name: "n", Email: u.Email}, true},
		// A clash on the id is a different problem and must not be reported
		// as a taken email.
		{"the same id with a new email", authstore.User{ID: u.ID, Name: "n", Email: authstore.NewID() + "@example.test"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := st.CreateUser(ctx, &tc.user)
			if err == nil {
				t.Fatal("CreateUser succeeded, want an error")
			}
			if got := errors.Is(err, authstore.ErrEmailTaken); got != tc.wantTaken {
				t.Errorf("CreateUser = %v; errors.Is(ErrEmailTaken) = %v", err, got)
			}
		})
	}
}

// credentialColumns are the account columns that hold secrets.
var credentialColumns = []string{"accessToken", "refreshToken", "idToken", "password"}

// plantCredentials writes recognisable secrets into an account's credential
// columns. The Account model cannot carry them (by design), so the test
// writes them with SQL, as Better Auth would.
func plantCredentials(t *testing.T, db bun.IDB, accountID string) []string {
	t.Helper()
	var secrets []string
	q := db.NewUpdate().Table("account").Where("id = ?", accountID)
	for _, c := range credentialColumns {
		secret := "planted-" + c + "-" + authstore.NewID()
		secrets = append(secrets, secret)
		q = q.Set("? = ?", bun.Ident(c), secret)
	}
	if _, err := q.Exec(context.Background()); err != nil {
		t.Fatalf("plant credentials: %v", err)
	}
	return secrets
}

func TestAccountMapsNoCredentialColumn(t *testing.T) {
	table := testDB.DB.Table(reflect.TypeFor[authstore.Account]())
	if table.Name != "account" {
		t.Fatalf("Account maps table %q, want account", table.Name)
	}
	for _, f := range table.Fields {
		if slices.Contains(credentialColumns, f.Name) {
			t.Errorf("Account maps the credential column %q: every query would select it", f.Name)
		}
	}
}

func TestListAccounts(t *testing.T) {
	ctx := context.Background()
	// Rolled back at the end, so other tests' accounts do not disturb the
	// expected lists.
	tx, err := testDB.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }() // undo the test's changes
	if _, err := tx.ExecContext(ctx, `DELETE FROM account`); err != nil {
		t.Fatal(err)
	}
	st := authstore.NewStore(tx)
	alice, bob := newUser(t, st), newUser(t, st)

	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	scope := "openid email"
	var accounts []authstore.Account
	var secrets []string
	for i, a := range []authstore.Account{
		{UserID: alice.ID, ProviderID: "credential", AccountID: alice.ID},
		{UserID: bob.ID, ProviderID: "github", AccountID: "gh-42", Scope: &scope},
		{UserID: alice.ID, ProviderID: "google", AccountID: "g-7", Scope: &scope},
	} {
		a.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		if err := st.CreateAccount(ctx, &a); err != nil {
			t.Fatalf("CreateAccount: %v", err)
		}
		secrets = append(secrets, plantCredentials(t, tx, a.ID)...)
		accounts = append(accounts, a)
	}

	tests := []struct {
		name   string
		userID string
		limit  int
		want   []string
	}{
		{"all accounts newest first", "", 0, []string{accounts[2].ID, accounts[1].ID, accounts[0].ID}},
		{"one user's accounts", alice.ID, 0, []string{accounts[2].ID, accounts[0].ID}},
		{"limit", "", 1, []string{accounts[2].ID}},
		{"unknown user", authstore.NewID(), 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.ListAccounts(ctx, tc.userID, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range got {
				ids = append(ids, a.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ListAccounts = %v, want %v", ids, tc.want)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			dump := fmt.Sprintf("%s %+v", b, got)
			for _, secret := range secrets {
				if strings.Contains(dump, secret) {
					t.Errorf("listed accounts carry the credential %q:\n%s", secret, dump)
				}
			}
		})
	}

	t.Run("fields read back", func(t *testing.T) {
		got, err := st.ListAccounts(ctx, bob.ID, 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("ListAccounts = %v, %v", got, err)
		}
		a := got[0]
		if a.ProviderID != "github" || a.AccountID != "gh-42" || a.UserID != bob.ID || a.Scope == nil || *a.Scope != scope || !a.CreatedAt.Equal(base.Add(time.Minute)) {
			t.Errorf("account = %+v", a)
		}
	})
}

func TestCreateAccountRequiresItsKeys(t *testing.T) {
	st := authstore.NewStore(testDB.DB)
	u := newUser(t, st)
	tests := []struct {
		name string
		acc  authstore.Account
	}{
		{"no user id", authstore.Account{ProviderID: "credential", AccountID: "x"}},
		{"no provider", authstore.Account{UserID: u.ID, AccountID: "x"}},
		{"no account id", authstore.Account{UserID: u.ID, ProviderID: "credential"}},
		{"unknown user (foreign key)", authstore.Account{UserID: authstore.NewID(), ProviderID: "credential", AccountID: "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.CreateAccount(context.Background(), &tc.acc); err == nil {
				t.Fatal("CreateAccount succeeded, want an error")
			}
		})
	}
}

func TestUpdateUser(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	other := newUser(t, st)
	ptr := func(s string) *string { return &s }
	yes := true

	tests := []struct {
		name    string
		patch   func(u authstore.User) authstore.UserPatch
		want    func(u *authstore.User) // the expected row, from the row before
		wantErr error
	}{
		{"name", func(authstore.User) authstore.UserPatch { return authstore.UserPatch{Name: ptr("New Name")} },
			func(u *authstore.User) { u.Name = "New Name" }, nil},
		{"email", func(u authstore.User) authstore.UserPatch { return authstore.UserPatch{Email: ptr("new-" + u.Email)} },
			func(u *authstore.User) { u.Email = "new-" + u.Email }, nil},
		{"email verified", func(authstore.User) authstore.UserPatch { return authstore.UserPatch{EmailVerified: &yes} },
			func(u *authstore.User) { u.EmailVerified = true }, nil},
		{"its own email again", func(u authstore.User) authstore.UserPatch { return authstore.UserPatch{Email: ptr(u.Email)} },
			func(*authstore.User) {}, nil},
		{"everything", func(u authstore.User) authstore.UserPatch {
			return authstore.UserPatch{Name: ptr("All"), Email: ptr("all-" + u.Email), EmailVerified: &yes}
		}, func(u *authstore.User) { u.Name, u.Email, u.EmailVerified = "All", "all-"+u.Email, true }, nil},
		{"taken email changes nothing, not even the name", func(authstore.User) authstore.UserPatch {
			return authstore.UserPatch{Name: ptr("Should Not Stick"), Email: ptr(other.Email)}
		}, nil, authstore.ErrEmailTaken},
		{"empty patch", func(authstore.User) authstore.UserPatch { return authstore.UserPatch{} }, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := authstore.User{Name: "Before", Email: authstore.NewID() + "@example.test", CreatedAt: past, UpdatedAt: past}
			if err := st.CreateUser(ctx, &before); err != nil {
				t.Fatal(err)
			}
			got, err := st.UpdateUser(ctx, before.ID, tc.patch(before))
			if tc.want == nil {
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("UpdateUser = %+v, %v; want an error (%v)", got, err, tc.wantErr)
				}
				if row, err := st.GetUser(ctx, before.ID); err != nil || !sameUser(*row, before) {
					t.Errorf("row after a failed update = %+v, %v; want it unchanged: %+v", row, err, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("UpdateUser: %v", err)
			}
			if !got.UpdatedAt.After(past) || time.Since(got.UpdatedAt).Abs() > time.Minute {
				t.Errorf("updatedAt = %v, want about now", got.UpdatedAt)
			}
			want := before
			tc.want(&want)
			want.UpdatedAt = got.UpdatedAt
			if !sameUser(*got, want) {
				t.Errorf("UpdateUser returned %+v, want %+v", *got, want)
			}
			if row, err := st.GetUser(ctx, before.ID); err != nil || !sameUser(*row, want) {
				t.Errorf("stored row %+v, %v; want %+v", row, err, want)
			}
		})
	}

	t.Run("unknown user", func(t *testing.T) {
		if _, err := st.UpdateUser(ctx, authstore.NewID(), authstore.UserPatch{Name: ptr("x")}); !errors.Is(err, authstore.ErrNotFound) {
			t.Errorf("UpdateUser = %v, want ErrNotFound", err)
		}
	})
}

// sameUser compares users field by field, times by the instant they name.
func sameUser(a, b authstore.User) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Email == b.Email && a.EmailVerified == b.EmailVerified &&
		(a.Image == nil) == (b.Image == nil) && (a.Image == nil || *a.Image == *b.Image) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// TestStoreUnavailable checks that every method reports a database that
// cannot be reached as pgdb.ErrUnavailable, and that a refused statement is
// not reported so.
func TestStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(dbtest.PoolAt(t, pgdb.Config{URL: dbtest.UnreachableURL}))
	tests := []struct {
		name string
		call func() error
	}{
		{"UserExists", func() error { _, err := st.UserExists(ctx, "x"); return err }},
		{"SessionUser", func() error { _, err := st.SessionUser(ctx, "x", time.Now()); return err }},
		{"GetUser", func() error { _, err := st.GetUser(ctx, "x"); return err }},
		{"CreateUser", func() error { return st.CreateUser(ctx, &authstore.User{Name: "n", Email: "e@example.test"}) }},
		{"UpdateUser", func() error {
			name := "n"
			_, err := st.UpdateUser(ctx, "x", authstore.UserPatch{Name: &name})
			return err
		}},
		{"CreateSession", func() error {
			return st.CreateSession(ctx, &authstore.Session{UserID: "x", ExpiresAt: time.Now().Add(time.Hour)})
		}},
		{"ListUsers", func() error { _, err := st.ListUsers(ctx, 0); return err }},
		{"ListSessions", func() error { _, err := st.ListSessions(ctx, "", 0); return err }},
		{"CreateAccount", func() error {
			return st.CreateAccount(ctx, &authstore.Account{UserID: "x", ProviderID: "credential", AccountID: "x"})
		}},
		{"ListAccounts", func() error { _, err := st.ListAccounts(ctx, "", 0); return err }},
		{"DeleteUser", func() error { return st.DeleteUser(ctx, "x") }},
		{"DeleteSession", func() error { return st.DeleteSession(ctx, "x") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, pgdb.ErrUnavailable) {
				t.Fatalf("err = %v, want pgdb.ErrUnavailable", err)
			}
		})
	}
	t.Run("a duplicate email is not an outage", func(t *testing.T) {
		live := authstore.NewStore(testDB.DB)
		u := newUser(t, live)
		err := live.CreateUser(ctx, &authstore.User{Name: "n", Email: u.Email})
		if !errors.Is(err, authstore.ErrEmailTaken) || errors.Is(err, pgdb.ErrUnavailable) {
			t.Fatalf("duplicate email: err = %v, want ErrEmailTaken and no outage", err)
		}
	})
}
