package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// maxSessionTokenLength bounds the token part of a session credential;
// Better Auth's are 32 characters.
const maxSessionTokenLength = 255

// SignSessionToken returns token signed as Better Auth signs its session
// cookie: token + "." + standard base64 (padded) of HMAC-SHA256(secret, token).
func SignSessionToken(secret, token string) string {
	return token + "." + base64.StdEncoding.EncodeToString(sessionMAC(secret, token))
}

func sessionMAC(secret, token string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(token))
	return m.Sum(nil)
}

// verifySession checks a session credential, "<token>.<signature>" or a bare
// "<token>", and returns the session's user id. Better Auth's tokens never
// contain '.', so a value with one must carry a valid signature: it is never
// retried as a bare token.
func (v *Verifier) verifySession(ctx context.Context, value string, requireSignature bool) (string, error) {
	token := value
	if i := strings.LastIndexByte(value, '.'); i >= 0 {
		if v.cfg.Secret == "" {
			return "", unauthorized("signed session token but no BETTER_AUTH_SECRET configured")
		}
		token = value[:i]
		if !validSessionSignature(v.cfg.Secret, token, value[i+1:]) {
			return "", unauthorized("bad session token signature")
		}
	} else if requireSignature {
		return "", unauthorized("unsigned session token")
	}
	if !plausibleSessionToken(token) {
		return "", unauthorized("malformed session token")
	}
	userID, err := v.store.SessionUser(ctx, token, v.now())
	if err != nil {
		return "", fmt.Errorf("%w: session lookup: %w", ErrUnavailable, err)
	}
	if userID == "" {
		return "", unauthorized("no active session for token")
	}
	return userID, nil
}

// validSessionSignature checks sig against HMAC-SHA256(secret, token) in
// constant time. Better Auth writes standard base64 with padding; its bearer
// plugin strips the padding, and its HMAC helper also reads the URL-safe
// alphabet, so all four spellings are accepted (the MAC is what counts).
func validSessionSignature(secret, token, sig string) bool {
	urlSafe := strings.ContainsAny(sig, "-_")
	padded := strings.HasSuffix(sig, "=")
	var enc *base64.Encoding
	switch {
	case urlSafe && padded:
		enc = base64.URLEncoding
	case urlSafe:
		enc = base64.RawURLEncoding
	case padded:
		enc = base64.StdEncoding
	default:
		enc = base64.RawStdEncoding
	}
	got, err := enc.Strict().DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, sessionMAC(secret, token))
}

// plausibleSessionToken rejects tokens no Better Auth id generator makes
// (empty, overlong, control characters or spaces) before they reach the
// database.
func plausibleSessionToken(token string) bool {
	if token == "" || len(token) > maxSessionTokenLength {
		return false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
