// Package chatkit speaks OpenAI ChatKit's custom-backend protocol on top of
// taskchat's chat pipeline: the request envelope and its operations, the
// JSON shapes of threads, items, pages and stream events (as
// openai/chatkit-python's chatkit/types.py defines them), the mapping of
// conversations and messages to threads and items, and the rendering of a
// run's events as a ChatKit stream. It holds no connections: the HTTP
// handler in pkg/httpapi calls the chat store and the bus and uses this
// package for the protocol.
//
// Ids: a thread's id is its conversation's, a message item's id is its
// message's, and the workflow item that shows an assistant message's tool
// calls is "wf_" followed by that message's id. They are the same in every
// answer and in the stream.
package chatkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/validate"
)

// Operations (the request's "type").
const (
	OpThreadsCreate        = "threads.create"
	OpThreadsAddMessage    = "threads.add_user_message"
	OpThreadsAddToolOutput = "threads.add_client_tool_output"
	OpThreadsRetry         = "threads.retry_after_item"
	OpThreadsCustomAction  = "threads.custom_action"
	OpThreadsSyncAction    = "threads.sync_custom_action"
	OpThreadsGetByID       = "threads.get_by_id"
	OpThreadsList          = "threads.list"
	OpThreadsUpdate        = "threads.update"
	OpThreadsDelete        = "threads.delete"
	OpItemsList            = "items.list"
	OpItemsFeedback        = "items.feedback"
	OpAttachmentsCreate    = "attachments.create"
	OpAttachmentsDelete    = "attachments.delete"
	OpInputTranscribe      = "input.transcribe"
)

// streaming are the operations answered with an event stream; the request's
// type alone decides.
var streaming = map[string]bool{
	OpThreadsCreate: true, OpThreadsAddMessage: true, OpThreadsAddToolOutput: true,
	OpThreadsRetry: true, OpThreadsCustomAction: true,
}

// unsupported are the optional operations taskchat does not offer (client
// tools, widget actions, attachments, dictation); they are answered with
// a clear error.
var unsupported = map[string]string{
	OpThreadsAddToolOutput: "Client tools are not supported by this server.",
	OpThreadsCustomAction:  "Widget actions are not supported by this server.",
	OpThreadsSyncAction:    "Widget actions are not supported by this server.",
	OpAttachmentsCreate:    "Attachments are not supported by this server.",
	OpAttachmentsDelete:    "Attachments are not supported by this server.",
	OpInputTranscribe:      "Dictation is not supported by this server.",
}

// MaxFeedbackItems bounds the item_ids of one items.feedback request (the
// widget rates one answer at a time).
const MaxFeedbackItems = chat.MaxLimit

// ErrMalformed is the error of a request that is not ChatKit's JSON: a
// member of the wrong type. Decode wraps it with what was wrong.
var ErrMalformed = errors.New("chatkit: malformed request")

// Request is one decoded ChatKit request. Fields an operation does not use
// are zero; fields taskchat ignores (metadata, inference options, tag data)
// are not kept.
type Request struct {
	// Op is the operation, e.g. OpThreadsCreate.
	Op string
	// ThreadID, ItemID, ItemIDs, Kind and Title are the params of that
	// name.
	ThreadID string
	ItemID   string
	ItemIDs  []string
	Kind     string
	Title    string
	// Page holds limit, order and after of the list operations.
	Page PageParams
	// Text is the user message's text (threads.create and
	// threads.add_user_message): its parts joined, a tag as its text.
	Text string
}

// Streaming reports whether the operation is answered with a stream.
func (r Request) Streaming() bool { return streaming[r.Op] }

// Unsupported returns, for an optional operation taskchat does not offer,
// why, for people; "" otherwise.
func (r Request) Unsupported() string { return unsupported[r.Op] }

// envelope is the request body.
type envelope struct {
	Type     *string         `json:"type"`
	Params   json.RawMessage `json:"params"`
	Metadata json.RawMessage `json:"metadata"`
}

// params is the union of the params taskchat reads.
type params struct {
	ThreadID *string    `json:"thread_id"`
	ItemID   *string    `json:"item_id"`
	ItemIDs  *[]string  `json:"item_ids"`
	Kind     *string    `json:"kind"`
	Title    *string    `json:"title"`
	Input    *userInput `json:"input"`
	PageParams
}

// userInput is ChatKit's UserMessageInput.
type userInput struct {
	Content          *[]UserContent    `json:"content"`
	Attachments      []string          `json:"attachments"`
	QuotedText       *string           `json:"quoted_text"`
	InferenceOptions *InferenceOptions `json:"inference_options"`
}

// Decode reads a request body (one JSON object, already checked to be
// well-formed by the caller). Unknown members are ignored, as ChatKit's
// reference server does. A member of the wrong type wraps ErrMalformed; a
// missing or invalid required member, or an unknown operation, is a
// *validate.Error naming it ("type", "params.thread_id", …).
func Decode(body []byte) (Request, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Request{}, malformed(err)
	}
	var v validate.Errors
	if env.Type == nil || *env.Type == "" {
		v.Add("type", "is required")
		return Request{}, v.Err()
	}
	r := Request{Op: *env.Type}
	if !known(r.Op) {
		v.Add("type", "is not a ChatKit operation")
		return Request{}, v.Err()
	}
	var p params
	if len(env.Params) > 0 && string(env.Params) != "null" {
		if err := json.Unmarshal(env.Params, &p); err != nil {
			return Request{}, malformed(err)
		}
	}
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	r.ThreadID, r.ItemID, r.Kind, r.Title = str(p.ThreadID), str(p.ItemID), str(p.Kind), str(p.Title)
	r.Page = p.PageParams
	if p.ItemIDs != nil {
		r.ItemIDs = *p.ItemIDs
	}
	require := func(name string, ok bool) {
		if !ok {
			v.Add("params."+name, "is required")
		}
	}
	switch r.Op {
	case OpThreadsCreate, OpThreadsAddMessage:
		if r.Op == OpThreadsAddMessage {
			require("thread_id", r.ThreadID != "")
		}
		r.Text = p.Input.text(&v)
	case OpThreadsRetry:
		require("thread_id", r.ThreadID != "")
		require("item_id", r.ItemID != "")
	case OpThreadsGetByID, OpThreadsDelete, OpItemsList, OpThreadsAddToolOutput, OpThreadsCustomAction, OpThreadsSyncAction:
		require("thread_id", r.ThreadID != "")
	case OpThreadsUpdate:
		require("thread_id", r.ThreadID != "")
		require("title", p.Title != nil)
	case OpItemsFeedback:
		require("thread_id", r.ThreadID != "")
		require("item_ids", p.ItemIDs != nil)
		if len(r.ItemIDs) > MaxFeedbackItems {
			v.Addf("params.item_ids", "must list at most %d items", MaxFeedbackItems)
		}
		if r.Kind != "positive" && r.Kind != "negative" {
			v.Add("params.kind", "must be positive or negative")
		}
	}
	if r.Op == OpThreadsList || r.Op == OpItemsList {
		if _, _, err := r.Page.Normalize(); err != nil {
			return Request{}, err
		}
	}
	if err := v.Err(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// text checks a UserMessageInput and returns its text: the parts joined in
// order, an input_tag by its text. Attachments are refused (taskchat
// stores none); quoted text and inference options are ignored.
func (in *userInput) text(v *validate.Errors) string {
	if in == nil {
		v.Add("params.input", "is required")
		return ""
	}
	if in.Content == nil {
		v.Add("params.input.content", "is required")
		return ""
	}
	if len(in.Attachments) > 0 {
		v.Add("params.input.attachments", "attachments are not supported")
	}
	var b strings.Builder
	for i, c := range *in.Content {
		switch c.Type {
		case ContentInputText, ContentInputTag:
			b.WriteString(c.Text)
		default:
			v.Addf(fmt.Sprintf("params.input.content[%d].type", i), "must be %s or %s", ContentInputText, ContentInputTag)
		}
	}
	return b.String()
}

func known(op string) bool {
	switch op {
	case OpThreadsGetByID, OpThreadsList, OpThreadsUpdate, OpThreadsDelete, OpItemsList, OpItemsFeedback:
		return true
	}
	return streaming[op] || unsupported[op] != ""
}

func malformed(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%w: %q has the wrong type", ErrMalformed, te.Field)
	}
	return fmt.Errorf("%w: a member has the wrong type", ErrMalformed)
}
