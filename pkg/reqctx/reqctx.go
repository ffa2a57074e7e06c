// Package reqctx carries the request id and the user id of a piece of work
// through a context.Context, so that every log line and every message of
// one chat turn can be joined up: the HTTP edge sets both, the bus copies
// them into message headers, and the workers restore them from there.
//
// The user id here labels logs and messages; it is not an authorization
// decision. Handlers take the caller from the HTTP edge's authentication,
// and stores take the user id as an explicit argument.
package reqctx

import (
	"context"
	"log/slog"
)

// key is private, so only this package's functions set the values.
type key int

const (
	keyRequestID key = iota
	keyUserID
)

// Names of the log attributes Logger adds.
const (
	AttrRequestID = "request_id"
	AttrUserID    = "user_id"
)

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyRequestID, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

// WithUserID returns ctx carrying the user id id.
func WithUserID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyUserID, id)
}

// UserID returns the user id ctx carries, or "".
func UserID(ctx context.Context) string {
	id, _ := ctx.Value(keyUserID).(string)
	return id
}

// Logger returns log with the request id and user id that ctx carries
// (each only when set).
func Logger(ctx context.Context, log *slog.Logger) *slog.Logger {
	var args []any
	if id := RequestID(ctx); id != "" {
		args = append(args, slog.String(AttrRequestID, id))
	}
	if id := UserID(ctx); id != "" {
		args = append(args, slog.String(AttrUserID, id))
	}
	if len(args) == 0 {
		return log
	}
	return log.With(args...)
}
