// Package config reads taskchat's configuration from the environment. A
// Reader parses each variable once, collects every problem so that all of
// them are reported together at start-up, and remembers what it read, so
// that the start-up log shows every variable (secrets masked) by
// construction.
//
// Each package owns its configuration type and its Validate method
// (pgdb.Config, auth.Config, httpapi.Config, …); this package only turns
// environment variables into those types. The service commands compose the
// sections they need. config imports no HTTP edge (no Fiber), so chatctl
// does not link it; it does import pkg/bus for bus.Config, since chatctl
// publishes run requests with the services' settings.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Getenv looks a variable up; os.Getenv fits, and tests pass a map's lookup.
type Getenv func(key string) string

// Kinds of display of a variable's value in the start-up log.
type display int

const (
	plain  display = iota // shown as is
	secret                // never shown: "set (N bytes)" or ""
	urlish                // a URL with its credentials masked (MaskURL)
)

// Var is one variable a Reader read, as the start-up log shows it.
type Var struct {
	// Name is the environment variable.
	Name string
	// Shown is its value for the log: as set (or the default when unset),
	// with secrets and URL credentials masked.
	Shown string
}

// Reader parses environment variables. It records every problem (Err
// returns them joined) and every variable read (Vars). It is not safe for
// concurrent use; a command makes one at start-up.
type Reader struct {
	getenv Getenv
	errs   []error
	vars   []Var
	seen   map[string]bool
}

// NewReader returns a Reader over getenv.
func NewReader(getenv Getenv) *Reader {
	return &Reader{getenv: getenv, seen: map[string]bool{}}
}

// raw returns the trimmed value of key and records it for the log.
func (r *Reader) raw(key string, def string, d display) string {
	v := strings.TrimSpace(r.getenv(key))
	shown := v
	if shown == "" {
		shown = def
	}
	switch d {
	case secret:
		shown = maskSecret(v)
	case urlish:
		shown = MaskURL(shown)
	}
	if !r.seen[key] {
		r.seen[key] = true
		r.vars = append(r.vars, Var{Name: key, Shown: shown})
	}
	return v
}

// Fail records a problem with variable key.
func (r *Reader) Fail(key, msg string) {
	r.errs = append(r.errs, fmt.Errorf("%s %s", key, msg))
}

// Check records err (a section's Validate result) when it is not nil.
func (r *Reader) Check(err error) {
	if err != nil {
		r.errs = append(r.errs, err)
	}
}

// Err returns every recorded problem, or nil.
func (r *Reader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %w", errors.Join(r.errs...))
}

// Vars returns the variables read so far, in the order first read.
func (r *Reader) Vars() []Var { return append([]Var(nil), r.vars...) }

// LogValue renders every variable read, masked, for the start-up log.
func (r *Reader) LogValue() slog.Value {
	attrs := make([]slog.Attr, len(r.vars))
	for i, v := range r.vars {
		attrs[i] = slog.String(v.Name, v.Shown)
	}
	return slog.GroupValue(attrs...)
}

// String returns key's value, or def when it is unset or blank.
func (r *Reader) String(key, def string) string {
	if v := r.raw(key, def, plain); v != "" {
		return v
	}
	return def
}

// Secret returns key's value; the log shows only whether it is set and its
// length.
func (r *Reader) Secret(key string) string { return r.raw(key, "", secret) }

// URL returns key's value, or def; the log shows it with its credentials
// masked. It does not check the value: the section's Validate does.
func (r *Reader) URL(key, def string) string {
	if v := r.raw(key, def, urlish); v != "" {
		return v
	}
	return def
}

// Int returns key's value as an integer, or def when unset.
func (r *Reader) Int(key string, def int) int {
	v := r.raw(key, strconv.Itoa(def), plain)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.Fail(key, fmt.Sprintf("must be an integer, got %q", v))
		return def
	}
	return n
}

// Duration returns key's value as a positive duration ("30s", "1m"), or
// def when unset.
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	v := r.raw(key, def.String(), plain)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.Fail(key, fmt.Sprintf("must be a positive duration like 30s, got %q", v))
		return def
	}
	return d
}

// OptionalFloat returns key's value as a number, or nil when unset: for
// settings whose absence means "leave it to the other side".
func (r *Reader) OptionalFloat(key string) *float64 {
	v := r.raw(key, "(unset)", plain)
	if v == "" {
		return nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		r.Fail(key, fmt.Sprintf("must be a number, got %q", v))
		return nil
	}
	return &f
}

// Bool returns key's value as a boolean (true/false, 1/0), or def when unset.
func (r *Reader) Bool(key string, def bool) bool {
	v := r.raw(key, strconv.FormatBool(def), plain)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail(key, fmt.Sprintf("must be true or false, got %q", v))
		return def
	}
	return b
}

// Level returns key's value as a log level (debug, info, warn, error).
func (r *Reader) Level(key string, def slog.Level) slog.Level {
	v := r.raw(key, strings.ToLower(def.String()), plain)
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.Fail(key, fmt.Sprintf("must be debug, info, warn or error, got %q", v))
		return def
	}
	return l
}

// OneOf returns key's value, lower-cased, which must be one of allowed; def
// when unset.
func (r *Reader) OneOf(key, def string, allowed ...string) string {
	v := strings.ToLower(r.String(key, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.Fail(key, fmt.Sprintf("must be one of %s, got %q", strings.Join(allowed, ", "), v))
	return def
}

// Size returns key's value as a byte count: 65536, 64KiB, 1MiB, 2GiB (KB,
// MB, GB, k, m and g are read as binary units too; at most 1 TiB); def
// when unset.
func (r *Reader) Size(key string, def int) int {
	v := r.raw(key, strconv.Itoa(def), plain)
	if v == "" {
		return def
	}
	mult := 1
	lower := strings.ToLower(v)
	for _, s := range []struct {
		suffix string
		mult   int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}} {
		if strings.HasSuffix(lower, s.suffix) {
			lower, mult = strings.TrimSpace(strings.TrimSuffix(lower, s.suffix)), s.mult
			break
		}
	}
	n, err := strconv.Atoi(lower)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		r.Fail(key, fmt.Sprintf("must be a size like 65536 or 64KiB, got %q", v))
		return def
	}
	return n * mult
}

// List returns key's comma-separated values, each trimmed; empty entries
// are dropped.
func (r *Reader) List(key string) []string {
	var out []string
	for _, p := range strings.Split(r.raw(key, "", plain), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// MaskURL hides the credentials of a URL: the password, and the password,
// sslpassword and token-like query parameters. A value that is not a URL
// with a scheme and host (a keyword/value connection string, say) is hidden
// whole, since it may hold a password anywhere.
func MaskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(hidden: not a URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	}
	q := u.Query()
	masked := false
	for k := range q {
		switch strings.ToLower(k) {
		case "password", "sslpassword", "token", "access_token", "secret", "key":
			q.Set(k, "redacted")
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func maskSecret(s string) string {
	if s == "" {
		return ""
	}
	return "set (" + strconv.Itoa(len(s)) + " bytes)"
}
