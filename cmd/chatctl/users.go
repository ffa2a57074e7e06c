package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// openStore connects to DATABASE_URL for the Better Auth commands.
func openStore(ctx context.Context, getenv config.Getenv) (*authstore.Store, func(), error) {
	cfg, _, err := loadDatabase(getenv)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = 2
	db, err := pgdb.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return authstore.NewStore(db), func() { db.Close() }, nil
}

// token prints an HS256 token signed with BETTER_AUTH_SECRET, the kind the
// todo app's /api/auth/token route mints. The API rejects the token of a user
// that does not exist, so token refuses to mint one unless --create-user
// inserts the user; the email and name claims default to the stored user's.
func token(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	userID := fs.String("user-id", "", "the Better Auth user id (sub); the user must exist unless --create-user")
	email := fs.String("email", "", "email claim and, with --create-user, the new user's email (default the stored email, or <user-id>@example.com)")
	name := fs.String("name", "", "name claim and, with --create-user, the new user's name (default the stored name, or the user id)")
	create := fs.Bool("create-user", false, "insert the \"user\" row when it does not exist")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *userID == "" {
		return usagef("--user-id is required")
	}
	if err := auth.ValidUserID(*userID); err != nil {
		// The API would refuse the token (and --create-user would store a
		// user nobody can act as).
		return usagef("--user-id %v", err)
	}
	if *name != "" {
		n, err := checkName(*name)
		if err != nil {
			return err
		}
		*name = n
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return usagef("--ttl must be between 1s and 720h")
	}
	if *email != "" {
		e, err := checkEmail(*email)
		if err != nil {
			return err
		}
		*email = e
	}
	signer, err := loadSigner(getenv)
	if err != nil {
		return err
	}

	store, closeDB, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	u, err := store.GetUser(ctx, *userID)
	switch {
	case errors.Is(err, authstore.ErrNotFound) && *create:
		u = &authstore.User{
			ID:    *userID,
			Name:  cmp.Or(*name, *userID),
			Email: cmp.Or(*email, strings.ToLower(*userID)+"@example.com"),
		}
		if err := store.CreateUser(ctx, u); err != nil {
			return plainEmailTaken(err, u.Email)
		}
	case errors.Is(err, authstore.ErrNotFound):
		return fmt.Errorf("no user with id %q: the API rejects tokens of unknown users (pass --create-user to create it)", *userID)
	case err != nil:
		return err
	}

	tok, err := auth.SignHS256(signer.Secret, auth.TokenClaims{
		UserID:   u.ID,
		Email:    cmp.Or(*email, u.Email),
		Name:     cmp.Or(*name, u.Name),
		Issuer:   signer.JWTIssuer,
		Audience: signer.JWTAudience,
		TTL:      *ttl,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, tok)
	return nil
}

// checkEmail validates an email given on the command line and lower-cases
// it, as Better Auth does before it stores or looks up an email: a
// mixed-case address in the table would never match a sign-in.
func checkEmail(raw string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(raw))
	if a, err := mail.ParseAddress(e); err != nil || a.Address != e || !strings.Contains(e, "@") {
		return "", usagef("--email %q is not an email address like name@example.com", raw)
	}
	return e, nil
}

// checkName validates a user's name given on the command line, trimmed.
func checkName(raw string) (string, error) {
	n := strings.TrimSpace(raw)
	if n == "" || strings.ContainsFunc(n, unicode.IsControl) {
		return "", usagef("--name must be non-empty text without control characters")
	}
	return n, nil
}

// plainEmailTaken replaces the database's unique-violation text with a
// message a person can act on.
func plainEmailTaken(err error, email string) error {
	if errors.Is(err, authstore.ErrEmailTaken) {
		return fmt.Errorf("a user with email %q already exists", email)
	}
	return err
}

func usersList(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	limit := fs.Int("limit", 100, "at most this many users, newest first (1-10000)")
	if err := parseLimited(fs, args, limit); err != nil {
		return err
	}
	store, closeDB, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	users, err := store.ListUsers(ctx, *limit)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tEMAIL\tNAME\tVERIFIED\tCREATED")
	for _, u := range users {
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\n", text(u.ID), text(u.Email), text(u.Name), u.EmailVerified, stamp(u.CreatedAt))
	}
	return w.Flush()
}

// usersShow prints one user, its sessions and its sign-in accounts: what a
// developer of the todo app needs to see why someone cannot sign in. No
// credential is read (see authstore.Account and ListSessions).
func usersShow(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	id, err := parseID(fs, args, "user ID")
	if err != nil {
		return err
	}
	store, closeDB, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	u, err := store.GetUser(ctx, id)
	if errors.Is(err, authstore.ErrNotFound) {
		return fmt.Errorf("no user with id %q", id)
	}
	if err != nil {
		return err
	}
	// One more than is shown tells whether there are more.
	sessions, err := store.ListSessions(ctx, id, showLimit+1)
	if err != nil {
		return err
	}
	accounts, err := store.ListAccounts(ctx, id, showLimit+1)
	if err != nil {
		return err
	}

	if err := printUser(out, u); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nSessions (%s):\n", count(len(sessions)))
	if err := printSessions(out, sessions[:min(len(sessions), showLimit)], time.Now()); err != nil {
		return err
	}
	if len(sessions) > showLimit {
		fmt.Fprintf(out, moreFormat, showLimit, "sessions", text(id))
	}
	fmt.Fprintf(out, "\nAccounts (%s):\n", count(len(accounts)))
	if err := printAccounts(out, accounts[:min(len(accounts), showLimit)]); err != nil {
		return err
	}
	if len(accounts) > showLimit {
		fmt.Fprintf(out, moreFormat, showLimit, "accounts", text(id))
	}
	return nil
}

// showLimit bounds the sessions and accounts users show prints; moreFormat
// says where the rest are.
const (
	showLimit  = 100
	moreFormat = "(only the newest %d: chatctl %s list --user-id %s --limit N shows more)\n"
)

// count renders a list's length, with "+" when it was cut at showLimit.
func count(n int) string {
	if n > showLimit {
		return fmt.Sprintf("%d+", showLimit)
	}
	return fmt.Sprint(n)
}

// usersUpdate changes a user's name, email or verification in one statement
// that also sets "updatedAt"; a taken email or an unknown user changes
// nothing.
func usersUpdate(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	name := fs.String("name", "", "the new name (not empty)")
	email := fs.String("email", "", "the new email, lower-cased as Better Auth stores it; it must not belong to another user")
	verified := fs.String("email-verified", "", "true or false")
	id, err := parseID(fs, args, "user ID")
	if err != nil {
		return err
	}
	var patch authstore.UserPatch
	var bad error
	// Visit sees only the flags given, so --name "" is an empty name, not "no change".
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name":
			n, err := checkName(*name)
			if err != nil {
				bad = err
			}
			patch.Name = &n
		case "email":
			e, err := checkEmail(*email)
			if err != nil {
				bad = err
			}
			patch.Email = &e
		case "email-verified":
			v, err := strconv.ParseBool(*verified)
			if err != nil {
				bad = usagef("--email-verified must be true or false, not %q", *verified)
			}
			patch.EmailVerified = &v
		}
	})
	if bad != nil {
		return bad
	}
	if patch.Empty() {
		return usagef("nothing to change: give --name, --email or --email-verified")
	}

	store, closeDB, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	u, err := store.UpdateUser(ctx, id, patch)
	switch {
	case errors.Is(err, authstore.ErrNotFound):
		return fmt.Errorf("no user with id %q", id)
	case errors.Is(err, authstore.ErrEmailTaken):
		return plainEmailTaken(err, *patch.Email)
	case err != nil:
		return err
	}
	return printUser(out, u)
}

func sessionsList(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	userID := fs.String("user-id", "", "only this user's sessions")
	limit := fs.Int("limit", 100, "at most this many sessions, newest first (1-10000)")
	if err := parseLimited(fs, args, limit); err != nil {
		return err
	}
	store, closeDB, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	sessions, err := store.ListSessions(ctx, *userID, *limit)
	if err != nil {
		return err
	}
	return printSessions(out, sessions, time.Now())
}

func accountsList(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	userID := fs.String("user-id", "", "only this user's accounts")
	limit := fs.Int("limit", 100, "at most this many accounts, newest first (1-10000)")
	if err := parseLimited(fs, args, limit); err != nil {
		return err
	}
	store, closeDB, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	accounts, err := store.ListAccounts(ctx, *userID, *limit)
	if err != nil {
		return err
	}
	return printAccounts(out, accounts)
}

// printUser prints one user's fields, one per line.
func printUser(out io.Writer, u *authstore.User) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "ID\t%s\n", text(u.ID))
	fmt.Fprintf(w, "Name\t%s\n", text(u.Name))
	fmt.Fprintf(w, "Email\t%s\n", text(u.Email))
	fmt.Fprintf(w, "Email verified\t%t\n", u.EmailVerified)
	fmt.Fprintf(w, "Image\t%s\n", deref(u.Image))
	fmt.Fprintf(w, "Created\t%s\n", stamp(u.CreatedAt))
	fmt.Fprintf(w, "Updated\t%s\n", stamp(u.UpdatedAt))
	return w.Flush()
}

// printSessions prints sessions as a table; active means valid at now, by
// Better Auth's rule (Session.Active).
func printSessions(out io.Writer, sessions []authstore.Session, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tEXPIRES\tACTIVE\tIP\tUSER AGENT")
	for _, s := range sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\t%s\n", text(s.ID), text(s.UserID), stamp(s.ExpiresAt), s.Active(now), deref(s.IPAddress), deref(s.UserAgent))
	}
	return w.Flush()
}

// printAccounts prints accounts as a table: which provider each user signs
// in with, never a credential.
func printAccounts(out io.Writer, accounts []authstore.Account) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tPROVIDER\tACCOUNT ID\tSCOPE\tCREATED")
	for _, a := range accounts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", text(a.ID), text(a.UserID), text(a.ProviderID), text(a.AccountID), deref(a.Scope), stamp(a.CreatedAt))
	}
	return w.Flush()
}

// parseLimited parses flags and checks --limit is within 1-10000.
func parseLimited(fs *flag.FlagSet, args []string, limit *int) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 1 || *limit > 10000 {
		return usagef("--limit must be between 1 and 10000")
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// text makes a stored value safe to print: rows are written by browsers and
// sign-up forms (a user agent, a name), and a control character in one could
// drive the reader's terminal or break the table's columns, so such a value
// is printed quoted with escapes.
func text(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return text(*s)
}
