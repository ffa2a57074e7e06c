package httpapi

import (
	"context"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// healthz answers 200 while the process runs.
func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// readyz runs every ReadyCheck concurrently, each bounded by
// Config.ReadyTimeout, and answers 200 when all pass, else 503 naming the
// failed ones (their errors go to the log only).
func (s *Server) readyz(c *fiber.Ctx) error {
	checks := s.deps.Ready
	errs := make([]error, len(checks))
	parent := c.UserContext() // read here: the checks run on other goroutines
	var wg sync.WaitGroup
	for i, rc := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(parent, s.cfg.ReadyTimeout)
			defer cancel()
			errs[i] = rc.Check(ctx)
		})
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, checks[i].Name)
			s.reqLog(c).Warn("readiness check failed", "check", checks[i].Name, "err", err)
		}
	}
	if len(failed) > 0 {
		return errUnavailable("not ready: " + strings.Join(failed, ", "))
	}
	return c.JSON(fiber.Map{"status": "ok"})
}
