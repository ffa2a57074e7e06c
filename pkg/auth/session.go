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
	token, sig, signed := cutSignature(value)
	// The alphabet is checked first, before the signature and long before
	// the query: a token no id generator makes is never worth a lookup, and
	// keeping quotes and backslashes away from the SQL text is what makes a
	// bare token safe whatever the connection's string-literal settings are.
	if !plausibleSessionToken(token) {
		return "", unauthorized("malformed session token")
	}
	if signed {
		if v.cfg.Secret == "" {
			return "", unauthorized("signed session token but no BETTER_AUTH_SECRET configured")
		}
		if !validSessionSignature(v.cfg.Secret, token, sig) {
			return "", unauthorized("bad session token signature")
		}
	} else if requireSignature {
		return "", unauthorized("unsigned session token")
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

// cutSignature splits "<token>.<signature>" at its last '.'; signed is
// false for a bare token.
func cutSignature(value string) (token, sig string, signed bool) {
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return value, "", false
	}
	return value[:i], value[i+1:], true
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

// plausibleSessionToken reports whether token could have come from an id
// generator Better Auth uses: its own generateId makes [A-Za-z0-9], and the
// other common ones (nanoid, base64url) add only '-' and '_'. Everything
// else (quotes, backslashes, '$', parentheses, spaces, controls, non-ASCII)
// is refused before the token reaches the database.
func plausibleSessionToken(token string) bool {
	if token == "" || len(token) > maxSessionTokenLength {
		return false
	}
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
