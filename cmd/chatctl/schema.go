package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/dbschema"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// schemaApply applies (or with diff, only plans) the embedded schema. With
// diff, a plan that is not empty returns errDiffers, so that scripts see a
// pending or destructive change in the exit status as they would with diff(1).
func schemaApply(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv, diff bool) error {
	dryRun, allow, create := diff, false, false
	if !diff {
		fs.BoolVar(&dryRun, "dry-run", false, "print the planned SQL without applying it")
		fs.BoolVar(&allow, "allow-destructive", false, "allow dropping tables and columns")
		fs.BoolVar(&create, "create-database", false, "create the database named in DATABASE_URL when it is missing")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	db, devURL, err := loadDatabase(getenv)
	if err != nil {
		return err
	}
	if create {
		created, err := pgdb.EnsureDatabase(ctx, db.URL)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintln(out, "Created the database.")
		}
	}
	plan, err := dbschema.Apply(ctx, db.URL, dbschema.Options{
		DevURL:           devURL,
		DryRun:           dryRun,
		AllowDestructive: allow,
	})
	if plan != nil {
		printPlan(out, plan)
	}
	if errors.Is(err, dbschema.ErrDestructive) {
		return fmt.Errorf("refusing to apply: %w", err)
	}
	if err != nil {
		return err
	}
	if diff && !plan.Empty() {
		return errDiffers
	}
	return nil
}

func printPlan(out io.Writer, plan *dbschema.Plan) {
	if plan.Empty() {
		fmt.Fprintln(out, "Schema is up to date: nothing to apply.")
		return
	}
	fmt.Fprintf(out, "-- Planned changes (%d statements):\n", len(plan.Statements))
	for _, s := range plan.Statements {
		if s.Comment != "" {
			fmt.Fprintf(out, "-- %s\n", s.Comment)
		}
		fmt.Fprintf(out, "%s;\n", s.SQL)
	}
	for _, d := range plan.Destructive {
		fmt.Fprintf(out, "-- DESTRUCTIVE: drops %s\n", d)
	}
	if plan.Applied {
		fmt.Fprintf(out, "Applied %d statements.\n", len(plan.Statements))
	} else {
		fmt.Fprintln(out, "Not applied.")
	}
}
