package pgdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// BenchmarkQueryExecModes compares pgx's modes on a one-row bun query whose
// text repeats (the same arguments every time: the statement cache hits)
// or never repeats (bun writes fresh arguments into the text, as with the
// chat pipeline's UUIDs: the cache never hits and costs an extra round
// trip and a DEALLOCATE). DefaultQueryExecMode is "exec".
//
//	go test ./pkg/pgdb -run '^$' -bench QueryExecModes -benchtime 3000x
func BenchmarkQueryExecModes(b *testing.B) {
	for _, mode := range []string{"exec", "cache_statement", "simple_protocol"} {
		for _, text := range []string{"same text", "unique text"} {
			b.Run(mode+"/"+text, func(b *testing.B) {
				ctx := context.Background()
				db, err := pgdb.Open(ctx, pgdb.Config{URL: dbtest.ServerURL() + "&default_query_exec_mode=" + mode, MaxConns: 1})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				var row struct {
					OID  int64     `bun:"oid"`
					Name string    `bun:"datname"`
					Now  time.Time `bun:"now"`
				}
				for i := 0; b.Loop(); i++ {
					k := 1
					if text == "unique text" {
						k = i + 1
					}
					if err := db.NewRaw("SELECT oid, datname, now() AS now FROM pg_database WHERE oid > ? - ? LIMIT 1", k, k).Scan(ctx, &row); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
