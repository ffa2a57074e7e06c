package pgdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable is wrapped by MarkUnavailable, and so by the stores, when
// the database could not be reached or could not answer in time: a request
// may succeed later (HTTP answers 503 with Retry-After), and the failure
// says nothing about the request itself.
var ErrUnavailable = errors.New("database unavailable")

// Unavailable reports whether err says the database could not be reached
// or could not answer in time, rather than that it refused the statement:
//
//   - connecting failed (*pgconn.ConnectError: dial, TLS, authentication,
//     a database that does not exist, a server that is starting up);
//   - the connection broke (net.Error, io.EOF, io.ErrUnexpectedEOF,
//     driver.ErrBadConn, sql.ErrConnDone);
//   - the server ended the session or refused it: SQLSTATE class 08
//     (connection exception), 57P01 admin_shutdown (pg_terminate_backend,
//     a fast shutdown), 57P02 crash_shutdown, 57P03 cannot_connect_now,
//     53300 too_many_connections;
//   - it ran out of time: 57014 query_canceled (statement_timeout, or a
//     statement cancelled by an administrator) and context.DeadlineExceeded
//     (the caller's deadline, including waiting for a pooled connection).
//
// context.Canceled is never unavailability: the caller gave up, and the
// database may be fine. pgx does not turn a caller's cancellation into
// 57014 (it closes the connection and returns context.Canceled), so a
// 57014 always comes from the server's side.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	// Before PgError: a ConnectError may wrap one (28P01, 3D000), and any
	// failure to connect is unavailability to the caller.
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(pgErr.Code)
	}
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone)
}

// unavailableCode reports whether a SQLSTATE is one of Unavailable's.
func unavailableCode(code string) bool {
	switch code {
	case "57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now
		"53300", // too_many_connections
		"57014": // query_canceled
		return true
	}
	return strings.HasPrefix(code, "08") // connection_exception
}

// MarkUnavailable returns err wrapped with ErrUnavailable when Unavailable
// reports true, and err unchanged otherwise (nil stays nil). The wrapped
// error still matches err's own chain.
func MarkUnavailable(err error) error {
	if !Unavailable(err) || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
