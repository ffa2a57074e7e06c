package multiprocess_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
	"github.com/taskchat/taskchat/pkg/dbtest"
	"github.com/taskchat/taskchat/pkg/logtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, "multiprocess", &testDB)) }

const (
	secret = "multiprocess-test-secret-0123456789abcdef"
	// shutdownTimeout is SHUTDOWN_TIMEOUT of every process; a process must
	// exit within it (plus start-up slack for the signal) after SIGTERM.
	shutdownTimeout = 5 * time.Second
)

// TestAPIAndTwoWorkersAsProcesses builds cmd/api and cmd/worker, starts
// one API and two workers against Postgres and the machine's nats-server,
// and sends chats end to end in the sync mode from several users at once:
// every answer is right and stored, each run was finished by exactly one
// worker, both workers did some of them, and all three processes exit 0
// on SIGTERM within SHUTDOWN_TIMEOUT.
func TestAPIAndTwoWorkersAsProcesses(t *testing.T) {
	bin := buildBinaries(t)
	// The machine's server, as the deployed processes would share it, on a
	// prefix of the test's own whose streams are deleted after the
	// processes stop.
	ns := bustest.Machine(t)
	prefix := bustest.Prefix(t, ns)

	env := []string{
		"DATABASE_URL=" + testDB.URL,
		"NATS_URL=" + ns.URL,
		"NATS_PREFIX=" + prefix,
		"BETTER_AUTH_SECRET=" + secret,
		"SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		// Small pools: Postgres's 100 connections are shared by every test
		// on the machine.
		"DB_MAX_CONNS=4",
	}
	// Port 0 and the address read from the log: no race for a "free" port
	// with other tests on the machine.
	api := start(t, "api", filepath.Join(bin, "api"), append(env, "HTTP_ADDR=127.0.0.1:0"))
	// One run at a time per worker: while one is busy the next request
	// goes to the other, so both must take part.
	workerEnv := append(env, "WORKER_CONCURRENCY=1")
	workers := []*process{
		start(t, "worker-1", filepath.Join(bin, "worker"), workerEnv),
		start(t, "worker-2", filepath.Join(bin, "worker"), workerEnv),
	}

	addr := api.waitLog(t, "api listening")["addr"].(string)
	base := "http://" + addr
	waitReady(t, base)
	owners := map[string]string{} // owner → worker name
	for _, w := range workers {
		owner, _ := w.waitLog(t, "workers running")["owner"].(string)
		if owner == "" || owners[owner] != "" {
			t.Fatalf("%s: owner %q missing or shared", w.name, owner)
		}
		owners[owner] = w.name
	}

	// Several users chat at once, each in their own conversation: two
	// tasks added, then listed (the third turn sees what the first two did).
	const users = 6
	type result struct {
		user   string
		runIDs []string
		err    error
	}
	results := make(chan result, users)
	for i := range users {
		user := dbtest.CreateUser(t, testDB.DB, "")
		tok, err := auth.SignHS256(secret, auth.TokenClaims{UserID: user, TTL: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			ids, err := converse(base, user, tok, i)
			results <- result{user, ids, err}
		}()
	}
	var runIDs []string
	for range users {
		r := <-results
		if r.err != nil {
			t.Errorf("user %s: %v", r.user, r.err)
		}
		runIDs = append(runIDs, r.runIDs...)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Each run was finished by exactly one worker, and both worked.
	finishedBy := map[string][]string{}
	perWorker := map[string]int{}
	for _, w := range workers {
		for _, line := range w.logLines(t, "run finished") {
			id, _ := line["run_id"].(string)
			finishedBy[id] = append(finishedBy[id], w.name)
			perWorker[w.name]++
		}
	}
	for _, id := range runIDs {
		if got := finishedBy[id]; len(got) != 1 {
			t.Errorf("run %s finished by %v, want exactly one worker", id, got)
		}
	}
	if len(finishedBy) != len(runIDs) {
		t.Errorf("workers finished %d runs, the API answered %d", len(finishedBy), len(runIDs))
	}
	for _, w := range workers {
		if perWorker[w.name] == 0 {
			t.Errorf("%s finished no run (per worker: %v): the work was not shared", w.name, perWorker)
		}
	}
	t.Logf("runs per worker: %v", perWorker)

	// SIGTERM: every process stops cleanly within SHUTDOWN_TIMEOUT.
	procs := append([]*process{api}, workers...)
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("%s: SIGTERM: %v", p.name, err)
		}
	}
	for _, p := range procs {
		p.waitExit(t, shutdownTimeout+2*time.Second)
		if len(p.logLines(t, "stopped")) != 1 {
			t.Errorf("%s: no \"stopped\" line in its log:\n%s", p.name, p.logs.String())
		}
	}
	for _, p := range procs {
		if strings.Contains(p.logs.String(), secret) {
			t.Errorf("%s: the log shows the secret", p.name)
		}
	}
}

// converse holds user's conversation: two tasks added, then the list.
// It returns the run ids of the three turns.
func converse(base, user, tok string, n int) ([]string, error) {
	first, second := fmt.Sprintf("buy milk %d", n), fmt.Sprintf("call mom %d", n)
	turns := []struct {
		message  string
		tool     string
		contains []string
	}{
		{"add " + first, "add_task", []string{"Buy milk"}},
		{"add " + second, "add_task", []string{"Call mom"}},
		{"what's pending?", "list_tasks", []string{"Buy milk", "Call mom"}},
	}
	var convID string
	var ids []string
	for _, turn := range turns {
		a, err := chat(base, user, tok, convID, turn.message)
		if err != nil {
			return ids, err
		}
		ids = append(ids, a.RunID)
		if a.Status != "completed" || (convID != "" && a.ConversationID != convID) {
			return ids, fmt.Errorf("%q: status %q, conversation %q (want completed in %q)", turn.message, a.Status, a.ConversationID, convID)
		}
		convID = a.ConversationID
		if len(a.ToolCalls) != 1 || a.ToolCalls[0].Name != turn.tool || len(a.ToolCalls[0].Result) == 0 {
			return ids, fmt.Errorf("%q: tool calls %+v, want one %s with a result", turn.message, a.ToolCalls, turn.tool)
		}
		for _, want := range turn.contains {
			if !strings.Contains(a.Response, want) {
				return ids, fmt.Errorf("%q: response %q lacks %q", turn.message, a.Response, want)
			}
		}
	}
	// The tool's effect is stored once: the two tasks, through the tasks API.
	var list struct {
		Data []struct {
			Title string `json:"title"`
		} `json:"data"`
	}
	if err := call(http.MethodGet, base+"/api/"+user+"/tasks", tok, nil, http.StatusOK, &list); err != nil {
		return ids, err
	}
	if len(list.Data) != 2 {
		return ids, fmt.Errorf("tasks after the chat: %+v, want the two added", list.Data)
	}
	return ids, nil
}

// answer is the sync answer of POST /chat.
type answer struct {
	ConversationID string `json:"conversation_id"`
	RunID          string `json:"run_id"`
	Status         string `json:"status"`
	Response       string `json:"response"`
	ToolCalls      []struct {
		Name   string          `json:"name"`
		Result json.RawMessage `json:"result"`
	} `json:"tool_calls"`
}

func chat(base, user, tok, convID, message string) (answer, error) {
	body := map[string]string{"message": message}
	if convID != "" {
		body["conversation_id"] = convID
	}
	var a answer
	err := call(http.MethodPost, base+"/api/"+user+"/chat", tok, body, http.StatusOK, &a)
	return a, err
}

var client = &http.Client{Timeout: 20 * time.Second}

// call sends a JSON request and decodes the answer, which must have status want.
func call(method, url, tok string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s, want %d", method, url, resp.StatusCode, b, want)
	}
	return json.Unmarshal(b, out)
}

// buildBinaries builds cmd/api and cmd/worker into a temporary directory
// (the build cache makes it quick after the first time).
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/taskchat/taskchat/cmd/api", "github.com/taskchat/taskchat/cmd/worker").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// process is a child process with its log.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *logtest.Buffer
	done chan struct{} // closed when it has exited
	err  error         // Wait's error, once done is closed
}

// start runs path with exactly env (nothing inherited). When the test
// ends early, the test's context sends SIGTERM, then SIGKILL after a
// while; the process is always waited for.
func start(t *testing.T, name, path string, env []string) *process {
	t.Helper()
	p := &process{name: name, logs: &logtest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(t.Context(), path)
	p.cmd.Env = env
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = shutdownTimeout + 2*time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		<-p.done
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, p.logs.String())
		}
	})
	return p
}

// waitLog waits for the first log line with message msg and returns it.
func (p *process) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if lines := p.logLines(t, msg); len(lines) > 0 {
			return lines[0]
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, msg, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within 20s:\n%s", p.name, msg, p.logs.String())
		}
	}
}

// logLines returns the JSON log lines with message msg.
func (p *process) logLines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue // a partly written line, or not JSON (a panic)
		}
		if line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// waitExit waits at most timeout for the process to exit and checks that
// its exit code is 0.
func (p *process) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of SIGTERM:\n%s", p.name, timeout, p.logs.String())
	}
	if p.err != nil || p.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("%s exited with %v (code %d), want 0:\n%s", p.name, p.err, p.cmd.ProcessState.ExitCode(), p.logs.String())
	}
}

// waitReady polls /readyz until it answers 200 (Postgres and NATS checked).
func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 20s: %v %v", resp, err)
		}
		<-time.After(50 * time.Millisecond) // the polling interval
	}
}
