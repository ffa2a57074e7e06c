// Package natsembed runs a NATS server with JetStream inside the process
// (the nats-server/v2 library), for chatd when no NATS_URL is given and
// for tests. It listens on a loopback port of its own, never on 4222 by
// default: the machine's own nats-server may hold that one.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultHost is the interface the server listens on unless told otherwise.
const DefaultHost = "127.0.0.1"

// DefaultReadyTimeout bounds how long Start waits for the server to accept
// connections.
const DefaultReadyTimeout = 10 * time.Second

// RandomPort asks for a free port chosen by the operating system.
const RandomPort = -1

// Config says where the embedded server listens and stores its streams.
type Config struct {
	// DataDir is the directory JetStream stores streams under (required).
	DataDir string
	// Port is the client port; RandomPort (-1) or 0 picks a free one.
	Port int
	// Host is the interface to listen on; default DefaultHost.
	Host string
	// ReadyTimeout bounds Start's wait for the server; default
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives the server's log lines (notices at info, debug and
	// trace at debug); nil keeps the server silent.
	Logger *slog.Logger
}

// Server is a running embedded NATS server.
type Server struct {
	ns *server.Server
}

// Start starts the server with JetStream and returns once it accepts
// connections. It fails when DataDir is empty, the port is taken, or
// JetStream cannot start.
func Start(cfg Config) (*Server, error) {
	if strings.TrimSpace(cfg.DataDir) == "" {
		return nil, errors.New("start embedded nats: a data directory is required")
	}
	if cfg.Port < RandomPort || cfg.Port > 65535 {
		return nil, fmt.Errorf("start embedded nats: port %d out of range", cfg.Port)
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Port == 0 {
		cfg.Port = RandomPort
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	opts := &server.Options{
		ServerName: "taskchat-embedded",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		NoSigs:     true,
		// HTTP monitoring stays off: nothing here needs it.
		HTTPPort: 0,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	// The server's own logger writes to stderr and exits the process on a
	// fatal error; ours records the fatal error so Start can return it.
	lg := &logger{log: cfg.Logger}
	ns.SetLoggerV2(lg, cfg.Logger != nil, false, false)
	ns.Start()
	if !ready(ns, lg, cfg.ReadyTimeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if err := lg.fatal(); err != nil {
			return nil, fmt.Errorf("start embedded nats: %w", err)
		}
		return nil, fmt.Errorf("start embedded nats: not ready within %s", cfg.ReadyTimeout)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		if err := lg.fatal(); err != nil {
			return nil, fmt.Errorf("start embedded nats: %w", err)
		}
		return nil, errors.New("start embedded nats: JetStream did not start")
	}
	return &Server{ns: ns}, nil
}

// ready waits until ns accepts connections, giving up early when the
// server reported a fatal error (a port taken, say).
func ready(ns *server.Server, lg *logger, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if ns.ReadyForConnections(25 * time.Millisecond) {
			return true
		}
		if lg.fatal() != nil || time.Now().After(deadline) {
			return false
		}
	}
}

// ClientURL returns the URL clients connect to (nats://host:port).
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and returns once it has stopped; streams stay
// in DataDir for the next Start. Calling it twice is harmless.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// logger adapts the server's printf-style logger to slog and keeps the
// first fatal error.
type logger struct {
	log *slog.Logger

	mu       sync.Mutex
	fatalErr error
}

func (l *logger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalErr
}

func (l *logger) emit(level slog.Level, format string, v []any) {
	if l.log != nil {
		// The server's callbacks carry no context.
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
	}
}

func (l *logger) Noticef(format string, v ...any) { l.emit(slog.LevelInfo, format, v) }
func (l *logger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l *logger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l *logger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l *logger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }

func (l *logger) Fatalf(format string, v ...any) {
	l.mu.Lock()
	if l.fatalErr == nil {
		l.fatalErr = fmt.Errorf(format, v...)
	}
	l.mu.Unlock()
	l.emit(slog.LevelError, format, v)
}
