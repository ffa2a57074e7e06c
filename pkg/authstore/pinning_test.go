package authstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// craftedToken is the session token that, were it written into the SQL
// text with bun's escaping and read with standard_conforming_strings off,
// would end the token's string literal early and match every session of
// userID. (SessionUser sends the token as a bind parameter, so it is safe
// either way; other store methods interpolate.)
func craftedToken(userID string) string {
	return `\')OR("userId"=$$` + userID + `$$)--`
}

// craftedUserID is a user id that, written into the SQL text by bun and read
// with standard_conforming_strings off, ends its string literal early and
// turns ListSessions's filter into OR(true).
const craftedUserID = `\')OR(true)--`

// scsOffByDatabase turns standard_conforming_strings off for every session
// of d and returns the URL to connect with.
func scsOffByDatabase(t *testing.T, d *dbtest.Database) string {
	t.Helper()
	q := "ALTER DATABASE " + pgx.Identifier{d.Name}.Sanitize() + " SET standard_conforming_strings = off"
	if _, err := d.DB.ExecContext(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	return d.URL
}

// scsOffByRole creates a login role whose sessions have
// standard_conforming_strings off, allowed to read d's sessions, and
// returns a URL connecting to d as that role. The role is dropped when the
// test ends.
func scsOffByRole(t *testing.T, d *dbtest.Database) string {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "taskchat_test_scs_" + hex.EncodeToString(b)
	ident := pgx.Identifier{role}.Sanitize()
	// Roles belong to the server: made and dropped through the package's
	// database, which outlives d.
	for _, q := range []string{
		"CREATE ROLE " + ident + " LOGIN",
		"ALTER ROLE " + ident + " SET standard_conforming_strings = off",
	} {
		if _, err := testDB.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.DB.ExecContext(ctx, "GRANT SELECT ON session TO "+ident); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A role holding a grant cannot be dropped.
		if _, err := d.DB.ExecContext(context.Background(), "REVOKE SELECT ON session FROM "+ident); err != nil {
			t.Errorf("revoke: %v", err)
		}
		if _, err := testDB.DB.ExecContext(context.Background(), "DROP ROLE "+ident); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	u, err := url.Parse(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// unpinnedStore is a store over a connection made the way pgdb must not:
// the server's, database's and role's defaults apply as they are.
func unpinnedStore(t *testing.T, rawURL string) (*authstore.Store, *bun.DB) {
	t.Helper()
	pc, err := pgx.ParseConfig(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(stdlib.OpenDB(*pc), pgdialect.New())
	t.Cleanup(func() { _ = db.Close() }) // test pool; a close error changes nothing
	return authstore.NewStore(db), db
}

func showSCS(t *testing.T, db bun.IDB) string {
	t.Helper()
	var v string
	if err := db.QueryRowContext(context.Background(), "SHOW standard_conforming_strings").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSessionUserWithStandardConformingStringsOff checks that the session
// settings pgdb pins close the bypass: on a database (or for a role) whose
// default is standard_conforming_strings=off, a crafted argument matches no
// row while a real token still finds its session. It goes to the store directly, so
// no token check in front of it can hide a missing pin.
func TestSessionUserWithStandardConformingStringsOff(t *testing.T) {
	tests := []struct {
		name string
		off  func(*testing.T, *dbtest.Database) string
	}{
		{"database default off", scsOffByDatabase},
		{"role default off", scsOffByRole},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.WithSchema(t, "authstore_scs")
			owner := newUser(t, authstore.NewStore(d.DB))
			live := newSession(t, authstore.NewStore(d.DB), owner.ID, time.Now().Add(time.Hour))
			rawURL := tc.off(t, d)
			now := time.Now()

			// The premise: without the pin this user id is an exploit.
			raw, rawDB := unpinnedStore(t, rawURL)
			if got := showSCS(t, rawDB); got != "off" {
				t.Fatalf("an unpinned connection sees standard_conforming_strings=%q; the test needs off", got)
			}
			if got, err := raw.ListSessions(ctx, craftedUserID, 10); err != nil || len(got) != 1 {
				t.Fatalf("unpinned ListSessions(crafted) = %d sessions, %v; the crafted id no longer exploits an unpinned connection, so this test proves nothing: update it", len(got), err)
			}
			// SessionUser binds the token as a parameter: safe even here.
			if got, err := raw.SessionUser(ctx, craftedToken(owner.ID), now); err != nil || got != "" {
				t.Fatalf("unpinned SessionUser(crafted) = %q, %v; want \"\", nil", got, err)
			}

			db, err := pgdb.Open(ctx, pgdb.Config{URL: rawURL, MaxConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() }) // test pool; a close error changes nothing
			if got := showSCS(t, db); got != "on" {
				t.Fatalf("pgdb pool: standard_conforming_strings = %q, want on", got)
			}
			st := authstore.NewStore(db)
			if got, err := st.ListSessions(ctx, craftedUserID, 10); err != nil || len(got) != 0 {
				t.Fatalf("ListSessions(crafted) = %d sessions, %v; want none", len(got), err)
			}
			if got, err := st.SessionUser(ctx, craftedToken(owner.ID), now); err != nil || got != "" {
				t.Fatalf("SessionUser(crafted) = %q, %v; want \"\", nil", got, err)
			}
			if got, err := st.SessionUser(ctx, live.Token, now); err != nil || got != owner.ID {
				t.Fatalf("SessionUser(real token) = %q, %v; want %q", got, err, owner.ID)
			}
		})
	}
}

// TestSessionTokenStaysOutOfTheQueryText: Postgres shows a connection's
// last statement in pg_stat_activity (and logs failed or slow ones); a
// session token is a credential, so it must travel as a bind parameter.
func TestSessionTokenStaysOutOfTheQueryText(t *testing.T) {
	ctx := context.Background()
	st := authstore.NewStore(testDB.DB)
	owner := newUser(t, st)
	live := newSession(t, st, owner.ID, time.Now().Add(time.Hour))

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	app := "taskchat_test_" + hex.EncodeToString(b)
	u, err := url.Parse(testDB.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	db, err := pgdb.Open(ctx, pgdb.Config{URL: u.String(), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() }) // test pool; a close error changes nothing
	if got, err := authstore.NewStore(db).SessionUser(ctx, live.Token, time.Now()); err != nil || got != owner.ID {
		t.Fatalf("SessionUser = %q, %v", got, err)
	}
	var last string
	err = testDB.DB.QueryRowContext(ctx, "SELECT query FROM pg_stat_activity WHERE application_name = ?", app).Scan(&last)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(last, live.Token) || !strings.Contains(last, "session") {
		t.Fatalf("the session lookup's text as Postgres shows it: %q", last)
	}
}
