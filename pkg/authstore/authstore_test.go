package authstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

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
				if s.Token == "" {
					t.Errorf("session %s read without its token", s.ID)
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
