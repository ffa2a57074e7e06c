package reqctx_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/reqctx"
)

func TestValuesRoundTrip(t *testing.T) {
	ctx := context.Background()
	if reqctx.RequestID(ctx) != "" || reqctx.UserID(ctx) != "" {
		t.Fatal("an empty context carries ids")
	}
	ctx = reqctx.WithUserID(reqctx.WithRequestID(ctx, "req-1"), "user-1")
	if got := reqctx.RequestID(ctx); got != "req-1" {
		t.Fatalf("RequestID = %q", got)
	}
	if got := reqctx.UserID(ctx); got != "user-1" {
		t.Fatalf("UserID = %q", got)
	}
}

func TestLoggerAddsWhatIsSet(t *testing.T) {
	tests := []struct {
		name      string
		ctx       context.Context
		want, not []string
	}{
		{"nothing", context.Background(), nil, []string{"request_id", "user_id"}},
		{"request only", reqctx.WithRequestID(context.Background(), "r1"), []string{"request_id=r1"}, []string{"user_id"}},
		{"both", reqctx.WithUserID(reqctx.WithRequestID(context.Background(), "r2"), "u2"), []string{"request_id=r2", "user_id=u2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			reqctx.Logger(tt.ctx, slog.New(slog.NewTextHandler(&buf, nil))).Info("hello")
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log %q lacks %q", buf.String(), w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(buf.String(), n) {
					t.Errorf("log %q has %q", buf.String(), n)
				}
			}
		})
	}
}
