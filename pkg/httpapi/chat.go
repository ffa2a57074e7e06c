package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/reqctx"
	"github.com/taskchat/taskchat/pkg/todo"
	"github.com/taskchat/taskchat/pkg/validate"
)

// Defaults of ChatConfig.
const (
	DefaultSyncTimeout          = 60 * time.Second
	DefaultMaxQueuedRunsPerUser = 5
	// maxIdempotencyKeyLen bounds an Idempotency-Key header.
	maxIdempotencyKeyLen = 255
)

// ChatConfig tunes the chat routes. The zero value of each field means its
// default.
type ChatConfig struct {
	// SyncTimeout is how long POST /chat waits for the answer before it
	// answers 202 (CHAT_SYNC_TIMEOUT).
	SyncTimeout time.Duration
	// MaxQueuedRunsPerUser caps a user's unfinished runs
	// (MAX_QUEUED_RUNS_PER_USER); beyond it POST /chat answers 429.
	MaxQueuedRunsPerUser int
	// SSEMaxStreamsPerUser caps a user's open event streams on one API
	// process (SSE_MAX_STREAMS_PER_USER, default 20); beyond it 429.
	SSEMaxStreamsPerUser int
	// SSEPingInterval is how often an idle event stream gets a ": ping"
	// comment (SSE_PING_INTERVAL, default 15s); it also bounds how long a
	// vanished client's stream lingers.
	SSEPingInterval time.Duration
	// SSEBuffer is how many events a stream may fall behind the live feed
	// before it is ended (default 256); no variable, tests shrink it.
	SSEBuffer int
}

// Validate reports settings that cannot work, naming their variables.
func (c ChatConfig) Validate() error {
	var errs []error
	if c.SyncTimeout < 0 || c.SyncTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("CHAT_SYNC_TIMEOUT must be at most 10m, got %s", c.SyncTimeout))
	}
	if c.MaxQueuedRunsPerUser < 0 || c.MaxQueuedRunsPerUser > 1000 {
		errs = append(errs, fmt.Errorf("MAX_QUEUED_RUNS_PER_USER must be from 1 to 1000, got %d", c.MaxQueuedRunsPerUser))
	}
	if c.SSEMaxStreamsPerUser < 0 || c.SSEMaxStreamsPerUser > 10000 {
		errs = append(errs, fmt.Errorf("SSE_MAX_STREAMS_PER_USER must be from 1 to 10000, got %d", c.SSEMaxStreamsPerUser))
	}
	if c.SSEPingInterval < 0 || c.SSEPingInterval > 10*time.Minute {
		errs = append(errs, fmt.Errorf("SSE_PING_INTERVAL must be at most 10m, got %s", c.SSEPingInterval))
	}
	return errors.Join(errs...)
}

func (c ChatConfig) withDefaults() ChatConfig {
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = DefaultSyncTimeout
	}
	if c.MaxQueuedRunsPerUser <= 0 {
		c.MaxQueuedRunsPerUser = DefaultMaxQueuedRunsPerUser
	}
	if c.SSEMaxStreamsPerUser <= 0 {
		c.SSEMaxStreamsPerUser = DefaultSSEMaxStreamsPerUser
	}
	if c.SSEPingInterval <= 0 {
		c.SSEPingInterval = DefaultSSEPingInterval
	}
	if c.SSEBuffer <= 0 {
		c.SSEBuffer = DefaultSSEBuffer
	}
	return c
}

// ChatStore is what the chat routes need of *chat.Store. Its methods are
// safe for concurrent use and act for userID only (see package chat).
type ChatStore interface {
	CreateTurn(ctx context.Context, userID string, in chat.NewTurn) (chat.Turn, error)
	GetConversation(ctx context.Context, userID, id string) (chat.Conversation, error)
	ListConversations(ctx context.Context, userID string, p chat.ListParams) (chat.ConversationPage, error)
	RenameConversation(ctx context.Context, userID, id, title string) (chat.Conversation, error)
	DeleteConversation(ctx context.Context, userID, id string) ([]string, error)
	ListMessages(ctx context.Context, userID, conversationID string, p chat.ListParams) (chat.MessagePage, error)
	GetRun(ctx context.Context, userID, runID string) (chat.Run, error)
	CancelRun(ctx context.Context, userID, runID string) (chat.Run, error)
	NextQueuedRun(ctx context.Context, userID, conversationID string) (chat.Run, bool, error)
	RunAnswer(ctx context.Context, userID, runID string) (chat.Message, bool, error)
	// The ChatKit route's needs.
	RetryTurn(ctx context.Context, userID, conversationID, messageID string, maxUnfinished int) (chat.Turn, error)
	GetMessage(ctx context.Context, userID, conversationID, messageID string) (chat.Message, error)
	ListConversationsByCreation(ctx context.Context, userID string, p chat.ListParams) ([]chat.Conversation, bool, error)
	SetFeedback(ctx context.Context, userID, conversationID string, messageIDs []string, kind string) error
}

// ChatBus is what the chat routes need of *bus.Bus. Its methods are safe
// for concurrent use; failures to reach NATS wrap bus.ErrUnavailable.
type ChatBus interface {
	Connected() bool
	PublishRun(ctx context.Context, req bus.RunRequest) error
	PublishEvent(ctx context.Context, ev chat.Event, msgID string) (uint64, error)
	ReadEvents(ctx context.Context, conversationID string, afterSeq uint64, max int) ([]chat.Event, error)
	PurgeEvents(ctx context.Context, conversationID string) error
	PublishCancel(ctx context.Context, runID string) error
	PublishConversationDeleted(ctx context.Context, conversationID string) error
	EventBounds(ctx context.Context) (first, last uint64, err error)
}

// Chat groups the chat routes' dependencies; a Server without it serves
// no chat routes.
type Chat struct {
	Config ChatConfig
	Store  ChatStore
	Bus    ChatBus
	// Waiter receives every run event of this process's subscription.
	Waiter *RunWaiter
	// Events fans the process's one events follower out to the event
	// streams; the wiring passes its Deliver to bus.FollowEvents.
	Events *EventHub
}

// RunWaiter lets POST /chat wait for its run's final event. The process's
// one events follower feeds it (the wiring passes Deliver to
// bus.FollowEvents, beside the EventHub's); a request registers before its
// run is published, so the final event cannot slip past it.
type RunWaiter struct {
	mu sync.Mutex
	m  map[string][]chan chat.Event
	// conv is each waited-for run's conversation, for EndConversation.
	conv map[string]string
}

// NewRunWaiter returns an empty RunWaiter.
func NewRunWaiter() *RunWaiter {
	return &RunWaiter{m: map[string][]chan chat.Event{}, conv: map[string]string{}}
}

// Deliver hands a run's final event to every request waiting for it (two
// sync requests with one Idempotency-Key wait for the same run). It never
// blocks.
func (w *RunWaiter) Deliver(ev chat.Event) {
	if !chat.FinalEvent(ev.Type) {
		return
	}
	w.mu.Lock()
	chs := w.m[ev.RunID]
	delete(w.m, ev.RunID)
	delete(w.conv, ev.RunID)
	w.mu.Unlock()
	for _, ch := range chs {
		ch <- ev // buffered, and removed from the map: never blocks
	}
}

// EndConversation wakes the requests waiting for a run of a deleted
// conversation with run.cancelled: its runs end without a worker and
// without a final event in the stream (it would be purged with the
// conversation's events, perhaps before a follower read it).
func (w *RunWaiter) EndConversation(conversationID string) {
	w.mu.Lock()
	var runs []string
	for run, conv := range w.conv {
		if conv == conversationID {
			runs = append(runs, run)
		}
	}
	w.mu.Unlock()
	for _, run := range runs {
		ev, err := chat.NewEvent(chat.EventRunCancelled, conversationID, run, chat.RunCancelledData{RunID: run})
		if err != nil {
			panic("httpapi: encode run.cancelled: " + err.Error()) // cannot happen: a struct of strings
		}
		w.Deliver(ev)
	}
}

// wait registers a waiter for runID of conversationID; call stop when
// done waiting.
func (w *RunWaiter) wait(runID, conversationID string) (ch <-chan chat.Event, stop func()) {
	c := make(chan chat.Event, 1)
	w.mu.Lock()
	w.m[runID] = append(w.m[runID], c)
	w.conv[runID] = conversationID
	w.mu.Unlock()
	return c, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		chs := w.m[runID]
		for i, x := range chs {
			if x == c {
				chs = append(chs[:i], chs[i+1:]...)
				break
			}
		}
		if len(chs) == 0 {
			delete(w.m, runID)
			delete(w.conv, runID)
		} else {
			w.m[runID] = chs
		}
	}
}

// chatRoutes registers the chat routes when the server has a chat backend.
func (s *Server) chatRoutes() {
	if s.deps.Chat == nil {
		return
	}
	const conv = pathAPIUser + "/conversations/:id"
	s.app.Post(pathAPIUser+"/chat", s.postChat)
	s.app.Get(pathAPIUser+"/conversations", s.listConversations)
	s.app.Get(conv, s.getConversation)
	s.app.Patch(conv, s.renameConversation)
	s.app.Delete(conv, s.deleteConversation)
	s.app.Get(conv+"/messages", s.listMessages)
	s.BrowserGet(conv+"/events", s.streamEvents)
	s.app.Get(pathAPIUser+"/runs/:id", s.getRun)
	s.app.Post(pathAPIUser+"/runs/:id/cancel", s.cancelRun)
}

// chatBody is the body of POST /chat.
type chatBody struct {
	Message        optional[string] `json:"message"`
	ConversationID optional[string] `json:"conversation_id"`
}

// acceptedBody is the 202 answer of POST /chat.
type acceptedBody struct {
	ConversationID string         `json:"conversation_id"`
	MessageID      string         `json:"message_id"`
	RunID          string         `json:"run_id"`
	Status         chat.RunStatus `json:"status"`
	EventsURL      string         `json:"events_url"`
}

// answerBody is the 200 answer of POST /chat in the sync mode: the earlier
// phase's contract plus the run's status (and error when it failed).
type answerBody struct {
	ConversationID string          `json:"conversation_id"`
	MessageID      string          `json:"message_id"`
	RunID          string          `json:"run_id"`
	Status         chat.RunStatus  `json:"status"`
	Response       string          `json:"response"`
	ToolCalls      []chat.ToolCall `json:"tool_calls"`
	Error          *chat.RunError  `json:"error,omitempty"`
}

func (s *Server) postChat(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	var in chatBody
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	var v validate.Errors
	if !in.Message.Set || in.Message.Null {
		v.Add("message", "is required")
	}
	if in.ConversationID.Null {
		v.Add("conversation_id", "must be a string")
	}
	if err := v.Err(); err != nil {
		return err
	}
	ctx := c.UserContext()
	cb := s.deps.Chat.Bus
	// Nothing is stored when the message could not be handed on.
	if !cb.Connected() {
		return errUnavailable("the message queue is not available right now")
	}
	turn, err := s.deps.Chat.Store.CreateTurn(ctx, user, chat.NewTurn{
		ConversationID: in.ConversationID.Value,
		Message:        in.Message.Value,
		IdempotencyKey: key,
		RequestHash:    requestHash(in.ConversationID.Value, in.Message.Value),
		MaxUnfinished:  s.chatCfg.MaxQueuedRunsPerUser,
	})
	if err != nil {
		return err
	}
	run := turn.Run
	streamed := acceptsEventStream(c)
	async := !streamed && preferAsync(c)
	if streamed {
		return s.streamRun(c, user, turn)
	}

	var final <-chan chat.Event
	if !async && !run.Status.Final() {
		ch, stop := s.deps.Chat.Waiter.wait(run.ID, run.ConversationID)
		defer stop()
		final = ch
	}

	// The message is committed: from here on the request succeeds. A
	// publish that fails is the relay's to repeat.
	cursor := s.runCursor(ctx, turn)
	if async {
		return s.accepted(c, user, turn, cursor)
	}
	if !turn.Created && !run.Status.Final() {
		// A replay whose run may have finished between CreateTurn's read
		// and the waiter's registration: read it again, now that no final
		// event can be missed.
		if cur, err := s.deps.Chat.Store.GetRun(ctx, user, run.ID); err == nil {
			turn.Run, run = cur, cur
		}
	}
	if run.Status.Final() {
		// An idempotent replay of a finished run: the answer is stored.
		return s.storedAnswer(c, user, turn)
	}
	timer := time.NewTimer(s.chatCfg.SyncTimeout)
	defer timer.Stop()
	select {
	case ev := <-final:
		if ev.Type != chat.EventRunCompleted {
			// run.cancelled and run.failed carry no text, yet a cancelled
			// run keeps what it produced, and the run holds its error:
			// answer from storage (committed before the final event is
			// published), as a replay of this request does, so both agree.
			if cur, err := s.deps.Chat.Store.GetRun(ctx, user, run.ID); err == nil {
				turn.Run = cur
				return s.storedAnswer(c, user, turn)
			}
		}
		return c.JSON(answerFromEvent(turn, ev))
	case <-timer.C:
		return s.accepted(c, user, turn, cursor)
	case <-ctx.Done():
		return s.accepted(c, user, turn, cursor)
	}
}

// announce publishes run.queued and the run request of a new turn, and
// returns the events cursor just before the run's first event.
func (s *Server) announce(ctx context.Context, turn chat.Turn) uint64 {
	cb := s.deps.Chat.Bus
	log := reqctx.Logger(ctx, s.log)
	run := turn.Run
	var cursor uint64
	ev, err := chat.NewEvent(chat.EventRunQueued, run.ConversationID, run.ID,
		chat.RunQueuedData{RunID: run.ID, MessageID: turn.Message.ID, Position: turn.Position})
	if err == nil {
		var seq uint64
		seq, err = cb.PublishEvent(ctx, ev, chat.QueuedEventID(run.ID))
		if err == nil && seq > 0 {
			cursor = seq - 1
		}
	}
	if err != nil {
		log.Warn("publish run.queued", "run_id", run.ID, "err", err)
	}
	req := bus.RunRequest{V: bus.RunVersion, RunID: run.ID, UserID: run.UserID, ConversationID: run.ConversationID}
	if err := cb.PublishRun(ctx, req); err != nil {
		log.Warn("publish run request; the relay will retry", "run_id", run.ID, "err", err)
	}
	return cursor
}

// runCursor announces a new turn's run (see announce), or finds an
// existing run's cursor (an idempotent replay), and returns the events
// cursor just before the run's first event.
func (s *Server) runCursor(ctx context.Context, turn chat.Turn) uint64 {
	if turn.Created {
		return s.announce(ctx, turn)
	}
	return s.cursorOf(ctx, turn.Run)
}

// publishCancelled publishes run.cancelled for a run no worker will end
// (cancelled while queued), under the run's final event id, so that
// requests waiting for it, on any replica, answer at once.
func (s *Server) publishCancelled(ctx context.Context, conversationID, runID string) {
	ev, err := chat.NewEvent(chat.EventRunCancelled, conversationID, runID, chat.RunCancelledData{RunID: runID})
	if err == nil {
		_, err = s.deps.Chat.Bus.PublishEvent(ctx, ev, chat.FinalEventID(runID))
	}
	if err != nil {
		reqctx.Logger(ctx, s.log).Warn("publish run.cancelled", "run_id", runID, "err", err)
	}
}

// cursorOf finds the cursor just before an existing run's run.queued
// event (an idempotent replay); 0 replays the whole conversation.
func (s *Server) cursorOf(ctx context.Context, run chat.Run) uint64 {
	const page = 1000
	var after uint64
	for range 20 {
		evs, err := s.deps.Chat.Bus.ReadEvents(ctx, run.ConversationID, after, page)
		if err != nil || len(evs) == 0 {
			return 0
		}
		for _, ev := range evs {
			if ev.RunID == run.ID && ev.Type == chat.EventRunQueued {
				return ev.Seq - 1
			}
		}
		after = evs[len(evs)-1].Seq
	}
	return 0
}

func (s *Server) accepted(c *fiber.Ctx, user string, turn chat.Turn, cursor uint64) error {
	run := turn.Run
	if cur, err := s.deps.Chat.Store.GetRun(c.UserContext(), user, run.ID); err == nil {
		run = cur
	}
	c.Location(runPath(user, run.ID))
	return c.Status(fiber.StatusAccepted).JSON(acceptedBody{
		ConversationID: run.ConversationID,
		MessageID:      turn.Message.ID,
		RunID:          run.ID,
		Status:         run.Status,
		EventsURL:      "/api/" + url.PathEscape(user) + "/conversations/" + run.ConversationID + "/events?after=" + strconv.FormatUint(cursor, 10),
	})
}

// storedAnswer answers a replayed sync request from the stored assistant
// message.
func (s *Server) storedAnswer(c *fiber.Ctx, user string, turn chat.Turn) error {
	run := turn.Run
	body := answerBody{ConversationID: run.ConversationID, MessageID: turn.Message.ID, RunID: run.ID,
		Status: run.Status, ToolCalls: []chat.ToolCall{}, Error: run.Error}
	m, ok, err := s.deps.Chat.Store.RunAnswer(c.UserContext(), user, run.ID)
	if err != nil {
		return err
	}
	if ok {
		body.Response, body.ToolCalls = m.Content, m.ToolCalls
	}
	return c.JSON(body)
}

func answerFromEvent(turn chat.Turn, ev chat.Event) answerBody {
	run := turn.Run
	body := answerBody{ConversationID: run.ConversationID, MessageID: turn.Message.ID, RunID: run.ID, ToolCalls: []chat.ToolCall{}}
	switch ev.Type {
	case chat.EventRunCompleted:
		var d chat.RunCompletedData
		_ = json.Unmarshal(ev.Data, &d) // published by the worker from this struct
		body.Status, body.Response = chat.RunCompleted, d.Response
		if d.ToolCalls != nil {
			body.ToolCalls = d.ToolCalls
		}
	case chat.EventRunFailed:
		var d chat.RunFailedData
		_ = json.Unmarshal(ev.Data, &d) // published by the worker from this struct
		body.Status, body.Error = chat.RunFailed, &d.Error
	case chat.EventRunCancelled:
		body.Status = chat.RunCancelled
		body.Error = &chat.RunError{Code: chat.CodeCancelled, Message: "cancelled"}
	}
	return body
}

// acceptsEventStream reports whether the request asked for the run's
// events in the response (it takes precedence over Prefer: respond-async).
func acceptsEventStream(c *fiber.Ctx) bool {
	return strings.Contains(c.Get(fiber.HeaderAccept), "text/event-stream")
}

// streamRun answers POST /chat with the run's events as Server-Sent Events,
// ending after its final event. The stream registers with the hub before
// the run is announced, so no event of the run can pass it by; past the
// per-user stream cap the request gets the 202 answer instead (its message
// is already committed).
func (s *Server) streamRun(c *fiber.Ctx, user string, turn chat.Turn) error {
	ctx := c.UserContext()
	run := turn.Run
	hub := s.deps.Chat.Events
	sub, subErr := hub.subscribe(user, run.ConversationID, s.chatCfg.SSEMaxStreamsPerUser)
	cursor := s.runCursor(ctx, turn)
	if subErr != nil {
		return s.accepted(c, user, turn, cursor)
	}
	_, last, err := s.deps.Chat.Bus.EventBounds(ctx)
	if err != nil {
		hub.unsubscribe(sub)
		return s.accepted(c, user, turn, cursor)
	}
	return startStream(c, &eventStream{s: s, hub: hub, sub: sub, conv: run.ConversationID, format: sseFormat{runID: run.ID},
		finished: run.Status.Final(), plan: streamPlan{after: cursor, last: last}, log: s.reqLog(c)})
}

// preferAsync reports whether the request asked for the 202 answer.
func preferAsync(c *fiber.Ctx) bool {
	for _, p := range strings.Split(c.Get("Prefer"), ",") {
		if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
			return true
		}
	}
	return false
}

// idempotencyKey reads the Idempotency-Key header: 1–255 visible ASCII
// characters, or absent.
func idempotencyKey(c *fiber.Ctx) (string, error) {
	k := c.Get("Idempotency-Key")
	if k == "" {
		return "", nil
	}
	if len(k) > maxIdempotencyKeyLen || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", validate.Field("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
	}
	return strings.Clone(k), nil
}

// requestHash identifies a request's content for idempotency: the same key
// with another body is refused.
func requestHash(conversationID, message string) string {
	h := sha256.New()
	// The store accepts a UUID in either case: hash the one it means.
	h.Write([]byte(strings.ToLower(strings.TrimSpace(conversationID))))
	h.Write([]byte{0})
	h.Write([]byte(strings.TrimSpace(message)))
	return hex.EncodeToString(h.Sum(nil))
}

func runPath(user, runID string) string {
	return "/api/" + url.PathEscape(user) + "/runs/" + runID
}

// conversationPage is a list answer of conversations.
func (s *Server) listConversations(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	limit, err := todo.ParseLimit(query(c, "limit"))
	if err != nil {
		return err
	}
	page, err := s.deps.Chat.Store.ListConversations(c.UserContext(), user, chat.ListParams{Limit: limit, Cursor: query(c, "cursor")})
	if err != nil {
		return err
	}
	return c.JSON(newList(page.Conversations, page.NextCursor))
}

func (s *Server) getConversation(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	conv, err := s.deps.Chat.Store.GetConversation(c.UserContext(), user, param(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(conv)
}

// renameBody is the body of PATCH /conversations/:id.
type renameBody struct {
	Title optional[string] `json:"title"`
}

func (s *Server) renameConversation(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	var in renameBody
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	if !in.Title.Set || in.Title.Null {
		return validate.Field("title", "is required")
	}
	conv, err := s.deps.Chat.Store.RenameConversation(c.UserContext(), user, param(c, "id"), in.Title.Value)
	if err != nil {
		return err
	}
	return c.JSON(conv)
}

func (s *Server) deleteConversation(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	if err := s.removeConversation(c.UserContext(), user, param(c, "id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// removeConversation deletes user's conversation id (chat.ErrNotFound when
// it is not theirs), stops its unfinished runs and ends its streams on
// every replica.
func (s *Server) removeConversation(ctx context.Context, user, id string) error {
	log := reqctx.Logger(ctx, s.log)
	runs, err := s.deps.Chat.Store.DeleteConversation(ctx, user, id)
	if err != nil {
		return err
	}
	// The rows are gone; a worker holding one of its runs notices at its
	// next lease renewal, or at once through the cancel signal.
	for _, runID := range runs {
		if err := s.deps.Chat.Bus.PublishCancel(ctx, runID); err != nil {
			log.Warn("signal cancel of a deleted conversation's run", "run_id", runID, "err", err)
		}
	}
	// No final event is published for its runs (it would be purged below,
	// perhaps before a follower read it): its streams and sync requests end
	// here and, through the signal, on every replica.
	s.deps.Chat.Events.EndConversation(id)
	s.deps.Chat.Waiter.EndConversation(id)
	if err := s.deps.Chat.Bus.PublishConversationDeleted(ctx, id); err != nil {
		log.Warn("signal a deleted conversation to the other replicas", "conversation_id", id, "err", err)
	}
	if err := s.deps.Chat.Bus.PurgeEvents(ctx, id); err != nil {
		log.Warn("purge a deleted conversation's events", "conversation_id", id, "err", err)
	}
	return nil
}

func (s *Server) listMessages(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	limit, err := todo.ParseLimit(query(c, "limit"))
	if err != nil {
		return err
	}
	page, err := s.deps.Chat.Store.ListMessages(c.UserContext(), user, param(c, "id"),
		chat.ListParams{Limit: limit, Cursor: query(c, "cursor"), Order: query(c, "order")})
	if err != nil {
		return err
	}
	return c.JSON(newList(page.Messages, page.NextCursor))
}

func (s *Server) getRun(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	run, err := s.deps.Chat.Store.GetRun(c.UserContext(), user, param(c, "id"))
	if err != nil {
		return err
	}
	return c.JSON(run)
}

func (s *Server) cancelRun(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	run, err := s.stopRun(c.UserContext(), user, param(c, "id"))
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(run)
}

// stopRun cancels user's run runID: a queued run ends at once, a running
// one is signalled to its worker, whichever replica and process holds it.
// Errors are CancelRun's (chat.ErrNotFound, chat.ErrRunFinished).
func (s *Server) stopRun(ctx context.Context, user, runID string) (chat.Run, error) {
	run, err := s.deps.Chat.Store.CancelRun(ctx, user, runID)
	if err != nil {
		return chat.Run{}, err
	}
	if run.Status == chat.RunCancelled {
		// It never started: announce its end here.
		s.publishCancelled(ctx, run.ConversationID, run.ID)
		s.wakeNext(ctx, user, run.ConversationID)
	} else if err := s.deps.Chat.Bus.PublishCancel(ctx, run.ID); err != nil {
		// The worker also reads the request from Postgres at its next lease
		// renewal.
		reqctx.Logger(ctx, s.log).Warn("signal cancel", "run_id", run.ID, "err", err)
	}
	return run, nil
}

// wakeNext publishes the conversation's next queued run again: its own
// request may have been acked while the cancelled run was ahead of it, and
// no worker finishes the cancelled one to pick it up. A fresh message id:
// the original may be inside the duplicate window.
func (s *Server) wakeNext(ctx context.Context, user, conversationID string) {
	next, ok, err := s.deps.Chat.Store.NextQueuedRun(ctx, user, conversationID)
	if err != nil || !ok {
		return // the relay covers an error
	}
	req := bus.RunRequest{V: bus.RunVersion, RunID: next.ID, UserID: user, ConversationID: conversationID,
		MsgID: next.ID + ".wake." + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if err := s.deps.Chat.Bus.PublishRun(ctx, req); err != nil {
		reqctx.Logger(ctx, s.log).Warn("publish the next run; the relay will", "run_id", next.ID, "err", err)
	}
}

// newList is the list shape; Data is never null.
func newList[T any](data []T, next string) listResponse[T] {
	if data == nil {
		data = []T{}
	}
	resp := listResponse[T]{Data: data}
	if next != "" {
		resp.NextCursor = &next
	}
	return resp
}

// param returns a copy of a path parameter (Fiber's strings are reused).
func param(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

// chatError maps the chat and bus sentinels to answers; toError calls it.
func chatError(err error) (*Error, bool) {
	switch {
	case errors.Is(err, chat.ErrNotFound):
		return errNotFound(), true
	case errors.Is(err, chat.ErrTooManyRuns):
		return &Error{Status: fiber.StatusTooManyRequests, Code: CodeRateLimited,
			Detail: "too many unfinished messages: wait for an answer", RetryAfter: retryAfterSeconds}, true
	case errors.Is(err, chat.ErrIdempotencyKeyReused):
		return &Error{Status: fiber.StatusUnprocessableEntity, Code: CodeIdempotencyKeyReused,
			Detail: "this Idempotency-Key was used with a different request"}, true
	case errors.Is(err, chat.ErrConversationBusy):
		return &Error{Status: fiber.StatusConflict, Code: CodeConversationBusy, Detail: "the thread is still being answered"}, true
	case errors.Is(err, chat.ErrRunFinished):
		return &Error{Status: fiber.StatusConflict, Code: CodeRunFinished, Detail: "the run has already finished"}, true
	case errors.Is(err, bus.ErrUnavailable):
		return errUnavailable("the message queue is not available right now"), true
	}
	return nil, false
}
