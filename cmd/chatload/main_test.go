package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// env is the environment of a test run: the test server's Postgres and
// nothing of the developer's own environment.
func env(extra ...string) func(string) string {
	m := map[string]string{"DATABASE_URL": dbtest.ServerURL(), "DB_MAX_CONNS": "8", "LOG_FORMAT": "json"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return func(k string) string { return m[k] }
}

// row matches a phase's row of the report: name, load, turns, errors.
var row = regexp.MustCompile(`(?m)^\| ([^|]+) \| ([^|]+) \| (\d+) \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| (\d+) \|`)

// TestRunMeasuresEveryPhase runs chatload briefly in process, on the
// embedded NATS server (sync) and on the machine's (async): the report has
// the four phases, each with answered turns and no error, and the ratio;
// the load database is dropped and the streams deleted afterwards.
func TestRunMeasuresEveryPhase(t *testing.T) {
	machine := bustest.Machine(t)
	tests := []struct {
		name     string
		args     []string
		env      []string
		pipeline string
	}{
		{"embedded NATS, sync", nil, nil, "pipeline, sync"},
		{"machine's NATS, async", []string{"-async"}, []string{"NATS_URL", machine.URL}, "pipeline, async + events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, streamsBefore := loadDatabases(t), loadStreams(t)
			var out, progress bytes.Buffer
			args := append([]string{"-clients", "3", "-warmup", "100ms", "-duration", "400ms"}, tt.args...)
			if err := run(context.Background(), args, env(tt.env...), &out, &progress); err != nil {
				t.Fatalf("run: %v\n%s", err, progress.String())
			}
			rows := row.FindAllStringSubmatch(out.String(), -1)
			want := []string{"database only (baseline)", tt.pipeline, "database only (baseline)", tt.pipeline}
			if len(rows) != len(want) {
				t.Fatalf("%d phase rows, want %d:\n%s", len(rows), len(want), out.String())
			}
			for i, r := range rows {
				turns, _ := strconv.Atoi(r[3])
				if r[1] != want[i] || turns == 0 || r[4] != "0" {
					t.Errorf("row %d: %q, %s turns, %s errors; want %q with turns and no error", i, r[1], r[3], r[4], want[i])
				}
			}
			if !strings.Contains(out.String(), "× the baseline's") || !strings.Contains(out.String(), "the queue adds p50") {
				t.Errorf("the report lacks the ratio or the added latency:\n%s", out.String())
			}
			if t.Failed() {
				t.Logf("progress:\n%s", progress.String())
			}
			if after := loadDatabases(t); after > before {
				t.Errorf("%d load databases after the run, %d before: not dropped", after, before)
			}
			if after := loadStreams(t); after > streamsBefore {
				t.Errorf("%d load streams on the machine's NATS after the run, %d before: not deleted", after, streamsBefore)
			}
		})
	}
}

// TestRunAgainstURL drives an API that runs elsewhere (-url): the turns
// are answered, and the load users are deleted with what they own.
func TestRunAgainstURL(t *testing.T) {
	ctx := context.Background()
	var discard bytes.Buffer
	tg, err := startStack(ctx, env(), io.Discard, &discard, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tg.close(); err != nil {
			t.Errorf("close the stack: %v", err)
		}
	})
	var out, progress bytes.Buffer
	args := []string{"-url", tg.base + "/", "-clients", "2", "-warmup", "0s", "-duration", "300ms", "-rate", "-1", "-no-baseline"}
	err = run(ctx, args, env("DATABASE_URL", tg.cfg.DB.URL, "BETTER_AUTH_SECRET", tg.secret), &out, &progress)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	rows := row.FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 1 || rows[0][3] == "0" || rows[0][4] != "0" {
		t.Fatalf("want one pipeline row with turns and no error:\n%s\n%s", out.String(), progress.String())
	}
	var users, runs int
	if err := tg.db.NewRaw(`SELECT count(*) FROM "user" WHERE email LIKE '%@chatload.invalid'`).Scan(ctx, &users); err != nil {
		t.Fatal(err)
	}
	if err := tg.db.NewRaw(`SELECT count(*) FROM runs`).Scan(ctx, &runs); err != nil {
		t.Fatal(err)
	}
	if users != 0 || runs != 0 {
		t.Fatalf("after the run: %d load users, %d runs; want none left", users, runs)
	}
}

func TestParseFlagsRefusesBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no clients", []string{"-clients", "0"}, "-clients must be from 1 to 1000"},
		{"no duration", []string{"-duration", "0s"}, "-duration must be positive"},
		{"empty message", []string{"-message", " "}, "-message must not be empty"},
		{"stray argument", []string{"now"}, "unexpected arguments"},
		{"unknown flag", []string{"-fast"}, "flag provided but not defined: -fast"},
		{"sse against a URL", []string{"-sse", "-url", "http://127.0.0.1:1"}, "-sse needs the in-process stack"},
		{"sse without events", []string{"-sse", "-sse-events", "0"}, "-sse-events at least 1"},
		{"sse bad fan-out", []string{"-sse", "-sse-fanout", "1,x"}, `-sse-fanout: "x" is not a positive number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			if _, err := parseFlags(tt.args, &errOut); err != errUsage { //nolint:errorlint // the sentinel itself
				t.Fatalf("err = %v, want errUsage", err)
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("output %q lacks %q", errOut.String(), tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p90 of 1..100", ms(hundred...), 0.90, 90 * time.Millisecond},
		{"max", ms(1, 5, 9), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.q); got != tt.want {
				t.Fatalf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.q, got, tt.want)
			}
		})
	}
}

// TestFinalsMatchEventsEitherWay: an async turn gets its run's final
// status whether the event arrives before or after it starts waiting, and
// other events are ignored.
func TestFinalsMatchEventsEitherWay(t *testing.T) {
	f := newFinals(5 * time.Second)
	f.deliver(chat.Event{Type: chat.EventMessageDelta, RunID: "early"})
	f.deliver(chat.Event{Type: chat.EventRunCompleted, RunID: "early"})
	if s, err := f.wait(context.Background(), "early"); err != nil || s != "completed" {
		t.Fatalf("early event: %q, %v", s, err)
	}
	got := make(chan string, 1)
	go func() {
		s, _ := f.wait(context.Background(), "late")
		got <- s
	}()
	// Deliver until the waiter has registered and taken it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.deliver(chat.Event{Type: chat.EventRunFailed, RunID: "late"})
		select {
		case s := <-got:
			if s != "failed" {
				t.Fatalf("late event: %q, want failed", s)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter never got its event")
		}
	}
}

// loadDatabases counts chatload's databases on the test server.
func loadDatabases(t *testing.T) int {
	t.Helper()
	db, err := pgdb.Open(context.Background(), pgdb.Config{URL: dbtest.ServerURL(), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM pg_database WHERE datname LIKE 'taskchat\\_load\\_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkPipeline measures one sync chat turn through the in-process
// stack (HTTP, Postgres, JetStream, a worker); run in parallel, each
// goroutine a user of its own (go test -bench Pipeline -cpu 1,8,32).
func BenchmarkPipeline(b *testing.B) {
	tg := benchStack(b)
	p := &pipeline{base: tg.base, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}, message: "add water the plants", perConv: 5}
	benchTurns(b, tg, p)
}

// BenchmarkBaseline measures the same turn's database commits alone.
func BenchmarkBaseline(b *testing.B) {
	tg := benchStack(b)
	base, _ := newMeasurement(options{message: "add water the plants", perConv: 5}, tg, io.Discard).drivers()
	benchTurns(b, tg, base)
}

func benchStack(b *testing.B) *target {
	b.Helper()
	tg, err := startStack(context.Background(), env("DB_MAX_CONNS", "10"), io.Discard, io.Discard, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := tg.close(); err != nil {
			b.Errorf("close the stack: %v", err)
		}
	})
	return tg
}

func benchTurns(b *testing.B, tg *target, d driver) {
	b.Helper()
	b.SetParallelism(4) // 4 × GOMAXPROCS clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		cs, err := newClients(ctx, tg.db, tg.secret, 1)
		if err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := d.turn(ctx, cs[0]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// loadStreams counts chatload's streams on the machine's NATS.
func loadStreams(t *testing.T) int {
	t.Helper()
	js := bustest.JetStream(t, bustest.Machine(t).URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		if strings.HasPrefix(name, "LOAD") {
			n++
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
