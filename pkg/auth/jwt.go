package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// asymmetricAlgs are the algorithms Better Auth's JWT plugin signs with;
// their keys come from the JWKS.
var asymmetricAlgs = map[string]bool{"EdDSA": true, "ES256": true, "ES512": true, "RS256": true, "PS256": true}

// jwtAlg reports whether credential is shaped like a JWT (three base64url
// segments, the first a JSON header with a string "alg") and returns that
// alg. Anything else is treated as a session token.
func jwtAlg(credential string) (string, bool) {
	head, rest, ok := strings.Cut(credential, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", false
	}
	var h struct {
		Alg *string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Alg == nil {
		return "", false
	}
	return *h.Alg, true
}

// parserOptions are shared by both JWT kinds: one algorithm family per
// parser, exp required, iat in the future rejected, leeway on all three.
func parserOptions(methods []string, skew time.Duration, now func() time.Time) []jwt.ParserOption {
	return []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(skew),
		jwt.WithTimeFunc(now),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(),
	}
}

// claims are the registered claims both JWT kinds use. It is
// jwt.RegisteredClaims except that exp, nbf and iat must be JSON numbers:
// jwt's NumericDate also takes a string holding a number ("exp":"9999999999"),
// which RFC 7519 does not allow and no issuer we accept writes.
type claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *numericDate     `json:"exp"`
	NotBefore *numericDate     `json:"nbf"`
	IssuedAt  *numericDate     `json:"iat"`
}

// GetExpirationTime implements jwt.Claims.
func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }

// GetNotBefore implements jwt.Claims.
func (c *claims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore.date(), nil }

// GetIssuedAt implements jwt.Claims.
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.date(), nil }

// GetIssuer implements jwt.Claims.
func (c *claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *claims) GetAudience() (jwt.ClaimStrings, error) { return c.Audience, nil }

// numericDate is a jwt.NumericDate that only a JSON number decodes into.
// (A JSON null leaves the claim's pointer nil: the claim is absent.)
type numericDate struct{ jwt.NumericDate }

// errTimeClaimNotNumber rejects exp, nbf or iat given as anything but a
// JSON number.
var errTimeClaimNotNumber = errors.New("exp, nbf and iat must be JSON numbers")

// UnmarshalJSON refuses anything but a number, then decodes as jwt does.
func (d *numericDate) UnmarshalJSON(b []byte) error {
	// encoding/json hands over the value alone, without surrounding space; a
	// JSON number, and nothing else, starts with '-' or a digit.
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errTimeClaimNotNumber
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *numericDate) date() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

// hs256Verifier checks the todo app's HS256 tokens.
type hs256Verifier struct {
	parser *jwt.Parser
	key    []byte
}

func newHS256Verifier(cfg Config, now func() time.Time) *hs256Verifier {
	opts := parserOptions([]string{jwt.SigningMethodHS256.Alg()}, cfg.ClockSkew, now)
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	return &hs256Verifier{parser: jwt.NewParser(opts...), key: []byte(cfg.Secret)}
}

func (h *hs256Verifier) verify(token string) (string, error) {
	var c claims
	_, err := h.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if err := checkHeader(t); err != nil {
			return nil, err
		}
		return h.key, nil
	})
	if err != nil {
		return "", jwtRejection("HS256", err)
	}
	return checkSubject(c.Subject)
}

// checkHeader rejects headers asking for processing we do not do.
func checkHeader(t *jwt.Token) error {
	if _, ok := t.Header["crit"]; ok {
		return errCritHeader
	}
	return nil
}

var (
	errCritHeader = errors.New("token header has crit")
	errUnknownKid = errors.New("unknown key id")
	errNoKid      = errors.New("token header has no kid")
	errKeyAlg     = errors.New("key does not match the token algorithm")
)

// jwtRejection turns a jwt parse error into a rejection with a fixed
// reason: jwt's own messages can quote bits of the token.
func jwtRejection(kind string, err error) error {
	var reason string
	switch {
	case errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, ErrUnauthorized):
		return err
	case errors.Is(err, errCritHeader), errors.Is(err, errUnknownKid), errors.Is(err, errNoKid), errors.Is(err, errKeyAlg):
		reason = unwrapKeyfunc(err)
	case errors.Is(err, errTimeClaimNotNumber):
		reason = errTimeClaimNotNumber.Error()
	case errors.Is(err, jwt.ErrTokenMalformed):
		reason = "malformed token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = "bad signature"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		reason = "required claim missing (exp, or iss/aud when configured)"
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		reason = "token not valid yet (nbf)"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = "token issued in the future (iat)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		reason = "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		reason = "wrong audience"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		reason = "invalid claims"
	default:
		reason = "token not verifiable"
	}
	return unauthorized("%s token: %s", kind, reason)
}

func unwrapKeyfunc(err error) string {
	for _, e := range []error{errCritHeader, errUnknownKid, errNoKid, errKeyAlg} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "key error"
}
