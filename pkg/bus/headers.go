package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/taskchat/taskchat/pkg/reqctx"
)

// Header names every published message carries. NATS header names are
// case-sensitive: these exact spellings are the contract.
const (
	HeaderMsgID       = jetstream.MsgIDHeader // "Nats-Msg-Id"
	HeaderTraceparent = "traceparent"
	HeaderRequestID   = "X-Request-Id"
	HeaderUserID      = "X-User-Id"
)

// maxHeaderValue bounds the ids copied into headers; longer ones are
// dropped rather than cut, since a cut id would join the wrong logs.
const maxHeaderValue = 256

// newMsg builds a message for subject with the headers taken from ctx:
// the message id (a random one when msgID is empty), the traceparent (a
// new one when ctx has none), the request id and the user id.
func newMsg(ctx context.Context, subject, msgID string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID == "" {
		msgID = nuid.Next()
	}
	m.Header.Set(HeaderMsgID, msgID)
	tp := reqctx.Traceparent(ctx)
	if tp == "" {
		tp = reqctx.NewTraceparent()
	}
	m.Header.Set(HeaderTraceparent, tp)
	if id := reqctx.RequestID(ctx); headerSafe(id) {
		m.Header.Set(HeaderRequestID, id)
	}
	if id := reqctx.UserID(ctx); headerSafe(id) {
		m.Header.Set(HeaderUserID, id)
	}
	return m
}

// headerContext returns base carrying the request id, user id and
// traceparent of h; a message without a valid traceparent gets a new one,
// so everything done for it still shares a trace id.
func headerContext(base context.Context, h nats.Header) context.Context {
	ctx := base
	if id := h.Get(HeaderRequestID); id != "" {
		ctx = reqctx.WithRequestID(ctx, id)
	}
	if id := h.Get(HeaderUserID); id != "" {
		ctx = reqctx.WithUserID(ctx, id)
	}
	tp := h.Get(HeaderTraceparent)
	if !reqctx.ValidTraceparent(tp) {
		tp = reqctx.NewTraceparent()
	}
	return reqctx.WithTraceparent(ctx, tp)
}

// headerSafe reports whether v can travel as a header value: non-empty,
// bounded, printable ASCII (a CR or LF would break the protocol line).
func headerSafe(v string) bool {
	if v == "" || len(v) > maxHeaderValue {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// idSafe reports whether a run or message id may be used as a Nats-Msg-Id
// or a cancel body.
func idSafe(id string) bool { return headerSafe(id) }

// withTimeout bounds ctx by d unless it already has a deadline.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
