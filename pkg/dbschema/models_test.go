package dbschema_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/todo"
)

// pgTypeOf maps the Go types the models use to information_schema's data_type.
var pgTypeOf = map[reflect.Type]string{
	reflect.TypeOf(""):             "text",
	reflect.TypeOf(chat.RunQueued): "text",
	reflect.TypeOf(true):           "boolean",
	reflect.TypeOf(int64(0)):       "bigint",
	reflect.TypeOf(0):              "integer",
	reflect.TypeOf(time.Time{}):    "timestamp with time zone",
}

// pgTypeOfTag maps a model's explicit bun type (type:uuid) to data_type; it
// wins over the Go type (a string field may map a uuid column).
var pgTypeOfTag = map[string]string{
	"uuid":  "uuid",
	"jsonb": "jsonb",
}

// TestModelsMatchAppliedSchema checks every column a bun model maps exists in
// the applied schema with a compatible type, and that a non-pointer Go field
// (which cannot hold NULL) never maps a nullable column.
func TestModelsMatchAppliedSchema(t *testing.T) {
	d := dbtest.WithSchema(t, "models")

	models := append([]any{(*todo.Task)(nil), (*authstore.User)(nil), (*authstore.Session)(nil), (*authstore.Account)(nil)}, chat.Models()...)
	for _, m := range models {
		table := d.DB.Table(reflect.TypeOf(m).Elem())
		t.Run(table.Name, func(t *testing.T) {
			columns := inspectColumns(t, d.DB, table.Name)
			if len(columns) == 0 {
				t.Fatalf("table %q does not exist", table.Name)
			}
			for _, f := range table.Fields {
				col, ok := columns[f.Name]
				if !ok {
					t.Errorf("%s.%s: mapped by %s but not in the schema", table.Name, f.Name, table.TypeName)
					continue
				}
				want, known := pgTypeOf[f.IndirectType]
				if tag, ok := f.Tag.Option("type"); ok {
					want, known = pgTypeOfTag[tag]
				}
				if !known {
					t.Errorf("%s.%s: Go type %s has no known column type", table.Name, f.Name, f.IndirectType)
					continue
				}
				if col.dataType != want {
					t.Errorf("%s.%s: Go %s expects %s, schema has %s", table.Name, f.Name, f.IndirectType, want, col.dataType)
				}
				if col.nullable && f.StructField.Type.Kind() != reflect.Pointer && !f.NullZero {
					t.Errorf("%s.%s: column is nullable but the Go field %s cannot hold NULL", table.Name, f.Name, f.StructField.Type)
				}
			}
		})
	}
}

type column struct {
	dataType string
	nullable bool
}

func inspectColumns(t *testing.T, db *bun.DB, table string) map[string]column {
	t.Helper()
	rows, err := db.QueryContext(context.Background(),
		`SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns
		 WHERE table_schema = 'public' AND table_name = ?`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]column{}
	for rows.Next() {
		var name string
		var c column
		if err := rows.Scan(&name, &c.dataType, &c.nullable); err != nil {
			t.Fatal(err)
		}
		out[name] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
