// Command chatload measures taskchat's chat pipeline end to end: turns per
// second and the latency from POST /api/{user}/chat to the final answer,
// next to a database-only baseline measured in the same run — the same
// commits (CreateTurn, ClaimRun, the tool's transaction, FinishRun) made
// directly, without HTTP, the queue or the events — so that the ratio of
// the two is the figure, whatever the machine.
//
// By default it starts taskchat in its own process as chatd does (the API
// on a loopback listener, the workers, an embedded NATS server unless
// NATS_URL is set) on a fresh database created on DATABASE_URL's server
// and dropped at the end. With -url it drives an API that runs elsewhere
// instead. Each phase uses fresh users, one per client. It prints a
// markdown table.
//
// With -sse it measures the events route instead (sse.go): the API's
// memory per idle stream with 10,000 open (their clients in a child
// process), and the time from a publish to its arrival at every one of N
// clients watching one conversation (N = 1, 100, 1,000).
//
// With -first-delta it measures what the model provider adds to a model's
// time to first token (firstdelta.go): POST /chat to the first
// message.delta with the offline provider, and with the OpenAI-compatible
// one on a fake model answering at once, less the fake's own time.
//
//	go run ./cmd/chatload                      # ~15 s on the defaults
//	go run ./cmd/chatload -sse                 # ~30 s on the defaults
//	go run ./cmd/chatload -first-delta         # ~10 s on the defaults
//	go run ./cmd/chatload -clients 64 -duration 5s -cpuprofile cpu.out
//	go run ./cmd/chatload -url http://127.0.0.1:8080   # a running API
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/config"
	chatworker "github.com/taskchat/taskchat/workers/chat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == holdCommand {
		err = holdStreams(ctx, os.Args[2:], os.Stdin, os.Stdout) // -sse's clients
	} else {
		err = run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2) // the flag package has said what is wrong
	default:
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

// errUsage marks a command line that cannot run; the message is out.
var errUsage = errors.New("usage")

// options are chatload's flags.
type options struct {
	url        string
	clients    int
	duration   time.Duration
	warmup     time.Duration
	rate       float64
	async      bool
	message    string
	perConv    int
	skipBase   bool
	cpuProfile string
	logFile    string
	keepDB     bool

	// The -sse mode's settings (sse.go).
	sse        bool
	sseStreams int
	sseFanout  []int
	sseEvents  int
	ssePing    time.Duration
	sseBuffer  int
	memProfile string

	// The -first-delta mode's settings (firstdelta.go).
	firstDelta bool
	fdTurns    int
}

func parseFlags(args []string, errOut io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&o.url, "url", "", "drive the API at this base URL instead of starting one (needs its DATABASE_URL and BETTER_AUTH_SECRET)")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients, each a user of its own")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "measured time of each phase")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured time at the start of each phase")
	fs.Float64Var(&o.rate, "rate", 0, "turns per second of the open-loop phases (0: half the pipeline's closed-loop rate; -1: no open-loop phases)")
	fs.BoolVar(&o.async, "async", false, "POST with Prefer: respond-async and wait for the run's final event instead of the sync answer")
	fs.StringVar(&o.message, "message", "add water the plants", "the message of every turn (the default makes one add_task call)")
	fs.IntVar(&o.perConv, "conv-turns", 5, "turns per conversation before a client starts a new one")
	fs.BoolVar(&o.skipBase, "no-baseline", false, "skip the database-only baseline")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the pipeline's closed-loop phase to this file (the whole process: load generator included)")
	fs.StringVar(&o.logFile, "log", "", "write the in-process services' logs to this file (default: formatted, then discarded)")
	fs.BoolVar(&o.keepDB, "keep-db", false, "keep the fresh load database instead of dropping it")
	fs.BoolVar(&o.sse, "sse", false, "measure the events route instead of turns: memory per idle stream and fan-out latency (in-process stack only)")
	fs.IntVar(&o.sseStreams, "sse-streams", 10000, "-sse: idle streams to open for the memory figure (0: skip it)")
	fanout := fs.String("sse-fanout", "1,100,1000", "-sse: comma-separated numbers of clients watching one conversation, one fan-out phase each (\"\": none)")
	fs.IntVar(&o.sseEvents, "sse-events", 200, "-sse: events published per fan-out phase (after 5 unmeasured)")
	fs.DurationVar(&o.ssePing, "sse-ping", 2*time.Second, "-sse: the API's SSE_PING_INTERVAL (vanished clients' streams go at the next ping)")
	fs.StringVar(&o.memProfile, "memprofile", "", "-sse: write a heap profile, taken with the idle streams open, to this file")
	fs.IntVar(&o.sseBuffer, "sse-buffer", 0, "-sse: each stream's event buffer (0: the API's default)")
	fs.BoolVar(&o.firstDelta, "first-delta", false, "measure the time from POST /chat to the first message.delta instead of turns: offline provider vs the OpenAI-compatible one on a fake model answering at once (in-process stack only)")
	fs.IntVar(&o.fdTurns, "first-delta-turns", 300, "-first-delta: measured turns per provider (after 20 unmeasured)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errUsage
	}
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected arguments %q", fs.Args())
	case o.clients < 1 || o.clients > 1000:
		problem = "-clients must be from 1 to 1000"
	case o.duration <= 0 || o.warmup < 0:
		problem = "-duration must be positive and -warmup not negative"
	case o.perConv < 1:
		problem = "-conv-turns must be at least 1"
	case strings.TrimSpace(o.message) == "":
		problem = "-message must not be empty"
	case o.sse && o.url != "":
		problem = "-sse needs the in-process stack (no -url): it counts the API's streams and reads its memory"
	case o.firstDelta && (o.url != "" || o.sse):
		problem = "-first-delta needs the in-process stack (no -url) and cannot be combined with -sse"
	case o.firstDelta && (o.fdTurns < 1 || o.fdTurns > 100_000):
		problem = "-first-delta-turns must be from 1 to 100000"
	case o.sse && (o.sseStreams < 0 || o.sseEvents < 1 || o.ssePing <= 0 || o.sseBuffer < 0):
		problem = "-sse-streams must not be negative, -sse-events at least 1, -sse-ping positive, -sse-buffer not negative"
	}
	if problem == "" {
		o.sseFanout, problem = parseCounts(*fanout)
	}
	if problem != "" {
		fmt.Fprintln(errOut, "chatload:", problem)
		fs.Usage()
		return o, errUsage
	}
	o.url = strings.TrimRight(o.url, "/")
	return o, nil
}

// run measures as the flags in args say and writes the report to out,
// its progress to errOut.
func run(ctx context.Context, args []string, getenv config.Getenv, out, errOut io.Writer) (err error) {
	o, err := parseFlags(args, errOut)
	if err != nil {
		return err
	}
	logOut := io.Discard
	if o.logFile != "" {
		f, err := os.Create(o.logFile)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		defer f.Close()
		logOut = f
	}

	if o.sse {
		return runSSEStack(ctx, o, getenv, logOut, out, errOut)
	}
	if o.firstDelta {
		return runFirstDelta(ctx, o, getenv, logOut, out, errOut)
	}
	var t *target
	if o.url == "" {
		t, err = startStack(ctx, getenv, logOut, errOut, o.keepDB)
	} else {
		t, err = connectTarget(ctx, getenv, o.url, o.async)
	}
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, t.close()) }()

	m := newMeasurement(o, t, errOut)
	if err := m.all(ctx); err != nil {
		return err
	}
	m.report(ctx, out)
	return nil
}

// measurement runs the phases against one target.
type measurement struct {
	o       options
	errOut  io.Writer // progress and failures
	t       *target
	results []result
	// users of every phase, deleted at the end when the target's database
	// is not a throwaway one.
	clients [][]*client
}

func newMeasurement(o options, t *target, errOut io.Writer) *measurement {
	return &measurement{o: o, t: t, errOut: errOut}
}

// all runs the phases: the baseline and the pipeline in a closed loop
// (each client sends its next turn as soon as the last is answered: the
// most the stack does), then both in an open loop at a fixed rate (turns
// arrive on a schedule, whether or not earlier ones are answered: the
// latency at that load).
func (m *measurement) all(ctx context.Context) error {
	defer m.deleteUsers(ctx)
	base, pipe := m.drivers()
	closed := fmt.Sprintf("%d clients, closed loop", m.o.clients)
	if !m.o.skipBase {
		if err := m.phase(ctx, "database only (baseline)", closed, base, 0, ""); err != nil {
			return err
		}
	}
	name := "pipeline, sync"
	if m.o.async {
		name = "pipeline, async + events"
	}
	if err := m.phase(ctx, name, closed, pipe, 0, m.o.cpuProfile); err != nil {
		return err
	}
	rate := m.o.rate
	if rate < 0 {
		return nil
	}
	if rate == 0 {
		rate = m.results[len(m.results)-1].rate() / 2
	}
	if rate < 1 {
		return errors.New("the pipeline's closed-loop rate is too low for an open-loop phase at half of it")
	}
	open := fmt.Sprintf("%.0f turns/s, open loop", rate)
	if !m.o.skipBase {
		if err := m.phase(ctx, "database only (baseline)", open, base, rate, ""); err != nil {
			return err
		}
	}
	return m.phase(ctx, name, open, pipe, rate, "")
}

func (m *measurement) drivers() (driver, driver) {
	hc := &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        m.o.clients,
			MaxIdleConnsPerHost: m.o.clients,
			DisableCompression:  true,
		},
	}
	pipe := &pipeline{base: m.t.base, http: hc, message: m.o.message, perConv: m.o.perConv}
	if m.o.async {
		pipe.finals = newFinals(time.Minute)
	}
	cfg := m.t.cfg.Worker
	lease, history := cfg.Lease, cfg.HistoryMessages
	if lease <= 0 {
		lease = chatworker.DefaultLease
	}
	if history <= 0 {
		history = chatworker.DefaultHistoryMessages
	}
	rounds := m.t.cfg.Agent.MaxToolRounds
	if rounds <= 0 {
		rounds = 8
	}
	base := &baseline{
		db:      m.t.db,
		agent:   agent.New(agent.NewOffline(), agent.WithMaxRounds(rounds)),
		message: m.o.message,
		perConv: m.o.perConv,
		owner:   "chatload-baseline-" + randomHex(8),
		lease:   lease,
		history: history,
	}
	return base, pipe
}

// phase runs d with fresh clients for the warm-up and the measured time,
// in a closed loop (rate 0) or an open loop at rate turns per second, and
// records the result. A CPU profile of the phase goes to profile when set.
func (m *measurement) phase(ctx context.Context, name, load string, d driver, rate float64, profile string) error {
	clients, err := newClients(ctx, m.t.db, m.t.secret, m.o.clients)
	if err != nil {
		return err
	}
	m.clients = append(m.clients, clients)
	if p, ok := d.(*pipeline); ok && p.finals != nil {
		stop, err := m.t.bus.SubscribeEvents(p.finals.deliver)
		if err != nil {
			return err
		}
		defer stop()
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(m.errOut, "chatload: %s, %s: %s…\n", name, load, m.o.warmup+m.o.duration)
	sample := func() cpuSample { return sampleCPU(ctx, m.t.db) }
	r := drive(ctx, d, clients, m.o.warmup, m.o.duration, rate, sample)
	r.name, r.load = name, load
	if r.firstErr != nil {
		fmt.Fprintf(m.errOut, "chatload: %s: %d turns failed; the first: %v\n", name, r.errors, r.firstErr)
	}
	m.results = append(m.results, r)
	return ctx.Err()
}

// drive runs the clients against d. In a closed loop (rate 0) each client
// sends its next turn as soon as its last one is answered; in an open loop
// turns are due every 1/rate seconds and go to the next free client, and
// a turn's latency counts from when it was due, so a backlog shows as
// latency instead of hiding (no coordinated omission). Turns that end
// within the measured window count.
func drive(ctx context.Context, d driver, clients []*client, warmup, duration time.Duration, rate float64, sample func() cpuSample) result {
	start := time.Now()
	from, end := start.Add(warmup), start.Add(warmup+duration)
	var (
		mu  sync.Mutex
		res = result{window: duration}
	)
	cpu := make(chan cpuUse, 1)
	go func() {
		time.Sleep(time.Until(from)) // the window's edges, not synchronisation
		s0 := sample()
		time.Sleep(time.Until(end))
		cpu <- s0.until(sample())
	}()
	record := func(due time.Time, err error) {
		done := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				res.errors++
				if res.firstErr == nil {
					res.firstErr = err
				}
			}
			return
		}
		if !done.Before(from) && !done.After(end) {
			res.lat = append(res.lat, done.Sub(due))
		}
	}

	// due carries the time each turn is due at: now, in a closed loop.
	var due chan time.Time
	if rate > 0 {
		due = make(chan time.Time, int(rate*(warmup+duration).Seconds())+1)
		go func() {
			defer close(due)
			interval := time.Duration(float64(time.Second) / rate)
			for at := start; at.Before(end) && ctx.Err() == nil; at = at.Add(interval) {
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait) // pacing the schedule, not synchronising
				}
				due <- at
			}
		}()
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				at := time.Now()
				if due != nil {
					var ok bool
					if at, ok = <-due; !ok {
						return
					}
				} else if !at.Before(end) {
					return
				}
				record(at, d.turn(ctx, c))
			}
		})
	}
	wg.Wait()
	res.cpu = <-cpu
	return res
}

// deleteUsers deletes the phases' users from a database that outlives the
// run (-url); a fresh database is dropped whole.
func (m *measurement) deleteUsers(ctx context.Context) {
	if m.o.url == "" {
		return
	}
	for _, cs := range m.clients {
		if err := deleteClients(context.WithoutCancel(ctx), m.t.db, cs); err != nil {
			fmt.Fprintln(m.errOut, "chatload: delete load users:", err)
		}
	}
}

// report writes the markdown table and the figures derived from it.
func (m *measurement) report(ctx context.Context, out io.Writer) {
	var pg string
	if err := m.t.db.QueryRowContext(ctx, "SHOW server_version").Scan(&pg); err != nil {
		pg = "?"
	}
	fmt.Fprintf(out, "### chatload: %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(out, "- machine: %d CPUs (%s), %s, PostgreSQL %s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), strings.Fields(pg + " ?")[0])
	fmt.Fprintf(out, "- target: %s%s\n", m.t.describe, natsVersion(m.o.url == "" && m.t.cfg.NATS.URL == ""))
	fmt.Fprintf(out, "- turn: %q, a new conversation every %d turns; %s measured after %s of warm-up per phase\n\n",
		m.o.message, m.o.perConv, m.o.duration, m.o.warmup)
	fmt.Fprintln(out, "| phase | load | turns | turns/s | p50 ms | p90 ms | p99 ms | max ms | errors | CPU ms/turn: chatload | CPU ms/turn: its Postgres backends | machine CPU busy |")
	fmt.Fprintln(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range m.results {
		l := r.latencies()
		fmt.Fprintf(out, "| %s | %s | %d | %.0f | %s | %s | %s | %s | %d | %.2f | %.2f | %.0f%% |\n",
			r.name, r.load, len(r.lat), r.rate(), ms(l.p50), ms(l.p90), ms(l.p99), ms(l.max), r.errors,
			r.perTurn(r.cpu.self), r.perTurn(r.cpu.backends), r.busy())
	}
	fmt.Fprintln(out)
	if len(m.results) >= 2 && !m.o.skipBase {
		base, pipe := m.results[0], m.results[1]
		if base.rate() > 0 {
			fmt.Fprintf(out, "- closed loop: the pipeline makes %.0f turns/s, %.2f× the baseline's %.0f\n", pipe.rate(), pipe.rate()/base.rate(), base.rate())
		}
	}
	if len(m.results) == 4 {
		base, pipe := m.results[2].latencies(), m.results[3].latencies()
		fmt.Fprintf(out, "- open loop (%s): the queue adds p50 %s ms, p99 %s ms over the baseline's commits (pipeline p50 %s ms, p99 %s ms)\n",
			m.results[3].load, ms(pipe.p50-base.p50), ms(pipe.p99-base.p99), ms(pipe.p50), ms(pipe.p99))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// cpuModel reads the CPU's model name from /proc/cpuinfo (Linux).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// natsVersion names the embedded server's module version.
func natsVersion(embedded bool) string {
	if !embedded {
		return ""
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/nats-io/nats-server/v2" {
				return " (nats-server " + d.Version + ")"
			}
		}
	}
	return ""
}
