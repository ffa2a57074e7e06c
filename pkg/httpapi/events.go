package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/validate"
)

// Defaults of the event stream settings of ChatConfig.
const (
	DefaultSSEPingInterval      = 15 * time.Second
	DefaultSSEMaxStreamsPerUser = 20
	DefaultSSEBuffer            = 256
	// replayPage is how many events one ReadEvents call of a replay asks
	// for.
	replayPage = 500
)

// errTooManyStreams is the hub's refusal of a stream beyond the per-user
// cap.
var errTooManyStreams = errors.New("httpapi: too many open event streams")

// EventHub fans the run events of this process's one follower out to the
// open event streams, in memory: a map from conversation id to the streams
// watching it. Deliver never blocks: each stream has a bounded buffer, and
// a stream whose buffer is full is ended (its client resumes with its
// cursor) so that nobody else waits for it.
type EventHub struct {
	buffer int

	mu      sync.Mutex
	convs   map[string]map[*hubSub]struct{}
	perUser map[string]int
	total   int
	closed  bool
	done    chan struct{} // closed by Close: every stream ends
	// ctx ends with Close too: streams derive their replay contexts from
	// it, with no goroutine of their own to watch done.
	ctx    context.Context
	cancel context.CancelFunc
}

// hubSub is one open stream's registration.
type hubSub struct {
	user, conv string
	// ch carries pointers: one event is shared by every stream watching
	// its conversation, and an idle stream's buffer costs 8 bytes a slot
	// instead of a whole Event.
	ch     chan *chat.Event
	ended  chan struct{} // closed when the hub drops the stream
	reason string        // why it was dropped; set before ended closes
}

// NewEventHub returns an empty hub giving each stream a buffer of buffer
// events (DefaultSSEBuffer when not positive).
func NewEventHub(buffer int) *EventHub {
	if buffer <= 0 {
		buffer = DefaultSSEBuffer
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &EventHub{buffer: buffer, convs: map[string]map[*hubSub]struct{}{}, perUser: map[string]int{}, done: make(chan struct{}),
		ctx: ctx, cancel: cancel}
}

// Deliver hands ev to every stream watching its conversation. It never
// blocks; call it from the one events follower (bus.FollowEvents).
func (h *EventHub) Deliver(ev chat.Event) {
	conv := strings.ToLower(ev.ConversationID)
	shared := &ev // read-only from here on
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.convs[conv] {
		select {
		case sub.ch <- shared:
		default:
			h.dropLocked(sub, "overflow")
		}
	}
}

// EndConversation ends every stream watching conversationID (it was
// deleted).
func (h *EventHub) EndConversation(conversationID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.convs[strings.ToLower(conversationID)] {
		h.dropLocked(sub, "deleted")
	}
}

// Close ends every stream and refuses new ones: the server is shutting
// down.
func (h *EventHub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
		h.cancel()
	}
}

// Streams returns the number of open streams.
func (h *EventHub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// subscribe registers a stream of user on conv, refusing it beyond
// maxPerUser streams of that user.
func (h *EventHub) subscribe(user, conv string, maxPerUser int) (*hubSub, error) {
	conv = strings.ToLower(conv)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errShuttingDown
	}
	if h.perUser[user] >= maxPerUser {
		return nil, errTooManyStreams
	}
	sub := &hubSub{user: user, conv: conv, ch: make(chan *chat.Event, h.buffer), ended: make(chan struct{})}
	if h.convs[conv] == nil {
		h.convs[conv] = map[*hubSub]struct{}{}
	}
	h.convs[conv][sub] = struct{}{}
	h.perUser[user]++
	h.total++
	return sub, nil
}

// unsubscribe removes sub; it may already have been dropped.
func (h *EventHub) unsubscribe(sub *hubSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(sub, "")
}

func (h *EventHub) dropLocked(sub *hubSub, reason string) {
	subs := h.convs[sub.conv]
	if _, ok := subs[sub]; !ok {
		return
	}
	delete(subs, sub)
	if len(subs) == 0 {
		delete(h.convs, sub.conv)
	}
	if h.perUser[sub.user]--; h.perUser[sub.user] <= 0 {
		delete(h.perUser, sub.user)
	}
	h.total--
	sub.reason = reason
	close(sub.ended)
}

// errShuttingDown refuses a stream while the server shuts down.
var errShuttingDown = errors.New("httpapi: shutting down")

// streamCursor reads the resume cursor: Last-Event-ID wins over ?after=.
func streamCursor(c *fiber.Ctx) (cursor uint64, ok bool, err error) {
	name, raw := "Last-Event-ID", c.Get("Last-Event-ID")
	if raw == "" {
		name, raw = "after", c.Query("after")
		if raw == "" {
			return 0, false, nil
		}
	}
	n, perr := strconv.ParseUint(raw, 10, 64)
	if perr != nil {
		return 0, false, validate.Field(name, "must be a non-negative integer event id")
	}
	return n, true, nil
}

// streamEvents serves GET /conversations/:id/events (see docs/api.md,
// "Events (SSE)").
func (s *Server) streamEvents(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	conv := param(c, "id")
	cursor, hasCursor, err := streamCursor(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	if _, err := s.deps.Chat.Store.GetConversation(ctx, user, conv); err != nil {
		return err
	}
	hub := s.deps.Chat.Events
	sub, err := hub.subscribe(user, conv, s.chatCfg.SSEMaxStreamsPerUser)
	switch {
	case errors.Is(err, errTooManyStreams):
		return &Error{Status: fiber.StatusTooManyRequests, Code: CodeRateLimited,
			Detail: fmt.Sprintf("at most %d open event streams per user", s.chatCfg.SSEMaxStreamsPerUser), RetryAfter: retryAfterSeconds}
	case err != nil:
		return errUnavailable("the server is shutting down")
	}
	// Registered before the bounds are read: every event stored after
	// them reaches sub's buffer, so the replay up to last joins the live
	// feed without a gap.
	first, last, err := s.deps.Chat.Bus.EventBounds(ctx)
	if err != nil {
		hub.unsubscribe(sub)
		return err
	}
	plan := streamPlan{live: !hasCursor, after: cursor, last: last}
	if hasCursor && cursor > 0 && (cursor > last || cursor+1 < first) {
		plan.reset = "cursor_expired"
		if cursor > last {
			plan.reset = "cursor_unknown"
		}
	}
	return startStream(c, &eventStream{s: s, hub: hub, sub: sub, conv: conv, plan: plan, log: s.reqLog(c)})
}

// startStream answers 200 with the event-stream headers and hands the
// body to st, which writes it after the handler returns.
func startStream(c *fiber.Ctx, st *eventStream) error {
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	c.Context().SetBodyStreamWriter(st.run)
	return nil
}

// streamPlan says where a stream starts.
type streamPlan struct {
	live  bool   // no cursor: from now on
	after uint64 // the client's cursor
	last  uint64 // the stream's last sequence when the stream registered
	reset string // non-empty: send reset with this reason, then live
}

// eventStream is one open stream's writer. It never touches the fiber.Ctx:
// everything it needs was copied before the handler returned.
type eventStream struct {
	s    *Server
	hub  *EventHub
	sub  *hubSub
	conv string
	plan streamPlan
	// runID, when set, keeps only that run's events and ends the stream
	// after its final event (POST /chat with Accept: text/event-stream).
	runID string
	// finished: the run had ended before the stream opened (a replay), so
	// the stream ends with the replay even when its final event is no
	// longer retained.
	finished bool
	log      interface {
		Debug(msg string, args ...any)
	}
}

// run writes the stream until the client goes, the hub drops it or the
// server shuts down. A client that went away is seen only as a write
// error, at the latest at the next ping.
func (st *eventStream) run(w *bufio.Writer) {
	defer st.hub.unsubscribe(st.sub)
	ctx, cancel := context.WithCancel(st.hub.ctx) // ends on shutdown
	defer cancel()
	if err := flushed(w, ": stream open\n\n"); err != nil {
		return
	}
	sent := st.plan.last // the cursor after which live events are new
	switch {
	case st.plan.reset != "":
		data := `{"reason":` + strconv.Quote(st.plan.reset) + `}`
		if err := writeEvent(w, st.plan.last, chat.EventReset, []byte(data)); err != nil {
			return
		}
	case !st.plan.live:
		var (
			err  error
			done bool
		)
		if sent, done, err = st.replay(ctx, w); err != nil || done || st.finished {
			if err != nil {
				st.log.Debug("event stream replay ended", "err", err)
			}
			return
		}
	}
	ping := time.NewTicker(st.s.chatCfg.SSEPingInterval)
	defer ping.Stop()
	for {
		select {
		case p := <-st.sub.ch:
			ev := *p
			if ev.Seq <= sent {
				continue // already replayed
			}
			sent = ev.Seq
			if !st.wants(ev) {
				continue
			}
			if err := writeEvent(w, ev.Seq, ev.Type, ev.Data); err != nil {
				return
			}
			if st.ends(ev) {
				return
			}
		case <-ping.C:
			if err := flushed(w, ": ping\n\n"); err != nil {
				return
			}
		case <-st.sub.ended:
			st.log.Debug("event stream ended by the hub", "reason", st.sub.reason)
			return
		case <-st.hub.done:
			return
		}
	}
}

// replay writes the conversation's events after the cursor up to at least
// the stream's last sequence at registration, and returns the last one
// written (or the cursor).
func (st *eventStream) replay(ctx context.Context, w *bufio.Writer) (last uint64, done bool, err error) {
	after := st.plan.after
	for after < st.plan.last {
		evs, err := st.s.deps.Chat.Bus.ReadEvents(ctx, st.conv, after, replayPage)
		if err != nil {
			return after, false, err
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			after = ev.Seq
			if !st.wants(ev) {
				continue
			}
			if err := writeEvent(w, ev.Seq, ev.Type, ev.Data); err != nil {
				return after, false, err
			}
			if st.ends(ev) {
				return after, true, nil
			}
		}
	}
	return max(after, st.plan.last), false, nil
}

// wants reports whether ev belongs on this stream.
func (st *eventStream) wants(ev chat.Event) bool { return st.runID == "" || ev.RunID == st.runID }

// ends reports whether ev, just written, ends this stream: the final event
// of the one run it follows.
func (st *eventStream) ends(ev chat.Event) bool { return st.runID != "" && chat.FinalEvent(ev.Type) }

// writeEvent writes one event frame and flushes it. data is one line of
// JSON (the published payload is compact JSON; json.Compact guarantees it).
func writeEvent(w *bufio.Writer, seq uint64, typ string, data []byte) error {
	var b strings.Builder
	b.Grow(len(data) + len(typ) + 40)
	b.WriteString("id: ")
	b.WriteString(strconv.FormatUint(seq, 10))
	b.WriteString("\nevent: ")
	b.WriteString(typ)
	b.WriteString("\ndata: ")
	b.WriteString(oneLine(data))
	b.WriteString("\n\n")
	return flushed(w, b.String())
}

// oneLine returns data without line breaks: JSON allows them only as
// whitespace, so dropping them keeps the value.
func oneLine(data []byte) string {
	s := string(data)
	if s == "" {
		return "null"
	}
	if strings.ContainsAny(s, "\r\n") {
		s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	}
	return s
}

func flushed(w *bufio.Writer, s string) error {
	if _, err := w.WriteString(s); err != nil {
		return err
	}
	return w.Flush()
}
