// Package schema embeds taskchat's declarative database schema: the Atlas HCL
// files that are the single source of truth for every table, Better Auth's
// included. The Atlas CLI reads the same files through atlas.hcl.
package schema

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed *.pg.hcl
var files embed.FS

// File is one schema file: its name (for error messages) and its HCL.
type File struct {
	Name string
	Data []byte
}

// Files returns the embedded schema files, sorted by name.
func Files() ([]File, error) {
	names, err := fs.Glob(files, "*.pg.hcl")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]File, 0, len(names))
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: "schema/" + n, Data: b})
	}
	return out, nil
}
