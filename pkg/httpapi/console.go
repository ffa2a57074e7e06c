package httpapi

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// ConsolePrefix is the path under which the console's assets are served;
// its page is "/".
const ConsolePrefix = "/console/"

// ConsoleCSP is the Content-Security-Policy of every console answer: the
// page runs only its own script and style files (no inline code, nothing
// from another origin), talks only to this origin, and cannot be framed.
const ConsoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleTypes are the content types of the console's files, by
// extension: fixed here rather than taken from the machine's mime tables,
// which differ (application/javascript, or nothing at all).
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// consoleFile is one file of the console, read once at start.
type consoleFile struct {
	body        []byte
	contentType string
}

// consoleRoutes serves Deps.Console: index.html at "/" and every other
// top-level file under ConsolePrefix. The files are read once here, so a
// request never touches the file system; names outside the set are 404.
func (s *Server) consoleRoutes() {
	files := map[string]consoleFile{}
	entries, err := fs.ReadDir(s.deps.Console, ".")
	if err != nil {
		panic(fmt.Sprintf("httpapi: read the console's files: %v", err))
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(s.deps.Console, e.Name())
		if err != nil {
			panic(fmt.Sprintf("httpapi: read the console's %s: %v", e.Name(), err))
		}
		ct, ok := consoleTypes[path.Ext(e.Name())]
		if !ok {
			panic(fmt.Sprintf("httpapi: the console's %s has no known content type", e.Name()))
		}
		files[e.Name()] = consoleFile{body: b, contentType: ct}
	}
	index, ok := files["index.html"]
	if !ok {
		panic("httpapi: the console has no index.html")
	}
	s.app.Get("/", func(c *fiber.Ctx) error { return serveConsoleFile(c, index) })
	s.app.Get(ConsolePrefix+":name", func(c *fiber.Ctx) error {
		f, ok := files[c.Params("name")]
		if !ok || strings.HasSuffix(c.Params("name"), ".html") {
			return errNotFound()
		}
		return serveConsoleFile(c, f)
	})
}

// serveConsoleFile answers f with the console's security headers. The
// browser revalidates on every load (no-cache), so a new binary's page
// and assets are never mixed with old ones.
func serveConsoleFile(c *fiber.Ctx, f consoleFile) error {
	c.Set(fiber.HeaderContentType, f.contentType)
	c.Set(fiber.HeaderContentSecurityPolicy, ConsoleCSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(f.body)
}

// me answers GET /api/me with the caller's user id: a front end holding an
// opaque credential (a Better Auth session token) learns the {user_id} of
// its paths from it.
func (s *Server) me(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"user_id": user})
}
