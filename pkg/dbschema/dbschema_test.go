package dbschema_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/schema"
)

// emptyDB returns a fresh database with no schema applied.
func emptyDB(t *testing.T) *dbtest.Database {
	t.Helper()
	return dbtest.Empty(t, "schema")
}

// files returns the embedded schema files with edit applied to the one named.
func files(t *testing.T, name string, edit func(string) string) []schema.File {
	t.Helper()
	fs, err := schema.Files()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i := range fs {
		if fs[i].Name == name {
			before := string(fs[i].Data)
			after := edit(before)
			if after == before {
				t.Fatalf("edit of %s changed nothing", name)
			}
			fs[i].Data = []byte(after)
			found = true
		}
	}
	if !found {
		t.Fatalf("no schema file %s", name)
	}
	return fs
}

func applyFiles(t *testing.T, url string, fs []schema.File, opts dbschema.Options) (*dbschema.Plan, error) {
	t.Helper()
	realm, err := dbschema.Evaluate(fs)
	if err != nil {
		t.Fatal(err)
	}
	return dbschema.ApplyRealm(context.Background(), url, realm, opts)
}

func mustApply(t *testing.T, url string, opts dbschema.Options) *dbschema.Plan {
	t.Helper()
	p, err := dbschema.Apply(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tableExists(t *testing.T, db *sql.DB, table string) bool {
	t.Helper()
	var ok bool
	err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' AND table_name = $1)`, table).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func columnExists(t *testing.T, db *sql.DB, table, column string) bool {
	t.Helper()
	var ok bool
	err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)`, table, column).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestApplyCreatesEverythingAndSecondApplyPlansNothing(t *testing.T) {
	d := emptyDB(t)
	first := mustApply(t, d.URL, dbschema.Options{})
	if first.Empty() || !first.Applied {
		t.Fatalf("first apply: empty=%v applied=%v, want a non-empty applied plan", first.Empty(), first.Applied)
	}
	for _, table := range []string{"user", "session", "account", "verification", "jwks", "tasks", "conversations", "messages", "runs", "tool_rounds"} {
		if !tableExists(t, d.DB.DB, table) {
			t.Errorf("table %q missing after apply", table)
		}
	}
	second := mustApply(t, d.URL, dbschema.Options{})
	if !second.Empty() || second.Applied {
		for _, s := range second.Statements {
			t.Errorf("second apply planned: %s", s.SQL)
		}
	}
}

func TestDryRunAppliesNothing(t *testing.T) {
	d := emptyDB(t)
	p := mustApply(t, d.URL, dbschema.Options{DryRun: true})
	if p.Empty() || p.Applied {
		t.Fatalf("dry run: empty=%v applied=%v, want a plan that was not applied", p.Empty(), p.Applied)
	}
	if tableExists(t, d.DB.DB, "tasks") {
		t.Fatal("dry run created tasks")
	}
}

func TestDestructivePlanRefusedWithoutFlag(t *testing.T) {
	d := emptyDB(t)
	mustApply(t, d.URL, dbschema.Options{})
	noDescription := files(t, "schema/todo.pg.hcl", func(s string) string {
		s = strings.Replace(s, "  column \"description\" {\n    type = text\n    null = true\n  }\n", "", 1)
		return strings.Replace(s, "  check \"tasks_description_length\" {\n    expr = \"description IS NULL OR char_length(description) <= 1000\"\n  }\n", "", 1)
	})

	p, err := applyFiles(t, d.URL, noDescription, dbschema.Options{})
	if !errors.Is(err, dbschema.ErrDestructive) {
		t.Fatalf("err = %v, want ErrDestructive", err)
	}
	if p == nil || len(p.Destructive) != 1 || p.Destructive[0] != "column tasks.description" || p.Applied {
		t.Fatalf("plan = %+v, want one unapplied drop of tasks.description", p)
	}
	if !columnExists(t, d.DB.DB, "tasks", "description") {
		t.Fatal("refused plan still dropped the column")
	}

	if _, err := applyFiles(t, d.URL, noDescription, dbschema.Options{AllowDestructive: true}); err != nil {
		t.Fatalf("with AllowDestructive: %v", err)
	}
	if columnExists(t, d.DB.DB, "tasks", "description") {
		t.Fatal("column survived an allowed destructive apply")
	}
}

func TestUnknownTableIsADestructiveDrop(t *testing.T) {
	d := emptyDB(t)
	mustApply(t, d.URL, dbschema.Options{})
	if _, err := d.DB.Exec(`CREATE TABLE stray (id int)`); err != nil {
		t.Fatal(err)
	}
	_, err := dbschema.Apply(context.Background(), d.URL, dbschema.Options{})
	if !errors.Is(err, dbschema.ErrDestructive) || !strings.Contains(err.Error(), "table stray") {
		t.Fatalf("err = %v, want ErrDestructive naming table stray", err)
	}
	if !tableExists(t, d.DB.DB, "stray") {
		t.Fatal("stray table dropped without the flag")
	}
}

func TestChangedCheckIsApplied(t *testing.T) {
	d := emptyDB(t)
	mustApply(t, d.URL, dbschema.Options{})
	shorter := files(t, "schema/todo.pg.hcl", func(s string) string {
		return strings.Replace(s, "char_length(title) BETWEEN 1 AND 200", "char_length(title) BETWEEN 1 AND 100", 1)
	})
	p, err := applyFiles(t, d.URL, shorter, dbschema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Applied || len(p.Statements) != 1 || !strings.Contains(p.Statements[0].SQL, "tasks_title_length") {
		t.Fatalf("plan = %+v, want one statement replacing tasks_title_length", p.Statements)
	}
	user := dbtest.CreateUser(t, d.DB, "")
	_, err = d.DB.Exec(`INSERT INTO tasks (user_id, title) VALUES (?, repeat('x', 150))`, user)
	if err == nil || !strings.Contains(err.Error(), "tasks_title_length") {
		t.Fatalf("150-char title after narrowing the CHECK: err = %v, want a tasks_title_length violation", err)
	}
	again, err := applyFiles(t, d.URL, shorter, dbschema.Options{})
	if err != nil || !again.Empty() {
		t.Fatalf("re-apply of the changed CHECK: err=%v statements=%+v, want nothing", err, again.Statements)
	}
}

func TestPartialIndexIsStable(t *testing.T) {
	d := emptyDB(t)
	withPartial := files(t, "schema/todo.pg.hcl", func(s string) string {
		return strings.Replace(s, "  index \"tasks_user_created_idx\" {", `  index "tasks_open_idx" {
    columns = [column.user_id, column.created_at]
    where   = "completed = false"
  }
  index "tasks_user_created_idx" {`, 1)
	})
	if _, err := applyFiles(t, d.URL, withPartial, dbschema.Options{}); err != nil {
		t.Fatal(err)
	}
	again, err := applyFiles(t, d.URL, withPartial, dbschema.Options{})
	if err != nil || !again.Empty() {
		t.Fatalf("re-apply with a partial index: err=%v statements=%+v, want nothing", err, again.Statements)
	}
}

// TestTitleIndexUpgrade applies the schema over a database that has the
// earlier plain (user_id, title, id) title index: the apply replaces it with
// the lower(title) expression index that case-insensitive listing needs,
// and a second apply plans nothing.
func TestTitleIndexUpgrade(t *testing.T) {
	d := emptyDB(t)
	before := files(t, "schema/todo.pg.hcl", func(s string) string {
		i := strings.Index(s, `  index "tasks_user_title_idx" {`)
		j := i + strings.Index(s[i:], "\n  }\n") + len("\n  }\n")
		return s[:i] + "  index \"tasks_user_title_idx\" {\n    columns = [column.user_id, column.title, column.id]\n  }\n" + s[j:]
	})
	if _, err := applyFiles(t, d.URL, before, dbschema.Options{}); err != nil {
		t.Fatal(err)
	}
	indexDef := func() string {
		t.Helper()
		var def string
		if err := d.DB.QueryRow(`SELECT indexdef FROM pg_indexes WHERE indexname = 'tasks_user_title_idx'`).Scan(&def); err != nil {
			t.Fatal(err)
		}
		return def
	}
	if def := indexDef(); strings.Contains(def, "lower") {
		t.Fatalf("the earlier schema already has %s", def)
	}

	p := mustApply(t, d.URL, dbschema.Options{})
	if !p.Applied || len(p.Destructive) != 0 {
		t.Fatalf("upgrade plan = %+v, want an applied, non-destructive plan", p)
	}
	for _, st := range p.Statements {
		if !strings.Contains(st.SQL, "tasks_user_title_idx") {
			t.Errorf("upgrade planned more than the title index: %s", st.SQL)
		}
	}
	if def, want := indexDef(), "(user_id, lower(title), id)"; !strings.Contains(def, want) {
		t.Fatalf("index after upgrade = %s, want %s", def, want)
	}
	if again := mustApply(t, d.URL, dbschema.Options{}); !again.Empty() {
		t.Fatalf("apply after the upgrade planned %+v, want nothing", again.Statements)
	}
}

func TestBadHCLNamesFileAndLine(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{
			name: "syntax error",
			edit: func(s string) string { return strings.Replace(s, "table \"tasks\" {", "table \"tasks\" {{", 1) },
			want: "schema/todo.pg.hcl:4",
		},
		{
			name: "unknown column reference",
			edit: func(s string) string {
				return strings.Replace(s, "columns = [column.user_id, column.created_at, column.id]", "columns = [column.user_id, column.nope]", 1)
			},
			want: "schema/todo.pg.hcl:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dbschema.Evaluate(files(t, "schema/todo.pg.hcl", tt.edit))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
}

func TestDevURLIsUsedAndLeftEmpty(t *testing.T) {
	d := emptyDB(t)
	dev := emptyDB(t)
	if _, err := dbschema.Apply(context.Background(), d.URL, dbschema.Options{DevURL: dev.URL}); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, d.DB.DB, "tasks") {
		t.Fatal("apply with a dev URL did not create tasks")
	}
	if tableExists(t, dev.DB.DB, "tasks") {
		t.Fatal("the dev database was not restored to empty")
	}
	if _, err := dbschema.Apply(context.Background(), d.URL, dbschema.Options{DevURL: "postgres://postgres@127.0.0.1:5432/no_such_dev_db?sslmode=disable"}); err == nil {
		t.Fatal("apply with an unreachable dev database succeeded")
	}
}

// TestMissingDatabaseSaysHowToCreateIt: an apply to a database that does not
// exist names the flag that creates it, not the scratch-database setting.
func TestMissingDatabaseSaysHowToCreateIt(t *testing.T) {
	url := dbtest.UnusedURL(t, "dbschema")
	_, err := dbschema.Apply(context.Background(), url, dbschema.Options{DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "--create-database") || strings.Contains(err.Error(), "ATLAS_DEV_URL") {
		t.Fatalf("apply to a missing database: %v", err)
	}
}
