// Package console holds taskchat's web console: one page of plain HTML,
// CSS and JavaScript (no build step, nothing fetched from elsewhere) that
// signs in with a credential and talks to the API like any front end —
// REST for conversations, messages and tasks, the events route (read with
// fetch, the credential in a header) for answers as they stream. The
// files are embedded in the binary; pkg/httpapi serves them (Deps.Console).
package console

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files returns the console's files: index.html and its assets, all at
// the top level.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("console: " + err.Error()) // cannot happen: the directory is embedded
	}
	return sub
}
