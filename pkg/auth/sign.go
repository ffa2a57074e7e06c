package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenTTL is the lifetime SignHS256 gives a token when TTL is zero.
const DefaultTokenTTL = 30 * time.Minute

// TokenClaims describes an HS256 token to mint.
type TokenClaims struct {
	UserID, Email, Name string
	// Issuer and Audience become iss and aud when not empty.
	Issuer, Audience string
	// TTL is the lifetime (DefaultTokenTTL when zero).
	TTL time.Duration
	// Now is the issue time (time.Now when zero).
	Now time.Time
}

// SignHS256 mints an HS256 token like the todo app's /api/auth/token route:
// claims sub, email, name, iat, exp (plus iss and aud when given), signed
// with secret (BETTER_AUTH_SECRET), which must be at least MinSecretLength
// bytes.
func SignHS256(secret string, c TokenClaims) (string, error) {
	if secret == "" {
		return "", errors.New("sign token: empty secret")
	}
	// A token signed with a short secret gives the secret away to anyone
	// who can run an offline search, and the API would refuse the secret.
	if err := checkSecret(secret); err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	if c.UserID == "" {
		return "", errors.New("sign token: empty user id")
	}
	if c.TTL < 0 {
		return "", errors.New("sign token: negative TTL")
	}
	if c.TTL == 0 {
		c.TTL = DefaultTokenTTL
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	claims := jwt.MapClaims{
		"sub":   c.UserID,
		"email": c.Email,
		"name":  c.Name,
		"iat":   c.Now.Unix(),
		"exp":   c.Now.Add(c.TTL).Unix(),
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	if c.Audience != "" {
		claims["aud"] = c.Audience
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
