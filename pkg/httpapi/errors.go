package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
	"github.com/taskchat/taskchat/pkg/validate"
)

// Stable error codes of docs/api.md's error table (plus the few HTTP-level
// answers Fiber itself produces).
const (
	CodeInvalidJSON          = "INVALID_JSON"
	CodeValidationFailed     = "VALIDATION_FAILED"
	CodeUnauthorized         = "UNAUTHORIZED"
	CodeForbidden            = "FORBIDDEN"
	CodeNotFound             = "NOT_FOUND"
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeHeadersTooLarge      = "HEADERS_TOO_LARGE"
	CodeBadRequest           = "BAD_REQUEST"
	CodeRunFinished          = "RUN_FINISHED"
	CodeConversationBusy     = "CONVERSATION_BUSY"
	CodeNotImplemented       = "NOT_IMPLEMENTED"
	CodeIdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"
	CodeRateLimited          = "RATE_LIMITED"
	CodeServiceUnavailable   = "SERVICE_UNAVAILABLE"
	CodeInternal             = "INTERNAL"
)

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// retryAfterSeconds is the Retry-After of 503 answers.
const retryAfterSeconds = 5

// Error is an error with its HTTP answer. Handlers return it (or a domain
// error the error handler maps) and the error handler writes it as
// application/problem+json. Detail and Fields are shown to the client, so
// they must never hold internal details.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the stable machine-readable code, e.g. "VALIDATION_FAILED".
	Code string
	// Detail explains this occurrence to a person; may be empty.
	Detail string
	// Fields lists the invalid fields of a VALIDATION_FAILED answer.
	Fields []validate.FieldError
	// RetryAfter, when positive, is sent as the Retry-After header (seconds).
	RetryAfter int
}

// Error returns the code and detail.
func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Code
	}
	return e.Code + ": " + e.Detail
}

// problem is the RFC 9457 body.
type problem struct {
	Type   string                `json:"type"`
	Title  string                `json:"title"`
	Status int                   `json:"status"`
	Detail string                `json:"detail,omitempty"`
	Code   string                `json:"code"`
	Errors []validate.FieldError `json:"errors,omitempty"`
}

func errUnauthorized(detail string) *Error {
	return &Error{Status: fiber.StatusUnauthorized, Code: CodeUnauthorized, Detail: detail}
}

func errForbidden() *Error {
	return &Error{Status: fiber.StatusForbidden, Code: CodeForbidden, Detail: "the path's user id is not the caller's"}
}

func errNotFound() *Error {
	return &Error{Status: fiber.StatusNotFound, Code: CodeNotFound, Detail: "no such resource"}
}

func errInvalidJSON(detail string) *Error {
	return &Error{Status: fiber.StatusBadRequest, Code: CodeInvalidJSON, Detail: detail}
}

func errValidation(fields ...validate.FieldError) *Error {
	return &Error{Status: fiber.StatusBadRequest, Code: CodeValidationFailed, Detail: "the request has invalid fields", Fields: fields}
}

func errUnavailable(detail string) *Error {
	return &Error{Status: fiber.StatusServiceUnavailable, Code: CodeServiceUnavailable, Detail: detail, RetryAfter: retryAfterSeconds}
}

// toError maps any error a handler or middleware returns to its answer.
// The bool is false for unexpected errors, which become a bare 500.
func toError(err error) (*Error, bool) {
	var e *Error
	var ve *validate.Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &e):
		return e, true
	case errors.As(err, &ve):
		return errValidation(ve.Fields...), true
	case errors.Is(err, todo.ErrNotFound):
		return errNotFound(), true
	case errors.Is(err, todo.ErrUserNotFound):
		// The credential was valid but its user has just been deleted.
		return errUnauthorized("the user no longer exists"), true
	case errors.Is(err, pgdb.ErrUnavailable):
		return errUnavailable("the database is not available right now"), true
	case errors.As(err, &fe):
		return fiberError(fe), true
	}
	if e, ok := chatError(err); ok {
		return e, true
	}
	return &Error{Status: fiber.StatusInternalServerError, Code: CodeInternal}, false
}

// fiberError maps the errors Fiber and fasthttp produce themselves
// (unknown route, wrong method, transport limits). Their messages are not
// passed on: some repeat the request path.
func fiberError(fe *fiber.Error) *Error {
	e := &Error{Status: fe.Code}
	switch fe.Code {
	case fiber.StatusUnauthorized:
		return errUnauthorized("")
	case fiber.StatusForbidden:
		return errForbidden()
	case fiber.StatusNotFound:
		return errNotFound()
	case fiber.StatusMethodNotAllowed:
		e.Code, e.Detail = CodeMethodNotAllowed, "the method is not allowed on this resource"
	case fiber.StatusRequestEntityTooLarge:
		e.Code, e.Detail = CodePayloadTooLarge, "the request body is too large"
	case fiber.StatusRequestHeaderFieldsTooLarge:
		e.Code, e.Detail = CodeHeadersTooLarge, "the request headers are too large"
	case fiber.StatusUnsupportedMediaType:
		e.Code = CodeUnsupportedMediaType
	case fiber.StatusServiceUnavailable:
		return errUnavailable("")
	default:
		switch {
		case fe.Code >= 400 && fe.Code < 500:
			e.Code = CodeBadRequest
		default:
			e.Status, e.Code = fiber.StatusInternalServerError, CodeInternal
		}
	}
	return e
}

// handleError is the app's only error handler: it writes err as a problem.
// Unexpected errors are logged with the request id and answered with a 500
// that says nothing about them; an unavailable database is logged at warn
// (the answer, a 503, does not say why either).
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	e, known := toError(err)
	switch {
	case !known:
		s.reqLog(c).Error("request failed", "err", err)
	case errors.Is(err, pgdb.ErrUnavailable):
		s.reqLog(c).Warn("database unavailable", "err", err)
	}
	return writeProblem(c, e)
}

// writeProblem replaces whatever response was being built with e.
func writeProblem(c *fiber.Ctx, e *Error) error {
	title := http.StatusText(e.Status)
	if title == "" {
		title = "Error"
	}
	body, err := json.Marshal(problem{
		Type:   "about:blank",
		Title:  title,
		Status: e.Status,
		Detail: e.Detail,
		Code:   e.Code,
		Errors: e.Fields,
	})
	if err != nil {
		return err // cannot happen: plain strings and ints
	}
	resp := c.Response()
	resp.ResetBody()
	resp.Header.Del(fiber.HeaderLocation)
	resp.Header.Del(fiber.HeaderContentEncoding)
	c.Status(e.Status)
	c.Set(fiber.HeaderContentType, ProblemContentType)
	c.Set(fiber.HeaderCacheControl, "no-store")
	if e.Status == fiber.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
	}
	if e.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(e.RetryAfter))
	}
	return c.Send(body)
}
