// Command chatd is taskchat all in one process. Today it serves the HTTP API
// (tasks); the chat pipeline (embedded NATS JetStream and the workers) joins
// it in the next issue.
package main

import "github.com/taskchat/taskchat/cmd/internal/app"

func main() { app.Main("chatd") }
