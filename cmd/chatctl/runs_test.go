package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
)

// runsFixture is a database with runs in every state an operator meets.
type runsFixture struct {
	d           *dbtest.Database
	store       *chat.Store
	user, other string

	failed    chat.Turn // failed with AGENT_ERROR, 3 attempts
	oldQueued chat.Turn // queued two hours ago, never claimed
	orphan    chat.Turn // running under an expired lease (its worker died)
	healthy   chat.Turn // running under a live lease
	fresh     chat.Turn // queued just now
	completed chat.Turn // answered
	cancelled chat.Turn // cancelled while queued
	answered  chat.Turn // failed after writing its answer
	foreign   chat.Turn // the other user's failed run

	// texts are the users' messages, the answers and the error messages:
	// no command may print them.
	texts []string
}

// newRunsFixture seeds a fresh database.
func newRunsFixture(t *testing.T) *runsFixture {
	t.Helper()
	ctx := context.Background()
	f := &runsFixture{d: schemaDB(t)}
	f.store = chat.NewStore(f.d.DB)
	f.user = dbtest.CreateUser(t, f.d.DB, "")
	f.other = dbtest.CreateUser(t, f.d.DB, "")

	turn := func(user, what string) chat.Turn {
		t.Helper()
		text := "private message: " + what
		tr, err := f.store.CreateTurn(ctx, user, chat.NewTurn{Message: text})
		if err != nil {
			t.Fatalf("CreateTurn(%s): %v", what, err)
		}
		f.texts = append(f.texts, text)
		return tr
	}
	claim := func(user string, tr chat.Turn, owner string) {
		t.Helper()
		c, err := f.store.ClaimRun(ctx, user, tr.Run.ID, owner, time.Hour)
		if err != nil || c.Outcome != chat.ClaimOK {
			t.Fatalf("ClaimRun: %+v, %v", c, err)
		}
	}
	finish := func(user string, tr chat.Turn, fin chat.Finish) {
		t.Helper()
		if fin.Error != nil {
			f.texts = append(f.texts, fin.Error.Message)
		}
		if fin.Answer != nil {
			f.texts = append(f.texts, fin.Answer.Content)
		}
		if _, _, err := f.store.FinishRun(ctx, user, tr.Run.ID, "", fin); err != nil {
			t.Fatalf("FinishRun: %v", err)
		}
	}
	agentError := func(what string) *chat.RunError {
		return &chat.RunError{Code: chat.CodeAgentError, Message: "the model said: private detail of " + what}
	}

	f.oldQueued = turn(f.user, "old queued")
	f.sql(t, "UPDATE runs SET created_at = now() - interval '2 hours' WHERE id = ?", f.oldQueued.Run.ID)
	f.failed = turn(f.user, "failed")
	claim(f.user, f.failed, "w-failed")
	finish(f.user, f.failed, chat.Finish{Status: chat.RunFailed, Error: agentError("failed")})
	f.sql(t, "UPDATE runs SET attempts = 3 WHERE id = ?", f.failed.Run.ID)
	f.orphan = turn(f.user, "orphan")
	claim(f.user, f.orphan, "dead-worker")
	f.sql(t, "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = ?", f.orphan.Run.ID)
	f.healthy = turn(f.user, "healthy")
	claim(f.user, f.healthy, "live-worker")
	f.completed = turn(f.user, "completed")
	claim(f.user, f.completed, "w-done")
	finish(f.user, f.completed, chat.Finish{Status: chat.RunCompleted, Answer: &chat.Answer{Content: "private answer: done", Model: "offline"}})
	f.cancelled = turn(f.user, "cancelled")
	if _, err := f.store.CancelRun(ctx, f.user, f.cancelled.Run.ID); err != nil {
		t.Fatal(err)
	}
	f.answered = turn(f.user, "answered then failed")
	finish(f.user, f.answered, chat.Finish{Status: chat.RunFailed, Error: agentError("answered"), Answer: &chat.Answer{Content: "private answer: partial"}})
	f.foreign = turn(f.other, "foreign")
	finish(f.other, f.foreign, chat.Finish{Status: chat.RunFailed, Error: &chat.RunError{Code: chat.CodeAttemptsExceeded, Message: "private detail of foreign"}})
	f.fresh = turn(f.user, "fresh")
	return f
}

func (f *runsFixture) sql(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := f.d.DB.NewRaw(query, args...).Exec(context.Background()); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// all is every run of the fixture, newest first, as runs list orders them.
func (f *runsFixture) all() []chat.Turn {
	return []chat.Turn{f.fresh, f.foreign, f.answered, f.cancelled, f.completed, f.healthy, f.orphan, f.failed, f.oldQueued}
}

// run reads a run as it is now.
func (f *runsFixture) run(t *testing.T, id string) chat.RunInfo {
	t.Helper()
	r, err := chat.NewMaintenance(f.d.DB).GetRun(context.Background(), id)
	if err != nil {
		t.Fatalf("GetRun(%s): %v", id, err)
	}
	return r
}

// noPrivateText fails if out holds a user's message, an answer or a run's
// error message.
func (f *runsFixture) noPrivateText(t *testing.T, out string) {
	t.Helper()
	for _, s := range f.texts {
		if strings.Contains(out, s) {
			t.Errorf("output shows private text %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "private") {
		t.Errorf("output shows private text:\n%s", out)
	}
}

// listed returns the ids of the fixture's runs in out, in order.
func listed(f *runsFixture, out string) []string {
	names := map[string]string{}
	for _, tr := range f.all() {
		names[tr.Run.ID] = tr.Run.ID
	}
	var ids []string
	for line := range strings.Lines(out) {
		if id, _, ok := strings.Cut(line, " "); ok && names[id] != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

func ids(turns ...chat.Turn) []string {
	out := make([]string, len(turns))
	for i, tr := range turns {
		out[i] = tr.Run.ID
	}
	return out
}

func TestRunsList(t *testing.T) {
	f := newRunsFixture(t)
	env := map[string]string{"DATABASE_URL": f.d.URL}
	tests := []struct {
		name string
		args []string
		want []chat.Turn
	}{
		{"every run, newest first", nil, f.all()},
		{"failed", []string{"--status", "failed"}, []chat.Turn{f.foreign, f.answered, f.failed}},
		{"several statuses, spaced and in capitals", []string{"--status", "Queued, running"}, []chat.Turn{f.fresh, f.healthy, f.orphan, f.oldQueued}},
		{"stuck: expired lease and queued for over a minute", []string{"--stuck"}, []chat.Turn{f.orphan, f.oldQueued}},
		{"stuck with no wait: every queued run", []string{"--stuck", "--older-than", "0s"}, []chat.Turn{f.fresh, f.orphan, f.oldQueued}},
		{"stuck after three hours: only the expired lease", []string{"--stuck", "--older-than", "3h"}, []chat.Turn{f.orphan}},
		{"stuck and queued", []string{"--stuck", "--status", "queued"}, []chat.Turn{f.oldQueued}},
		{"older than", []string{"--older-than", "90m"}, []chat.Turn{f.oldQueued}},
		{"one user's", []string{"--user-id", f.other}, []chat.Turn{f.foreign}},
		{"one user's stuck runs", []string{"--stuck", "--user-id", f.other}, nil},
		{"limit keeps the newest", []string{"--limit", "2"}, []chat.Turn{f.fresh, f.foreign}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := chatctl(t, env, append([]string{"runs", "list"}, tt.args...)...)
			if err != nil {
				t.Fatalf("runs list: %v\n%s", err, out)
			}
			if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "LEASE EXPIRES") {
				t.Errorf("no header:\n%s", out)
			}
			if got, want := listed(f, out), ids(tt.want...); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("listed %v, want %v:\n%s", got, want, out)
			}
			f.noPrivateText(t, out)
		})
	}

	t.Run("columns", func(t *testing.T) {
		out, err := chatctl(t, env, "runs", "list")
		if err != nil {
			t.Fatal(err)
		}
		rows := []struct {
			name    string
			run     chat.Turn
			want    []string
			notWant []string
		}{
			{"orphan", f.orphan, []string{f.user, f.orphan.Conversation.ID, " running ", " 1 ", "dead-worker", "(expired)"}, nil},
			{"healthy", f.healthy, []string{" running ", "live-worker"}, []string{"(expired)"}},
			{"failed", f.failed, []string{" failed ", " 3 ", chat.CodeAgentError}, []string{"w-failed"}},
			{"foreign", f.foreign, []string{f.other, chat.CodeAttemptsExceeded}, nil},
			{"cancelled", f.cancelled, []string{" cancelled ", chat.CodeCancelled}, nil},
			{"completed", f.completed, []string{" completed "}, []string{"w-done"}},
		}
		for _, r := range rows {
			line := lineWith(t, out, r.run.Run.ID)
			for _, w := range r.want {
				if !strings.Contains(line, w) {
					t.Errorf("%s: line %q lacks %q", r.name, line, w)
				}
			}
			for _, w := range r.notWant {
				if strings.Contains(line, w) {
					t.Errorf("%s: line %q shows %q", r.name, line, w)
				}
			}
		}
	})
}

// natsEnv starts an embedded NATS server, declares the streams as the
// services do (with a prefix of the test's own), and returns the
// environment chatctl needs and the workers' side of the bus.
func natsEnv(t *testing.T, f *runsFixture) (map[string]string, *bus.Bus) {
	t.Helper()
	cfg := bustest.Config(t, bustest.Embedded(t))
	cfg.AckWait = time.Minute
	worker := bustest.Connect(t, cfg)
	return map[string]string{"DATABASE_URL": f.d.URL, "NATS_URL": cfg.URL, "NATS_PREFIX": cfg.Prefix}, worker
}

// fetchRequests takes what the workers' consumer holds, waiting up to wait
// for the first, and acks it all.
func fetchRequests(t *testing.T, worker *bus.Bus, wait time.Duration) []bus.RunRequest {
	t.Helper()
	ds, err := worker.Fetch(context.Background(), 10, wait)
	if err != nil {
		t.Fatal(err)
	}
	var reqs []bus.RunRequest
	for _, d := range ds {
		if d.Err != nil {
			t.Fatalf("undecodable request: %v", d.Err)
		}
		reqs = append(reqs, d.Request)
		if err := d.Ack(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return reqs
}

func TestRunsRequeuePublishes(t *testing.T) {
	f := newRunsFixture(t)
	env, worker := natsEnv(t, f)
	ctx := context.Background()
	// The API published the failed run's request when it was accepted: its
	// run id is still inside the duplicate window.
	req := bus.RunRequest{RunID: f.failed.Run.ID, UserID: f.user, ConversationID: f.failed.Conversation.ID}
	if err := worker.PublishRun(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := fetchRequests(t, worker, time.Second); len(got) != 1 {
		t.Fatalf("the original request: %+v", got)
	}

	tests := []struct {
		name         string
		run          chat.Turn
		args         []string // after "runs requeue"; "ID" stands for the run's id
		want         []string
		wantAttempts int
	}{
		{"failed: attempts start over", f.failed, []string{"ID"}, []string{"Requeued run " + f.failed.Run.ID, "queued (was failed)", "0 (was 3)", "none (was AGENT_ERROR)"}, 0},
		{"queued already: published again", f.failed, []string{"ID"}, []string{"is queued already", "queued (was queued)"}, 0},
		{"running under an expired lease", f.orphan, []string{"ID"}, []string{"Requeued run", "queued (was running)"}, 1},
		{"running under a live lease, forced", f.healthy, []string{"ID", "--force"}, []string{"Requeued run", "queued (was running)"}, 1},
		{"flags before the id", f.oldQueued, []string{"--force", "ID"}, []string{"is queued already"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"runs", "requeue"}
			for _, a := range tt.args {
				if a == "ID" {
					a = tt.run.Run.ID
				}
				args = append(args, a)
			}
			out, err := chatctl(t, env, args...)
			if err != nil {
				t.Fatalf("runs requeue: %v\n%s", err, out)
			}
			for _, w := range append(tt.want, "Published to "+strings.ToUpper(env["NATS_PREFIX"])+"_RUNS", tt.run.Conversation.ID) {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			f.noPrivateText(t, out)
			r := f.run(t, tt.run.Run.ID)
			if r.Status != chat.RunQueued || r.Attempts != tt.wantAttempts || r.Error != nil || r.FinishedAt != nil || r.LeaseOwner != "" || r.LeaseExpiresAt != nil {
				t.Errorf("run after requeue: %+v", r)
			}
			got := fetchRequests(t, worker, 5*time.Second)
			want := bus.RunRequest{V: bus.RunVersion, RunID: tt.run.Run.ID, UserID: tt.run.Run.UserID, ConversationID: tt.run.Conversation.ID}
			if len(got) != 1 || got[0] != want {
				t.Errorf("published %+v, want just %+v", got, want)
			}
		})
	}
}

func TestRunsRequeueRefuses(t *testing.T) {
	f := newRunsFixture(t)
	env, worker := natsEnv(t, f)
	tests := []struct {
		name string
		id   string
		want string // the start of stderr
	}{
		{"completed", f.completed.Run.ID, "chatctl: runs requeue: run " + f.completed.Run.ID + " is completed: only a failed or stuck run can be requeued\n"},
		{"cancelled", f.cancelled.Run.ID, "chatctl: runs requeue: run " + f.cancelled.Run.ID + " was cancelled: only a failed or stuck run can be requeued\n"},
		{"failed after its answer", f.answered.Run.ID, "chatctl: runs requeue: run " + f.answered.Run.ID + " failed after its answer was written: it is not run again\n"},
		{"running under a live lease", f.healthy.Run.ID, "chatctl: runs requeue: run " + f.healthy.Run.ID + " is running: worker live-worker holds it until "},
		{"unknown", "0190a0a0-0000-7000-8000-000000000000", "chatctl: runs requeue: no run with id \"0190a0a0-0000-7000-8000-000000000000\"\n"},
		{"not a run id", "not-a-uuid", "chatctl: runs requeue: no run with id \"not-a-uuid\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, known := chat.RunInfo{}, strings.Contains(tt.want, " run "+tt.id+" ")
			if known {
				before = f.run(t, tt.id)
			}
			out, err := chatctl(t, env, "runs", "requeue", tt.id)
			code, stderr := status(err)
			if code != exitFailure || !strings.HasPrefix(stderr, tt.want) || out != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want 1 and %q", code, stderr, out, tt.want)
			}
			if known {
				if after := f.run(t, tt.id); after.Status != before.Status || after.Attempts != before.Attempts || after.LeaseOwner != before.LeaseOwner {
					t.Errorf("a refused requeue changed the run: %+v, was %+v", after, before)
				}
			}
		})
	}
	// Nothing was published. A short wait is enough: a publish is
	// acknowledged by the server before chatctl returns.
	if got := fetchRequests(t, worker, 200*time.Millisecond); len(got) != 0 {
		t.Errorf("refusals published %+v", got)
	}
}

func TestRunsRequeueWithoutNATS(t *testing.T) {
	f := newRunsFixture(t)
	out, err := chatctl(t, map[string]string{"DATABASE_URL": f.d.URL}, "runs", "requeue", f.failed.Run.ID)
	if err != nil {
		t.Fatalf("runs requeue: %v\n%s", err, out)
	}
	for _, w := range []string{"Requeued run " + f.failed.Run.ID, "Not published: NATS_URL is not set", "RELAY_QUEUED_AFTER"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if r := f.run(t, f.failed.Run.ID); r.Status != chat.RunQueued || r.Attempts != 0 {
		t.Errorf("run after requeue: %+v", r)
	}
}

// TestRunsRequeueNATSUnusable checks that a NATS chatctl cannot publish to
// leaves the run as it was: the operator fixes NATS_URL, or unsets it and
// leaves the publish to the relay.
func TestRunsRequeueNATSUnusable(t *testing.T) {
	f := newRunsFixture(t)
	s := bustest.Embedded(t)
	defer func(w time.Duration) { natsConnectWait = w }(natsConnectWait)
	natsConnectWait = 300 * time.Millisecond

	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unreachable", map[string]string{"NATS_URL": "nats://127.0.0.1:1"}, "NATS unavailable"},
		{"no service declared the streams", map[string]string{"NATS_URL": s.URL, "NATS_PREFIX": "undeclared"}, `start the API or a worker with NATS_PREFIX "undeclared" first`},
		{"a bad prefix", map[string]string{"NATS_URL": s.URL, "NATS_PREFIX": "Not.Valid"}, "NATS_PREFIX must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["DATABASE_URL"] = f.d.URL
			out, err := chatctl(t, tt.env, "runs", "requeue", f.failed.Run.ID)
			code, stderr := status(err)
			if code != exitFailure || !strings.Contains(stderr, tt.want) || out != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want 1 and %q", code, stderr, out, tt.want)
			}
			if r := f.run(t, f.failed.Run.ID); r.Status != chat.RunFailed || r.Attempts != 3 {
				t.Errorf("the run changed: %+v", r)
			}
		})
	}
}
