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

// streamsOf returns how many streams user has open.
func (h *EventHub) streamsOf(user string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.perUser[user]
}

// errTooManyStreamsFor is the 429 of a stream past the per-user cap.
func errTooManyStreamsFor(max int) *Error {
	return &Error{Status: fiber.StatusTooManyRequests, Code: CodeRateLimited,
		Detail: fmt.Sprintf("at most %d open event streams per user", max), RetryAfter: retryAfterSeconds}
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
		return errTooManyStreamsFor(s.chatCfg.SSEMaxStreamsPerUser)
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
	setStreamHeaders(c)
	c.Context().SetBodyStreamWriter(st.run)
	return nil
}

// setStreamHeaders makes the answer an event stream.
func setStreamHeaders(c *fiber.Ctx) {
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
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
	// format writes the events; nil writes the events route's frames of
	// every event (sseFormat).
	format streamFormat
	// finished: the run had ended before the stream opened (a replay), so
	// the stream ends with the replay even when its final event is no
	// longer retained.
	finished bool
	log      interface {
		Debug(msg string, args ...any)
	}
}

// streamFormat writes the body of one stream: the events route's frames
// (sseFormat) or a ChatKit stream (chatkitFormat). Its methods are called
// from the stream's goroutine only.
type streamFormat interface {
	// open writes what comes before the first event.
	open(w *bufio.Writer) error
	// event writes ev, or nothing when ev is not the stream's, and reports
	// whether the stream ends after it.
	event(w *bufio.Writer, ev chat.Event) (end bool, err error)
	// interrupted hears that the stream ends before its format ended it:
	// why is "gone" when a write failed (the client went away), else the
	// hub's reason ("overflow", "deleted") or "shutdown". Unless the
	// client is gone, it may write a last word to w.
	interrupted(w *bufio.Writer, why string)
}

// sseFormat writes the events route's frames: id, event and data lines.
// With runID set it keeps only that run's events and ends after its final
// event (POST /chat with Accept: text/event-stream).
type sseFormat struct{ runID string }

func (f sseFormat) open(w *bufio.Writer) error { return flushed(w, ": stream open\n\n") }

func (f sseFormat) event(w *bufio.Writer, ev chat.Event) (bool, error) {
	if f.runID != "" && ev.RunID != f.runID {
		return false, nil
	}
	if err := writeEvent(w, ev.Seq, ev.Type, ev.Data); err != nil {
		return false, err
	}
	return f.runID != "" && chat.FinalEvent(ev.Type), nil
}

func (sseFormat) interrupted(*bufio.Writer, string) {}

// run writes the stream until the client goes, the hub drops it or the
// server shuts down. A client that went away is seen only as a write
// error, at the latest at the next ping.
func (st *eventStream) run(w *bufio.Writer) {
	defer st.hub.unsubscribe(st.sub)
	ctx, cancel := context.WithCancel(st.hub.ctx) // ends on shutdown
	defer cancel()
	if st.format == nil {
		st.format = sseFormat{}
	}
	if err := st.format.open(w); err != nil {
		st.format.interrupted(w, "gone")
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
				st.format.interrupted(w, interruption(err))
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
			end, err := st.format.event(w, ev)
			if err != nil {
				st.format.interrupted(w, "gone")
				return
			}
			if end {
				return
			}
		case <-ping.C:
			if err := flushed(w, ": ping\n\n"); err != nil {
				st.format.interrupted(w, "gone")
				return
			}
		case <-st.sub.ended:
			st.log.Debug("event stream ended by the hub", "reason", st.sub.reason)
			st.format.interrupted(w, st.sub.reason)
			return
		case <-st.hub.done:
			st.format.interrupted(w, "shutdown")
			return
		}
	}
}

// errWrite marks a failed write of a replay: the client went away.
var errWrite = errors.New("httpapi: write to the client failed")

// interruption names why a replay that failed with err ended.
func interruption(err error) string {
	if errors.Is(err, errWrite) {
		return "gone"
	}
	return "replay"
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
			end, err := st.format.event(w, ev)
			if err != nil {
				return after, false, fmt.Errorf("%w: %w", errWrite, err)
			}
			if end {
				return after, true, nil
			}
		}
	}
	return max(after, st.plan.last), false, nil
}

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
