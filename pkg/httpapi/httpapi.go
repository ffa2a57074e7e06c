// Package httpapi is taskchat's HTTP edge: the Fiber application with its
// middleware (panic recovery, request ids, access log, CORS, authentication,
// the path user check), the application/problem+json error mapping, and the
// routes of the API described in docs/api.md.
//
// Every route under /api needs a credential. Authentication is a middleware on
// the /api prefix, so a route registered anywhere under /api is covered
// without opting in; the caller's id reaches handlers only through UserID,
// which only that middleware can set.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/taskchat/taskchat/pkg/todo"
)

// Defaults of Config.
const (
	DefaultBodyLimit    = 64 << 10
	DefaultMaxConns     = 16384
	DefaultReadTimeout  = 30 * time.Second
	DefaultIdleTimeout  = 120 * time.Second
	DefaultReadyTimeout = 2 * time.Second
)

// Bounds Validate enforces.
const (
	// MinBodyLimit and MaxBodyLimit bound Config.BodyLimit: the decoder
	// holds a whole body in memory, so the limit must stay small, and
	// below 1 KiB ordinary requests no longer fit.
	MinBodyLimit = 1 << 10
	MaxBodyLimit = 4 << 20
)

// maxConnsCeiling bounds Config.MaxConns: each connection costs a goroutine
// and fasthttp's buffers, so a few zeros too many must not pass.
const maxConnsCeiling = 1 << 20

// headerBufferSize is fasthttp's read buffer, which bounds the request line
// plus headers: JWTs and Better Auth cookies are long, 4 KiB is not enough.
const headerBufferSize = 16 << 10

// transportBodyLimit is fasthttp's own body limit. With StreamRequestBody
// fasthttp does not enforce it (a larger body is handed over as a stream);
// it only caps how much of a body fasthttp reads ahead before calling the
// handler, which is at most 8 KiB anyway. Config.BodyLimit is enforced by
// the decoder, which answers a complete 413 problem.
const transportBodyLimit = 8 << 20

// methodUnknown stands in for any request method Fiber does not know
// (FOO, PROPFIND): Fiber answers those itself with a text/plain 400 before
// any middleware runs, so the server renames them to this method, which no
// route uses, and they go through authentication and routing like any
// other request. It is not a method a client uses; one that sends it is
// treated the same way.
const methodUnknown = "X-TASKCHAT-UNKNOWN-METHOD"

// Config tunes the HTTP server. The zero value of each field means its
// default.
type Config struct {
	// BodyLimit is the largest request body a route accepts, in bytes
	// (HTTP_BODY_LIMIT, default 64 KiB, 1 KiB to 4 MiB); larger bodies get
	// 413.
	BodyLimit int
	// MaxConns bounds the open connections, idle keep-alive and event
	// streams included (HTTP_MAX_CONNS, default 16384, at most 1048576);
	// a connection beyond it gets fasthttp's plain-text 503 and is closed
	// at once, before its request is read.
	MaxConns int
	// CORSOrigins lists the origins browsers may call the API from
	// (CORS_ORIGINS), like "https://app.example.com". Listed origins may send
	// credentials; "*" allows any origin, and then credentials from none. The
	// session cookie is accepted only with a listed origin ("*" does not count).
	CORSOrigins []string
	// ReadTimeout bounds reading one request (default 30s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response; 0 (the default) means none,
	// which event streams need.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (default 120s).
	IdleTimeout time.Duration
	// ReadyTimeout bounds each ReadyCheck of /readyz (default 2s).
	ReadyTimeout time.Duration
	// TrustedProxies lists proxy addresses or CIDRs (HTTP_TRUSTED_PROXIES)
	// whose X-Forwarded-For header gives the client address in logs; empty
	// trusts none.
	TrustedProxies []string
}

func (c Config) withDefaults() Config {
	if c.BodyLimit <= 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.WriteTimeout < 0 {
		c.WriteTimeout = 0
	}
	return c
}

// Validate reports every problem of the configuration at once (joined with
// errors.Join), each naming the environment variable that sets the field.
// Zero values are valid: they mean the defaults. New refuses a
// configuration that does not validate.
func (c Config) Validate() error {
	var errs []error
	if c.BodyLimit != 0 && (c.BodyLimit < MinBodyLimit || c.BodyLimit > MaxBodyLimit) {
		errs = append(errs, fmt.Errorf("HTTP_BODY_LIMIT must be between 1KiB and 4MiB (0 means %dKiB), not %d bytes", DefaultBodyLimit>>10, c.BodyLimit))
	}
	if c.MaxConns < 0 || c.MaxConns > maxConnsCeiling {
		errs = append(errs, fmt.Errorf("HTTP_MAX_CONNS must be between 1 and %d (0 means %d), not %d", maxConnsCeiling, DefaultMaxConns, c.MaxConns))
	}
	for _, o := range c.CORSOrigins {
		if _, err := normalizeOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.TrustedProxies {
		if !validProxy(p) {
			errs = append(errs, fmt.Errorf("HTTP_TRUSTED_PROXIES %q is not an IP address or CIDR", p))
		}
	}
	// These have no environment variable: a negative one is a caller's bug.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ReadTimeout", c.ReadTimeout},
		{"WriteTimeout", c.WriteTimeout},
		{"IdleTimeout", c.IdleTimeout},
		{"ReadyTimeout", c.ReadyTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("httpapi.Config.%s must not be negative, not %v", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// validProxy reports whether p is what Fiber's trusted-proxy check
// understands: an IP address or a CIDR, without surrounding space.
func validProxy(p string) bool {
	if _, err := netip.ParsePrefix(p); err == nil {
		return true
	}
	a, err := netip.ParseAddr(p)
	return err == nil && a.Zone() == "" // Fiber compares the client IP as text, which has no zone
}

// normalizeOrigin turns a configured origin into the form browsers send:
// lower case, no trailing slash. It refuses anything but "*" and
// scheme://host[:port] (http or https): a path, a query, a fragment or
// userinfo would never match the Origin header a browser sends, so such an
// entry is a mistake, even when empty ("https://a.example#").
func normalizeOrigin(o string) (string, error) {
	o = strings.TrimSpace(o)
	if o == "*" {
		return o, nil
	}
	u, err := url.Parse(strings.TrimSuffix(o, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		u.Opaque != "" || u.Path != "" || u.RawQuery != "" || u.ForceQuery || strings.Contains(o, "#") || u.User != nil {
		return "", fmt.Errorf("CORS_ORIGINS %q is not an origin like https://app.example.com", o)
	}
	// Fiber's CORS would read "*" in a host as a wildcard (credentials
	// included) while the cookie check reads it literally: refuse it.
	if strings.Contains(u.Host, "*") {
		return "", fmt.Errorf("CORS_ORIGINS %q: wildcard hosts are not supported; list each origin", o)
	}
	// Browsers never send a scheme's default port in Origin.
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		return "", fmt.Errorf("CORS_ORIGINS %q: leave out the default port %s, browsers never send it", o, p)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// Authenticator verifies credentials; *auth.Verifier implements it. Its
// methods are safe for concurrent use. A rejected credential is an error
// wrapping auth.ErrUnauthorized (answered 401); any other error means the
// credential could not be checked, e.g. the database is down (answered 503).
type Authenticator interface {
	// Verify checks a bearer credential (an HS256 JWT, a JWKS-signed JWT or
	// a Better Auth session token) and returns the caller's user id.
	Verify(ctx context.Context, credential string) (userID string, err error)
	// VerifySessionCookie checks the raw, still URL-encoded value of the
	// Better Auth session cookie and returns the caller's user id.
	VerifySessionCookie(ctx context.Context, cookieValue string) (userID string, err error)
}

// TaskStore is what the tasks routes need of *todo.Store. Its methods are
// safe for concurrent use and act for userID only: a missing task and
// another user's task are both todo.ErrNotFound. Invalid input is a
// *validate.Error; any other error is unexpected (answered 500).
type TaskStore interface {
	// Create stores a new task of userID; todo.ErrUserNotFound when the user
	// row is gone.
	Create(ctx context.Context, userID string, in todo.NewTask) (todo.Task, error)
	// Get returns userID's task id, or todo.ErrNotFound.
	Get(ctx context.Context, userID string, id int64) (todo.Task, error)
	// List returns one page of userID's tasks; bad parameters, limit or
	// cursor are a *validate.Error.
	List(ctx context.Context, userID string, p todo.ListParams) (todo.Page, error)
	// Update changes userID's task id, or returns todo.ErrNotFound.
	Update(ctx context.Context, userID string, id int64, p todo.Patch) (todo.Task, error)
	// Delete removes userID's task id, or returns todo.ErrNotFound.
	Delete(ctx context.Context, userID string, id int64) error
	// ToggleComplete flips userID's task id's completed flag, or returns
	// todo.ErrNotFound.
	ToggleComplete(ctx context.Context, userID string, id int64) (todo.Task, error)
}

// ReadyCheck is one dependency /readyz asks about. Check returns nil when the
// dependency answers; it is called with a context bounded by
// Config.ReadyTimeout.
type ReadyCheck struct {
	// Name identifies the dependency in the 503 answer and in logs.
	Name string
	// Check reports whether the dependency answers.
	Check func(ctx context.Context) error
}

// Deps are the services the routes call.
type Deps struct {
	// Auth verifies credentials; required.
	Auth Authenticator
	// Tasks stores tasks; required.
	Tasks TaskStore
	// Log receives the access log and errors; nil discards them.
	Log *slog.Logger
	// Ready are the checks of /readyz.
	Ready []ReadyCheck
	// Chat serves the chat routes; nil serves none.
	Chat *Chat
	// Console, when set, holds the web console's files: index.html, served
	// at "/", and its assets, served under ConsolePrefix. nil serves none.
	Console fs.FS
}

// Server is the HTTP API: a Fiber app with taskchat's middleware and routes.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	app      *fiber.App
	fiberCfg fiber.Config
	origins  map[string]bool // listed origins, normalized; never "*"
	chatCfg  ChatConfig

	mu            sync.RWMutex
	browserRoutes []string // exact paths given to BrowserGet
}

// New builds the server and registers its middleware and routes. It panics
// when cfg does not Validate or a required dependency is missing: both are
// programming errors caught at start-up.
func New(cfg Config, deps Deps) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if deps.Auth == nil || deps.Tasks == nil {
		panic("httpapi: Deps.Auth and Deps.Tasks are required")
	}
	if c := deps.Chat; c != nil && (c.Store == nil || c.Bus == nil || c.Waiter == nil || c.Events == nil) {
		panic("httpapi: Deps.Chat needs Store, Bus, Waiter and Events")
	}
	cfg = cfg.withDefaults()
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: log, origins: map[string]bool{}}
	if deps.Chat != nil {
		s.chatCfg = deps.Chat.Config.withDefaults()
	}
	for _, o := range cfg.CORSOrigins {
		if n, _ := normalizeOrigin(o); n != "*" {
			s.origins[n] = true
		}
	}
	s.fiberCfg = fiber.Config{
		// Streaming hands a request to the middleware once its headers
		// and the first min(Content-Length, 8 KiB) body bytes are in (a
		// client that stops short waits for ReadTimeout), so that
		// authentication and the path user check run before the body is
		// read, and the decoder reads no more than BodyLimit+1 bytes.
		// Without it fasthttp reads every body whole, up to its own limit,
		// for any client.
		StreamRequestBody: true,
		BodyLimit:         transportBodyLimit,
		// fasthttp would otherwise read a whole multipart/form-data body
		// (to memory and temporary files) before the handler runs; no route
		// takes one.
		DisablePreParseMultipartForm: true,
		Concurrency:                  cfg.MaxConns,
		RequestMethods:               append(slices.Clone(fiber.DefaultMethods), methodUnknown),
		ReadBufferSize:               headerBufferSize,
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		CaseSensitive:                true,
		ErrorHandler:                 s.handleError,
		DisableStartupMessage:        true,
	}
	if len(cfg.TrustedProxies) > 0 {
		s.fiberCfg.EnableTrustedProxyCheck = true
		s.fiberCfg.TrustedProxies = cfg.TrustedProxies
		s.fiberCfg.ProxyHeader = fiber.HeaderXForwardedFor
	}
	s.app = fiber.New(s.fiberCfg)
	s.wrapTransport(s.app.Server())
	s.routes()
	return s
}

// wrapTransport adjusts what fasthttp does before Fiber sees a request.
func (s *Server) wrapTransport(srv *fasthttp.Server) {
	handle, fail := srv.Handler, srv.ErrorHandler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		if m := ctx.Method(); !knownMethods[string(m)] {
			ctx.SetUserValue(keyMethod, logSafeMethod(m))
			ctx.Request.Header.SetMethod(methodUnknown)
		}
		handle(ctx)
	}
	// fasthttp calls ErrorHandler for a request it could not read (headers
	// too large, a malformed request line or body) and closes the
	// connection after the answer, usually with part of the request still
	// unread: linger so that the client reads the answer, not a reset.
	srv.ErrorHandler = func(ctx *fasthttp.RequestCtx, err error) {
		lingerOnClose(ctx.Conn())
		fail(ctx, err)
	}
}

// knownMethods are the methods Fiber routes; others become methodUnknown.
var knownMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range fiber.DefaultMethods {
		m[k] = true
	}
	return m
}()

// logSafeMethod copies a method Fiber does not know for the access log,
// cut short: it is whatever the client sent before the first space.
func logSafeMethod(m []byte) string {
	const maxLen = 32
	if len(m) > maxLen {
		return string(m[:maxLen]) + "…"
	}
	return string(m)
}

// App returns the Fiber app, for tests (App().Test) and for registering more
// routes. Routes under /api are authenticated by the server's middleware.
func (s *Server) App() *fiber.App { return s.app }

// Listen serves on addr until Shutdown.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen(s.app.Config().Network, addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve serves on ln until Shutdown. The server closes a connection whose
// request it answered without reading the whole body by lingering (see
// lingerListener), so that the client reads the answer, not a reset.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(lingerListener{ln}) }

// Shutdown ends the event streams, stops accepting connections and waits,
// until ctx is done, for the open ones to finish their requests. (Fiber
// waits for open streams too: they are told to end first.)
func (s *Server) Shutdown(ctx context.Context) error {
	if s.deps.Chat != nil {
		s.deps.Chat.Events.Close()
	}
	return s.app.ShutdownWithContext(ctx)
}

// EventStreams returns the number of event streams open on this server.
func (s *Server) EventStreams() int {
	if s.deps.Chat == nil {
		return 0
	}
	return s.deps.Chat.Events.Streams()
}

// BrowserGet registers a GET route under /api (path starts with "/api/")
// that, besides the Authorization header, also accepts the credentials a
// browser's EventSource can send: the Better Auth session cookie (only when
// the request has no Origin header or a listed one) and an access_token
// query parameter. Other routes never accept them. It must be called before
// the server starts serving.
func (s *Server) BrowserGet(path string, handlers ...fiber.Handler) {
	if !strings.HasPrefix(path, "/api/") {
		panic(fmt.Sprintf("httpapi: BrowserGet path %q is not under /api/", path))
	}
	s.mu.Lock()
	s.browserRoutes = append(s.browserRoutes, path)
	s.mu.Unlock()
	s.app.Get(path, handlers...)
}

// browserRoute returns the BrowserGet path the request's path matches, if
// any. It matches with Fiber's own pattern matcher and routing options.
func (s *Server) browserRoute(c *fiber.Ctx) (string, bool) {
	if c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead {
		return "", false
	}
	p := c.Path()
	if !s.fiberCfg.StrictRouting && len(p) > 1 {
		p = strings.TrimRight(p, "/")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.browserRoutes {
		if fiber.RoutePatternMatch(p, r, s.fiberCfg) {
			return r, true
		}
	}
	return "", false
}
