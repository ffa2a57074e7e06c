package bus

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Defaults of the Config fields; a zero field means its default.
const (
	DefaultPrefix          = "taskchat"
	DefaultReplicas        = 1
	DefaultEventsMaxAge    = 24 * time.Hour
	DefaultEventsMaxBytes  = 1 << 30
	DefaultRunsMaxMsgs     = 1_000_000
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultAckWait         = 30 * time.Second
	DefaultMaxDeliver      = 10
	DefaultMaxAckPending   = 1000
	DefaultClientName      = "taskchat"
	DefaultConnectTimeout  = 5 * time.Second
	DefaultReconnectWait   = time.Second
	DefaultPublishTimeout  = 5 * time.Second
)

// MaxReplicas is the largest stream replica count JetStream allows.
const MaxReplicas = 5

// ConsumerName is the durable pull consumer every worker shares.
const ConsumerName = "workers"

// Config says where NATS is and how taskchat's streams and consumer are
// declared. Each field names the environment variable cmd reads it from;
// a zero value means the default.
type Config struct {
	// URL is the server URL, or several separated by commas (NATS_URL,
	// required): nats://, tls://, ws:// or wss://.
	URL string
	// Prefix is the first token of every subject and, upper-cased, of the
	// stream names (NATS_PREFIX, default "taskchat"): subjects
	// <prefix>.runs, <prefix>.events.<conversation-uuid>, <prefix>.cancel;
	// streams <PREFIX>_RUNS, <PREFIX>_EVENTS. Lowercase letters, digits, _
	// and -, starting with a letter, at most 32.
	Prefix string
	// Replicas is the streams' replica count, 1 to 5 (NATS_STREAM_REPLICAS,
	// default 1; 3 on a cluster).
	Replicas int
	// EventsMaxAge is how long run events stay replayable (EVENTS_MAX_AGE,
	// default 24h).
	EventsMaxAge time.Duration
	// EventsMaxBytes bounds the events stream's storage (EVENTS_MAX_BYTES,
	// default 1 GiB): past it the oldest events go first, as with age.
	EventsMaxBytes int64
	// RunsMaxMsgs bounds the run requests waiting in the work queue
	// (RUNS_MAX_MSGS, default 1,000,000): past it publishing a run fails
	// (a committed run is then the relay's to publish later) instead of
	// growing the stream without end.
	RunsMaxMsgs int64
	// DuplicateWindow is how long a Nats-Msg-Id is remembered for
	// deduplication, on both streams (NATS_DUPLICATE_WINDOW, default 2m);
	// at most EventsMaxAge.
	DuplicateWindow time.Duration
	// AckWait is how long a worker may hold a run request without an ack or
	// an in-progress signal before it is redelivered (RUN_ACK_WAIT,
	// default 30s).
	AckWait time.Duration
	// MaxDeliver caps deliveries of one run request (RUN_MAX_DELIVER,
	// default 10).
	MaxDeliver int
	// MaxAckPending caps the run requests held unacked by all workers
	// together (RUN_MAX_ACK_PENDING, default 1000).
	MaxAckPending int
	// ClientName names the connection in the server's monitoring
	// (NATS_CLIENT_NAME, default "taskchat").
	ClientName string
	// ConnectTimeout bounds each attempt to dial the server
	// (NATS_CONNECT_TIMEOUT, default 5s); Connect keeps trying until its
	// context ends.
	ConnectTimeout time.Duration
	// ReconnectWait is the pause between reconnect attempts after the
	// connection is lost (NATS_RECONNECT_WAIT, default 1s).
	ReconnectWait time.Duration
	// PublishTimeout bounds the wait for a publish acknowledgement when the
	// caller's context has no deadline, and every asynchronous one
	// (NATS_PUBLISH_TIMEOUT, default 5s).
	PublishTimeout time.Duration
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// Validate reports every invalid field at once, each naming its
// environment variable. Errors never echo the URL: it may hold a password.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, errors.New("NATS_URL is required (e.g. nats://127.0.0.1:4222)"))
	} else {
		for _, u := range strings.Split(c.URL, ",") {
			if !validURL(strings.TrimSpace(u)) {
				errs = append(errs, errors.New("NATS_URL must be nats://, tls://, ws:// or wss:// URLs with a host, separated by commas"))
				break
			}
		}
	}
	if c.Prefix != "" && !prefixRE.MatchString(c.Prefix) {
		errs = append(errs, fmt.Errorf("NATS_PREFIX must be lowercase letters, digits, _ or -, starting with a letter, at most 32, got %q", c.Prefix))
	}
	if c.Replicas < 0 || c.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("NATS_STREAM_REPLICAS must be from 1 to %d, got %d", MaxReplicas, c.Replicas))
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"EVENTS_MAX_AGE", c.EventsMaxAge},
		{"NATS_DUPLICATE_WINDOW", c.DuplicateWindow},
		{"RUN_ACK_WAIT", c.AckWait},
		{"NATS_CONNECT_TIMEOUT", c.ConnectTimeout},
		{"NATS_RECONNECT_WAIT", c.ReconnectWait},
		{"NATS_PUBLISH_TIMEOUT", c.PublishTimeout},
	}
	for _, d := range durations {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", d.name, d.d))
		}
	}
	if c.MaxDeliver < 0 {
		errs = append(errs, fmt.Errorf("RUN_MAX_DELIVER must be at least 1, got %d", c.MaxDeliver))
	}
	if c.MaxAckPending < 0 {
		errs = append(errs, fmt.Errorf("RUN_MAX_ACK_PENDING must be at least 1, got %d", c.MaxAckPending))
	}
	if c.EventsMaxBytes < 0 || (c.EventsMaxBytes > 0 && c.EventsMaxBytes < 1<<20) {
		errs = append(errs, fmt.Errorf("EVENTS_MAX_BYTES must be at least 1MiB, got %d", c.EventsMaxBytes))
	}
	if c.RunsMaxMsgs < 0 || (c.RunsMaxMsgs > 0 && c.RunsMaxMsgs < 1000) {
		errs = append(errs, fmt.Errorf("RUNS_MAX_MSGS must be at least 1000, got %d", c.RunsMaxMsgs))
	}
	if d := c.withDefaults(); c.EventsMaxAge >= 0 && c.DuplicateWindow >= 0 && d.DuplicateWindow > d.EventsMaxAge {
		errs = append(errs, fmt.Errorf("NATS_DUPLICATE_WINDOW (%s) must not exceed EVENTS_MAX_AGE (%s)", d.DuplicateWindow, d.EventsMaxAge))
	}
	return errors.Join(errs...)
}

func validURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.EventsMaxBytes == 0 {
		c.EventsMaxBytes = DefaultEventsMaxBytes
	}
	if c.RunsMaxMsgs == 0 {
		c.RunsMaxMsgs = DefaultRunsMaxMsgs
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = DefaultEventsMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.ClientName == "" {
		c.ClientName = DefaultClientName
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	return c
}

// RunsStream is the name of the work-queue stream of run requests
// (<PREFIX>_RUNS), e.g. for a KEDA scaler.
func (c Config) RunsStream() string { return strings.ToUpper(c.withDefaults().Prefix) + "_RUNS" }

// EventsStream is the name of the stream of run events (<PREFIX>_EVENTS).
func (c Config) EventsStream() string {
	return strings.ToUpper(c.withDefaults().Prefix) + "_EVENTS"
}

// Subjects derived from the prefix; c has its defaults applied.
func (c Config) runsSubject() string    { return c.Prefix + ".runs" }
func (c Config) eventsWildcard() string { return c.Prefix + ".events.*" }
func (c Config) cancelSubject() string  { return c.Prefix + ".cancel" }
func (c Config) deletedSubject() string { return c.Prefix + ".deleted" }
func (c Config) eventsSubject(conversationID string) string {
	return c.Prefix + ".events." + conversationID
}
