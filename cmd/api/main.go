// Command api serves taskchat's HTTP API alone; run several replicas behind
// a load balancer and scale the workers separately.
package main

import "github.com/taskchat/taskchat/cmd/internal/app"

func main() { app.Main("api") }
