package reqctx_test

import (
	"context"
	"testing"

	"github.com/taskchat/taskchat/pkg/reqctx"
)

func TestTraceparent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name string
		tp   string
		ok   bool
	}{
		{"w3c example", valid, true},
		{"generated", reqctx.NewTraceparent(), true},
		{"empty", "", false},
		{"upper case hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"other version", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"too long", valid + "-x", false},
		{"newline", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reqctx.ValidTraceparent(tt.tp); got != tt.ok {
				t.Fatalf("ValidTraceparent(%q) = %v", tt.tp, got)
			}
			ctx := reqctx.WithTraceparent(context.Background(), tt.tp)
			want := ""
			if tt.ok {
				want = tt.tp
			}
			if got := reqctx.Traceparent(ctx); got != want {
				t.Fatalf("Traceparent after WithTraceparent(%q) = %q, want %q", tt.tp, got, want)
			}
		})
	}
	if got := reqctx.TraceID(valid); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceID = %q", got)
	}
	if a, b := reqctx.NewTraceparent(), reqctx.NewTraceparent(); a == b {
		t.Errorf("two new traceparents are equal: %s", a)
	}
}
