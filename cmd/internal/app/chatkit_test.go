package app_test

// End-to-end tests of the ChatKit route (POST /api/chatkit and /chatkit)
// on real listeners through the whole stack (harness_test.go): the
// requests ChatKit's widget sends (testdata/chatkit, written from
// openai/chatkit-python's chatkit/types.py, fields taskchat ignores
// included) and every answer and event checked against those types
// (chatkit_shapes_test.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// fixture reads testdata/chatkit/<op>.json with {{name}} replaced by vars.
func fixture(t *testing.T, op string, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "chatkit", op+".json"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	if strings.Contains(s, "{{") {
		t.Fatalf("fixture %s: a placeholder is left: %s", op, s)
	}
	return s
}

// ckRequest builds a ChatKit request body.
func ckRequest(op string, params map[string]any) string {
	return jsonString(map[string]any{"type": op, "params": params})
}

// ckInput is a UserMessageInput of one text part.
func ckInput(text string) map[string]any {
	return map[string]any{"content": []any{map[string]any{"type": "input_text", "text": text}},
		"attachments": []any{}, "inference_options": map[string]any{}}
}

// chatkit sends one non-streaming ChatKit request to base ("" for the
// stack's API) and returns the answer.
func (u *apiUser) chatkit(t *testing.T, base, body string) response {
	t.Helper()
	if base == "" {
		base = u.s.base
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/chatkit", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := u.s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// ckEvent is one event of a ChatKit stream.
type ckEvent struct {
	raw []byte
	m   map[string]any
}

func (e ckEvent) typ() string { s, _ := e.m["type"].(string); return s }

// str returns the string at a dotted path ("item.id").
func (e ckEvent) str(path string) string {
	var v any = e.m
	for _, k := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

// kind is the event's type with its item's or update's type: "thread.item.done user_message".
func (e ckEvent) kind() string {
	switch e.typ() {
	case "thread.item.added", "thread.item.done":
		return e.typ() + " " + e.str("item.type")
	case "thread.item.updated":
		return e.str("update.type")
	}
	return e.typ()
}

// ckStream is an open ChatKit stream read by a goroutine of its own.
type ckStream struct {
	t      testing.TB
	resp   *http.Response
	events chan ckEvent
	bad    chan string
	done   chan struct{}
	cancel context.CancelFunc
}

// chatkitStream sends a streaming request to base ("" for the stack's
// API); a non-200 answer is returned read, with a nil stream.
func (u *apiUser) chatkitStream(t testing.TB, base, body string) (*ckStream, response) {
	t.Helper()
	if base == "" {
		base = u.s.base
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/chatkit", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	req.Header.Set("Content-Type", "application/json")
	resp, r := sendForStream(t, req, cancel)
	if resp == nil {
		return nil, r
	}
	st := &ckStream{t: t, resp: resp, events: make(chan ckEvent, 10_000), bad: make(chan string, 10), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go st.read()
	return st, r
}

// read parses the body: "data: <json>" lines each followed by a blank
// line; comment lines (": ping") are allowed, anything else is reported.
func (st *ckStream) read() {
	defer close(st.done)
	br := bufio.NewReader(st.resp.Body)
	expectBlank := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case expectBlank:
			if line != "" {
				st.bad <- "no blank line after an event: " + line
			}
			expectBlank = false
		case strings.HasPrefix(line, "data: "):
			var e ckEvent
			e.raw = []byte(line[len("data: "):])
			if err := json.Unmarshal(e.raw, &e.m); err != nil {
				st.bad <- "not JSON: " + line
				continue
			}
			st.events <- e
			expectBlank = true
		case strings.HasPrefix(line, ":"), line == "":
		default:
			st.bad <- "unexpected line: " + line
		}
	}
}

// next returns the next event, checked against ChatKit's types.
func (st *ckStream) next(t testing.TB) ckEvent {
	t.Helper()
	select {
	case e := <-st.events:
		checkShape(t, "event "+e.kind(), e.raw, streamEvent)
		return e
	case b := <-st.bad:
		t.Fatalf("stream: %s", b)
	case <-st.done:
		select {
		case e := <-st.events:
			checkShape(t, "event "+e.kind(), e.raw, streamEvent)
			return e
		default:
		}
		t.Fatal("the stream ended while an event was expected")
	case <-timeoutAfter():
		t.Fatal("timed out waiting for a ChatKit event")
	}
	return ckEvent{}
}

// rest reads every event until the body ends.
func (st *ckStream) rest(t testing.TB) []ckEvent {
	t.Helper()
	var out []ckEvent
	for {
		select {
		case e := <-st.events:
			checkShape(t, "event "+e.kind(), e.raw, streamEvent)
			out = append(out, e)
		case b := <-st.bad:
			t.Fatalf("stream: %s", b)
		case <-st.done:
			for {
				select {
				case e := <-st.events:
					checkShape(t, "event "+e.kind(), e.raw, streamEvent)
					out = append(out, e)
				default:
					return out
				}
			}
		case <-timeoutAfter():
			t.Fatal("timed out waiting for the ChatKit stream to end")
		}
	}
}

// kinds lists the events' kinds, joining runs of text deltas into one
// "text_delta…".
func kinds(evs []ckEvent) []string {
	var out []string
	for _, e := range evs {
		k := e.kind()
		if k == "assistant_message.content_part.text_delta" {
			k = "text_delta…"
			if len(out) > 0 && out[len(out)-1] == k {
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

// threadOf decodes a Thread answer.
type ckThread struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Items ckPage `json:"items"`
}

type ckItem struct {
	ID       string `json:"id"`
	ThreadID string `json:"thread_id"`
	Type     string `json:"type"`
	Content  []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Workflow struct {
		Tasks []struct {
			Title string `json:"title"`
		} `json:"tasks"`
	} `json:"workflow"`
}

type ckPage struct {
	Data    []ckItem `json:"data"`
	HasMore bool     `json:"has_more"`
	After   *string  `json:"after"`
}

// getThread reads a thread with threads.get_by_id, checking its shape.
func (u *apiUser) getThread(t *testing.T, id string) ckThread {
	t.Helper()
	r := u.chatkit(t, "", ckRequest("threads.get_by_id", map[string]any{"thread_id": id})).want(t, http.StatusOK)
	checkShape(t, "threads.get_by_id", r.body, threadShape)
	var th ckThread
	r.decode(t, &th)
	return th
}

// listItems reads one page of items.list.
func (u *apiUser) listItems(t *testing.T, thread string, limit int, order, after string) ckPage {
	t.Helper()
	p := map[string]any{"thread_id": thread, "limit": limit, "order": order}
	if after != "" {
		p["after"] = after
	}
	r := u.chatkit(t, "", ckRequest("items.list", p)).want(t, http.StatusOK)
	checkShape(t, "items.list", r.body, pageShape(item))
	var pg ckPage
	r.decode(t, &pg)
	return pg
}

func ids(items []ckItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID + " " + it.Type
	}
	return out
}

// createThread drives threads.create with text and returns the thread id
// and every event of the stream.
func (u *apiUser) createThread(t *testing.T, text string) (string, []ckEvent) {
	t.Helper()
	st, r := u.chatkitStream(t, "", ckRequest("threads.create", map[string]any{"input": ckInput(text)}))
	if st == nil {
		t.Fatalf("threads.create: %d %s", r.status, r.body)
	}
	evs := st.rest(t)
	if len(evs) == 0 || evs[0].typ() != "thread.created" {
		t.Fatalf("threads.create: first event %v", kinds(evs))
	}
	return evs[0].str("thread.id"), evs
}

// addMessage drives threads.add_user_message and returns the events.
func (u *apiUser) addMessage(t *testing.T, thread, text string) []ckEvent {
	t.Helper()
	st, r := u.chatkitStream(t, "", ckRequest("threads.add_user_message", map[string]any{"thread_id": thread, "input": ckInput(text)}))
	if st == nil {
		t.Fatalf("threads.add_user_message: %d %s", r.status, r.body)
	}
	return st.rest(t)
}

// TestChatKitStreamedTurn: threads.create streams the thread, the user's
// item, stream_options, the tool workflow and the streamed answer; the
// thread read back shows the same items with the same ids; the task
// exists over REST; a second message sees the history.
func TestChatKitStreamedTurn(t *testing.T) {
	p := newGatedProvider()
	s := newStack(t, bustest.Embedded(t), stackOptions{model: p})
	u := s.newUser(t)

	thread, evs := u.createThread(t, "remind me to buy milk")
	want := []string{
		"thread.created", "thread.item.done user_message", "stream_options",
		"thread.item.added workflow", "workflow.task.added", "workflow.task.updated",
		"thread.item.added assistant_message", "assistant_message.content_part.added", "text_delta…",
		"thread.item.done workflow", "assistant_message.content_part.done", "thread.item.done assistant_message",
	}
	if got := kinds(evs); !slices.Equal(got, want) {
		t.Fatalf("events:\n  %v\nwant\n  %v", got, want)
	}
	if evs[0].str("thread.title") != "remind me to buy milk" {
		t.Errorf("thread.created title %q", evs[0].str("thread.title"))
	}
	if evs[2].m["stream_options"].(map[string]any)["allow_cancel"] != true {
		t.Errorf("stream_options %s", evs[2].raw)
	}
	if got := evs[4].str("update.task.title"); got != "Adding 'Buy milk'" {
		t.Errorf("task added %q", got)
	}
	if got := evs[5].str("update.task.title"); got != "Added 'Buy milk'" || evs[5].str("update.task.status_indicator") != "complete" {
		t.Errorf("task updated %s", evs[5].raw)
	}
	var text strings.Builder
	for _, e := range evs {
		if e.kind() == "assistant_message.content_part.text_delta" {
			text.WriteString(e.str("update.delta"))
		}
	}
	done := evs[len(evs)-1]
	if got := done.m["item"].(map[string]any)["content"].([]any)[0].(map[string]any)["text"]; got != text.String() || text.Len() == 0 {
		t.Errorf("done text %q, deltas %q", got, text.String())
	}

	// Read back: the same items, the same ids, oldest first.
	wf := evs[slices.IndexFunc(evs, func(e ckEvent) bool { return e.kind() == "thread.item.done workflow" })]
	if wf.str("item.id") != "wf_"+done.str("item.id") || evs[3].str("item.id") != wf.str("item.id") || evs[6].str("item.id") != done.str("item.id") {
		t.Errorf("item ids: added %s and %s, done %s and %s", evs[3].str("item.id"), evs[6].str("item.id"), wf.str("item.id"), done.str("item.id"))
	}
	streamed := []string{evs[1].str("item.id") + " user_message", wf.str("item.id") + " workflow", done.str("item.id") + " assistant_message"}
	th := u.getThread(t, thread)
	if got := ids(th.Items.Data); !slices.Equal(got, streamed) || th.Items.HasMore {
		t.Errorf("threads.get_by_id items %v (more %v), streamed %v", got, th.Items.HasMore, streamed)
	}
	if th.Items.Data[2].Content[0].Text != text.String() || th.Items.Data[1].Workflow.Tasks[0].Title != "Added 'Buy milk'" {
		t.Errorf("items read back: %+v", th.Items.Data)
	}
	if got := ids(u.listItems(t, thread, 0, "asc", "").Data); !slices.Equal(got, streamed) {
		t.Errorf("items.list %v, streamed %v", got, streamed)
	}
	msgs := u.messages(t, thread)
	if len(msgs) != 2 || msgs[0].ID != evs[1].str("item.id") || msgs[1].ID != done.str("item.id") {
		t.Errorf("REST messages %+v", msgs)
	}
	if ts := u.tasks(t); len(ts) != 1 || ts[0].Title != "Buy milk" {
		t.Errorf("tasks over REST: %+v", ts)
	}

	// threads.add_user_message sees the history.
	evs = u.addMessage(t, thread, "what's pending?")
	if got := kinds(evs); got[0] != "thread.item.done user_message" || got[1] != "stream_options" || got[len(got)-1] != "thread.item.done assistant_message" {
		t.Errorf("add_user_message events %v", got)
	}
	var seen []string
	for _, m := range p.history(t, "what's pending?") {
		seen = append(seen, string(m.Role)+": "+m.Content)
	}
	if len(seen) < 4 || seen[1] != "user: remind me to buy milk" || !strings.HasPrefix(seen[2], "assistant: ") {
		t.Errorf("the model saw %q", seen)
	}
	if th := u.getThread(t, thread); len(th.Items.Data) != 6 {
		t.Errorf("after two turns the thread has %v", ids(th.Items.Data))
	}
}

// TestChatKitConformance sends every operation as the widget sends it
// (testdata/chatkit) and checks each answer against ChatKit's types.
func TestChatKitConformance(t *testing.T) {
	s := newStack(t, bustest.Embedded(t), stackOptions{})
	u := s.newUser(t)

	st, r := u.chatkitStream(t, "", fixture(t, "threads.create", nil))
	if st == nil {
		t.Fatalf("threads.create: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/event-stream" || r.header.Get("Cache-Control") != "no-cache" || r.header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("stream headers %v", r.header)
	}
	evs := st.rest(t)
	thread := evs[0].str("thread.id")
	userItem := evs[1].str("item.id")
	assistant := evs[len(evs)-1].str("item.id")
	vars := map[string]string{"thread_id": thread, "user_item_id": userItem, "assistant_item_id": assistant}

	streamed := func(op string) []ckEvent {
		t.Helper()
		st, r := u.chatkitStream(t, "", fixture(t, op, vars))
		if st == nil {
			t.Fatalf("%s: %d %s", op, r.status, r.body)
		}
		return st.rest(t)
	}
	evs = streamed("threads.add_user_message")
	if evs[0].m["item"].(map[string]any)["content"].([]any)[0].(map[string]any)["text"] != "what's pending?" {
		t.Errorf("the tag's text joins the text: %s", evs[0].raw)
	}
	evs = streamed("threads.retry_after_item")
	if got := kinds(evs); got[0] != "stream_options" || got[len(got)-1] != "thread.item.done assistant_message" {
		t.Errorf("retry_after_item: %v", got)
	}
	vars["assistant_item_id"] = evs[len(evs)-1].str("item.id") // the retry replaced the answer
	for _, op := range []string{"threads.add_client_tool_output", "threads.custom_action"} {
		evs := streamed(op)
		if len(evs) != 1 || evs[0].typ() != "error" || evs[0].m["allow_retry"] != false || evs[0].str("message") == "" {
			t.Errorf("%s: %v", op, kinds(evs))
		}
	}

	for _, c := range []struct {
		op     string
		status int
		shape  shape
	}{
		{"threads.get_by_id", 200, threadShape},
		{"threads.list", 200, pageShape(threadShape)},
		{"items.list", 200, pageShape(item)},
		{"threads.update", 200, threadShape},
		{"items.feedback", 200, emptyObject},
		{"threads.sync_custom_action", 501, nil},
		{"attachments.create", 501, nil},
		{"attachments.delete", 501, nil},
		{"input.transcribe", 501, nil},
		{"threads.delete", 200, emptyObject},
	} {
		t.Run(c.op, func(t *testing.T) {
			r := u.chatkit(t, "", fixture(t, c.op, vars))
			if c.shape == nil {
				r.wantProblem(t, c.status, "NOT_IMPLEMENTED")
				return
			}
			r.want(t, c.status)
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			checkShape(t, c.op, r.body, c.shape)
		})
	}
	// The rename and the delete took effect over REST.
	u.do(t, http.MethodGet, u.path("/conversations/"+thread), "").wantProblem(t, http.StatusNotFound, "NOT_FOUND")
}

// TestChatKitPaging pages 45 items both ways with after, and 25 threads.
func TestChatKitPaging(t *testing.T) {
	s := newStack(t, bustest.Embedded(t), stackOptions{})
	u := s.newUser(t)

	// 15 turns that each add a task: user, workflow, assistant = 45 items.
	a := u.chat(t, "add task number 1", "")
	for i := 2; i <= 15; i++ {
		u.chat(t, "add task number "+string(rune('0'+i/10))+string(rune('0'+i%10)), a.ConversationID)
	}
	all := u.listItems(t, a.ConversationID, 100, "asc", "")
	if len(all.Data) != 45 || all.HasMore {
		t.Fatalf("%d items (more %v), want 45", len(all.Data), all.HasMore)
	}
	for _, order := range []string{"asc", "desc"} {
		t.Run(order, func(t *testing.T) {
			want := ids(all.Data)
			if order == "desc" {
				slices.Reverse(want)
			}
			var got []string
			after := ""
			for n := 0; ; n++ {
				pg := u.listItems(t, a.ConversationID, 10, order, after)
				got = append(got, ids(pg.Data)...)
				// after is the last id while more follow, absent on the
				// last page (as ChatKit's reference store answers).
				if len(pg.Data) == 0 || pg.HasMore != (pg.After != nil) || pg.HasMore && *pg.After != pg.Data[len(pg.Data)-1].ID {
					t.Fatalf("page %d: after %v, has more %v, last %v", n, pg.After, pg.HasMore, ids(pg.Data))
				}
				if !pg.HasMore {
					if n != 4 || len(pg.Data) != 5 {
						t.Errorf("last page is page %d with %d items", n, len(pg.Data))
					}
					break
				}
				if len(pg.Data) != 10 {
					t.Fatalf("page %d has %d items", n, len(pg.Data))
				}
				after = *pg.After
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages:\n%v\nwant\n%v", got, want)
			}
		})
	}
	// The first page of threads.get_by_id is the first 20, oldest first.
	if th := u.getThread(t, a.ConversationID); !slices.Equal(ids(th.Items.Data), ids(all.Data[:20])) || !th.Items.HasMore {
		t.Errorf("get_by_id items %v", ids(th.Items.Data))
	}
	// An unknown after is not found.
	u.chatkit(t, "", ckRequest("items.list", map[string]any{"thread_id": a.ConversationID, "after": "wf_" + a.MessageID})).
		wantProblem(t, http.StatusNotFound, "NOT_FOUND")

	// 25 threads (this one and 24 more), both orders.
	convs := []string{a.ConversationID}
	for range 24 {
		convs = append(convs, u.chat(t, "hello", "").ConversationID)
	}
	for _, order := range []string{"asc", "desc"} {
		want := slices.Clone(convs)
		if order == "desc" {
			slices.Reverse(want)
		}
		var got []string
		after := any(nil)
		for {
			r := u.chatkit(t, "", ckRequest("threads.list", map[string]any{"limit": 10, "order": order, "after": after})).want(t, http.StatusOK)
			checkShape(t, "threads.list", r.body, pageShape(threadShape))
			var pg struct {
				Data    []ckThread `json:"data"`
				HasMore bool       `json:"has_more"`
				After   *string    `json:"after"`
			}
			r.decode(t, &pg)
			for _, th := range pg.Data {
				got = append(got, th.ID)
			}
			if len(pg.Data) == 0 || pg.HasMore != (pg.After != nil) || pg.HasMore && *pg.After != pg.Data[len(pg.Data)-1].ID {
				t.Fatalf("threads.list %s: after %v, has more %v, last %v", order, pg.After, pg.HasMore, got)
			}
			if !pg.HasMore {
				break
			}
			after = *pg.After
		}
		if !slices.Equal(got, want) {
			t.Errorf("threads.list %s:\n%v\nwant\n%v", order, got, want)
		}
	}
}

// TestChatKitStopAndRetry: the client aborting mid-answer cancels the run
// (on whichever replica held the stream), keeps the partial text and lets
// the next message through; retry_after_item replaces the later items;
// feedback is stored; the per-user cap answers 429 before any stream.
func TestChatKitStopAndRetry(t *testing.T) {
	p := newGatedProvider()
	s := newStack(t, bustest.Embedded(t), stackOptions{model: p, env: map[string]string{"SSE_PING_INTERVAL": "100ms", "MAX_QUEUED_RUNS_PER_USER": "1"}})
	_, base2 := s.secondAPI(t)
	u := s.newUser(t)

	for _, replica := range []struct{ name, base string }{{"first replica", ""}, {"second replica", base2}} {
		t.Run(replica.name, func(t *testing.T) {
			msg := "tell me a long story " + holdMarker
			st, r := u.chatkitStream(t, replica.base, ckRequest("threads.create", map[string]any{"input": ckInput(msg)}))
			if st == nil {
				t.Fatalf("threads.create: %d %s", r.status, r.body)
			}
			thread := st.next(t).str("thread.id")
			user := st.next(t).str("item.id")
			for e := st.next(t); e.kind() != "assistant_message.content_part.text_delta"; e = st.next(t) {
			}
			p.waitEntered(t, msg)
			// While the run holds the user's one slot, another message is
			// refused before any stream.
			u.chatkit(t, "", ckRequest("threads.create", map[string]any{"input": ckInput("hello")})).
				wantProblem(t, http.StatusTooManyRequests, "RATE_LIMITED")

			st.cancel() // the stop button aborts the fetch
			var runID string
			for _, m := range u.messages(t, thread) {
				if m.ID == user {
					runID = m.RunID
				}
			}
			u.waitRun(t, runID, "cancelled")
			items := u.listItems(t, thread, 0, "asc", "")
			if got := ids(items.Data); len(got) != 2 || items.Data[1].Type != "assistant_message" || items.Data[1].Content[0].Text != heldText {
				t.Fatalf("items after the stop %v: %+v", got, items.Data)
			}
			evs := u.addMessage(t, thread, "hello again")
			if got := kinds(evs); got[len(got)-1] != "thread.item.done assistant_message" {
				t.Errorf("next message: %v", got)
			}
		})
	}

	t.Run("retry after item and feedback", func(t *testing.T) {
		thread, evs := u.createThread(t, "add buy bread")
		first := evs[1].str("item.id")
		oldAnswer := evs[len(evs)-1].str("item.id")
		u.addMessage(t, thread, "hello")
		oldRun := u.messages(t, thread)[0].RunID
		before := u.listItems(t, thread, 0, "asc", "")
		if len(before.Data) != 5 {
			t.Fatalf("items before the retry %v", ids(before.Data))
		}
		// Only a user message is answered again: not an assistant item, nor a
		// workflow id made up from the user message's id.
		for _, item := range []string{oldAnswer, "wf_" + first} {
			u.chatkit(t, "", ckRequest("threads.retry_after_item", map[string]any{"thread_id": thread, "item_id": item})).
				wantProblem(t, http.StatusBadRequest, "VALIDATION_FAILED")
		}
		st, r := u.chatkitStream(t, "", ckRequest("threads.retry_after_item", map[string]any{"thread_id": thread, "item_id": first}))
		if st == nil {
			t.Fatalf("retry: %d %s", r.status, r.body)
		}
		evs = st.rest(t)
		if got := kinds(evs); got[0] != "stream_options" || got[len(got)-1] != "thread.item.done assistant_message" {
			t.Fatalf("retry events %v", got)
		}
		after := u.listItems(t, thread, 0, "asc", "")
		got := ids(after.Data)
		newAnswer := evs[len(evs)-1].str("item.id")
		if len(got) != 3 || after.Data[0].ID != first || after.Data[2].ID != newAnswer || newAnswer == oldAnswer {
			t.Fatalf("items after the retry %v (new answer %s, old %s)", got, newAnswer, oldAnswer)
		}
		msgs := u.messages(t, thread)
		if len(msgs) != 2 || msgs[0].RunID == oldRun || msgs[1].RunID != msgs[0].RunID {
			t.Errorf("REST messages after the retry: %+v", msgs)
		}
		u.waitRun(t, msgs[0].RunID, "completed") // the new run answers the kept message

		u.chatkit(t, "", ckRequest("items.feedback", map[string]any{"thread_id": thread, "item_ids": []string{newAnswer}, "kind": "negative"})).want(t, http.StatusOK)
		var raw []map[string]any
		var l struct {
			Data []map[string]any `json:"data"`
		}
		u.do(t, http.MethodGet, u.path("/conversations/"+thread+"/messages"), "").want(t, http.StatusOK).decode(t, &l)
		raw = l.Data
		if raw[1]["feedback"] != "negative" || raw[0]["feedback"] != nil {
			t.Errorf("feedback over REST: %v", raw)
		}
	})
}

// TestChatKitIsolationAndErrors: another user's thread is not found in
// every operation; no credential is 401 on both paths; malformed bodies
// and unknown operations are 400; CORS lets the widget's headers through.
func TestChatKitIsolationAndErrors(t *testing.T) {
	const origin = "https://todo.example.com"
	s := newStack(t, bustest.Embedded(t), stackOptions{env: map[string]string{"CORS_ORIGINS": origin}})
	owner, other := s.newUser(t), s.newUser(t)
	thread, evs := owner.createThread(t, "add water the plants")
	vars := map[string]string{"thread_id": thread, "user_item_id": evs[1].str("item.id"), "assistant_item_id": evs[len(evs)-1].str("item.id")}

	for _, op := range []string{"threads.add_user_message", "threads.retry_after_item", "threads.get_by_id", "items.list",
		"threads.update", "items.feedback", "threads.delete", "threads.add_client_tool_output", "threads.custom_action", "threads.sync_custom_action"} {
		t.Run("foreign "+op, func(t *testing.T) {
			other.chatkit(t, "", fixture(t, op, vars)).wantProblem(t, http.StatusNotFound, "NOT_FOUND")
		})
	}
	// The owner's items are not found through the other user's thread.
	otherThread, _ := other.createThread(t, "hello")
	vars["thread_id"] = otherThread
	for _, op := range []string{"threads.retry_after_item", "items.feedback"} {
		other.chatkit(t, "", fixture(t, op, vars)).wantProblem(t, http.StatusNotFound, "NOT_FOUND")
	}
	other.chatkit(t, "", ckRequest("items.list", map[string]any{"thread_id": otherThread, "after": vars["user_item_id"]})).
		wantProblem(t, http.StatusNotFound, "NOT_FOUND")
	if th := owner.getThread(t, thread); len(th.Items.Data) != 3 {
		t.Errorf("the owner's thread changed: %v", ids(th.Items.Data))
	}
	// threads.list shows only the caller's threads.
	var l struct {
		Data []ckThread `json:"data"`
	}
	other.chatkit(t, "", fixture(t, "threads.list", nil)).want(t, http.StatusOK).decode(t, &l)
	if len(l.Data) != 1 || l.Data[0].ID != otherThread {
		t.Errorf("threads.list of the other user: %+v", l.Data)
	}

	for _, path := range []string{"/api/chatkit", "/chatkit"} {
		resp, err := http.Post(s.base+path, "application/json", strings.NewReader(fixture(t, "threads.list", nil)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		(response{status: resp.StatusCode, header: resp.Header, body: b}).wantProblem(t, http.StatusUnauthorized, "UNAUTHORIZED")
		// With a credential, both paths answer.
		req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(fixture(t, "threads.list", nil)))
		req.Header.Set("Authorization", "Bearer "+owner.token)
		resp, err = s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with a credential: %d", path, resp.StatusCode)
		}
	}

	// field, when set, is the member the problem names: the stores' field
	// names are put under params, as the request nests them.
	for _, c := range []struct{ name, body, code, field string }{
		{"not JSON", `{"type":`, "INVALID_JSON", ""},
		{"not an object", `["threads.list"]`, "INVALID_JSON", ""},
		{"params of the wrong type", `{"type":"threads.list","params":{"limit":"ten"}}`, "INVALID_JSON", ""},
		{"no type", `{"params":{}}`, "VALIDATION_FAILED", "type"},
		{"unknown op", `{"type":"threads.explode","params":{}}`, "VALIDATION_FAILED", "type"},
		{"missing thread_id", `{"type":"threads.get_by_id","params":{}}`, "VALIDATION_FAILED", "params.thread_id"},
		{"bad order", `{"type":"items.list","params":{"thread_id":"` + thread + `","order":"sideways"}}`, "VALIDATION_FAILED", "params.order"},
		{"empty message", ckRequest("threads.create", map[string]any{"input": ckInput("   ")}), "VALIDATION_FAILED", "params.message"},
		{"blank title", ckRequest("threads.update", map[string]any{"thread_id": thread, "title": "  "}), "VALIDATION_FAILED", "params.title"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := owner.chatkit(t, "", c.body).wantProblem(t, http.StatusBadRequest, c.code)
			if c.field == "" {
				return
			}
			var fields []string
			for _, e := range p.Errors {
				fields = append(fields, e.Field)
			}
			if !slices.Contains(fields, c.field) {
				t.Errorf("problem names %v, want %s", fields, c.field)
			}
		})
	}

	t.Run("CORS preflight", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, s.base+"/api/chatkit", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,chatkit-frame-instance-id")
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("preflight %d %v", resp.StatusCode, resp.Header)
		}
		for _, h := range []string{"authorization", "content-type", "chatkit-frame-instance-id"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
			}
		}
	})
}

// TestChatKitModelFailure: a run that fails ends the stream with an error
// event whose allow_retry says whether sending again may work.
func TestChatKitModelFailure(t *testing.T) {
	m := newModelStack(t, nil)
	u := m.newUser(t)
	for _, c := range []struct {
		name  string
		resps []llmtest.Response
		retry bool
	}{
		{"rejected", []llmtest.Response{{Status: 404, Error: "The model does not exist"}}, false},
		{"unreachable", []llmtest.Response{{Status: 503, Error: "overloaded"}, {Status: 503, Error: "overloaded"}, {Status: 503, Error: "overloaded"}}, true},
		{"cut mid-answer, then rejected", []llmtest.Response{{Chunks: llmtest.Text("Half ", "an answer"), CutAfter: 1}, {Status: 400, Error: "bad"}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m.fake.Push(c.resps...)
			_, evs := u.createThread(t, "hello")
			last := evs[len(evs)-1]
			if last.typ() != "error" || last.m["allow_retry"] != c.retry || last.str("code") != "custom" || last.str("message") == "" {
				t.Fatalf("events %v, last %s", kinds(evs), last.raw)
			}
			// Text streamed before the failure is taken back.
			added := 0
			for _, e := range evs {
				switch e.typ() {
				case "thread.item.added":
					added++
				case "thread.item.removed":
					added--
				case "thread.item.done":
					if e.str("item.type") == "assistant_message" {
						t.Errorf("a failed run's answer is done: %s", e.raw)
					}
				}
			}
			if added != 0 {
				t.Errorf("items left open: %v", kinds(evs))
			}
		})
	}
	// The streamed deltas of a model answer arrive as text deltas, in order.
	m.fake.Push(llmtest.Response{Chunks: llmtest.Text("One, ", "two, ", "three.")})
	_, evs := u.createThread(t, "count")
	var deltas []string
	for _, e := range evs {
		if e.kind() == "assistant_message.content_part.text_delta" {
			deltas = append(deltas, e.str("update.delta"))
		}
	}
	if !slices.Equal(deltas, []string{"One, ", "two, ", "three."}) {
		t.Errorf("text deltas %q", deltas)
	}
}

// timeoutAfter bounds one wait for a stream.
func timeoutAfter() <-chan time.Time { return time.After(waitFor) }
