package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"
)

func TestParseJWKS(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec := func(curve elliptic.Curve) (x, y string) {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := k.PublicKey.Bytes()
		n := (len(raw) - 1) / 2
		return b64(raw[1 : 1+n]), b64(raw[1+n:])
	}
	p256x, p256y := ec(elliptic.P256())
	p521x, p521y := ec(elliptic.P521())
	rsaKey := func(bits int) (n, e string) {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	}
	n2048, e := rsaKey(2048)
	n1024, _ := rsaKey(1024)

	tests := []struct {
		name    string
		key     map[string]string
		wantAlg string // "" = skipped
	}{
		{"Ed25519", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub), "alg": "EdDSA"}, "EdDSA"},
		{"Ed25519 without alg", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub)}, "EdDSA"},
		{"Ed25519 for signatures", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub), "use": "sig"}, "EdDSA"},
		{"Ed25519 for encryption", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub), "use": "enc"}, ""},
		{"Ed25519 labelled ES256", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub), "alg": "ES256"}, ""},
		{"Ed448", map[string]string{"kty": "OKP", "crv": "Ed448", "x": b64(edPub), "alg": "EdDSA"}, ""},
		{"Ed25519 short x", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub[:31])}, ""},
		{"Ed25519 padded x", map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(edPub) + "="}, ""},
		{"P-256", map[string]string{"kty": "EC", "crv": "P-256", "x": p256x, "y": p256y, "alg": "ES256"}, "ES256"},
		{"P-521", map[string]string{"kty": "EC", "crv": "P-521", "x": p521x, "y": p521y, "alg": "ES512"}, "ES512"},
		{"P-256 labelled ES512", map[string]string{"kty": "EC", "crv": "P-256", "x": p256x, "y": p256y, "alg": "ES512"}, ""},
		{"P-521 coordinates on P-256", map[string]string{"kty": "EC", "crv": "P-256", "x": p521x, "y": p521y, "alg": "ES256"}, ""},
		{"point not on the curve", map[string]string{"kty": "EC", "crv": "P-256", "x": p256x, "y": p256x, "alg": "ES256"}, ""},
		{"P-384 (unsupported)", map[string]string{"kty": "EC", "crv": "P-384", "x": p256x, "y": p256y}, ""},
		{"RSA RS256", map[string]string{"kty": "RSA", "n": n2048, "e": e, "alg": "RS256"}, "RS256"},
		{"RSA PS256", map[string]string{"kty": "RSA", "n": n2048, "e": e, "alg": "PS256"}, "PS256"},
		{"RSA without alg", map[string]string{"kty": "RSA", "n": n2048, "e": e}, ""},
		{"RSA labelled HS256", map[string]string{"kty": "RSA", "n": n2048, "e": e, "alg": "HS256"}, ""},
		{"RSA 1024 bits", map[string]string{"kty": "RSA", "n": n1024, "e": e, "alg": "RS256"}, ""},
		{"RSA even exponent", map[string]string{"kty": "RSA", "n": n2048, "e": b64([]byte{2}), "alg": "RS256"}, ""},
		{"symmetric key", map[string]string{"kty": "oct", "k": b64([]byte("secret")), "alg": "HS256"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.key["kid"] = "k1"
			body, _ := json.Marshal(map[string]any{"keys": []any{tc.key}})
			keys, err := parseJWKS(body)
			if err != nil {
				t.Fatalf("parseJWKS: %v", err)
			}
			k, ok := keys["k1"]
			switch {
			case tc.wantAlg == "" && ok:
				t.Fatalf("key accepted for %s, want it skipped", k.alg)
			case tc.wantAlg != "" && !ok:
				t.Fatalf("key skipped, want %s", tc.wantAlg)
			case ok && k.alg != tc.wantAlg:
				t.Fatalf("alg = %s, want %s", k.alg, tc.wantAlg)
			}
		})
	}

	t.Run("without kid, duplicate kid", func(t *testing.T) {
		body := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":%q},
			{"kty":"OKP","crv":"Ed25519","x":%q,"kid":"a","alg":"EdDSA"},
			{"kty":"EC","crv":"P-256","x":%q,"y":%q,"kid":"a","alg":"ES256"}]}`, b64(edPub), b64(edPub), p256x, p256y)
		keys, err := parseJWKS([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys["a"].alg != "EdDSA" {
			t.Errorf("keys = %v, want only the first key with kid a", keys)
		}
	})
	for _, bad := range []string{``, `[]`, `{}`, `{"keys":{}}`, `not json`} {
		t.Run("document "+bad, func(t *testing.T) {
			if _, err := parseJWKS([]byte(bad)); err == nil {
				t.Error("parseJWKS accepted it")
			}
		})
	}
}

func TestUserCacheBounded(t *testing.T) {
	now := time.Unix(0, 0)
	c := newUserCache(time.Minute, func() time.Time { return now })
	for i := range maxCachedUsers {
		c.add(fmt.Sprint(i))
	}
	if !c.fresh("0") {
		t.Fatal("entry missing before the cap")
	}
	now = now.Add(30 * time.Second)
	c.add("over")
	if n := len(c.expires); n > maxCachedUsers {
		t.Fatalf("cache holds %d entries, over the cap %d", n, maxCachedUsers)
	}
	if !c.fresh("over") {
		t.Error("newest entry missing")
	}
	now = now.Add(time.Minute)
	if c.fresh("over") {
		t.Error("entry outlived its TTL")
	}
}

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", "http://ba.test:3000/api/auth/jwks", "http://ba.test:3000/other", true},
		{"default http port", "http://ba.test/jwks", "http://ba.test:80/jwks", true},
		{"default https port", "https://ba.test:443/jwks", "https://ba.test/jwks", true},
		{"host case", "https://BA.test/jwks", "https://ba.test/keys", true},
		{"other port", "http://ba.test:3000/jwks", "http://ba.test:3001/jwks", false},
		{"other scheme", "http://ba.test/jwks", "https://ba.test/jwks", false},
		{"other scheme, same explicit port", "http://ba.test:8443/jwks", "https://ba.test:8443/jwks", false},
		{"other host", "https://ba.test/jwks", "https://evil.test/jwks", false},
		{"subdomain", "https://ba.test/jwks", "https://keys.ba.test/jwks", false},
		{"user info does not make it the same", "https://ba.test/jwks", "https://ba.test@evil.test/jwks", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, errA := url.Parse(tc.a)
			b, errB := url.Parse(tc.b)
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			if got := sameOrigin(a, b); got != tc.want {
				t.Fatalf("sameOrigin(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
