package app_test

// End-to-end tests of the events route (GET …/conversations/{id}/events)
// on real listeners, through the whole stack (harness_test.go).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/auth/authtest"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
)

// sseFrame is one frame of an event stream: an event, or a comment.
type sseFrame struct {
	id, event, data, comment string
}

// sseStream is an open event stream read by a goroutine of its own.
type sseStream struct {
	resp   *http.Response
	first  string // the first line of the body
	frames chan sseFrame
	done   chan struct{} // closed when the body ends
	cancel context.CancelFunc
}

// openEvents opens the user's event stream of conv on base (the stack's
// API when ""), with query (e.g. "?after=0") and extra headers (name,
// value pairs). The bearer token is sent unless noAuth. A non-200 answer
// is returned read, with a nil stream.
func (u *apiUser) openEvents(t *testing.T, base, conv, query string, bearer bool, headers ...string) (*sseStream, response) {
	t.Helper()
	if base == "" {
		base = u.s.base
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+u.path("/conversations/"+conv+"/events"+query), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return openStream(t, req, cancel)
}

// postStream sends message to conversationID ("" for a new one) asking
// for the run's events in the response (Accept: text/event-stream).
func (u *apiUser) postStream(t testing.TB, message, conversationID string) (*sseStream, response) {
	t.Helper()
	body, err := json.Marshal(map[string]string{"message": message})
	if conversationID != "" {
		body, err = json.Marshal(map[string]string{"message": message, "conversation_id": conversationID})
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.s.base+u.path("/chat"), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Prefer", "respond-async") // the stream takes precedence
	return openStream(t, req, cancel)
}

// openStream sends req and, on a 200, reads its body as an event stream.
func openStream(t testing.TB, req *http.Request, cancel context.CancelFunc) (*sseStream, response) {
	t.Helper()
	resp, r := sendForStream(t, req, cancel) //nolint:bodyclose // closed by st.close, at the latest in t.Cleanup
	if resp == nil {
		return nil, r
	}
	st := &sseStream{resp: resp, frames: make(chan sseFrame, 100_000), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(st.close)
	br := bufio.NewReader(resp.Body)
	// The first comment line comes at once, before any event.
	line, err := readLine(br)
	if err != nil {
		t.Fatalf("first line of the stream: %v", err)
	}
	st.first = line
	go st.read(br)
	return st, response{status: resp.StatusCode, header: resp.Header}
}

// sendForStream sends req on a client of its own; a 200 answer comes back
// unread, any other read to its end (and the request's context cancelled).
func sendForStream(t testing.TB, req *http.Request, cancel context.CancelFunc) (*http.Response, response) {
	t.Helper()
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return nil, response{status: resp.StatusCode, header: resp.Header, body: b}
	}
	return resp, response{status: resp.StatusCode, header: resp.Header}
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

func (st *sseStream) read(br *bufio.Reader) {
	defer close(st.done)
	var f sseFrame
	for {
		line, err := readLine(br)
		if err != nil {
			return
		}
		switch {
		case line == "":
			if f != (sseFrame{}) {
				st.frames <- f
			}
			f = sseFrame{}
		case strings.HasPrefix(line, ":"):
			f.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "id: "):
			f.id = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			f.event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if f.data != "" {
				f.data += "\n" // a second data line: the test sees it
			}
			f.data += line[len("data: "):]
		default:
			f.comment = "UNEXPECTED " + line
		}
	}
}

func (st *sseStream) close() {
	st.cancel()
	_ = st.resp.Body.Close()
}

// next returns the next event frame, skipping comments.
func (st *sseStream) next(t testing.TB) sseFrame {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case f := <-st.frames:
			if f.event == "" {
				if strings.HasPrefix(f.comment, "UNEXPECTED") {
					t.Fatalf("stream line %q", f.comment)
				}
				continue
			}
			return f
		case <-st.done:
			select {
			case f := <-st.frames:
				if f.event != "" {
					return f
				}
				continue
			default:
			}
			t.Fatal("the stream ended while an event was expected")
		case <-timeout:
			t.Fatal("timed out waiting for an event")
		}
	}
}

// untilFinal reads frames until the final event of runID.
func (st *sseStream) untilFinal(t *testing.T, runID string) []sseFrame {
	t.Helper()
	var out []sseFrame
	for {
		f := st.next(t)
		out = append(out, f)
		if chat.FinalEvent(f.event) && strings.Contains(f.data, runID) {
			return out
		}
	}
}

// wantEnd waits for the server to end the stream, with no event before.
func (st *sseStream) wantEnd(t *testing.T) {
	t.Helper()
	select {
	case <-st.done:
	case <-time.After(waitFor):
		t.Fatal("the stream did not end")
	}
	for {
		select {
		case f := <-st.frames:
			if f.event != "" {
				t.Fatalf("unexpected event before the end: %+v", f)
			}
		default:
			return
		}
	}
}

// wantFrames checks frames against stored events: ids, names, one-line
// compact JSON of each payload.
func wantFrames(t *testing.T, got []sseFrame, want []chat.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d frames %s, want %d events %s", len(got), frameTypes(got), len(want), eventTypes(want))
	}
	for i, ev := range want {
		var data bytes.Buffer
		if err := json.Compact(&data, ev.Data); err != nil {
			t.Fatal(err)
		}
		w := sseFrame{id: strconv.FormatUint(ev.Seq, 10), event: ev.Type, data: data.String()}
		if g := got[i]; g.id != w.id || g.event != w.event || g.data != w.data {
			t.Fatalf("frame %d = %+v, want %+v", i, g, w)
		}
	}
}

func frameTypes(fs []sseFrame) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.id + ":" + f.event
	}
	return strings.Join(s, " ")
}

func wantStreamHeaders(t *testing.T, st *sseStream) {
	t.Helper()
	h := st.resp.Header
	if h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" || h.Get("X-Accel-Buffering") != "no" || h.Get("Content-Encoding") != "" {
		t.Fatalf("stream headers %v", h)
	}
	if !strings.HasPrefix(st.first, ":") {
		t.Fatalf("first line %q is not a comment", st.first)
	}
}

// TestSSERunEventSequence: two clients, one per API process (same NATS,
// same database), one with a bearer token and one with ?access_token=,
// watch a run live: both get its exact events as frames with the stream's
// ids; after=0 then replays every event of the conversation.
func TestSSERunEventSequence(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{})
		_, base2 := s.secondAPI(t)
		u := s.newUser(t)
		first := u.chat(t, "add buy milk", "")
		conv := first.ConversationID

		a, _ := u.openEvents(t, "", conv, "", true)
		b, _ := u.openEvents(t, base2, conv, "?access_token="+u.token, false)
		wantStreamHeaders(t, a)
		wantStreamHeaders(t, b)

		acc := u.chatAsync(t, "show my tasks", conv)
		after := eventsCursor(t, u, acc)
		gotA := a.untilFinal(t, acc.RunID)
		gotB := b.untilFinal(t, acc.RunID)
		want := waitFinalEvent(t, s, conv, after, acc.RunID)
		wantSequence(t, want, acc.RunID, `run.queued run.started (message.delta |tool.call |tool.result )*message.completed run.completed`)
		wantFrames(t, gotA, want)
		wantFrames(t, gotB, want)

		all, _ := u.openEvents(t, base2, conv, "?after=0", true)
		wantFrames(t, takeFrames(t, all, len(s.events(t, conv, 0))), s.events(t, conv, 0))
	})
}

// TestSSEDeleteEndsStreamsOnEveryReplica: a conversation deleted through
// one API instance ends its streams on the other one too.
func TestSSEDeleteEndsStreamsOnEveryReplica(t *testing.T) {
	s := newStack(t, bustest.Embedded(t), stackOptions{})
	_, base2 := s.secondAPI(t)
	u := s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID
	here, _ := u.openEvents(t, "", conv, "", true)
	there, _ := u.openEvents(t, base2, conv, "", true)
	u.do(t, http.MethodDelete, u.path("/conversations/"+conv), "").want(t, http.StatusNoContent)
	here.wantEnd(t)
	there.wantEnd(t)
}

// TestSSEPostStreamsItsRun: POST /chat with Accept: text/event-stream
// answers with the run's own events, headers flushed before the first one,
// and ends after its final event.
func TestSSEPostStreamsItsRun(t *testing.T) {
	bustest.Each(t, func(t *testing.T, ns bustest.Server) {
		s := newStack(t, ns, stackOptions{})
		u := s.newUser(t)
		conv := u.chat(t, "add buy milk", "").ConversationID

		st, resp := u.postStream(t, "show my tasks", conv)
		if st == nil {
			t.Fatalf("POST with Accept: text/event-stream = %d %s", resp.status, resp.body)
		}
		wantStreamHeaders(t, st)
		var got []sseFrame
		for {
			f := st.next(t)
			got = append(got, f)
			if chat.FinalEvent(f.event) {
				break
			}
		}
		st.wantEnd(t)
		var runID string
		if err := json.Unmarshal([]byte(got[0].data), &struct {
			RunID *string `json:"run_id"`
		}{&runID}); err != nil || runID == "" {
			t.Fatalf("first frame %+v: no run id (%v)", got[0], err)
		}
		// Exactly the run's events as stored, none of the earlier run's.
		var want []chat.Event
		for _, ev := range s.events(t, conv, 0) {
			if ev.RunID == runID {
				want = append(want, ev)
			}
		}
		wantSequence(t, want, runID, `run.queued run.started (message.delta |tool.call |tool.result )*message.completed run.completed`)
		wantFrames(t, got, want)
	})
}

func takeFrames(t *testing.T, st *sseStream, n int) []sseFrame {
	t.Helper()
	out := make([]sseFrame, 0, n)
	for range n {
		out = append(out, st.next(t))
	}
	return out
}

// TestSSEResume: a client cut after k events reconnects with
// Last-Event-ID (which wins over ?after=) and gets exactly the events it
// missed, including a whole run that happened while it was away, then the
// live ones, with no duplicate; a reconnect that lands during a run gets
// the rest of the run.
func TestSSEResume(t *testing.T) {
	p := newGatedProvider()
	s := newStack(t, bustest.Embedded(t), stackOptions{model: p})
	u := s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID

	const k = 3
	c1, _ := u.openEvents(t, "", conv, "?after=0", true)
	got := takeFrames(t, c1, k)
	c1.close()
	cut, _ := strconv.ParseUint(got[k-1].id, 10, 64)

	away := u.chat(t, "add pay the bills", conv) // while the client is away

	// Last-Event-ID wins over after=0.
	c2, _ := u.openEvents(t, "", conv, "?after=0", true, "Last-Event-ID", got[k-1].id)
	missed := s.events(t, conv, cut)
	wantFrames(t, takeFrames(t, c2, len(missed)), missed)
	if missed[len(missed)-1].RunID != away.RunID {
		t.Fatalf("the replay ends with run %s, want %s", missed[len(missed)-1].RunID, away.RunID)
	}
	// Then live, no gap, no duplicate at the seam.
	acc := u.chatAsync(t, "list my tasks "+holdMarker, conv)
	p.waitEntered(t, "list my tasks")
	// A reconnect during the run: from the cursor before it.
	before := eventsCursor(t, u, acc)
	c3, _ := u.openEvents(t, "", conv, "", true, "Last-Event-ID", strconv.FormatUint(before, 10))
	p.releaseOne(t)
	live := c2.untilFinal(t, acc.RunID)
	resumed := c3.untilFinal(t, acc.RunID)
	want := waitFinalEvent(t, s, conv, before, acc.RunID)
	wantFrames(t, live, want)
	wantFrames(t, resumed, want)
}

// TestSSECursorsAndAccess: bad cursors are 400, an unknown or another
// user's conversation 404 (before any stream), and a cursor beyond the
// last event or older than what the stream retains starts with reset,
// then goes live.
func TestSSECursorsAndAccess(t *testing.T) {
	ns := bustest.Embedded(t)
	s := newStack(t, ns, stackOptions{})
	u, other := s.newUser(t), s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID

	for _, tc := range []struct {
		name, query string
		headers     []string
	}{
		{"after not a number", "?after=abc", nil},
		{"negative after", "?after=-1", nil},
		{"Last-Event-ID not a number", "?after=0", []string{"Last-Event-ID", "1.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, r := u.openEvents(t, "", conv, tc.query, true, tc.headers...)
			if st != nil {
				t.Fatal("a stream opened")
			}
			r.wantProblem(t, http.StatusBadRequest, "VALIDATION_FAILED")
		})
	}
	for _, tc := range []struct {
		name string
		user *apiUser
		conv string
	}{
		{"another user's conversation", other, conv},
		{"unknown conversation", u, "0f0e0d0c-0b0a-4909-8807-060504030201"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, r := tc.user.openEvents(t, "", tc.conv, "?after=0", true)
			if st != nil {
				t.Fatal("a stream opened")
			}
			r.wantProblem(t, http.StatusNotFound, "NOT_FOUND")
		})
	}

	last := s.events(t, conv, 0)
	lastSeq := last[len(last)-1].Seq
	wantReset := func(t *testing.T, query string) {
		t.Helper()
		st, _ := u.openEvents(t, "", conv, query, true)
		f := st.next(t)
		if f.event != "reset" || !strings.Contains(f.data, `"reason":`) {
			t.Fatalf("first frame %+v, want reset", f)
		}
		acc := u.chatAsync(t, "show my tasks", conv)
		want := waitFinalEvent(t, s, conv, eventsCursor(t, u, acc), acc.RunID)
		wantFrames(t, st.untilFinal(t, acc.RunID), want)
	}
	t.Run("beyond the last event", func(t *testing.T) { wantReset(t, fmt.Sprintf("?after=%d", lastSeq+1000)) })
	t.Run("older than retention", func(t *testing.T) {
		// Drop the stream's oldest events, as retention would.
		js := bustest.JetStream(t, ns.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		str, err := js.Stream(ctx, s.cfg.NATS.EventsStream())
		if err != nil {
			t.Fatal(err)
		}
		top := s.events(t, conv, 0)
		if err := str.Purge(ctx, jetstream.WithPurgeSequence(top[len(top)-1].Seq)); err != nil {
			t.Fatal(err)
		}
		wantReset(t, "?after=1")
	})
}

// TestSSELimitsAndLifecycle: the per-user cap answers 429; a client that
// goes away is cleaned up (the open-stream count goes back down); a
// deleted conversation and a server shutdown end the streams.
func TestSSELimitsAndLifecycle(t *testing.T) {
	s := newStack(t, bustest.Embedded(t), stackOptions{env: map[string]string{
		"SSE_MAX_STREAMS_PER_USER": "2",
		"SSE_PING_INTERVAL":        "50ms",
	}})
	u := s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID
	other := u.chat(t, "add pay the bills", "").ConversationID

	a, _ := u.openEvents(t, "", conv, "", true)
	b, _ := u.openEvents(t, "", other, "", true)
	if st, r := u.openEvents(t, "", conv, "", true); st != nil {
		t.Fatal("a third stream opened")
	} else {
		r.wantProblem(t, http.StatusTooManyRequests, "RATE_LIMITED")
	}
	// Pings keep coming on an idle stream.
	select {
	case f := <-a.frames:
		if f.comment != "ping" {
			t.Fatalf("idle frame %+v, want a ping", f)
		}
	case <-time.After(waitFor):
		t.Fatal("no ping")
	}

	a.close()
	eventually(t, "the closed stream to be cleaned up", func() bool { return s.api.EventStreams() == 1 },
		func() string { return strconv.Itoa(s.api.EventStreams()) })
	c, _ := u.openEvents(t, "", conv, "", true) // room again

	u.do(t, http.MethodDelete, u.path("/conversations/"+conv), "").want(t, http.StatusNoContent)
	c.wantEnd(t)
	eventually(t, "the deleted conversation's stream to go", func() bool { return s.api.EventStreams() == 1 }, nil)

	start := time.Now()
	if err := s.stopAPI(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	b.wantEnd(t)
	if d := time.Since(start); d >= s.cfg.ShutdownTimeout {
		t.Fatalf("shutdown took %s, the timeout is %s", d, s.cfg.ShutdownTimeout)
	}
	if n := s.api.EventStreams(); n != 0 {
		t.Fatalf("%d streams open after shutdown", n)
	}
}

// TestSSESlowReader: a client that stops reading does not delay another
// on the same conversation; when its buffer overflows only its stream
// ends.
func TestSSESlowReader(t *testing.T) {
	s := newStack(t, bustest.Embedded(t), stackOptions{sseBuffer: 4})
	u := s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID

	// The slow client: a raw connection that reads nothing after asking.
	slow, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	if tc, ok := slow.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", u.path("/conversations/"+conv+"/events"), u.token)
	eventually(t, "the slow stream to open", func() bool { return s.api.EventStreams() == 1 }, nil)
	fast, _ := u.openEvents(t, "", conv, "", true)

	big := strings.Repeat("x", 60_000)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var sent int
	for sent = 0; s.api.EventStreams() == 2; sent++ {
		if sent == 2000 {
			t.Fatal("the slow stream was never ended")
		}
		ev, err := chat.NewEvent(chat.EventMessageDelta, conv, "r", chat.MessageDeltaData{RunID: "r", MessageID: "m", Delta: big})
		if err != nil {
			t.Fatal(err)
		}
		seq, err := s.apiBus.PublishEvent(ctx, ev, "")
		if err != nil {
			t.Fatal(err)
		}
		// The fast client gets each event before the next is published:
		// the slow one holds nobody up.
		f := fast.next(t)
		if f.id != strconv.FormatUint(seq, 10) {
			t.Fatalf("fast client got id %s, want %d", f.id, seq)
		}
	}
	if sent < 4 {
		t.Fatalf("the slow stream ended after %d events, before its buffer could fill", sent)
	}
	if s.api.EventStreams() != 1 {
		t.Fatalf("%d streams open, want the fast one", s.api.EventStreams())
	}
}

// TestSSEBrowserCredentials: the events route also takes what a browser's
// EventSource can send — the Better Auth session cookie (with a listed
// Origin, or none) and ?access_token= — and logs neither.
func TestSSEBrowserCredentials(t *testing.T) {
	const app = "https://app.example.com"
	s := newStack(t, bustest.Embedded(t), stackOptions{env: map[string]string{"CORS_ORIGINS": app}})
	u := s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID
	sess := authtest.CreateSession(t, s.db, secret, u.id, time.Now().Add(time.Hour))
	cookie := auth.SessionCookieName + "=" + sess.Cookie

	for _, tc := range []struct {
		name    string
		query   string
		headers []string
		status  int
	}{
		{"cookie, listed origin", "", []string{"Cookie", cookie, "Origin", app}, http.StatusOK},
		{"cookie, no origin", "", []string{"Cookie", cookie}, http.StatusOK},
		{"cookie, foreign origin", "", []string{"Cookie", cookie, "Origin", "https://evil.example"}, http.StatusUnauthorized},
		{"access_token", "?access_token=" + u.token, nil, http.StatusOK},
		{"nothing", "", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, r := u.openEvents(t, "", conv, tc.query, false, tc.headers...)
			if tc.status != http.StatusOK {
				if st != nil {
					t.Fatal("a stream opened")
				}
				r.wantProblem(t, tc.status, "UNAUTHORIZED")
				return
			}
			if st == nil {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			wantStreamHeaders(t, st)
			st.close()
		})
	}
	logs := s.logs.String()
	for _, secret := range []string{u.token, sess.Token, sess.Signed, sess.Cookie} {
		if strings.Contains(logs, secret) {
			t.Fatal("a credential is in the logs")
		}
	}
}

// TestSSEDisconnectLeavesNothing: 50 clients that vanish are cleaned up:
// the open-stream count and the process's goroutines go back to where they
// were. The server notices a vanished client at its next write, so pings
// come every 20ms here. A first round warms fasthttp's worker pool (it
// keeps idle workers for a while, to reuse them: not a leak) so that the
// baseline holds them; a leak of even one goroutine per stream in the
// second round shows as 50.
func TestSSEDisconnectLeavesNothing(t *testing.T) {
	const n = 50
	s := newStack(t, bustest.Embedded(t), stackOptions{env: map[string]string{
		"SSE_MAX_STREAMS_PER_USER": strconv.Itoa(n),
		"SSE_PING_INTERVAL":        "20ms",
	}})
	u := s.newUser(t)
	conv := u.chat(t, "add buy milk", "").ConversationID
	baseStreams := s.api.EventStreams()

	round := func(t *testing.T) {
		t.Helper()
		streams := make([]*sseStream, n)
		for i := range streams {
			streams[i], _ = u.openEvents(t, "", conv, "", true)
			if streams[i] == nil {
				t.Fatalf("stream %d did not open", i)
			}
		}
		eventually(t, "the streams to register", func() bool { return s.api.EventStreams() == baseStreams+n },
			func() string { return strconv.Itoa(s.api.EventStreams()) })
		for _, st := range streams {
			st.close()
		}
		for _, st := range streams {
			select {
			case <-st.done:
			case <-time.After(waitFor):
				t.Fatal("a closed stream's reader did not end")
			}
		}
		eventually(t, "the closed streams to be cleaned up", func() bool { return s.api.EventStreams() == baseStreams },
			func() string { return strconv.Itoa(s.api.EventStreams()) })
	}
	round(t)
	baseGoroutines := runtime.NumGoroutine()
	round(t)
	// A small margin for the stack's own comings and goings (pings of
	// other goroutines, NATS heartbeats, the worker's polls).
	const margin = 10
	eventually(t, "the goroutines to go back to their baseline",
		func() bool { return runtime.NumGoroutine() <= baseGoroutines+margin },
		func() string {
			var b strings.Builder
			fmt.Fprintf(&b, "%d goroutines, baseline %d; ", runtime.NumGoroutine(), baseGoroutines)
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			return b.String()
		})
}
