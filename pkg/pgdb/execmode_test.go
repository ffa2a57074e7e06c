package pgdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// TestStatementsAreNotPrepared: by default a session keeps no prepared
// statement after bun's queries and bound queries (each went in one round
// trip, unnamed), and bound parameters still work; a URL that asks for
// another mode gets it.
func TestStatementsAreNotPrepared(t *testing.T) {
	tests := []struct {
		name      string
		query     string // appended to the server URL
		wantNamed bool
	}{
		{"default", "", false},
		{"URL asks for pgx's statement cache", "&default_query_exec_mode=cache_statement", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			// One connection: every query runs in the session inspected.
			db, err := pgdb.Open(ctx, pgdb.Config{URL: dbtest.ServerURL() + tt.query, MaxConns: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for i := range 3 {
				var n int
				// bun writes the argument into the text: three distinct statements.
				if err := db.NewSelect().ColumnExpr("?::int + 1", i).Scan(ctx, &n); err != nil || n != i+1 {
					t.Fatalf("bun select: %d, %v", n, err)
				}
				// database/sql sends it as a bind parameter (bun.DB would format it in).
				var ts time.Time
				if err := db.DB.QueryRowContext(ctx, "SELECT $1::timestamptz", time.Unix(int64(i), 0)).Scan(&ts); err != nil || ts.Unix() != int64(i) {
					t.Fatalf("bound select: %v, %v", ts, err)
				}
			}
			var named int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&named); err != nil {
				t.Fatal(err)
			}
			if got := named > 0; got != tt.wantNamed {
				t.Fatalf("%d prepared statements in the session, want some: %v", named, tt.wantNamed)
			}
		})
	}
}
