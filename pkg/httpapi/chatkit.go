package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/chatkit"
	"github.com/taskchat/taskchat/pkg/reqctx"
	"github.com/taskchat/taskchat/pkg/validate"
)

// Paths of the ChatKit route. The /api one is authenticated by the /api
// middleware and exempt from the path user check (it has no user id);
// the other authenticates itself.
const (
	pathChatKit     = "/api/chatkit"
	pathChatKitRoot = "/chatkit"
)

// abandonTimeout bounds cancelling the run of a stream whose client went
// away (the stop button).
const abandonTimeout = 10 * time.Second

// chatkitRoutes registers ChatKit's one endpoint, at both paths, when the
// server has a chat backend.
func (s *Server) chatkitRoutes() {
	if s.deps.Chat == nil {
		return
	}
	s.app.Post(pathChatKit, s.chatkit)
	s.app.Post(pathChatKitRoot, s.authenticate, s.chatkit)
}

// isChatKitPath reports whether p is the /api ChatKit route's path.
func isChatKitPath(p string) bool { return strings.TrimRight(p, "/") == pathChatKit }

// chatkit serves one ChatKit request (see package chatkit and docs/api.md,
// "ChatKit"): the streaming operations answer an event stream of data
// lines, the others one JSON body.
func (s *Server) chatkit(c *fiber.Ctx) error {
	user, err := caller(c)
	if err != nil {
		return err
	}
	req, err := s.decodeChatKit(c)
	if err != nil {
		return err
	}
	if why := req.Unsupported(); why != "" {
		return s.chatkitUnsupported(c, user, req, why)
	}
	// The stores name fields as the REST routes do ("title"); in a ChatKit
	// request they are members of params.
	return validate.Prefix(s.chatkitOp(c, user, req), "params.")
}

// chatkitOp carries out one decoded, supported request.
func (s *Server) chatkitOp(c *fiber.Ctx, user string, req chatkit.Request) error {
	ctx := c.UserContext()
	st := s.deps.Chat.Store
	switch req.Op {
	case chatkit.OpThreadsCreate, chatkit.OpThreadsAddMessage, chatkit.OpThreadsRetry:
		return s.chatkitTurn(c, user, req)
	case chatkit.OpThreadsGetByID:
		conv, err := st.GetConversation(ctx, user, req.ThreadID)
		if err != nil {
			return err
		}
		first := chatkit.DefaultPageSize
		items, err := chatkit.ListItems(ctx, st, user, conv.ID, chatkit.PageParams{Limit: &first, Order: chat.OrderAsc})
		if err != nil {
			return err
		}
		return c.JSON(chatkit.ThreadOf(conv, items))
	case chatkit.OpThreadsList:
		limit, order, err := req.Page.Normalize()
		if err != nil {
			return err
		}
		convs, more, err := st.ListConversationsByCreation(ctx, user, chat.ListParams{Limit: limit, Order: order, After: req.Page.After})
		if err != nil {
			return err
		}
		return c.JSON(chatkit.Threads(convs, more))
	case chatkit.OpItemsList:
		items, err := chatkit.ListItems(ctx, st, user, req.ThreadID, req.Page)
		if err != nil {
			return err
		}
		return c.JSON(items)
	case chatkit.OpThreadsUpdate:
		conv, err := st.RenameConversation(ctx, user, req.ThreadID, req.Title)
		if err != nil {
			return err
		}
		return c.JSON(chatkit.ThreadMeta(conv))
	case chatkit.OpThreadsDelete:
		if err := s.removeConversation(ctx, user, req.ThreadID); err != nil {
			return err
		}
		return c.JSON(struct{}{})
	case chatkit.OpItemsFeedback:
		ids := make([]string, len(req.ItemIDs))
		for i, id := range req.ItemIDs {
			ids[i] = chatkit.MessageID(id)
		}
		if err := st.SetFeedback(ctx, user, req.ThreadID, ids, req.Kind); err != nil {
			return err
		}
		return c.JSON(struct{}{})
	}
	return &Error{Status: fiber.StatusBadRequest, Code: CodeValidationFailed, Detail: "unknown operation"} // Decode knows every op above
}

// decodeChatKit reads and decodes the body leniently, as ChatKit's
// reference server does: any Content-Type, unknown members ignored. It is
// still one JSON object of at most HTTP_BODY_LIMIT bytes.
func (s *Server) decodeChatKit(c *fiber.Ctx) (chatkit.Request, error) {
	if ce := c.Get(fiber.HeaderContentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		return chatkit.Request{}, &Error{Status: fiber.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Detail: "compressed bodies are not accepted"}
	}
	body, err := s.readBody(c)
	if err != nil {
		return chatkit.Request{}, err
	}
	if err := checkObject(body); err != nil {
		return chatkit.Request{}, err
	}
	if _, err := memberNames(body); err != nil {
		return chatkit.Request{}, err
	}
	req, err := chatkit.Decode(body)
	if errors.Is(err, chatkit.ErrMalformed) {
		return chatkit.Request{}, errInvalidJSON(strings.TrimPrefix(err.Error(), chatkit.ErrMalformed.Error()+": "))
	}
	return req, err
}

// chatkitUnsupported answers an optional operation taskchat does not offer:
// after the thread check, a streaming one gets a stream holding one error
// event, the others 501.
func (s *Server) chatkitUnsupported(c *fiber.Ctx, user string, req chatkit.Request, why string) error {
	if req.ThreadID != "" {
		if _, err := s.deps.Chat.Store.GetConversation(c.UserContext(), user, req.ThreadID); err != nil {
			return err
		}
	}
	if !req.Streaming() {
		return &Error{Status: fiber.StatusNotImplemented, Code: CodeNotImplemented, Detail: why}
	}
	b, err := dataLine(chatkit.Error(why, false))
	if err != nil {
		return err
	}
	setStreamHeaders(c)
	return c.Send(b)
}

// chatkitTurn accepts a user message (threads.create,
// threads.add_user_message) or a retry (threads.retry_after_item) through
// the same store path as POST /chat, then streams the run's events
// rendered for ChatKit. Everything that can fail before the message is
// stored — the body, the caps, the thread, NATS — is an HTTP error, not a
// stream.
func (s *Server) chatkitTurn(c *fiber.Ctx, user string, req chatkit.Request) error {
	ctx := c.UserContext()
	hub := s.deps.Chat.Events
	if !s.deps.Chat.Bus.Connected() {
		return errUnavailable("the message queue is not available right now")
	}
	if hub.streamsOf(user) >= s.chatCfg.SSEMaxStreamsPerUser {
		return errTooManyStreamsFor(s.chatCfg.SSEMaxStreamsPerUser)
	}
	var (
		turn chat.Turn
		err  error
	)
	maxRuns := s.chatCfg.MaxQueuedRunsPerUser
	if req.Op == chatkit.OpThreadsRetry {
		turn, err = s.retryTurn(ctx, user, req, maxRuns)
	} else {
		turn, err = s.deps.Chat.Store.CreateTurn(ctx, user, chat.NewTurn{ConversationID: req.ThreadID, Message: req.Text, MaxUnfinished: maxRuns})
	}
	if err != nil {
		return err
	}
	// The message is committed: from here on the answer is a stream.
	f := &chatkitFormat{s: s, user: user, turn: turn, log: s.reqLog(c),
		render: chatkit.NewRenderer(turn.Conversation.ID, turn.Run.AssistantMessageID, time.Now)}
	if req.Op == chatkit.OpThreadsCreate {
		f.prelude = append(f.prelude, chatkit.ThreadEvent{Type: chatkit.EventThreadCreated, Thread: chatkit.ThreadMeta(turn.Conversation)})
	}
	if req.Op != chatkit.OpThreadsRetry {
		f.prelude = append(f.prelude, chatkit.ItemEvent{Type: chatkit.EventItemDone, Item: chatkit.UserItem(turn.Message)})
	}
	f.prelude = append(f.prelude, chatkit.StreamOptions())
	// Registered before the run is announced: none of its events can pass
	// the stream by.
	sub, subErr := hub.subscribe(user, turn.Conversation.ID, s.chatCfg.SSEMaxStreamsPerUser)
	s.announce(ctx, turn)
	if subErr != nil {
		// The cap was reached by a concurrent stream, or the server is
		// shutting down: the message stands, the client reloads it.
		f.prelude = append(f.prelude, chatkit.Error("The answer is on its way; reload the conversation to see it.", false))
		body := make([]byte, 0, 1024)
		for _, ev := range f.prelude {
			b, err := dataLine(ev)
			if err != nil {
				return err
			}
			body = append(body, b...)
		}
		setStreamHeaders(c)
		return c.Send(body)
	}
	return startStream(c, &eventStream{s: s, hub: hub, sub: sub, conv: turn.Conversation.ID, format: f,
		plan: streamPlan{live: true}, log: f.log})
}

// retryTurn answers the user message req.ItemID of thread req.ThreadID
// again (chat.Store.RetryTurn). A workflow item's id names an assistant
// message, never a user one: it is refused like the assistant's own item,
// rather than taken for the message behind it.
func (s *Server) retryTurn(ctx context.Context, user string, req chatkit.Request, maxRuns int) (chat.Turn, error) {
	st := s.deps.Chat.Store
	if chatkit.IsWorkflowID(req.ItemID) {
		if _, err := st.GetConversation(ctx, user, req.ThreadID); err != nil {
			return chat.Turn{}, err
		}
		return chat.Turn{}, validate.Field("item_id", "must be a user message")
	}
	return st.RetryTurn(ctx, user, req.ThreadID, req.ItemID, maxRuns)
}

// chatkitFormat writes one run's events as a ChatKit stream: each event
// one "data: <json>" line and a blank line, flushed on its own. When the
// client goes away before the run ends (ChatKit's stop button aborts the
// request), the run is cancelled and keeps what it produced.
type chatkitFormat struct {
	s       *Server
	user    string
	turn    chat.Turn
	prelude []any
	render  *chatkit.Renderer
	log     *slog.Logger
}

func (f *chatkitFormat) open(w *bufio.Writer) error {
	for _, ev := range f.prelude {
		if err := writeData(w, ev); err != nil {
			return err
		}
	}
	return nil
}

func (f *chatkitFormat) event(w *bufio.Writer, ev chat.Event) (bool, error) {
	if ev.RunID != f.turn.Run.ID {
		return false, nil
	}
	out, end, err := f.render.Render(ev)
	if err != nil {
		f.log.Warn("chatkit: an event could not be rendered", "run_id", ev.RunID, "type", ev.Type, "err", err)
	}
	for _, e := range out {
		if err := writeData(w, e); err != nil {
			return false, err
		}
	}
	if end {
		f.titleChanged(w)
	}
	return end, nil
}

// titleChanged sends thread.updated when the thread's title changed while
// the run streamed (renamed over REST or threads.update).
func (f *chatkitFormat) titleChanged(w *bufio.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), abandonTimeout)
	defer cancel()
	conv, err := f.s.deps.Chat.Store.GetConversation(ctx, f.user, f.turn.Conversation.ID)
	if err != nil || conv.Title == f.turn.Conversation.Title {
		return
	}
	_ = writeData(w, chatkit.ThreadEvent{Type: chatkit.EventThreadUpdated, Thread: chatkit.ThreadMeta(conv)})
}

func (f *chatkitFormat) interrupted(w *bufio.Writer, why string) {
	switch why {
	case "gone":
		f.abandon()
		return
	case "deleted":
		_ = writeData(w, chatkit.Error("This conversation was deleted.", false))
	default: // overflow, shutdown, a failed replay: the run goes on
		_ = writeData(w, chatkit.Error("The answer goes on; reload the conversation to see it.", false))
	}
}

// abandon cancels the run of a stream whose client went away. It works
// whichever replica and worker hold the run (see stopRun); a run that has
// just ended is left as it is.
func (f *chatkitFormat) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), abandonTimeout)
	defer cancel()
	ctx = reqctx.WithUserID(ctx, f.user)
	_, err := f.s.stopRun(ctx, f.user, f.turn.Run.ID)
	switch {
	case err == nil:
		f.log.Info("chatkit: client went away, run cancelled", "run_id", f.turn.Run.ID)
	case errors.Is(err, chat.ErrRunFinished), errors.Is(err, chat.ErrNotFound):
	default:
		f.log.Warn("chatkit: cancel the run of a stream whose client went away", "run_id", f.turn.Run.ID, "err", err)
	}
}

// dataLine is one ChatKit stream event: "data: <one-line JSON>\n\n".
func dataLine(v any) ([]byte, error) {
	b, err := json.Marshal(v) // compact: no line breaks
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+8)
	out = append(out, "data: "...)
	out = append(out, b...)
	return append(out, '\n', '\n'), nil
}

// writeData writes one event and flushes it.
func writeData(w *bufio.Writer, v any) error {
	b, err := dataLine(v)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}
