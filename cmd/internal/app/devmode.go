package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/authstore"
)

// Development mode of chatd (DEV_MODE=true): what a newcomer needs to try
// taskchat in a browser with nothing configured.
const (
	// DevSecretFile is the file under DATA_DIR that keeps the
	// BETTER_AUTH_SECRET chatd generates in development mode when none is
	// set, so that tokens survive a restart; `make token` signs with it.
	DevSecretFile = "dev-auth-secret"
	// DevUserID is the development user chatd creates in development mode
	// (the Makefile's USER_ID default).
	DevUserID = "dev-user"
	// DevTokenTTL is the lifetime of the token in the console URL chatd
	// logs at start in development mode.
	DevTokenTTL = 24 * time.Hour
)

// noAuthSettings reports whether none of the variables that say how
// credentials are verified is set.
func noAuthSettings(getenv func(string) string) bool {
	for _, k := range []string{"BETTER_AUTH_SECRET", "BETTER_AUTH_URL", "JWKS_URL"} {
		if strings.TrimSpace(getenv(k)) != "" {
			return false
		}
	}
	return true
}

// devSecret returns the secret kept in path, generating it into a new
// file readable by its owner only when there is none; created says which.
func devSecret(path string) (secret string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		secret = strings.TrimSpace(string(b))
		if len(secret) < auth.MinSecretLength {
			return "", false, fmt.Errorf("%s holds no usable secret (under %d bytes): delete it and a new one is made", path, auth.MinSecretLength)
		}
		return secret, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read the development secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("create the development secret's directory: %w", err)
	}
	secret = rand.Text() + rand.Text() // 52 characters, 260 random bits
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return devSecret(path) // another chatd made it meanwhile
	}
	if err != nil {
		return "", false, fmt.Errorf("create the development secret: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("write the development secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("write the development secret: %w", err)
	}
	return secret, true, nil
}

// DevConsoleURL makes sure the development user exists and returns the
// console's sign-in URL for addr (the API's listener): the user's token,
// signed with cfg.Auth.Secret, travels in the URL's fragment, which a
// browser never sends to a server, so it reaches no access log.
func DevConsoleURL(ctx context.Context, cfg Config, db bun.IDB, addr net.Addr) (string, error) {
	if cfg.Auth.Secret == "" {
		return "", errors.New("no BETTER_AUTH_SECRET to sign a development token with")
	}
	store := authstore.NewStore(db)
	_, err := store.GetUser(ctx, DevUserID)
	if errors.Is(err, authstore.ErrNotFound) {
		err = store.CreateUser(ctx, &authstore.User{ID: DevUserID, Name: DevUserID, Email: DevUserID + "@example.com"})
	}
	if err != nil {
		return "", fmt.Errorf("development user: %w", err)
	}
	tok, err := auth.SignHS256(cfg.Auth.Secret, auth.TokenClaims{
		UserID: DevUserID, Email: DevUserID + "@example.com", Name: DevUserID,
		Issuer: cfg.Auth.JWTIssuer, Audience: cfg.Auth.JWTAudience, TTL: DevTokenTTL,
	})
	if err != nil {
		return "", err
	}
	return "http://" + browsable(addr) + "/#token=" + tok, nil
}

// browsable is addr as a browser on this machine reaches it: a listener
// on every address is reached on 127.0.0.1.
func browsable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
