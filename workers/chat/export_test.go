package chatworker

import (
	"context"
	"encoding/json"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/chat"
)

// RunTool runs call as the call at (round, index) of run through w's tool
// runner, the path every tool call of w's runs takes: tests race attempts
// of one run on it.
func RunTool(ctx context.Context, w *Worker, run chat.Run, round, index int, call agent.Call) (json.RawMessage, error) {
	return (&toolRunner{w: w, run: run}).RunTool(ctx, round, index, "", call)
}
