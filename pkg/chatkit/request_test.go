package chatkit_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/chatkit"
	"github.com/taskchat/taskchat/pkg/validate"
)

// input is a UserMessageInput as the widget sends it: every member
// present, some of them ones taskchat does not read.
const input = `{"content":[{"type":"input_text","text":"remind me "},` +
	`{"type":"input_tag","id":"t1","text":"@milk","data":{"k":1},"group":null,"interactive":true}],` +
	`"attachments":[],"quoted_text":"earlier","inference_options":{"tool_choice":{"id":"x"},"model":"m"}}`

func intp(n int) *int { return &n }

func TestDecodeOps(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       chatkit.Request
		streaming  bool
	}{
		{"threads.create", `{"type":"threads.create","params":{"input":` + input + `},"metadata":{"a":1}}`,
			chatkit.Request{Op: chatkit.OpThreadsCreate, Text: "remind me @milk"}, true},
		{"threads.add_user_message", `{"type":"threads.add_user_message","params":{"thread_id":"th","input":` + input + `}}`,
			chatkit.Request{Op: chatkit.OpThreadsAddMessage, ThreadID: "th", Text: "remind me @milk"}, true},
		{"threads.retry_after_item", `{"type":"threads.retry_after_item","params":{"thread_id":"th","item_id":"it"}}`,
			chatkit.Request{Op: chatkit.OpThreadsRetry, ThreadID: "th", ItemID: "it"}, true},
		{"threads.get_by_id", `{"type":"threads.get_by_id","params":{"thread_id":"th"}}`,
			chatkit.Request{Op: chatkit.OpThreadsGetByID, ThreadID: "th"}, false},
		{"threads.list with every param", `{"type":"threads.list","params":{"limit":5,"order":"asc","after":"th"}}`,
			chatkit.Request{Op: chatkit.OpThreadsList, Page: chatkit.PageParams{Limit: intp(5), Order: "asc", After: "th"}}, false},
		{"threads.list with nulls", `{"type":"threads.list","params":{"limit":null,"order":"desc","after":null}}`,
			chatkit.Request{Op: chatkit.OpThreadsList, Page: chatkit.PageParams{Order: "desc"}}, false},
		{"threads.list without params", `{"type":"threads.list"}`,
			chatkit.Request{Op: chatkit.OpThreadsList}, false},
		{"items.list", `{"type":"items.list","params":{"thread_id":"th","limit":0,"order":"desc","after":"it"}}`,
			chatkit.Request{Op: chatkit.OpItemsList, ThreadID: "th", Page: chatkit.PageParams{Limit: intp(0), Order: "desc", After: "it"}}, false},
		{"threads.update", `{"type":"threads.update","params":{"thread_id":"th","title":"New"}}`,
			chatkit.Request{Op: chatkit.OpThreadsUpdate, ThreadID: "th", Title: "New"}, false},
		{"threads.delete", `{"type":"threads.delete","params":{"thread_id":"th"}}`,
			chatkit.Request{Op: chatkit.OpThreadsDelete, ThreadID: "th"}, false},
		{"items.feedback", `{"type":"items.feedback","params":{"thread_id":"th","item_ids":["a","b"],"kind":"negative"}}`,
			chatkit.Request{Op: chatkit.OpItemsFeedback, ThreadID: "th", ItemIDs: []string{"a", "b"}, Kind: "negative"}, false},
		{"threads.add_client_tool_output", `{"type":"threads.add_client_tool_output","params":{"thread_id":"th","result":{"ok":true}}}`,
			chatkit.Request{Op: chatkit.OpThreadsAddToolOutput, ThreadID: "th"}, true},
		{"threads.custom_action", `{"type":"threads.custom_action","params":{"thread_id":"th","item_id":null,"action":{"type":"x","payload":{}}}}`,
			chatkit.Request{Op: chatkit.OpThreadsCustomAction, ThreadID: "th"}, true},
		{"threads.sync_custom_action", `{"type":"threads.sync_custom_action","params":{"thread_id":"th","action":{"type":"x"}}}`,
			chatkit.Request{Op: chatkit.OpThreadsSyncAction, ThreadID: "th"}, false},
		{"attachments.create", `{"type":"attachments.create","params":{"name":"a.png","size":3,"mime_type":"image/png"}}`,
			chatkit.Request{Op: chatkit.OpAttachmentsCreate}, false},
		{"attachments.delete", `{"type":"attachments.delete","params":{"attachment_id":"atc_1"}}`,
			chatkit.Request{Op: chatkit.OpAttachmentsDelete}, false},
		{"input.transcribe", `{"type":"input.transcribe","params":{"audio_base64":"AAAA","mime_type":"audio/webm"}}`,
			chatkit.Request{Op: chatkit.OpInputTranscribe}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chatkit.Decode([]byte(tc.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode =\n%+v\nwant\n%+v", got, tc.want)
			}
			if got.Streaming() != tc.streaming {
				t.Errorf("Streaming() = %v, want %v", got.Streaming(), tc.streaming)
			}
		})
	}
}

func TestDecodeUnsupported(t *testing.T) {
	supported := []string{chatkit.OpThreadsCreate, chatkit.OpThreadsAddMessage, chatkit.OpThreadsRetry,
		chatkit.OpThreadsGetByID, chatkit.OpThreadsList, chatkit.OpItemsList, chatkit.OpThreadsUpdate,
		chatkit.OpThreadsDelete, chatkit.OpItemsFeedback}
	for _, op := range supported {
		if why := (chatkit.Request{Op: op}).Unsupported(); why != "" {
			t.Errorf("%s is unsupported: %q", op, why)
		}
	}
	for _, op := range []string{chatkit.OpThreadsAddToolOutput, chatkit.OpThreadsCustomAction, chatkit.OpThreadsSyncAction,
		chatkit.OpAttachmentsCreate, chatkit.OpAttachmentsDelete, chatkit.OpInputTranscribe} {
		if why := (chatkit.Request{Op: op}).Unsupported(); !strings.Contains(why, "not supported") {
			t.Errorf("%s: Unsupported() = %q, want a reason", op, why)
		}
	}
}

func TestDecodeIgnoresUnknownMembers(t *testing.T) {
	body := `{"type":"threads.add_user_message","extra":[1,{"x":null}],"metadata":{"deep":{"a":[1]}},` +
		`"params":{"thread_id":"th","future":true,"input":{"content":[{"type":"input_text","text":"hi","lang":"en"}],` +
		`"attachments":[],"inference_options":{},"new_option":"x"}}}`
	got, err := chatkit.Decode([]byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := (chatkit.Request{Op: chatkit.OpThreadsAddMessage, ThreadID: "th", Text: "hi"}); !reflect.DeepEqual(got, want) {
		t.Errorf("Decode = %+v, want %+v", got, want)
	}
}

// wantInvalid fails unless err is a *validate.Error naming exactly fields.
func wantInvalid(t *testing.T, err error, fields ...string) {
	t.Helper()
	list, ok := validate.Fields(err)
	if !ok {
		t.Fatalf("error = %v (%T), want a *validate.Error on %q", err, err, fields)
	}
	var got []string
	for _, f := range list {
		got = append(got, f.Field)
	}
	if !reflect.DeepEqual(got, fields) {
		t.Fatalf("fields = %q, want %q (%v)", got, fields, err)
	}
}

func TestDecodeInvalid(t *testing.T) {
	text := func(s string) string {
		return `{"content":[{"type":"input_text","text":"` + s + `"}],"attachments":[],"inference_options":{}}`
	}
	for _, tc := range []struct {
		name, body string
		fields     []string
	}{
		{"no type", `{"params":{}}`, []string{"type"}},
		{"empty type", `{"type":""}`, []string{"type"}},
		{"unknown type", `{"type":"threads.explode","params":{}}`, []string{"type"}},
		{"create without input", `{"type":"threads.create","params":{}}`, []string{"params.input"}},
		{"create without params", `{"type":"threads.create"}`, []string{"params.input"}},
		{"create without content", `{"type":"threads.create","params":{"input":{"attachments":[]}}}`, []string{"params.input.content"}},
		{"create with an attachment", `{"type":"threads.create","params":{"input":{"content":[{"type":"input_text","text":"x"}],"attachments":["atc_1"]}}}`,
			[]string{"params.input.attachments"}},
		{"create with an image part", `{"type":"threads.create","params":{"input":{"content":[{"type":"input_image","text":"x"}],"attachments":[]}}}`,
			[]string{"params.input.content[0].type"}},
		{"add message without thread", `{"type":"threads.add_user_message","params":{"input":` + text("x") + `}}`, []string{"params.thread_id"}},
		{"retry without ids", `{"type":"threads.retry_after_item","params":{}}`, []string{"params.thread_id", "params.item_id"}},
		{"get without thread", `{"type":"threads.get_by_id","params":{"thread_id":""}}`, []string{"params.thread_id"}},
		{"delete without thread", `{"type":"threads.delete","params":{}}`, []string{"params.thread_id"}},
		{"items.list without thread", `{"type":"items.list","params":{}}`, []string{"params.thread_id"}},
		{"update without title", `{"type":"threads.update","params":{"thread_id":"th"}}`, []string{"params.title"}},
		{"feedback without ids or kind", `{"type":"items.feedback","params":{"thread_id":"th"}}`, []string{"params.item_ids", "params.kind"}},
		{"feedback of another kind", `{"type":"items.feedback","params":{"thread_id":"th","item_ids":["a"],"kind":"meh"}}`, []string{"params.kind"}},
		{"feedback on too many items", `{"type":"items.feedback","params":{"thread_id":"th","item_ids":[` +
			strings.Repeat(`"a",`, chatkit.MaxFeedbackItems) + `"a"],"kind":"positive"}}`, []string{"params.item_ids"}},
		{"negative limit", `{"type":"threads.list","params":{"limit":-1}}`, []string{"params.limit"}},
		{"another order", `{"type":"items.list","params":{"thread_id":"th","order":"newest"}}`, []string{"params.order"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chatkit.Decode([]byte(tc.body))
			wantInvalid(t, err, tc.fields...)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"not an object", `[1,2]`},
		{"type of the wrong type", `{"type":7}`},
		{"params an array", `{"type":"threads.get_by_id","params":[]}`},
		{"thread_id a number", `{"type":"threads.get_by_id","params":{"thread_id":1}}`},
		{"item_ids a string", `{"type":"items.feedback","params":{"thread_id":"th","item_ids":"a","kind":"positive"}}`},
		{"limit a string", `{"type":"threads.list","params":{"limit":"10"}}`},
		{"limit a fraction", `{"type":"threads.list","params":{"limit":1.5}}`},
		{"limit too large for an int", `{"type":"threads.list","params":{"limit":1e40}}`},
		{"content an object", `{"type":"threads.create","params":{"input":{"content":{},"attachments":[]}}}`},
		{"text a number", `{"type":"threads.create","params":{"input":{"content":[{"type":"input_text","text":3}],"attachments":[]}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chatkit.Decode([]byte(tc.body))
			if !errors.Is(err, chatkit.ErrMalformed) {
				t.Fatalf("Decode error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestPageParamsNormalize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		p         chatkit.PageParams
		limit     int
		order     string
		badFields []string
	}{
		{"defaults", chatkit.PageParams{}, chatkit.DefaultPageSize, chat.OrderDesc, nil},
		{"zero is the default", chatkit.PageParams{Limit: intp(0)}, chatkit.DefaultPageSize, chat.OrderDesc, nil},
		{"as given", chatkit.PageParams{Limit: intp(7), Order: chat.OrderAsc}, 7, chat.OrderAsc, nil},
		{"bounded", chatkit.PageParams{Limit: intp(chat.MaxLimit + 1)}, chat.MaxLimit, chat.OrderDesc, nil},
		{"negative", chatkit.PageParams{Limit: intp(-3)}, 0, "", []string{"params.limit"}},
		{"bad order", chatkit.PageParams{Order: "up"}, 0, "", []string{"params.order"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit, order, err := tc.p.Normalize()
			if tc.badFields != nil {
				wantInvalid(t, err, tc.badFields...)
				return
			}
			if err != nil || limit != tc.limit || order != tc.order {
				t.Errorf("Normalize = %d, %q, %v; want %d, %q", limit, order, err, tc.limit, tc.order)
			}
		})
	}
}
