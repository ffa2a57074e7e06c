package reqctx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// keyTraceparent is kept apart from the key constants in reqctx.go so the
// two files can change independently.
const keyTraceparent key = 100

// AttrTraceID is the log attribute a trace id goes under.
const AttrTraceID = "trace_id"

// WithTraceparent returns ctx carrying the W3C traceparent tp
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"). A value that
// is not a valid traceparent is ignored: ctx is returned unchanged, so a
// malformed header from outside never travels further.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if !ValidTraceparent(tp) {
		return ctx
	}
	return context.WithValue(ctx, keyTraceparent, tp)
}

// Traceparent returns the W3C traceparent ctx carries, or "".
func Traceparent(ctx context.Context) string {
	tp, _ := ctx.Value(keyTraceparent).(string)
	return tp
}

// TraceID returns the trace id part of tp, or "" when tp is not valid.
func TraceID(tp string) string {
	if !ValidTraceparent(tp) {
		return ""
	}
	return tp[3:35]
}

// NewTraceparent returns a fresh version-00 traceparent with random trace
// and parent ids and the sampled flag unset: taskchat starts a trace where
// none came in, so that every log line of one chat turn shares a trace id.
func NewTraceparent() string {
	var b [24]byte
	// crypto/rand.Read never returns an error (Go 1.24+).
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-00"
}

// ValidTraceparent reports whether tp is a version-00 W3C traceparent
// with lowercase hex fields and non-zero trace and parent ids.
func ValidTraceparent(tp string) bool {
	if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	return lowerHex(tp[3:35]) && lowerHex(tp[36:52]) && lowerHex(tp[53:]) &&
		!allZero(tp[3:35]) && !allZero(tp[36:52])
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
