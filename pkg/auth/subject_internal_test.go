package auth

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckSubject covers what no signed token can carry to checkSubject
// today (encoding/json turns invalid UTF-8 into U+FFFD), so that the check
// holds whatever decodes claims in the future.
func TestCheckSubject(t *testing.T) {
	tests := []struct {
		name string
		sub  string
		ok   bool
	}{
		{"Better Auth id", "AbcXyz0123456789abcdefghijklmnop", true},
		{"opaque text", "odd user/ä+1", true},
		{"replacement character", "a\uFFFDb", true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", maxUserIDLength+1), false},
		{"invalid UTF-8", "a\xffb", false},
		{"truncated UTF-8 sequence", "a\xc3", false},
		{"NUL", "a\x00b", false},
		{"escape", "a\x1bb", false},
		{"DEL", "a\x7fb", false},
		{"C1 control", "a\u009bb", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkSubject(tc.sub)
			switch {
			case tc.ok && (err != nil || got != tc.sub):
				t.Fatalf("checkSubject = %q, %v; want it accepted", got, err)
			case !tc.ok && !errors.Is(err, ErrUnauthorized):
				t.Fatalf("checkSubject = %q, %v; want ErrUnauthorized", got, err)
			case !tc.ok && tc.sub != "" && strings.Contains(err.Error(), tc.sub):
				t.Fatalf("the reason quotes the sub: %v", err)
			}
		})
	}
}
