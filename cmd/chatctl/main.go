// Command chatctl is taskchat's operator and developer tool: it applies the
// declarative schema through the Atlas Go library, mints development tokens
// and reads Better Auth's users and sessions.
//
//	chatctl schema apply [--dry-run] [--allow-destructive] [--create-database]
//	chatctl schema diff
//	chatctl token --user-id ID [--email E] [--name N] [--create-user] [--ttl 1h]
//	chatctl users list [--limit N]
//	chatctl sessions list [--user-id ID] [--limit N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Getenv)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "chatctl:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  chatctl schema apply [--dry-run] [--allow-destructive] [--create-database]
                                                            apply schema/*.pg.hcl to DATABASE_URL
  chatctl schema diff                                       print the planned SQL without applying
  chatctl token --user-id ID [--email E] [--name N] [--create-user] [--ttl 1h]
                                                            print an HS256 token the API accepts
  chatctl users list [--limit N]                            list Better Auth users
  chatctl sessions list [--user-id ID] [--limit N]          list Better Auth sessions

environment: DATABASE_URL (schema, users, sessions, token --create-user),
ATLAS_DEV_URL (optional scratch database for schema), BETTER_AUTH_SECRET,
JWT_ISSUER, JWT_AUDIENCE (token)
`

// run executes one chatctl command; main only wires.
func run(ctx context.Context, args []string, out io.Writer, getenv func(string) string) error {
	if len(args) >= 1 && args[0] == "token" {
		return token(ctx, args[1:], out, getenv)
	}
	if len(args) < 2 {
		fmt.Fprint(out, usage)
		return flag.ErrHelp
	}
	switch cmd := args[0] + " " + args[1]; cmd {
	case "schema apply":
		return schemaApply(ctx, args[2:], out, getenv, false)
	case "schema diff":
		return schemaApply(ctx, args[2:], out, getenv, true)
	case "users list":
		return usersList(ctx, args[2:], out, getenv)
	case "sessions list":
		return sessionsList(ctx, args[2:], out, getenv)
	}
	fmt.Fprint(out, usage)
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

// flags makes a flag set that reports errors to out and never exits.
func flags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("chatctl "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parse parses flags and rejects stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
