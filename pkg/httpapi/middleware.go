package httpapi

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/cors"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/reqctx"
)

// methodUse is the Method of a route registered with Use (Fiber does not
// export its name): middleware, not a route.
const methodUse = "USE"

// HeaderRequestID carries the request id in both directions.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLen bounds an incoming request id; longer ones are replaced.
const maxRequestIDLen = 64

// key is the type of the keys this package stores in c.Locals; no other
// package can make one, so only this package's middleware can set the
// caller's identity.
type key int

const (
	keyRequestID key = iota
	keyIdentity
	// keyMethod holds the method a client sent when Fiber does not know it
	// (the request then runs as methodUnknown), for the access log.
	keyMethod
	// keyBodyRead is set once the decoder has read the request body to its
	// end.
	keyBodyRead
)

// identity is who authentication found the caller to be.
type identity struct {
	userID string
	// route, when set, is the BrowserGet path whose browser credentials
	// (cookie or access_token) authenticated the request: the identity is
	// good for that route only.
	route string
}

// UserID returns the authenticated caller's user id inside a route handler,
// or "" when the request is not authenticated for the route that matched
// (routes outside /api, or a browser credential reaching a route that was not
// registered with BrowserGet). Handlers answer "" with 401.
func UserID(c *fiber.Ctx) string {
	id, ok := c.Locals(keyIdentity).(identity)
	if !ok {
		return ""
	}
	if id.route != "" && c.Route().Path != id.route {
		return ""
	}
	return id.userID
}

// RequestID returns the request's id (the accepted X-Request-Id or a new one).
func RequestID(c *fiber.Ctx) string {
	id, _ := c.Locals(keyRequestID).(string)
	return id
}

// recoverPanics turns a panic in the middleware below it into a 500.
// Handlers' panics are caught by accessLog, so that they are logged as
// requests too.
func (s *Server) recoverPanics(c *fiber.Ctx) error { return s.nextRecovering(c) }

// nextRecovering calls the rest of the chain and turns a panic into an
// internal error, logged with its stack.
func (s *Server) nextRecovering(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.reqLog(c).Error("panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = &Error{Status: fiber.StatusInternalServerError, Code: CodeInternal}
		}
	}()
	return c.Next()
}

// closeUnreadBody ends the connection after a request whose body was not
// read to its end: a 401, 403, 404 or 413 is answered without reading it.
// The unread rest would otherwise be read as the next request; fasthttp
// would discard up to 256 KiB of it after the answer to keep the
// connection, reading on behalf of a client nobody authenticated. Instead
// the answer says "Connection: close" and the connection lingers (see
// lingerListener) so that the client reads the answer, not a reset.
func (s *Server) closeUnreadBody(c *fiber.Ctx) error {
	err := c.Next()
	// -1 is a chunked body, -2 none at all.
	if n := c.Request().Header.ContentLength(); (n > 0 || n == -1) && c.Locals(keyBodyRead) == nil {
		c.Response().Header.SetConnectionClose()
		lingerOnClose(c.Context().Conn())
	}
	return err
}

// requestID accepts a short, safe incoming X-Request-Id or makes a new one,
// and echoes it in the response.
func (s *Server) requestID(c *fiber.Ctx) error {
	id := c.Get(HeaderRequestID)
	if !validRequestID(id) {
		id = rand.Text()
	} else {
		id = strings.Clone(id) // c.Get's string is reused after the request
	}
	c.Locals(keyRequestID, id)
	c.Set(HeaderRequestID, id)
	c.SetUserContext(reqctx.WithRequestID(c.UserContext(), id))
	return c.Next()
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// accessLog writes one line per request once its answer is known. It logs
// the path without the query string (which may hold an access_token) and
// never headers, cookies or bodies.
func (s *Server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	if err := s.nextRecovering(c); err != nil {
		// Answer the error here rather than after this middleware returns,
		// so that the line below logs the final status.
		if herr := s.handleError(c, err); herr != nil {
			s.reqLog(c).Error("writing the error answer failed", "err", herr)
			c.Status(fiber.StatusInternalServerError)
		}
	}
	status := c.Response().StatusCode()
	level := slog.LevelInfo
	if p := c.Path(); p == "/healthz" || p == "/readyz" {
		level = slog.LevelDebug // probes would drown the log
	}
	route := c.Route().Path
	if c.Route().Method == methodUse {
		route = "" // no route matched; the last middleware answered
	}
	s.reqLog(c).LogAttrs(c.UserContext(), level, "request",
		slog.String("method", method(c)),
		slog.String("path", c.Path()),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(start)),
		slog.Int("bytes", bodySize(c)),
		slog.String("ip", c.IP()),
	)
	return nil
}

// bodySize is the answer's body size, or -1 for a streamed body (an event
// stream): asking a stream for its Body reads it to the end.
func bodySize(c *fiber.Ctx) int {
	if c.Response().IsBodyStream() {
		return -1
	}
	return len(c.Response().Body())
}

// method is the request's method as the client sent it.
func method(c *fiber.Ctx) string {
	if m, ok := c.Locals(keyMethod).(string); ok {
		return m
	}
	return c.Method()
}

// reqLog is the server's logger with the request's id and, once
// authenticated, its user id.
func (s *Server) reqLog(c *fiber.Ctx) *slog.Logger {
	return reqctx.Logger(c.UserContext(), s.log)
}

// cors answers preflight requests (before authentication) and sets the CORS
// headers of the others. Credentials are allowed for listed origins only:
// with "*" in the list any origin may call, without credentials.
func (s *Server) cors() fiber.Handler {
	cc := cors.Config{
		AllowMethods:  "GET,POST,PUT,PATCH,DELETE,HEAD",
		AllowHeaders:  "Authorization,Content-Type,Accept,Idempotency-Key,Last-Event-ID,Prefer,X-Request-Id,Chatkit-Frame-Instance-Id",
		ExposeHeaders: "Location,Retry-After,X-Request-Id",
		MaxAge:        600,
	}
	star := false
	for _, o := range s.cfg.CORSOrigins {
		star = star || strings.TrimSpace(o) == "*"
	}
	switch {
	case star:
		cc.AllowOrigins = "*"
	case len(s.origins) > 0:
		list := make([]string, 0, len(s.origins))
		for o := range s.origins {
			list = append(list, o)
		}
		cc.AllowOrigins = strings.Join(list, ",")
		cc.AllowCredentials = true
	default:
		// No origin is allowed. (An empty AllowOrigins would mean "*".)
		cc.AllowOriginsFunc = func(string) bool { return false }
	}
	return cors.New(cc)
}

// authenticate establishes the caller of every /api request or answers 401:
// from "Authorization: Bearer", or, only on BrowserGet routes and only
// without that header, from ?access_token= or the session cookie.
func (s *Server) authenticate(c *fiber.Ctx) error {
	var (
		id  identity
		err error
	)
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		cred, ok := bearerCredential(h)
		if !ok {
			err = errUnauthorized("the Authorization header must be \"Bearer <credential>\"")
		} else {
			id.userID, err = s.deps.Auth.Verify(c.UserContext(), cred)
		}
	} else if route, ok := s.browserRoute(c); ok {
		id.route = route
		id.userID, err = s.browserCredential(c)
	} else {
		return errUnauthorized("a credential is required")
	}
	if err != nil {
		// Why a credential was refused is what finds a secret mismatch or a
		// missing user, so it is logged, at debug level: the reasons (the
		// auth package's and this package's) never quote the credential.
		var e *Error
		switch {
		case errors.As(err, &e):
			s.reqLog(c).Debug("credential rejected", "reason", err.Error())
			return e
		case errors.Is(err, auth.ErrUnauthorized):
			s.reqLog(c).Debug("credential rejected", "reason", err.Error())
			return errUnauthorized("the credential is not valid")
		default:
			// Debug, not Warn: during an outage every request fails this
			// way. The verifier logs each failed JWKS fetch once, and a
			// database outage shows in /readyz and on every route.
			s.reqLog(c).Debug("credential check failed", "err", err)
			return errUnavailable("the credential cannot be checked right now")
		}
	}
	if id.userID == "" {
		return errUnauthorized("the credential is not valid")
	}
	c.Locals(keyIdentity, id)
	c.SetUserContext(reqctx.WithUserID(c.UserContext(), id.userID))
	return c.Next()
}

// bearerCredential extracts the credential of "Bearer <credential>" (scheme
// case-insensitive). The result is a copy: fasthttp reuses header memory.
func bearerCredential(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	if cred == "" || strings.ContainsAny(cred, " \t") {
		return "", false
	}
	return strings.Clone(cred), true
}

// browserCredential verifies the credential a browser's EventSource sends:
// an access_token query parameter, else the Better Auth session cookie, the
// latter only when the request comes from no origin or a listed one.
func (s *Server) browserCredential(c *fiber.Ctx) (string, error) {
	if tok := c.Query("access_token"); tok != "" {
		return s.deps.Auth.Verify(c.UserContext(), strings.Clone(tok))
	}
	v := c.Cookies(auth.SecureSessionCookieName)
	if v == "" {
		v = c.Cookies(auth.SessionCookieName)
	}
	if v == "" {
		return "", errUnauthorized("a credential is required")
	}
	if o := c.Get(fiber.HeaderOrigin); o != "" && !s.origins[strings.ToLower(o)] {
		return "", errUnauthorized("the session cookie is not accepted from this origin")
	}
	return s.deps.Auth.VerifySessionCookie(c.UserContext(), strings.Clone(v))
}

// checkPathUser answers 403 when the {user_id} of a /api/{user_id}/… path
// (URL-decoded) is not the caller. It runs before any route, so a foreign
// user id is refused before the body or the resource is looked at.
func (s *Server) checkPathUser(c *fiber.Ctx) error {
	id, ok := c.Locals(keyIdentity).(identity)
	if !ok {
		return errUnauthorized("a credential is required") // authenticate always runs first
	}
	if isChatKitPath(c.Path()) {
		return c.Next() // no user id in the path: the credential's user is the caller
	}
	p, err := url.PathUnescape(c.Params("user_id"))
	if err != nil || p != id.userID {
		return errForbidden()
	}
	return c.Next()
}
