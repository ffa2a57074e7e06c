package chatworker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/uptrace/bun"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
	"github.com/taskchat/taskchat/pkg/todo"
	chatworker "github.com/taskchat/taskchat/workers/chat"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "chatworker", &testDB)) }

// Durations the tests run with: short, so that leases expire, naks come
// back and the relay looks within a second or two.
const (
	lease            = time.Second
	nakDelay         = 50 * time.Millisecond
	relayInterval    = 200 * time.Millisecond
	relayQueuedAfter = 500 * time.Millisecond
	defaultAckWait   = 2 * time.Second
	// settle bounds how long anything that should happen soon may take.
	settle = 5 * time.Second
)

// harness is one test's world: a user, a bus prefix of its own on one
// server, the API's side of the bus (publishing runs and cancels, reading
// events) and a plain JetStream client to look at the stream and the
// consumer from outside.
type harness struct {
	t     *testing.T
	cfg   bus.Config
	bus   *bus.Bus
	nc    *nats.Conn
	js    jetstream.JetStream
	store *chat.Store
	user  string
}

// newHarness sets up a test on srv; ackWait 0 means defaultAckWait. The
// streams are deleted when the test ends.
func newHarness(t *testing.T, srv bustest.Server, ackWait time.Duration) *harness {
	t.Helper()
	if ackWait == 0 {
		ackWait = defaultAckWait
	}
	// The prefix comes first, so that its streams are deleted after the
	// bus connections (and the workers on them) are closed.
	cfg := bustest.Config(t, srv)
	cfg.EventsMaxAge = time.Hour
	cfg.DuplicateWindow = time.Minute
	cfg.AckWait = ackWait
	cfg.MaxDeliver = 20
	cfg.ConnectTimeout = time.Second
	cfg.ReconnectWait = 50 * time.Millisecond
	cfg.PublishTimeout = 2 * time.Second
	cfg.ClientName = "chatworker-test"
	js := bustest.JetStream(t, srv.URL)
	h := &harness{t: t, cfg: cfg, nc: js.Conn(), js: js, store: chat.NewStore(testDB.DB), user: dbtest.CreateUser(t, testDB.DB, "")}
	// The relay looks at every user's runs: a run this test leaves
	// unfinished would be republished into later tests. Deleting the user
	// deletes them all; it runs once the workers are stopped.
	t.Cleanup(func() {
		if _, err := testDB.DB.NewRaw(`DELETE FROM "user" WHERE id = ?`, h.user).Exec(context.Background()); err != nil {
			t.Errorf("delete the test's user: %v", err)
		}
	})
	h.bus = h.connect()
	return h
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// connect opens a bus connection of the harness's configuration, closed
// when the test ends (closing twice is harmless).
func (h *harness) connect() *bus.Bus {
	h.t.Helper()
	return bustest.Connect(h.t, h.cfg)
}

// workerConfig is the base configuration of test workers.
func workerConfig(concurrency int) chatworker.Config {
	return chatworker.Config{
		Concurrency: concurrency,
		Lease:       lease,
		MaxAttempts: 5,
		FetchWait:   200 * time.Millisecond,
		NakDelay:    nakDelay,
		MaxNakDelay: 8 * nakDelay,
	}
}

// testWorker is a Worker running on a bus connection and a database pool
// of its own, so that it can die alone.
type testWorker struct {
	*chatworker.Worker
	t    *testing.T
	name string
	bus  *bus.Bus
	db   *bun.DB
	// pull ends Run's ctx (stop pulling); stop ends its stop context (hand
	// back the runs in flight).
	pull, stop context.CancelFunc
	done       chan error
	logs       *logtest.Buffer
	once       sync.Once
	err        error // Run's, once it returned
}

// startWorker runs a worker named name (its lease owner gets a random
// suffix) asking p, until the test ends. Its logs are printed when the
// test fails.
func (h *harness) startWorker(name string, cfg chatworker.Config, p agent.Provider) *testWorker {
	h.t.Helper()
	cfg.Owner = name + "-" + randomHex(3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := pgdb.Open(ctx, pgdb.Config{URL: testDB.URL, MaxConns: cfg.Concurrency + 3, StatementTimeout: 30 * time.Second})
	if err != nil {
		h.t.Fatalf("open worker %s's pool: %v", name, err)
	}
	h.t.Cleanup(func() { _ = db.Close() })
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("worker", name)
	b := h.connect()
	w := &testWorker{
		Worker: chatworker.New(cfg, db, b, agent.New(p, agent.WithSystemPrompt("")), log),
		t:      h.t, name: name, bus: b, db: db, done: make(chan error, 1), logs: logs,
	}
	runCtx, pull := context.WithCancel(context.Background())
	stopCtx, stop := context.WithCancel(context.Background())
	w.pull, w.stop = pull, stop
	go func() { w.done <- w.Run(runCtx, stopCtx) }()
	h.t.Cleanup(func() {
		_ = w.shutdown(0) // a failure is reported by shutdown itself
		if h.t.Failed() {
			h.t.Logf("worker %s logs:\n%s", name, logs)
		}
	})
	return w
}

// shutdown ends the worker as SIGTERM does: it stops pulling, and grace
// later its runs in flight are handed back (grace 0: at once; negative:
// never, the runs have to end by themselves). It returns Run's error once
// Run has returned; later calls return the same.
func (w *testWorker) shutdown(grace time.Duration) error {
	w.t.Helper()
	w.once.Do(func() {
		w.pull()
		switch {
		case grace == 0:
			w.stop()
		case grace > 0:
			t := time.AfterFunc(grace, w.stop)
			defer t.Stop()
		}
		select {
		case w.err = <-w.done:
		case <-time.After(settle + max(grace, 0)):
			w.err = fmt.Errorf("worker %s: Run did not return", w.name)
			w.stop()
		}
		if w.err != nil {
			w.t.Errorf("worker %s: Run: %v", w.name, w.err)
		}
	})
	return w.err
}

// crash kills the worker the hard way: its NATS connection and database
// pool go first, so nothing it does afterwards reaches JetStream or
// Postgres (no ack, nak, release, finish or lease renewal), as if the
// process had died; then its goroutines are stopped.
func (w *testWorker) crash() {
	w.t.Helper()
	w.bus.Close()
	_ = w.db.Close()
	_ = w.shutdown(0)
}

// newRelay returns a relay over the test database publishing on the
// API's connection.
func (h *harness) newRelay() *chatworker.Relay {
	return chatworker.NewRelay(chatworker.RelayConfig{Interval: relayInterval, QueuedAfter: relayQueuedAfter}, testDB.DB, h.bus, nil)
}

// startRelay runs a relay until the test ends.
func (h *harness) startRelay() *chatworker.Relay {
	r := h.newRelay()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	h.t.Cleanup(func() { cancel(); <-done })
	return r
}

// turn accepts message in conversationID ("" for a new conversation) as
// the API does, without publishing it.
func (h *harness) turn(conversationID, message string) chat.Turn {
	h.t.Helper()
	turn, err := h.store.CreateTurn(context.Background(), h.user, chat.NewTurn{ConversationID: conversationID, Message: message})
	if err != nil {
		h.t.Fatalf("CreateTurn(%q): %v", message, err)
	}
	return turn
}

// publish publishes turn's run request as the API does.
func (h *harness) publish(turn chat.Turn) {
	h.t.Helper()
	h.publishAs(turn, "")
}

// publishAs publishes turn's run request with message id msgID ("" for
// the run id).
func (h *harness) publishAs(turn chat.Turn, msgID string) {
	h.t.Helper()
	err := h.bus.PublishRun(context.Background(), bus.RunRequest{
		RunID: turn.Run.ID, UserID: h.user, ConversationID: turn.Conversation.ID, MsgID: msgID,
	})
	if err != nil {
		h.t.Fatalf("PublishRun: %v", err)
	}
}

// send accepts and publishes message.
func (h *harness) send(conversationID, message string) chat.Turn {
	h.t.Helper()
	turn := h.turn(conversationID, message)
	h.publish(turn)
	return turn
}

func (h *harness) run(id string) chat.Run {
	h.t.Helper()
	r, err := h.store.GetRun(context.Background(), h.user, id)
	if err != nil {
		h.t.Fatalf("GetRun: %v", err)
	}
	return r
}

// waitRun waits at most within for run id to end, and returns it.
func (h *harness) waitRun(id string, within time.Duration) chat.Run {
	h.t.Helper()
	var r chat.Run
	eventually(h.t, within, "run "+id+" to end", func() bool {
		r = h.run(id)
		return r.Status.Final()
	})
	return r
}

// lease returns the run's lease owner ("" for none) and status, straight
// from the table: the wire type does not show the lease.
func (h *harness) lease(runID string) (owner string, status chat.RunStatus) {
	h.t.Helper()
	var o *string
	err := testDB.DB.NewRaw("SELECT lease_owner, status FROM runs WHERE id = ?", runID).Scan(context.Background(), &o, &status)
	if err != nil {
		h.t.Fatalf("read lease: %v", err)
	}
	if o != nil {
		owner = *o
	}
	return owner, status
}

func (h *harness) messages(conversationID string) []chat.Message {
	h.t.Helper()
	page, err := h.store.ListMessages(context.Background(), h.user, conversationID, chat.ListParams{Limit: 200})
	if err != nil {
		h.t.Fatalf("ListMessages: %v", err)
	}
	return page.Messages
}

// assistant returns the assistant messages of a conversation.
func (h *harness) assistant(conversationID string) []chat.Message {
	h.t.Helper()
	var out []chat.Message
	for _, m := range h.messages(conversationID) {
		if m.Role == chat.RoleAssistant {
			out = append(out, m)
		}
	}
	return out
}

// events returns the stored events of run runID (all of the
// conversation's for "").
func (h *harness) events(conversationID, runID string) []chat.Event {
	h.t.Helper()
	evs, err := h.bus.ReadEvents(context.Background(), conversationID, 0, 10000)
	if err != nil {
		h.t.Fatalf("ReadEvents: %v", err)
	}
	var out []chat.Event
	for _, ev := range evs {
		if runID == "" || ev.RunID == runID {
			out = append(out, ev)
		}
	}
	return out
}

func (h *harness) tasks() []todo.Task {
	h.t.Helper()
	page, err := todo.NewStore(testDB.DB).List(context.Background(), h.user, todo.ListParams{Status: "all", Limit: 200})
	if err != nil {
		h.t.Fatalf("list tasks: %v", err)
	}
	return page.Tasks
}

// stream returns the runs stream's state: a work queue keeps a message
// until it is acked.
func (h *harness) stream() jetstream.StreamState {
	h.t.Helper()
	return bustest.StreamInfo(h.t, h.js, h.cfg.RunsStream()).State
}

// consumer returns the workers' consumer's state.
func (h *harness) consumer() *jetstream.ConsumerInfo {
	h.t.Helper()
	return bustest.ConsumerInfo(h.t, h.js, h.cfg)
}

// waitAcked waits until every run request was acked (or termed): the work
// queue is empty and nothing is delivered and unacked.
func (h *harness) waitAcked(within time.Duration) {
	h.t.Helper()
	eventually(h.t, within, "every run request to be acked", func() bool {
		return h.stream().Msgs == 0 && h.consumer().NumAckPending == 0
	})
}

// eventually polls cond every 10 ms until it holds, failing the test after
// timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// consistently checks cond every 10 ms for d and fails the test the first
// time it does not hold.
func consistently(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// testModel is the model name of the scripted provider.
const testModel = "scripted"

// provider is a scripted agent.Provider: each Complete call goes to f with
// its number among the provider's calls, from 1.
type provider struct {
	f     func(ctx context.Context, n int, req agent.Request, onDelta func(string)) (agent.Turn, error)
	calls atomic.Int64
}

func (p *provider) Complete(ctx context.Context, req agent.Request, onDelta func(string)) (agent.Turn, error) {
	return p.f(ctx, int(p.calls.Add(1)), req, onDelta)
}

func (p *provider) Model() string { return testModel }

// answering is a provider that answers every message with text made
// from it.
func answering() *provider {
	return &provider{f: func(_ context.Context, _ int, req agent.Request, onDelta func(string)) (agent.Turn, error) {
		return reply("You said: "+lastUser(req), onDelta), nil
	}}
}

// reply streams text word by word and returns it as a turn.
func reply(text string, onDelta func(string)) agent.Turn {
	words := strings.SplitAfter(text, " ")
	for _, w := range words {
		onDelta(w)
	}
	return agent.Turn{Text: text}
}

// lastUser returns the text of the request's last user message.
func lastUser(req agent.Request) string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == agent.RoleUser {
			return req.Messages[i].Content
		}
	}
	return ""
}

// afterTool reports whether the request ends with a tool result: the model
// is asked to go on after a tool round.
func afterTool(req agent.Request) bool {
	n := len(req.Messages)
	return n > 0 && req.Messages[n-1].Role == agent.RoleTool
}

// addTask is a tool call adding a task titled title.
func addTask(id, title string) agent.Call {
	args, _ := json.Marshal(map[string]string{"title": title})
	return agent.Call{ID: id, Name: "add_task", Arguments: args}
}

// gate holds provider calls until the test opens it, and tells the test
// which calls are held.
type gate struct {
	entered chan string
	open    chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{entered: make(chan string, 100), open: make(chan struct{})}
}

// hold reports key as held, then waits until the gate opens (nil) or ctx
// ends (ctx's error, as a model call would return).
func (g *gate) hold(ctx context.Context, key string) error {
	g.entered <- key
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release opens the gate for good.
func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// wait returns the keys of the next n held calls, failing the test when
// they do not come within settle.
func (g *gate) wait(t *testing.T, n int) []string {
	t.Helper()
	keys := make([]string, 0, n)
	timeout := time.After(settle)
	for len(keys) < n {
		select {
		case k := <-g.entered:
			keys = append(keys, k)
		case <-timeout:
			t.Fatalf("%d of %d provider calls held after %s", len(keys), n, settle)
		}
	}
	return keys
}

// kinds lists the events' types, a run of message.delta counted as one.
func kinds(evs []chat.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == chat.EventMessageDelta && len(out) > 0 && out[len(out)-1] == ev.Type {
			continue
		}
		out = append(out, ev.Type)
	}
	return out
}

// payload decodes an event's data.
func payload[T any](t *testing.T, ev chat.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatalf("decode %s: %v", ev.Type, err)
	}
	return v
}

// ofType returns the events of type typ.
func ofType(evs []chat.Event, typ string) []chat.Event {
	var out []chat.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}
