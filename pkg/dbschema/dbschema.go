// Package dbschema applies taskchat's declarative schema (the HCL files in
// schema/) to a PostgreSQL database through the Atlas Go library, the way
// `atlas schema apply --dev-url …` does: the desired schema is normalised in
// an empty scratch database, diffed against the inspected database, and the
// plan is applied in one transaction under an advisory lock.
package dbschema

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	atlas "ariga.io/atlas/sql/schema"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/schema"
)

// lockKey identifies the transaction-scoped advisory lock held while a plan
// is inspected and applied, so two appliers (a compose job racing the
// services, two operators) never interleave.
const lockKey = 7_219_004_113

// inspectedSchema is the only schema taskchat owns.
const inspectedSchema = "public"

// ErrDestructive is returned (wrapped) when a plan drops a table, column or
// schema and Options.AllowDestructive is false. Nothing was applied.
var ErrDestructive = errors.New("plan drops data")

// Options tune a plan or an apply.
type Options struct {
	// DevURL is an empty scratch database used to normalise the desired
	// schema. When empty, a temporary database is created on the target's
	// server and dropped afterwards (the role needs CREATEDB).
	DevURL string
	// AllowDestructive permits plans that drop tables, columns or schemas.
	AllowDestructive bool
	// DryRun plans without applying.
	DryRun bool
}

// Statement is one planned SQL statement with Atlas's description of it.
type Statement struct {
	SQL     string
	Comment string
}

// Plan is what an apply did (or, on a dry run or a refusal, would do).
type Plan struct {
	Statements []Statement
	// Destructive names each dropped table, column or schema.
	Destructive []string
	// Applied reports whether the statements ran.
	Applied bool
}

// Empty reports whether the database already matches the schema.
func (p *Plan) Empty() bool { return len(p.Statements) == 0 }

// Desired evaluates the embedded schema files into an Atlas realm. Each file
// is parsed under its own name, so errors point at file and line.
func Desired() (*atlas.Realm, error) {
	files, err := schema.Files()
	if err != nil {
		return nil, fmt.Errorf("read schema files: %w", err)
	}
	return Evaluate(files)
}

// Evaluate turns schema files into an Atlas realm.
func Evaluate(files []schema.File) (*atlas.Realm, error) {
	p := hclparse.NewParser()
	for _, f := range files {
		if _, diags := p.ParseHCL(f.Data, f.Name); diags.HasErrors() {
			return nil, fmt.Errorf("parse schema: %w", diags)
		}
	}
	var realm atlas.Realm
	if err := postgres.EvalHCL.Eval(p, &realm, nil); err != nil {
		return nil, fmt.Errorf("evaluate schema: %w", err)
	}
	return &realm, nil
}

// Apply brings the database at dbURL to the embedded schema. It returns the
// plan. With DryRun nothing is applied (and a destructive plan is no error);
// otherwise a destructive plan without AllowDestructive is refused with an
// error wrapping ErrDestructive, and nothing is applied.
func Apply(ctx context.Context, dbURL string, opts Options) (*Plan, error) {
	desired, err := Desired()
	if err != nil {
		return nil, err
	}
	return ApplyRealm(ctx, dbURL, desired, opts)
}

// ApplyRealm is Apply with an already evaluated desired realm.
func ApplyRealm(ctx context.Context, dbURL string, desired *atlas.Realm, opts Options) (*Plan, error) {
	normal, err := normalize(ctx, dbURL, opts.DevURL, desired)
	if err != nil {
		return nil, err
	}
	db, err := pgdb.OpenSQL(pgdb.Config{URL: dbURL, MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer db.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
		return nil, fmt.Errorf("take schema lock: %w", err)
	}
	drv, err := postgres.Open(tx)
	if err != nil {
		return nil, fmt.Errorf("open atlas driver: %w", err)
	}
	current, err := drv.InspectRealm(ctx, &atlas.InspectRealmOption{Schemas: []string{inspectedSchema}})
	if err != nil {
		return nil, fmt.Errorf("inspect database: %w", err)
	}
	changes, err := drv.RealmDiff(current, normal, atlas.DiffNormalized())
	if err != nil {
		return nil, fmt.Errorf("diff schema: %w", err)
	}
	plan, err := makePlan(ctx, drv, changes)
	if err != nil {
		return nil, err
	}
	if opts.DryRun || plan.Empty() {
		return plan, nil
	}
	if len(plan.Destructive) > 0 && !opts.AllowDestructive {
		return plan, fmt.Errorf("%w: %s (pass --allow-destructive to apply)", ErrDestructive, strings.Join(plan.Destructive, ", "))
	}
	if err := drv.ApplyChanges(ctx, changes); err != nil {
		return plan, fmt.Errorf("apply schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return plan, fmt.Errorf("commit schema: %w", err)
	}
	plan.Applied = true
	return plan, nil
}

func makePlan(ctx context.Context, drv migrate.Driver, changes []atlas.Change) (*Plan, error) {
	plan := &Plan{Destructive: destructive(changes)}
	if len(changes) == 0 {
		return plan, nil
	}
	p, err := drv.PlanChanges(ctx, "taskchat", changes)
	if err != nil {
		return nil, fmt.Errorf("plan schema: %w", err)
	}
	for _, c := range p.Changes {
		plan.Statements = append(plan.Statements, Statement{SQL: c.Cmd, Comment: c.Comment})
	}
	return plan, nil
}

// destructive lists what a change set drops.
func destructive(changes []atlas.Change) []string {
	var out []string
	for _, c := range changes {
		switch c := c.(type) {
		case *atlas.DropSchema:
			out = append(out, "schema "+c.S.Name)
		case *atlas.DropTable:
			out = append(out, "table "+c.T.Name)
		case *atlas.ModifyTable:
			for _, tc := range c.Changes {
				if d, ok := tc.(*atlas.DropColumn); ok {
					out = append(out, "column "+c.T.Name+"."+d.C.Name)
				}
			}
		}
	}
	return out
}

// normalize converts the desired realm to its normal form by creating it in
// an empty scratch database and inspecting it back, as the Atlas CLI's dev
// database does. Without it, changed CHECK constraints are never planned
// and partial indexes are planned again on every apply. A scratch database
// that cannot be dropped afterwards is an error, so it is not left behind
// unnoticed.
func normalize(ctx context.Context, dbURL, devURL string, desired *atlas.Realm) (_ *atlas.Realm, err error) {
	if devURL == "" {
		name := "taskchat_atlas_dev_" + randomSuffix()
		if devURL, err = pgdb.DatabaseURL(dbURL, name); err != nil {
			return nil, err
		}
		if err := pgdb.CreateDatabase(ctx, dbURL, name); err != nil {
			if missingDatabase(err) {
				// The scratch database is made through the target's own
				// connection, so a missing target fails here first.
				return nil, fmt.Errorf("the database in DATABASE_URL does not exist (chatctl schema apply --create-database creates it): %w", err)
			}
			return nil, fmt.Errorf("create scratch database (set ATLAS_DEV_URL where the role cannot create databases): %w", err)
		}
		defer func() {
			// The caller's context may be done; dropping must still happen.
			if derr := pgdb.DropDatabase(context.WithoutCancel(ctx), dbURL, name); derr != nil {
				err = errors.Join(err, fmt.Errorf("drop scratch database: %w", derr))
			}
		}()
	}
	dev, err := pgdb.OpenSQL(pgdb.Config{URL: devURL, MaxConns: 2})
	if err != nil {
		return nil, fmt.Errorf("open dev database: %w", err)
	}
	defer dev.Close()
	drv, err := postgres.Open(dev)
	if err != nil {
		return nil, fmt.Errorf("open dev database: %w", err)
	}
	n, ok := drv.(atlas.Normalizer)
	if !ok {
		return nil, errors.New("atlas postgres driver cannot normalise")
	}
	normal, err := n.NormalizeRealm(ctx, desired)
	if err != nil {
		return nil, fmt.Errorf("normalise schema in dev database: %w", err)
	}
	return normal, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// missingDatabase reports whether err is Postgres's "database does not
// exist" (SQLSTATE 3D000).
func missingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}
