package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

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
// todo app's /api/auth/token route mints.
func token(ctx context.Context, args []string, out io.Writer, getenv config.Getenv) error {
	fs := flags("token", out)
	userID := fs.String("user-id", "", "the Better Auth user id (sub)")
	email := fs.String("email", "", "email claim (default <user-id>@example.com with --create-user)")
	name := fs.String("name", "", "name claim (default the user id with --create-user)")
	create := fs.Bool("create-user", false, "insert the \"user\" row when it does not exist")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *userID == "" {
		return errors.New("token: --user-id is required")
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return errors.New("token: --ttl must be between 1s and 720h")
	}
	signer, err := loadSigner(getenv)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if *create {
		if *email == "" {
			*email = *userID + "@example.com"
		}
		if *name == "" {
			*name = *userID
		}
		store, closeDB, err := openStore(ctx, getenv)
		if err != nil {
			return err
		}
		defer closeDB()
		exists, err := store.UserExists(ctx, *userID)
		if err != nil {
			return fmt.Errorf("token: look up user: %w", err)
		}
		if !exists {
			now := time.Now()
			u := &authstore.User{ID: *userID, Name: *name, Email: *email, CreatedAt: now, UpdatedAt: now}
			if err := store.CreateUser(ctx, u); err != nil {
				return fmt.Errorf("token: create user: %w", err)
			}
		}
	}
	tok, err := auth.SignHS256(signer.Secret, auth.TokenClaims{
		UserID:   *userID,
		Email:    *email,
		Name:     *name,
		Issuer:   signer.JWTIssuer,
		Audience: signer.JWTAudience,
		TTL:      *ttl,
	})
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(out, tok)
	return nil
}

func usersList(ctx context.Context, args []string, out io.Writer, getenv config.Getenv) error {
	fs := flags("users list", out)
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

func sessionsList(ctx context.Context, args []string, out io.Writer, getenv config.Getenv) error {
	fs := flags("sessions list", out)
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
		return fmt.Errorf("%s: --limit must be between 1 and 10000", fs.Name())
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
