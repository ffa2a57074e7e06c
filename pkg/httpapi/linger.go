package httpapi

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of a lingering close. A client that sends its whole body before
// reading the answer (most do) gets to read the answer as long as the rest
// of its body arrives within lingerTimeout and is at most lingerMaxBytes
// (the transport's body limit, 8 MiB). Past either bound the
// connection is closed anyway. The worker stays busy while lingering, so
// Config.MaxConns bounds lingering connections too.
const (
	lingerTimeout  = 5 * time.Second
	lingerMaxBytes = transportBodyLimit
)

// lingerListener hands out connections that can be closed without a reset.
//
// The server answers some requests before reading their body (a 401, a 413
// announced by Content-Length) or before reading all of their headers (a
// 431), then closes the connection. Closing a TCP socket with unread data
// makes the kernel send a reset, which can destroy the answer before the
// client reads it and fails the client's ongoing write: the client sees
// "connection reset" instead of the problem. A connection marked with
// lingerOnClose is closed the way HTTP servers have long done it (RFC 9112
// section 9.6): send FIN after the answer, read and drop what the client
// still sends, then close.
type lingerListener struct{ net.Listener }

// Accept wraps the accepted connection in a *lingerConn.
func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

// lingerConn is a connection that lingers on Close once marked.
type lingerConn struct {
	net.Conn
	linger atomic.Bool
	once   sync.Once
	err    error
}

// lingerOnClose marks c, when it came from a lingerListener, to linger when
// it is closed. Other connections (app.Test's) are left alone.
func lingerOnClose(c net.Conn) {
	if lc, ok := c.(*lingerConn); ok {
		lc.linger.Store(true)
	}
}

// Close closes the connection, lingering first when it was marked. fasthttp
// may close a connection twice (its Shutdown closes idle ones); only the
// first call does anything.
func (c *lingerConn) Close() error {
	c.once.Do(func() {
		if c.linger.Load() {
			c.drain()
		}
		c.err = c.Conn.Close()
	})
	return c.err
}

// drain half-closes the connection, so that the answer is followed by a FIN
// rather than a reset, and reads what the client still sends until it
// closes its side or a bound is reached.
func (c *lingerConn) drain() {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if c.SetReadDeadline(time.Now().Add(lingerTimeout)) != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, c.Conn, lingerMaxBytes)
}
