package main

// The -sse mode: what the events route (GET …/conversations/{id}/events)
// costs — memory per idle stream with many open on one API process, and the
// time from a publish to its arrival at every one of N watching clients.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/taskchat/taskchat/cmd/internal/app"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/httpapi"
)

// sseOverrides are the API settings the -sse mode needs: room for every
// stream of the run on one user and one process, and pings often enough
// that the streams of vanished clients go within the run.
func sseOverrides(o options) map[string]string {
	most := max(o.sseStreams, slices.Max(append([]int{0}, o.sseFanout...)))
	return map[string]string{
		"SSE_MAX_STREAMS_PER_USER": strconv.Itoa(min(most, 10_000)), // the variable's ceiling
		"HTTP_MAX_CONNS":           strconv.Itoa(most + 1000),
		"SSE_PING_INTERVAL":        o.ssePing.String(),
	}
}

// raiseFileLimit lifts RLIMIT_NOFILE to fds descriptors, up to the hard
// limit (beyond it only with CAP_SYS_RESOURCE).
func raiseFileLimit(fds int) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	want := uint64(fds)
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Not allowed above the hard limit: take what there is.
		next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, fmt.Errorf("setrlimit: %w", errors.Join(err, err2))
		}
		if next.Cur < want {
			return next.Cur, fmt.Errorf("open files limited to %d, %d needed (ulimit -n)", next.Cur, want)
		}
	}
	return next.Cur, nil
}

// sseRun holds what the -sse phases share.
type sseRun struct {
	o      options
	t      *target
	errOut io.Writer
	addr   string // host:port of the API
	c      *client
	http   *http.Client
}

// memResult is the idle-stream memory phase's measurement.
type memResult struct {
	n                int
	open             time.Duration // to open all n
	streams          memUse        // what the API's n streams added
	streamGoroutines int           // the API's goroutines with n streams
	cleanup          time.Duration // from the clients' end to none left
	perStream        float64       // bytes per stream
}

// fanResult is one fan-out phase's measurement.
type fanResult struct {
	n      int
	events int
	each   []time.Duration // every delivery: publish to one client's read
	last   []time.Duration // per event: publish to the last client's read
}

func runSSE(ctx context.Context, o options, t *target, out, errOut io.Writer) error {
	u, err := url.Parse(t.base)
	if err != nil {
		return err
	}
	clients, err := newClients(ctx, t.db, t.secret, 1)
	if err != nil {
		return err
	}
	r := &sseRun{o: o, t: t, errOut: errOut, addr: u.Host, c: clients[0],
		http: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1}}}

	var mem *memResult
	if o.sseStreams > 0 {
		conv, err := r.conversation(ctx)
		if err != nil {
			return err
		}
		if mem, err = r.memory(ctx, conv); err != nil {
			return err
		}
	}
	var fans []fanResult
	for _, n := range o.sseFanout {
		conv, err := r.conversation(ctx)
		if err != nil {
			return err
		}
		profile := ""
		if n == slices.Max(o.sseFanout) { // the largest: what limits it
			profile = o.cpuProfile
		}
		f, err := r.fanout(ctx, conv, n, profile)
		if err != nil {
			return err
		}
		fans = append(fans, f)
	}
	r.report(out, mem, fans)
	return nil
}

// conversation starts a conversation of the run's user with one turn.
func (r *sseRun) conversation(ctx context.Context) (string, error) {
	p := &pipeline{base: r.t.base, http: r.http, message: "hello", perConv: 1 << 30}
	r.c.conv, r.c.turns = "", 0
	if err := p.turn(ctx, r.c); err != nil {
		return "", fmt.Errorf("start a conversation: %w", err)
	}
	return r.c.conv, nil
}

// memUse is the heap and the goroutine stacks in use.
type memUse struct{ heap, stacks int64 }

func (m memUse) total() int64 { return m.heap + m.stacks }

func (m memUse) minus(o memUse) memUse { return memUse{m.heap - o.heap, m.stacks - o.stacks} }

// inUse is the memory in use after full collections (two: sync.Pool keeps
// what it drops for one more).
func inUse() memUse {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memUse{int64(m.HeapInuse), int64(m.StackInuse)}
}

// memory measures o.sseStreams idle streams on conv. Their clients run in
// a child process of chatload's (holdStreams): a process may not have the
// descriptors of both ends of 10,000 connections (ulimit -n), and the
// figure is then the API's alone, with nothing of the clients in it.
func (r *sseRun) memory(ctx context.Context, conv string) (*memResult, error) {
	n := r.o.sseStreams
	res := &memResult{n: n}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(r.errOut, "chatload: opening %d idle event streams from a child process…\n", n)
	base, g0 := inUse(), runtime.NumGoroutine()
	start := time.Now()
	cctx, kill := context.WithCancel(ctx)
	defer kill()
	cmd := exec.CommandContext(cctx, exe, holdCommand, r.addr, r.path(conv), strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "CHATLOAD_TOKEN="+r.c.token) // not on the command line
	cmd.Stderr = r.errOut
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the clients' process: %w", err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "open" {
		if err != nil {
			return nil, fmt.Errorf("the clients' process: %w", err)
		}
		return nil, fmt.Errorf("the clients' process said %q", line)
	}
	res.open = time.Since(start)
	if err := waitUntil(ctx, 10*time.Second, func() bool { return r.t.streams() == n }); err != nil {
		return nil, fmt.Errorf("%d streams registered, want %d: %w", r.t.streams(), n, err)
	}
	res.streams, res.streamGoroutines = inUse().minus(base), runtime.NumGoroutine()-g0
	res.perStream = float64(res.streams.total()) / float64(n)
	if r.o.memProfile != "" {
		if err := writeHeapProfile(r.o.memProfile); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(r.errOut, "chatload: ending the clients; the server notices at the next ping (%s)…\n", r.o.ssePing)
	start = time.Now()
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("the clients' process: %w", err)
	}
	if err := waitUntil(ctx, r.o.ssePing+30*time.Second, func() bool { return r.t.streams() == 0 }); err != nil {
		return nil, fmt.Errorf("%d streams left after their clients went: %w", r.t.streams(), err)
	}
	res.cleanup = time.Since(start)
	return res, nil
}

// holdCommand is the first argument that makes chatload the clients'
// process of the memory phase (see holdStreams).
const holdCommand = "__sse-hold"

// holdStreams is the clients' process of the memory phase: it opens n
// event streams on addr's path with CHATLOAD_TOKEN, each on a bare
// connection read no further, writes "open" and holds them until its
// standard input ends.
func holdStreams(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 3 {
		return errors.New("usage: " + holdCommand + " host:port path n")
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	if _, err := raiseFileLimit(n + 1024); err != nil {
		return err
	}
	addr, path, token := args[0], args[1], os.Getenv("CHATLOAD_TOKEN")
	conns, err := parallel(ctx, n, func(ctx context.Context) (net.Conn, error) { return openRaw(ctx, addr, path, token) })
	defer closeAll(conns)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "open")
	_, err = io.Copy(io.Discard, stdin)
	return err
}

// openRaw opens one event stream on a bare connection and returns once the
// stream's opening comment is in: the server has registered it.
func openRaw(ctx context.Context, addr, path, token string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", path, addr, token)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(got, []byte(": stream open")) {
		k, err := c.Read(buf)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("open stream: %w (read %q)", err, got)
		}
		got = append(got, buf[:k]...)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
		c.Close()
		return nil, fmt.Errorf("open stream: %q", got)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

func (r *sseRun) path(conv string) string {
	return "/api/" + url.PathEscape(r.c.user) + "/conversations/" + conv + "/events"
}

// deltaTS is a synthetic message.delta's payload: the publish time in
// Unix nanoseconds as its text.
type deltaTS struct {
	Delta string `json:"delta"`
}

// fanout opens n streams on conv, each read by a goroutine of its own, and
// publishes o.sseEvents synthetic events one after the other (the next
// once every client has the last): each carries its publish time, each
// client its arrival time, so that the figure is the whole path — the
// JetStream publish, the API's one follower, the hub, the stream's write,
// loopback, the client's read.
func (r *sseRun) fanout(ctx context.Context, conv string, n int, profile string) (fanResult, error) {
	fmt.Fprintf(r.errOut, "chatload: fan-out to %d streams, %d events…\n", n, r.o.sseEvents)
	res := fanResult{n: n, events: r.o.sseEvents}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	arrivals := make(chan time.Duration, n)
	bodies, err := parallel(ctx, n, func(ctx context.Context) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.t.base+r.path(conv), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+r.c.token)
		resp, err := r.http.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("open stream: status %d", resp.StatusCode)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil { // ": stream open"
			resp.Body.Close()
			return nil, err
		}
		go readArrivals(br, arrivals)
		return resp.Body, nil
	})
	defer closeAll(bodies)
	if err != nil {
		return res, err
	}
	if err := waitUntil(ctx, 10*time.Second, func() bool { return r.t.streams() == n }); err != nil {
		return res, fmt.Errorf("%d streams registered, want %d: %w", r.t.streams(), n, err)
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return res, fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	const warmup = 5
	for i := range warmup + r.o.sseEvents {
		sent := time.Now()
		ev, err := chat.NewEvent(chat.EventMessageDelta, conv, "chatload", chat.MessageDeltaData{RunID: "chatload", MessageID: "chatload", Delta: strconv.FormatInt(sent.UnixNano(), 10)})
		if err != nil {
			return res, err
		}
		if _, err := r.t.bus.PublishEvent(ctx, ev, ""); err != nil {
			return res, err
		}
		var last time.Duration
		timeout := time.After(10 * time.Second)
		for range n {
			select {
			case d := <-arrivals:
				last = max(last, d)
				if i >= warmup {
					res.each = append(res.each, d)
				}
			case <-timeout:
				return res, fmt.Errorf("event %d did not reach all %d streams within 10s", i, n)
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		if i >= warmup {
			res.last = append(res.last, last)
		}
	}
	closeAll(bodies) // closing twice (the deferred call) is harmless
	// The server notices the clients' end at its next ping; the next
	// phase starts with none left.
	if err := waitUntil(ctx, r.o.ssePing+30*time.Second, func() bool { return r.t.streams() == 0 }); err != nil {
		return res, fmt.Errorf("%d streams left after their clients went: %w", r.t.streams(), err)
	}
	return res, nil
}

// readArrivals reads an event stream and reports, for each event, how long
// ago its payload's time was.
func readArrivals(br *bufio.Reader, arrivals chan<- time.Duration) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		now := time.Now()
		var p deltaTS
		if json.Unmarshal([]byte(data), &p) != nil {
			continue
		}
		ns, err := strconv.ParseInt(p.Delta, 10, 64)
		if err != nil {
			continue
		}
		arrivals <- now.Sub(time.Unix(0, ns))
	}
}

// parallel calls open n times from 64 goroutines and returns what it
// opened, stopping at the first error. open gets ctx itself: what it opens
// (a response body) may live as long as ctx.
func parallel[T io.Closer](ctx context.Context, n int, open func(context.Context) (T, error)) ([]T, error) {
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex
		out  = make([]T, 0, n)
		errs error
		next = make(chan struct{})
		wg   sync.WaitGroup
	)
	for range min(n, 64) {
		wg.Go(func() {
			for range next {
				v, err := open(ctx)
				mu.Lock()
				if err != nil {
					if errs == nil {
						errs = err
					}
					cancel()
				} else {
					out = append(out, v)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for range n {
		select {
		case next <- struct{}{}:
		case <-stop.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return out, errs
}

func closeAll[T io.Closer](cs []T) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// waitUntil polls cond until it holds or within passes.
func waitUntil(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func (r *sseRun) report(out io.Writer, mem *memResult, fans []fanResult) {
	fmt.Fprintf(out, "### chatload -sse: %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(out, "- machine: %d CPUs (%s), %s, GOMAXPROCS %d\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "- target: %s%s; fan-out clients in the same process, over loopback; SSE_PING_INTERVAL=%s, stream buffer %d events\n\n",
		r.t.describe, natsVersion(r.t.cfg.NATS.URL == ""), r.o.ssePing, cmp.Or(r.t.cfg.Chat.SSEBuffer, httpapi.DefaultSSEBuffer))
	if mem != nil {
		fmt.Fprintln(out, "| idle streams (clients in a child process) | opened in | API heap added | API stacks added | per stream | goroutines per stream | cleanup after the clients vanish |")
		fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|")
		fmt.Fprintf(out, "| %d | %s | %.1f MiB | %.1f MiB | %.1f KiB | %.1f | %s |\n\n",
			mem.n, mem.open.Round(time.Millisecond), mib(mem.streams.heap), mib(mem.streams.stacks), mem.perStream/1024,
			float64(mem.streamGoroutines)/float64(mem.n), mem.cleanup.Round(time.Millisecond))
	}
	if len(fans) > 0 {
		fmt.Fprintln(out, "| watching clients | events | each delivery p50 ms | p99 ms | all clients reached p50 ms | p99 ms | max ms |")
		fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|")
		for _, f := range fans {
			each, last := slices.Sorted(slices.Values(f.each)), slices.Sorted(slices.Values(f.last))
			fmt.Fprintf(out, "| %d | %d | %s | %s | %s | %s | %s |\n", f.n, f.events,
				ms(percentile(each, .5)), ms(percentile(each, .99)), ms(percentile(last, .5)), ms(percentile(last, .99)), ms(percentile(last, 1)))
		}
		fmt.Fprintln(out)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// parseCounts reads -sse-fanout's list; problem says what is wrong.
func parseCounts(s string) (counts []int, problem string) {
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Sprintf("-sse-fanout: %q is not a positive number", f)
		}
		counts = append(counts, n)
	}
	return counts, ""
}

// runSSEStack starts the in-process stack with room for the -sse mode's
// streams and measures them.
func runSSEStack(ctx context.Context, o options, getenv config.Getenv, logOut, out, errOut io.Writer) (err error) {
	// The memory phase's server ends, both ends of the largest fan-out's
	// connections, and room for the rest.
	limit, err := raiseFileLimit(o.sseStreams + 2*slices.Max(append([]int{0}, o.sseFanout...)) + 4096)
	if err != nil {
		return err
	}
	fmt.Fprintf(errOut, "chatload: open files limit %d\n", limit)
	over := sseOverrides(o)
	t, err := startStack(ctx, func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return getenv(k)
	}, logOut, errOut, o.keepDB, func(c *app.Config) {
		if o.sseBuffer > 0 {
			c.Chat.SSEBuffer = o.sseBuffer
		}
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, t.close()) }()
	return runSSE(ctx, o, t, out, errOut)
}

// writeHeapProfile writes the heap's profile (in use, after a collection)
// to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}
