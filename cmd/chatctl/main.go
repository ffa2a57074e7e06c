// Command chatctl is taskchat's operator and developer tool: it applies the
// declarative schema through the Atlas Go library, mints development tokens,
// reads Better Auth's users, sessions and accounts and corrects a user
// record without ever printing a credential, and lists and requeues chat
// runs (through chat.Maintenance, the one path over every user's runs)
// without ever printing a message.
//
//	chatctl schema apply [--dry-run] [--allow-destructive] [--create-database]
//	chatctl schema diff
//	chatctl token --user-id ID [--email E] [--name N] [--create-user] [--ttl 1h]
//	chatctl users list [--limit N]
//	chatctl users show ID
//	chatctl users update ID [--name N] [--email E] [--email-verified true|false]
//	chatctl sessions list [--user-id ID] [--limit N]
//	chatctl accounts list [--user-id ID] [--limit N]
//	chatctl runs list [--status S[,S...]] [--stuck] [--older-than D] [--user-id ID] [--limit N]
//	chatctl runs requeue RUN_ID [--force]
//	chatctl help [COMMAND]
//
// The exit status follows diff(1), so scripts and CI can test it: 0 on
// success (for schema diff: the database is up to date), 1 on failure (for
// schema diff: the database differs from the schema), 2 on a usage error.
// --help, -h and help print usage and exit 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/taskchat/taskchat/pkg/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitStatus(run(ctx, os.Args[1:], os.Stdout, os.Getenv), os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses, as diff(1) uses them.
const (
	exitOK      = 0
	exitFailure = 1 // also: schema diff found a difference
	exitUsage   = 2
)

// errDiffers is returned by schema diff when the database differs from the
// schema. The plan on stdout already says how, so nothing more is printed.
var errDiffers = errors.New("the database differs from the schema")

// usageError is a mistake on the command line (exit status 2), as opposed to
// a failure while carrying out a well-formed command (exit status 1).
type usageError struct {
	err error
	// usage is printed after the error: the command's synopsis, or the
	// whole usage when no command was recognised.
	usage string
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef reports a command-line mistake; run adds the command's name and
// synopsis.
func usagef(format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...)}
}

// exitStatus prints err to stderr, once and with one "chatctl:" prefix, and
// returns the status main exits with.
func exitStatus(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errDiffers):
		return exitFailure
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "chatctl: %v\n%s", err, ue.usage)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "chatctl: %v\n", err)
		return exitFailure
	}
}

// command is one chatctl command.
type command struct {
	name    string // the words that select it: "users show"
	args    string // its arguments as usage shows them
	summary string
	// run parses args with fs (whose errors are not printed: run returns
	// them) and carries the command out, writing results to out.
	run func(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error
}

func (c command) synopsis() string {
	return strings.TrimSpace("chatctl " + c.name + " " + c.args)
}

// commands lists every command in the order usage shows them; the package
// comment lists the same synopses (a test holds them together).
var commands = []command{
	{"schema apply", "[--dry-run] [--allow-destructive] [--create-database]",
		"apply schema/*.pg.hcl to DATABASE_URL; a plan that drops data needs --allow-destructive",
		func(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
			return schemaApply(ctx, fs, args, out, getenv, false)
		}},
	{"schema diff", "",
		"print the planned SQL without applying it; exit status 1 when there is any",
		func(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
			return schemaApply(ctx, fs, args, out, getenv, true)
		}},
	{"token", "--user-id ID [--email E] [--name N] [--create-user] [--ttl 1h]",
		"print an HS256 token the API accepts for an existing user (--create-user inserts a missing one)",
		token},
	{"users list", "[--limit N]", "list Better Auth users, newest first", usersList},
	{"users show", "ID", "show a user with its sessions and sign-in accounts (never a credential)", usersShow},
	{"users update", "ID [--name N] [--email E] [--email-verified true|false]",
		`change a user's name, email or verification and set "updatedAt"`, usersUpdate},
	{"sessions list", "[--user-id ID] [--limit N]", "list Better Auth sessions, newest first, active or not", sessionsList},
	{"accounts list", "[--user-id ID] [--limit N]", "list sign-in accounts (provider and account id), newest first", accountsList},
	{"runs list", "[--status S[,S...]] [--stuck] [--older-than D] [--user-id ID] [--limit N]",
		"list chat runs of every user, newest first: ids, status, attempts, error code, times, lease (never a message)", runsList},
	{"runs requeue", "RUN_ID [--force]",
		"queue a failed or stuck run again (a failed one with its attempts reset) and publish it to NATS_URL", runsRequeue},
}

// usage is the text of chatctl --help.
func usage() string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %s\n      %s\n", c.synopsis(), c.summary)
	}
	b.WriteString(`  chatctl help [COMMAND]
      print this text or a command's flags (also --help, -h)

exit status: 0 success (schema diff: up to date), 1 failure (schema diff:
the database differs), 2 usage error

environment: DATABASE_URL (every command but help), ATLAS_DEV_URL (optional
scratch database for schema), BETTER_AUTH_SECRET, JWT_ISSUER, JWT_AUDIENCE
(token), NATS_URL, NATS_PREFIX (runs requeue: without NATS_URL the workers'
relay publishes the run)
`)
	return b.String()
}

// isHelp reports whether arg asks for help, in any of the spellings the flag
// package accepts.
func isHelp(arg string) bool {
	return slices.Contains([]string{"help", "-h", "--h", "-help", "--help"}, arg)
}

// run executes one chatctl command; main only wires. Its error decides the
// exit status (see exitStatus) and already names the command, so main adds
// only "chatctl:".
func run(ctx context.Context, args []string, out io.Writer, getenv config.Getenv) error {
	if len(args) == 0 {
		return &usageError{err: errors.New("missing command"), usage: usage()}
	}
	if args[0] == "help" && len(args) > 1 {
		// help COMMAND is COMMAND --help.
		args = append(slices.Clone(args[1:]), "--help")
	}
	c, rest, ok := lookup(args)
	if !ok {
		// chatctl --help, and chatctl users --help for a group of commands.
		if isHelp(args[0]) || (len(args) == 2 && isHelp(args[1]) && isGroup(args[0])) {
			fmt.Fprint(out, usage())
			return nil
		}
		return &usageError{err: fmt.Errorf("unknown command %q", strings.Join(args, " ")), usage: usage()}
	}

	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	// The flag package would print its errors and the flag list itself; run
	// returns them instead so that main prints each error once, to stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := c.run(ctx, fs, rest, out, getenv)
	var ue *usageError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		printHelp(out, c, fs)
		return nil
	case errors.As(err, &ue):
		return &usageError{err: fmt.Errorf("%s: %w", c.name, err), usage: "usage: " + c.synopsis() + "\n"}
	default:
		return fmt.Errorf("%s: %w", c.name, err)
	}
}

// isGroup reports whether word is the first word of a command's name.
func isGroup(word string) bool {
	return slices.ContainsFunc(commands, func(c command) bool { return strings.Fields(c.name)[0] == word })
}

// lookup finds the command args name and returns the arguments after its
// name.
func lookup(args []string) (command, []string, bool) {
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c, args[len(words):], true
		}
	}
	return command{}, nil, false
}

// printHelp prints one command's synopsis, summary and flags.
func printHelp(out io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(out, "usage: %s\n\n%s\n", c.synopsis(), c.summary)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(out, "\nflags:\n")
		fs.SetOutput(out)
		fs.PrintDefaults()
	}
}

// parse parses flags and rejects stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parseID parses flags around the one positional ID, which may come before
// the flags (users update ID --name N) or after them; the flag package alone
// would stop at the ID and leave the flags unparsed. what names the ID in
// the error when it is missing ("user ID").
func parseID(fs *flag.FlagSet, args []string, what string) (string, error) {
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if id == "" && len(rest) > 0 {
		id, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", usagef("unexpected argument %q", rest[0])
	}
	if id == "" {
		return "", usagef("missing %s", what)
	}
	return id, nil
}

// parseFlags parses args with fs; every parse error is a usage error, and a
// request for help stays flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &usageError{err: err}
}
