package auth_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/taskchat/taskchat/pkg/auth"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     auth.Config
		wantErr string // "" = valid
	}{
		{"secret only", auth.Config{Secret: secret}, ""},
		{"Better Auth URL only", auth.Config{BetterAuthURL: "http://localhost:3000"}, ""},
		{"https with a path", auth.Config{BetterAuthURL: "https://app.example.com/auth/"}, ""},
		{"JWKS URL with issuer and audience", auth.Config{JWKSURL: "https://keys.example.com/jwks", JWKSIssuer: "i", JWKSAudience: "a"}, ""},
		{"everything", auth.Config{Secret: secret, BetterAuthURL: "http://x", RequireSessionSignature: true, ClockSkew: time.Second, UserCacheTTL: time.Minute, JWKSMinRefetch: time.Minute, JWKSTimeout: time.Second}, ""},
		{"nothing", auth.Config{}, "set BETTER_AUTH_SECRET or BETTER_AUTH_URL/JWKS_URL"},
		{"relative URL", auth.Config{BetterAuthURL: "localhost:3000"}, "BETTER_AUTH_URL"},
		{"no scheme", auth.Config{BetterAuthURL: "//localhost:3000"}, "absolute http(s) URL"},
		{"ftp JWKS URL", auth.Config{Secret: secret, JWKSURL: "ftp://x/jwks", JWKSIssuer: "i", JWKSAudience: "a"}, "JWKS_URL"},
		{"JWKS URL without issuer/audience", auth.Config{JWKSURL: "https://keys.example.com/jwks"}, "BETTER_AUTH_JWT_ISSUER"},
		{"required signature without a secret", auth.Config{BetterAuthURL: "http://x", RequireSessionSignature: true}, "AUTH_SESSION_REQUIRE_SIGNATURE"},
		{"negative skew", auth.Config{Secret: secret, ClockSkew: -time.Second}, "clock skew must not be negative"},
		{"negative cache TTL", auth.Config{Secret: secret, UserCacheTTL: -1}, "user cache TTL must not be negative"},
		{"cache TTL over a minute", auth.Config{Secret: secret, UserCacheTTL: 61 * time.Second}, "over 1m0s"},
		{"negative refetch", auth.Config{Secret: secret, JWKSMinRefetch: -1}, "JWKS min refetch"},
		{"negative timeout", auth.Config{Secret: secret, JWKSTimeout: -1}, "JWKS timeout"},
		{"secret of exactly 32 bytes", auth.Config{Secret: secret[:auth.MinSecretLength]}, ""},
		{"secret of 31 bytes", auth.Config{Secret: secret[:auth.MinSecretLength-1]}, "BETTER_AUTH_SECRET is 31 bytes, it must be at least 32"},
		{"one-byte secret, with a JWKS", auth.Config{Secret: "k", BetterAuthURL: "http://x"}, "can be brute-forced offline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.wantErr != "" && len(tc.cfg.Secret) > 1 && strings.Contains(err.Error(), tc.cfg.Secret) {
				t.Errorf("error may echo the secret: %v", err)
			}
		})
	}
}

func TestNewVerifierChecks(t *testing.T) {
	if _, err := auth.NewVerifier(auth.Config{}, fakeStore{}); err == nil {
		t.Error("NewVerifier accepted an empty config")
	}
	if _, err := auth.NewVerifier(auth.Config{Secret: secret}, nil); err == nil {
		t.Error("NewVerifier accepted a nil store")
	}
}

func TestSignHS256(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		in   auth.TokenClaims
		want map[string]any
	}{
		{"defaults", auth.TokenClaims{UserID: "u1", Email: "e@x", Name: "N", Now: now},
			map[string]any{"sub": "u1", "email": "e@x", "name": "N", "iat": float64(now.Unix()), "exp": float64(now.Add(auth.DefaultTokenTTL).Unix())}},
		{"issuer, audience and TTL", auth.TokenClaims{UserID: "u1", Issuer: "phaseiii-app", Audience: "taskchat", TTL: time.Hour, Now: now},
			map[string]any{"sub": "u1", "email": "", "name": "", "iss": "phaseiii-app", "aud": "taskchat", "iat": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix())}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := auth.SignHS256(secret, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			claims := jwt.MapClaims{}
			parsed, err := jwt.NewParser(jwt.WithoutClaimsValidation()).ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(secret), nil })
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Header["alg"] != "HS256" {
				t.Errorf("alg = %v", parsed.Header["alg"])
			}
			if len(claims) != len(tc.want) {
				t.Errorf("claims = %v, want %v", claims, tc.want)
			}
			for k, v := range tc.want {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
		})
	}

	for _, bad := range []struct {
		name   string
		secret string
		in     auth.TokenClaims
	}{
		{"empty secret", "", auth.TokenClaims{UserID: "u"}},
		{"secret of 31 bytes", secret[:auth.MinSecretLength-1], auth.TokenClaims{UserID: "u"}},
		{"empty user", secret, auth.TokenClaims{}},
		{"negative TTL", secret, auth.TokenClaims{UserID: "u", TTL: -time.Second}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := auth.SignHS256(bad.secret, bad.in)
			if err == nil {
				t.Fatal("SignHS256 succeeded, want an error")
			}
			if bad.secret != "" && strings.Contains(err.Error(), bad.secret) {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
	t.Run("secret of exactly 32 bytes", func(t *testing.T) {
		if _, err := auth.SignHS256(secret[:auth.MinSecretLength], auth.TokenClaims{UserID: "u"}); err != nil {
			t.Fatalf("SignHS256: %v", err)
		}
	})
}

func TestSignSessionToken(t *testing.T) {
	// Better Auth: token + "." + btoa(HMAC-SHA256(secret, token)), 44 chars
	// of standard base64 with padding.
	const key = "authtest-known-answer-secret-0123456789"
	got := auth.SignSessionToken(key, "abc")
	token, sig, ok := strings.Cut(got, ".")
	if !ok || token != "abc" {
		t.Fatalf("SignSessionToken = %q", got)
	}
	if len(sig) != 44 || !strings.HasSuffix(sig, "=") {
		t.Errorf("signature %q: want 44 chars of padded base64", sig)
	}
	if raw, err := base64.StdEncoding.DecodeString(sig); err != nil || len(raw) != 32 {
		t.Errorf("signature %q does not decode to 32 bytes: %v", sig, err)
	}
	// Known answer, from openssl:
	//   printf abc | openssl dgst -sha256 -hmac "$key" -binary | base64
	const want = "abc.+KyFrZn+5WRUs1qE1X+b31+P4/MYKYaLBSH51+s/ndk="
	if got != want {
		t.Errorf("SignSessionToken = %q, want %q", got, want)
	}
}
