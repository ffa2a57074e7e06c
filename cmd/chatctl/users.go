package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// openStore connects to DATABASE_URL for the Better Auth commands.
func openStore(ctx context.Context, getenv config.Getenv) (*authstore.Store, func(), error) {
	cfg, _, err := config.LoadDatabase(getenv)
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
	secret := getenv("BETTER_AUTH_SECRET")
	if secret == "" {
		return errors.New("BETTER_AUTH_SECRET is not set")
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

	tok, err := auth.SignHS256(secret, auth.TokenClaims{
		UserID:   u.ID,
		Email:    cmp.Or(*email, u.Email),
		Name:     cmp.Or(*name, u.Name),
		Issuer:   getenv("JWT_ISSUER"),
		Audience: getenv("JWT_AUDIENCE"),
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\n", u.ID, u.Email, u.Name, u.EmailVerified, u.CreatedAt.UTC().Format(time.RFC3339))
	}
	return w.Flush()
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
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tEXPIRES\tACTIVE\tIP\tUSER AGENT")
	now := time.Now()
	for _, s := range sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\t%s\n", s.ID, s.UserID, s.ExpiresAt.UTC().Format(time.RFC3339), s.ExpiresAt.After(now), deref(s.IPAddress), deref(s.UserAgent))
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

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
