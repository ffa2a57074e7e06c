package app_test

// The harness of the pipeline tests (pipeline_test.go): the whole stack —
// Postgres, NATS, the API on a real listener, the workers and the relay —
// built with the same app builders the binaries use, against either an
// embedded NATS server or the machine's nats-server (2.9), plus a model
// that a test can hold mid-run and HTTP helpers that speak the API.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/httpapi"
	"github.com/taskchat/taskchat/pkg/logtest"
	"github.com/taskchat/taskchat/pkg/natsembed"
	chatworker "github.com/taskchat/taskchat/workers/chat"
)

// waitFor bounds every wait of the pipeline tests; a healthy run takes
// milliseconds, so reaching it means the behaviour is broken.
const waitFor = 15 * time.Second

// stackOptions changes what newStack builds.
type stackOptions struct {
	// env is added to the stack's environment (and wins over its defaults).
	env map[string]string
	// model, when set, is the workers' model (the worker is built with
	// chatworker.New); otherwise app.NewWorkers builds the offline agent.
	model *gatedProvider
	// cuttable routes the API's NATS connection through a proxy that
	// natsDown cuts (on the machine's server, which the test cannot stop).
	cuttable bool
	// sseBuffer, when set, is each event stream's buffer (no variable).
	sseBuffer int
}

// stack is the whole pipeline running in the test process.
type stack struct {
	t      testing.TB
	ns     bustest.Server
	cfg    app.Config
	db     *bun.DB
	apiBus *bus.Bus
	base   string
	client *http.Client
	proxy  *tcpProxy
	logs   *logtest.Buffer
	// restarted is the embedded server natsUp started again.
	restarted *natsembed.Server
	// api is the API server; stopAPI shuts it down (once) and returns
	// Serve's error.
	api     *httpapi.Server
	stopAPI func() error
	log     *slog.Logger
}

// newStack starts Postgres pools, two NATS connections (the API's and the
// workers', as two processes would have), the API on 127.0.0.1:0 and the
// workers with the relay, all configured through app.Load like chatd, with
// a NATS prefix of its own and short durations. Everything stops when the
// test ends, and on the machine's server its streams are deleted.
func newStack(t testing.TB, ns bustest.Server, opts stackOptions) *stack {
	t.Helper()
	logs := &logtest.Buffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			out := logs.String()
			if len(out) > 40_000 {
				out = "…" + out[len(out)-40_000:]
			}
			t.Logf("service logs:\n%s", out)
		}
	})
	prefix := bustest.Prefix(t, ns) // its streams are deleted after everything below
	env := map[string]string{
		"DATABASE_URL":       testDB.URL,
		"DB_MAX_CONNS":       "10",
		"NATS_URL":           ns.URL,
		"NATS_PREFIX":        prefix,
		"BETTER_AUTH_SECRET": secret,
		"LOG_LEVEL":          "debug",
		"LOG_FORMAT":         "text",
		"SHUTDOWN_TIMEOUT":   "5s",
		"CHAT_SYNC_TIMEOUT":  "15s",
		"RUN_RESUME_AFTER":   "4s",
		"RELAY_QUEUED_AFTER": "1s",
	}
	for k, v := range opts.env {
		env[k] = v
	}
	cfg, err := app.Load(func(k string) string { return env[k] }, app.ServiceChatd)
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	if opts.sseBuffer > 0 {
		cfg.Chat.SSEBuffer = opts.sseBuffer
	}
	log := cfg.Log.NewLogger(logs)
	s := &stack{t: t, ns: ns, cfg: cfg, logs: logs, log: log}
	// A server natsUp restarted stops after everything that uses it.
	t.Cleanup(func() {
		if s.restarted != nil {
			s.restarted.Shutdown()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.db, err = app.OpenDatabase(ctx, cfg, log)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { s.db.Close() })

	apiURL := ""
	if opts.cuttable && ns.Embedded == nil {
		s.proxy = startProxy(t, ns.URL)
		apiURL = s.proxy.url()
	}
	s.apiBus, err = app.ConnectBus(ctx, cfg, apiURL, "e2e-api", log.With("service", "api"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.apiBus.Close)
	workerBus, err := app.ConnectBus(ctx, cfg, "", "e2e-worker", log.With("service", "worker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(workerBus.Close)

	// Workers.
	var (
		w     *chatworker.Worker
		relay *chatworker.Relay
	)
	wlog := log.With("service", "worker")
	if opts.model != nil {
		a := agent.New(opts.model, agent.WithMaxRounds(cfg.Agent.MaxToolRounds))
		w, relay = chatworker.New(cfg.Worker, s.db, workerBus, a, wlog), chatworker.NewRelay(cfg.Relay, s.db, workerBus, wlog)
	} else {
		var err error
		w, relay, err = app.NewWorkers(cfg, s.db, workerBus, wlog)
		if err != nil {
			t.Fatal(err)
		}
	}
	workersCtx, stopWorkers := context.WithCancel(context.Background())
	workersDone := make(chan error, 1)
	go func() { workersDone <- app.RunWorkers(workersCtx, cfg, w, relay, wlog) }()
	t.Cleanup(func() {
		if opts.model != nil {
			opts.model.close() // held calls return: nothing waits for the test any more
		}
		stopWorkers()
		if err := <-workersDone; err != nil {
			t.Errorf("RunWorkers: %v", err)
		}
	})

	// The API.
	alog := log.With("service", "api")
	srv, stopEvents, err := app.NewAPIServer(ctx, cfg, s.db, s.apiBus, alog)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := app.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- app.Serve(serveCtx, cfg, srv, ln, alog) }()
	s.base = "http://" + ln.Addr().String()
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	s.api = srv
	var once sync.Once
	var serveErr error
	s.stopAPI = func() error {
		once.Do(func() {
			stopServe()
			serveErr = <-served
		})
		return serveErr
	}
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		if err := s.stopAPI(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		stopEvents()
	})
	return s
}

// secondAPI starts another API process on the stack's NATS and database
// (its own connection, follower and listener) and returns its server and
// base URL; it stops when the test ends.
func (s *stack) secondAPI(t *testing.T) (*httpapi.Server, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alog := s.log.With("service", "api2")
	b, err := app.ConnectBus(ctx, s.cfg, "", "e2e-api2", alog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	srv, stopEvents, err := app.NewAPIServer(ctx, s.cfg, s.db, b, alog)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := app.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- app.Serve(serveCtx, s.cfg, srv, ln, alog) }()
	t.Cleanup(func() {
		stopServe()
		if err := <-served; err != nil {
			t.Errorf("Serve (second API): %v", err)
		}
		stopEvents()
	})
	return srv, "http://" + ln.Addr().String()
}

// waitQueueSettled waits until the workers' consumer holds no run request:
// none pending, none delivered and unacknowledged. A run a worker had
// looped on (naked, redelivered) would keep it from settling.
func (s *stack) waitQueueSettled(t *testing.T) {
	t.Helper()
	js := bustest.JetStream(t, s.ns.URL)
	var last *jetstream.ConsumerInfo
	eventually(t, "the run queue to settle", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, s.cfg.NATS.RunsStream(), bus.ConsumerName)
		if err != nil {
			return false
		}
		last, err = c.Info(ctx)
		return err == nil && last.NumPending == 0 && last.NumAckPending == 0
	}, func() string {
		if last == nil {
			return "no consumer info"
		}
		return "pending " + strconv.FormatUint(last.NumPending, 10) + ", ack pending " + strconv.Itoa(last.NumAckPending)
	})
}

// natsDown takes NATS away from the API: the embedded server is shut
// down; the machine's server is cut off at the API's proxy. It returns
// once the API's connection has noticed.
func (s *stack) natsDown(t *testing.T) {
	t.Helper()
	switch {
	case s.ns.Embedded != nil:
		s.ns.Embedded.Shutdown()
	case s.proxy != nil:
		s.proxy.cut()
	default:
		t.Fatal("natsDown needs stackOptions.cuttable on the machine's server")
	}
	eventually(t, "the API's NATS connection to drop", func() bool { return !s.apiBus.Connected() }, nil)
}

// natsUp brings NATS back after natsDown (the embedded server restarts on
// its port and storage; the proxy listens again) and returns once the
// API's connection is back.
func (s *stack) natsUp(t *testing.T) {
	t.Helper()
	switch {
	case s.ns.Embedded != nil:
		s.restarted = s.ns.Restart(t)
	case s.proxy != nil:
		s.proxy.restart(t)
	}
	eventually(t, "the API's NATS connection to come back", s.apiBus.Connected, nil)
}

// events reads every retained event of a conversation after the cursor.
func (s *stack) events(t *testing.T, conversationID string, after uint64) []chat.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := s.apiBus.ReadEvents(ctx, conversationID, after, 10_000)
	if err != nil {
		t.Fatalf("ReadEvents(%s, %d): %v", conversationID, after, err)
	}
	return evs
}

// eventually polls cond every 5 ms until it holds, failing the test after
// waitFor with what() (when given) saying how things stand.
func eventually(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			msg := "timed out after " + waitFor.String() + " waiting for " + what
			if state != nil {
				msg += ": " + state()
			}
			t.Fatal(msg)
		}
		<-time.After(5 * time.Millisecond)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// countRows counts a user's rows in a chat table (conversations,
// messages, runs, tool_rounds).
func countRows(t *testing.T, table, userID string) int {
	t.Helper()
	n, err := testDB.DB.NewSelect().Table(table).Where("user_id = ?", userID).Count(context.Background())
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return int(n)
}

// rowCounts is a user's rows in every chat table.
type rowCounts struct{ conversations, messages, runs, toolRounds int }

func counts(t *testing.T, userID string) rowCounts {
	t.Helper()
	return rowCounts{
		conversations: countRows(t, "conversations", userID),
		messages:      countRows(t, "messages", userID),
		runs:          countRows(t, "runs", userID),
		toolRounds:    countRows(t, "tool_rounds", userID),
	}
}

// holdMarker in a user message makes the gated provider hold the run's
// first model call until the test releases it.
const holdMarker = "(hold)"

// heldText is what a held call streams before it waits: the partial
// answer a cancelled run keeps.
const heldText = "Let me think. "

// gatedProvider is the offline provider with two additions for tests: a
// run whose user message carries holdMarker (or the next run, after
// holdNext is set) holds its first model call
// (after streaming heldText) until the test releases it or the run's
// context ends, and the request each user message was first answered from
// is recorded, so a test sees the history the model saw. The marker is
// removed from every message the offline provider reads.
type gatedProvider struct {
	inner   agent.Provider
	entered chan string   // a held message's text, when its call starts waiting
	release chan struct{} // one receive lets one held call go on
	done    chan struct{} // closed when the test ends

	mu        sync.Mutex
	seen      map[string][]agent.Message
	closeOnce sync.Once
	// holdNext holds the next answer after its first words, until the test
	// releases it or the run's context ends: for a test that cannot put
	// holdMarker in the message (a browser showing it), and that wants the
	// answer's own text streaming when it is held.
	holdNext atomic.Bool
}

func newGatedProvider() *gatedProvider {
	return &gatedProvider{
		inner:   agent.NewOffline(),
		entered: make(chan string, 64),
		release: make(chan struct{}),
		done:    make(chan struct{}),
		seen:    map[string][]agent.Message{},
	}
}

// Model names the provider.
func (p *gatedProvider) Model() string { return "gated-offline" }

// Complete implements agent.Provider.
func (p *gatedProvider) Complete(ctx context.Context, req agent.Request, onDelta func(string)) (agent.Turn, error) {
	msgs := make([]agent.Message, len(req.Messages))
	held := false
	for i, m := range req.Messages {
		if m.Role == agent.RoleUser && strings.Contains(m.Content, holdMarker) {
			m.Content = strings.TrimSpace(strings.ReplaceAll(m.Content, holdMarker, ""))
			held = i == len(req.Messages)-1
		}
		msgs[i] = m
	}
	if last := msgs[len(msgs)-1]; last.Role == agent.RoleUser {
		p.mu.Lock()
		if _, ok := p.seen[last.Content]; !ok {
			p.seen[last.Content] = msgs
		}
		p.mu.Unlock()
	}
	if held {
		onDelta(heldText)
		p.entered <- msgs[len(msgs)-1].Content
		select {
		case <-p.release:
		case <-ctx.Done():
			return agent.Turn{}, ctx.Err()
		case <-p.done:
			return agent.Turn{}, agent.ErrTransient
		}
	}
	if p.holdNext.Load() {
		onDelta = p.holdAfterFirst(ctx, msgs, onDelta)
	}
	turn, err := p.inner.Complete(ctx, agent.Request{Messages: msgs, Tools: req.Tools}, onDelta)
	if held {
		turn.Text = heldText + turn.Text
	}
	return turn, err
}

// holdAfterFirst returns onDelta holding, after the first piece of text
// it passes on, until the test releases it or ctx ends (holdNext). The
// held message's text goes to entered, as for holdMarker.
func (p *gatedProvider) holdAfterFirst(ctx context.Context, msgs []agent.Message, onDelta func(string)) func(string) {
	user := ""
	for i := len(msgs) - 1; i >= 0 && user == ""; i-- {
		if msgs[i].Role == agent.RoleUser {
			user = msgs[i].Content
		}
	}
	return func(text string) {
		onDelta(text)
		if !p.holdNext.CompareAndSwap(true, false) {
			return
		}
		p.entered <- user
		select {
		case <-p.release:
		case <-ctx.Done(): // the offline provider stops at its next word
		case <-p.done:
		}
	}
}

// waitEntered waits until the held calls of exactly the messages want (in
// any order) are waiting.
func (p *gatedProvider) waitEntered(t *testing.T, want ...string) {
	t.Helper()
	pending := map[string]int{}
	for _, w := range want {
		pending[strings.TrimSpace(strings.ReplaceAll(w, holdMarker, ""))]++
	}
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for n := len(want); n > 0; n-- {
		select {
		case got := <-p.entered:
			if pending[got] == 0 {
				t.Fatalf("held call of %q started; waiting for %v", got, pending)
			}
			pending[got]--
		case <-timeout.C:
			t.Fatalf("held calls not started within %s: %v", waitFor, pending)
		}
	}
}

// releaseOne lets one held call go on.
func (p *gatedProvider) releaseOne(t *testing.T) {
	t.Helper()
	select {
	case p.release <- struct{}{}:
	case <-time.After(waitFor):
		t.Fatalf("no held call to release within %s", waitFor)
	}
}

// noneEntered checks that no held call started since the last waitEntered.
func (p *gatedProvider) noneEntered(t *testing.T) {
	t.Helper()
	select {
	case got := <-p.entered:
		t.Fatalf("a held call of %q started again", got)
	default:
	}
}

// history returns the messages the model saw when it first answered the
// user message text (system prompt first, text last).
func (p *gatedProvider) history(t *testing.T, text string) []agent.Message {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs, ok := p.seen[text]
	if !ok {
		t.Fatalf("the model never answered %q", text)
	}
	return msgs
}

func (p *gatedProvider) close() { p.closeOnce.Do(func() { close(p.done) }) }

// tcpProxy forwards TCP connections to a server (NATS, or the API for the
// browser) until cut: then it stops listening and drops every connection,
// which is the server going away as far as its clients can tell.
type tcpProxy struct {
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	isCut bool
}

func startProxy(t testing.TB, natsURL string) *tcpProxy {
	t.Helper()
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: u.Host}
	go p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) url() string { return "nats://" + p.addr() }

// addr is the proxy's listening address.
func (p *tcpProxy) addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln.Addr().String()
}

// restart listens again on the proxy's address after cut.
func (p *tcpProxy) restart(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	ln, err := net.Listen("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatalf("proxy listen again: %v", err)
	}
	p.ln, p.isCut = ln, false
	go p.serve(ln)
}

func (p *tcpProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// track remembers conns for cut, or closes them when the proxy is cut.
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isCut {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// apiUser is a user with a token, talking to a stack's API.
type apiUser struct {
	s     *stack
	id    string
	token string
}

// newUser creates a Better Auth user and mints an HS256 token for it, as
// the todo app's /api/auth/token route does.
func (s *stack) newUser(t testing.TB) *apiUser {
	t.Helper()
	id := dbtest.CreateUser(t, testDB.DB, "")
	tok, err := auth.SignHS256(secret, auth.TokenClaims{UserID: id, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &apiUser{s: s, id: id, token: tok}
}

// path is p under the user's /api/{user_id}.
func (u *apiUser) path(p string) string { return "/api/" + u.id + p }

// response is an HTTP answer, read to its end.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the user's token. body "" sends none; a body is
// JSON unless headers (name, value pairs) say otherwise.
func (u *apiUser) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	r, err := u.send(method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// start sends a request like do from a goroutine of its own; the test
// receives the answer (and checks it) when it is ready for it.
func (u *apiUser) start(t *testing.T, method, path, body string, headers ...string) func() response {
	t.Helper()
	type result struct {
		r   response
		err error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := u.send(method, path, body, headers...)
		ch <- result{r, err}
	}()
	return func() response {
		t.Helper()
		res := <-ch
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.r
	}
}

func (u *apiUser) send(method, path, body string, headers ...string) (response, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u.s.base+path, r)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := u.s.client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// want fails the test unless the answer has status.
func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// decode decodes the JSON body into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem is an application/problem+json answer.
type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// wantProblem fails the test unless the answer is a problem with status
// and code, and returns it.
func (r response) wantProblem(t *testing.T, status int, code string) problem {
	t.Helper()
	var p problem
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("status %d, Content-Type %q, want a problem: %s", r.status, ct, r.body)
	}
	r.decode(t, &p)
	if r.status != status || p.Status != status || p.Code != code {
		t.Fatalf("status %d code %q, want %d %s: %s", r.status, p.Code, status, code, r.body)
	}
	return p
}

// chatRequest is the body of POST /chat.
func chatRequest(message, conversationID string) string {
	m := map[string]string{"message": message}
	if conversationID != "" {
		m["conversation_id"] = conversationID
	}
	return jsonString(m)
}

// toolCall is a ToolCall of the API.
type toolCall struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Result    json.RawMessage `json:"result"`
}

// answer is POST /chat's 200 body.
type answer struct {
	ConversationID string          `json:"conversation_id"`
	MessageID      string          `json:"message_id"`
	RunID          string          `json:"run_id"`
	Status         string          `json:"status"`
	Response       string          `json:"response"`
	ToolCalls      []toolCall      `json:"tool_calls"`
	Error          json.RawMessage `json:"error"`
}

// accepted is POST /chat's 202 body.
type accepted struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	RunID          string `json:"run_id"`
	Status         string `json:"status"`
	EventsURL      string `json:"events_url"`
}

// chat sends message in the sync mode and returns the completed answer.
func (u *apiUser) chat(t *testing.T, message, conversationID string) answer {
	t.Helper()
	var a answer
	u.do(t, http.MethodPost, u.path("/chat"), chatRequest(message, conversationID)).want(t, http.StatusOK).decode(t, &a)
	if a.Status != "completed" || a.RunID == "" || a.ConversationID == "" || a.MessageID == "" {
		t.Fatalf("answer to %q: %+v", message, a)
	}
	return a
}

// chatAsync sends message with Prefer: respond-async and returns the 202
// body; headers are added to the request.
func (u *apiUser) chatAsync(t *testing.T, message, conversationID string, headers ...string) accepted {
	t.Helper()
	var a accepted
	h := append([]string{"Prefer", "respond-async"}, headers...)
	u.do(t, http.MethodPost, u.path("/chat"), chatRequest(message, conversationID), h...).want(t, http.StatusAccepted).decode(t, &a)
	if a.RunID == "" || a.ConversationID == "" || a.MessageID == "" {
		t.Fatalf("accepted %q: %+v", message, a)
	}
	return a
}

// run is the API's Run.
type run struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	Status         string `json:"status"`
	Attempts       int    `json:"attempts"`
	Error          *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Usage      *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

func (u *apiUser) run(t *testing.T, id string) run {
	t.Helper()
	var r run
	u.do(t, http.MethodGet, u.path("/runs/"+id), "").want(t, http.StatusOK).decode(t, &r)
	return r
}

// waitRun polls the run until it is final and fails the test unless it
// ended with status.
func (u *apiUser) waitRun(t *testing.T, id, status string) run {
	t.Helper()
	var r run
	eventually(t, "run "+id+" to finish", func() bool {
		r = u.run(t, id)
		return r.Status == "completed" || r.Status == "failed" || r.Status == "cancelled"
	}, func() string { return r.Status })
	if r.Status != status {
		t.Fatalf("run %s ended %s, want %s: %+v", id, r.Status, status, r)
	}
	return r
}

// message is the API's Message.
type message struct {
	ID             string     `json:"id"`
	ConversationID string     `json:"conversation_id"`
	RunID          string     `json:"run_id"`
	Role           string     `json:"role"`
	Content        string     `json:"content"`
	ToolCalls      []toolCall `json:"tool_calls"`
	Model          string     `json:"model"`
	CreatedAt      time.Time  `json:"created_at"`
}

// list is a list answer.
type list[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// messages returns every message of a conversation, oldest first.
func (u *apiUser) messages(t *testing.T, conversationID string) []message {
	t.Helper()
	var l list[message]
	u.do(t, http.MethodGet, u.path("/conversations/"+conversationID+"/messages?limit=200"), "").want(t, http.StatusOK).decode(t, &l)
	if l.NextCursor != nil {
		t.Fatalf("more than 200 messages in %s", conversationID)
	}
	return l.Data
}

// task is the API's Task.
type task struct {
	ID        int64  `json:"id"`
	Title     string `json:"title"`
	Completed bool   `json:"completed"`
}

// tasks returns the user's tasks, oldest first.
func (u *apiUser) tasks(t *testing.T) []task {
	t.Helper()
	var l list[task]
	u.do(t, http.MethodGet, u.path("/tasks?order=asc&limit=200"), "").want(t, http.StatusOK).decode(t, &l)
	return l.Data
}

// eventsCursor reads the after= cursor of an events_url, checking the
// URL's form.
func eventsCursor(t *testing.T, u *apiUser, a accepted) uint64 {
	t.Helper()
	re := regexp.MustCompile(`^/api/` + regexp.QuoteMeta(u.id) + `/conversations/` + a.ConversationID + `/events\?after=(\d+)$`)
	m := re.FindStringSubmatch(a.EventsURL)
	if m == nil {
		t.Fatalf("events_url %q is not %s", a.EventsURL, re)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
