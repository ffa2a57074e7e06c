package app_test

// The web console in a real browser: headless Chromium (browser_test.go)
// against the whole stack (harness_test.go), the offline assistant slowed
// (as AI_OFFLINE_DELAY slows it) so that an answer visibly streams, and
// held mid-answer by the test's gate (gatedProvider.holdNext) so that the
// reload, the cut and Stop always find it running, however slow the
// machine.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/auth"
	"github.com/taskchat/taskchat/pkg/bus/bustest"
)

// JavaScript the test evaluates in the page.
const (
	jsAppShown    = `!document.getElementById('app').hidden`
	jsSignInShown = `!document.getElementById('sign-in').hidden`
	jsNotice      = `document.getElementById('notice').textContent`
	jsAnswers     = `[...document.querySelectorAll('#messages .message.assistant .text')].map(e => e.textContent)`
	// jsRecordAnswers keeps every state of the answers' texts, as the page
	// changes them (window.__states: one list of texts per change).
	jsRecordAnswers = `(() => {
		window.__states = [];
		const log = document.getElementById('messages');
		new MutationObserver(() => window.__states.push(` + jsAnswers + `))
			.observe(log, { subtree: true, childList: true, characterData: true });
		return true;
	})()`
)

// jsText is the text of the element sel.
func jsText(sel string) string {
	return `(document.querySelector(` + strconv.Quote(sel) + `)?.textContent ?? '')`
}

// TestConsoleInABrowser drives the console as a person would: signs in
// through the #token= URL chatd logs, adds a task by chat and watches the
// answer stream in and the task appear, reloads the page in the middle of
// an answer and sees it complete once, toggles the task in the pane and
// sees the chat's next listing agree (through a cut connection that the
// stream resumes after), works the tasks pane and the
// conversation list, finds its way in a narrow window, is sent back to
// sign-in with an expired credential, and signs in as a second user who
// sees nothing of the first, hits the queued-runs cap and stops an answer.
// No request carries a token in its URL, no log line holds one, and the
// page reports no error or CSP violation. UPDATE_SCREENSHOT=1 writes the
// README's screenshot, docs/console.png.
func TestConsoleInABrowser(t *testing.T) {
	began := time.Now()
	t.Cleanup(func() { t.Logf("the browser test took %s", time.Since(began).Round(100*time.Millisecond)) })
	// The offline assistant, slowed as AI_OFFLINE_DELAY slows it, behind
	// the test's gate: after holdNext, the next answer streams its first
	// words and waits until the test lets it go or the run is cancelled.
	p := newGatedProvider()
	p.inner = agent.NewOffline(agent.WithWordDelay(200 * time.Millisecond))
	s := newStack(t, bustest.Embedded(t), stackOptions{model: p, env: map[string]string{
		"MAX_QUEUED_RUNS_PER_USER": "1",
	}})
	alice, bob := s.newUser(t), s.newUser(t)
	// The browser reaches the API through a proxy the test can cut.
	proxy := startProxy(t, s.base)
	base := "http://" + proxy.addr()
	b := newBrowser(t, 1100, 720)

	// Signing in with the URL chatd logs: the token goes from the fragment
	// to sessionStorage and the address bar is cleared.
	b.do("open the console", chromedp.Navigate(base+"/#token="+alice.token))
	b.waitJS("the console to sign in", jsAppShown, jsNotice)
	if loc := eval[string](b, `location.href`); loc != base+"/" {
		t.Errorf("the address is %q after signing in, want the fragment gone", loc)
	}
	if got := eval[string](b, `sessionStorage.getItem('taskchat.token')`); got != alice.token {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if got := eval[string](b, jsText("#whoami")); !strings.Contains(got, alice.id) {
		t.Errorf("whoami says %q, want %s", got, alice.id)
	}

	// Shift+Enter starts a new line and sends nothing.
	b.do("type a line", chromedp.SendKeys("#message-input", "add"))
	b.enter("#message-input", true)
	if v := eval[string](b, `document.getElementById('message-input').value`); v != "add\n" {
		t.Errorf("after Shift+Enter the box holds %q, want %q", v, "add\n")
	}
	if n := countRows(t, "messages", alice.id); n != 0 {
		t.Fatalf("Shift+Enter sent a message (%d stored)", n)
	}
	b.setValue("#message-input", "")

	// Enter sends; the answer streams in, its tool call is one line, and
	// the task (titled by the assistant) appears in the pane.
	eval[bool](b, jsRecordAnswers)
	b.typeLine("#message-input", "add buy milk")
	b.waitJS("Buy milk in the task pane", `document.getElementById('task-list').textContent.includes('Buy milk')`, jsText("#task-list"))
	conv := eval[string](b, `sessionStorage.getItem('taskchat.conversation') ?? ''`)
	if conv == "" {
		t.Fatal("the page opened no conversation for the first message")
	}
	taskID := alice.tasks(t)[0].ID
	first := waitAnswer(t, b, alice, conv, 1)
	if want := fmt.Sprintf("Added \"Buy milk\" (task %d).", taskID); first != want {
		t.Fatalf("first answer %q, want %q", first, want)
	}
	if got := eval[string](b, jsText("#messages .message.assistant .tools")); got != "✓ Added 'Buy milk'" {
		t.Errorf("the tool call shows as %q", got)
	}
	if n := checkStreamed(t, b, 1, first); n < 2 {
		t.Errorf("the first answer appeared in %d steps: it did not stream", n)
	}
	if got := eval[string](b, jsText(`#conversation-list button[aria-current="true"]`)); got != "add buy milk" {
		t.Errorf("the open conversation in the list is %q", got)
	}

	// A reload in the middle of an answer: the stream resumes after the
	// last event the tab applied, and the answer ends whole, once.
	p.holdNext.Store(true)
	b.typeLine("#message-input", "show my tasks")
	p.waitEntered(t, "show my tasks")
	b.waitJS("the second answer's first words", `(() => { const a = `+jsAnswers+`; return a.length === 2 && a[1].length > 0 })()`, jsAnswers)
	beforeReload := len(b.sent())
	reloaded := time.Now()
	b.do("reload", chromedp.Reload())
	b.waitJS("the console after the reload", jsAppShown, jsNotice)
	eval[bool](b, jsRecordAnswers)
	p.releaseOne(t)
	second := waitAnswer(t, b, alice, conv, 2)
	if want := fmt.Sprintf("You have 1 task, 1 pending and 0 done:\n- Buy milk (task %d)", taskID); second != want {
		t.Fatalf("second answer %q, want %q", second, want)
	}
	checkStreamed(t, b, 2, second)
	if all := eval[string](b, jsText("#messages")); strings.Count(all, "You have 1 task") != 1 {
		t.Errorf("the second answer shows %d times", strings.Count(all, "You have 1 task"))
	}
	msgs := alice.messages(t, conv)
	if r := alice.run(t, msgs[len(msgs)-1].RunID); r.FinishedAt == nil || !r.FinishedAt.After(reloaded) {
		t.Fatalf("the answer ended (%v) before the page reloaded (%v): nothing was resumed", r.FinishedAt, reloaded)
	}
	if !resumedAfter(b, beforeReload, conv) {
		t.Error("after the reload the page did not resume its event stream with Last-Event-ID")
	}

	// The task toggled in the pane is what the chat lists next; the
	// connection is cut while that answer streams, and the stream resumes
	// with Last-Event-ID once the server is back.
	b.do("toggle the task", chromedp.Click(`#task-list input[type="checkbox"]`))
	eventually(t, "the task to be completed", func() bool { ts := alice.tasks(t); return len(ts) == 1 && ts[0].Completed }, nil)
	b.waitJS("the pane to show the task done", `document.querySelector('#task-list li.done') !== null`, jsText("#task-list"))
	eval[bool](b, jsRecordAnswers)
	p.holdNext.Store(true)
	b.typeLine("#message-input", "what have I completed?")
	p.waitEntered(t, "what have I completed?")
	b.waitJS("the third answer's first words", `(() => { const a = `+jsAnswers+`; return a.length === 3 && a[2].length > 0 })()`, jsAnswers)
	proxy.cut()
	beforeCut := len(b.sent())
	b.waitJS("the page to notice the cut", jsNotice+`.includes('reconnecting')`, jsNotice)
	p.releaseOne(t) // the rest of the answer is published while the page is cut off
	proxy.restart(t)
	third := waitAnswer(t, b, alice, conv, 3)
	if third != fmt.Sprintf("You have completed 1 task:\n- Buy milk (task %d)", taskID) {
		t.Fatalf("after the toggle the chat lists %q", third)
	}
	checkStreamed(t, b, 3, third)
	if !resumedAfter(b, beforeCut, conv) {
		t.Error("after the cut the page did not resume its event stream with Last-Event-ID")
	}
	b.waitJS("the notice to go once the connection is back", jsNotice+` === ''`, jsNotice)

	// The pane's filter and search.
	for _, f := range []struct{ status, search, want string }{
		{"pending", "", "No tasks."},
		{"completed", "", "Buy milk"},
		{"all", "zzz", "No task matches."},
		{"all", "milk", "Buy milk"},
	} {
		b.setValue("#task-status", f.status)
		b.setValue("#task-search", f.search)
		b.waitJS(fmt.Sprintf("the pane to show %q for %s/%q", f.want, f.status, f.search),
			`document.getElementById('task-list').textContent.replace(/EditDelete/g, '') === `+strconv.Quote(f.want), jsText("#task-list"))
	}
	b.setValue("#task-search", "")

	// Add, rename and delete a task in the pane (REST).
	b.typeLine("#task-title", "call mom")
	eventually(t, "the added task", func() bool { return len(alice.tasks(t)) == 2 }, nil)
	b.do("edit it", chromedp.Click(`#task-list button[aria-label="Edit “call mom”"]`))
	b.setValue(`#task-list form input`, "call mom tonight")
	b.enter(`#task-list form input`, false)
	eventually(t, "the renamed task", func() bool { ts := alice.tasks(t); return len(ts) == 2 && ts[1].Title == "call mom tonight" }, nil)
	b.do("delete it", chromedp.Click(`#task-list button[aria-label="Delete “call mom tonight”"]`))
	eventually(t, "the task to be deleted", func() bool { return len(alice.tasks(t)) == 1 }, nil)
	b.waitJS("the pane to drop it", `!document.getElementById('task-list').textContent.includes('call mom')`, jsText("#task-list"))

	// Rename the conversation in the list.
	b.do("rename the conversation", chromedp.Click(`#conversation-list button[aria-label^="Rename"]`))
	b.setValue(`#conversation-list form input`, "Groceries")
	b.enter(`#conversation-list form input`, false)
	b.waitJS("the new title in the list and the chat", `document.querySelector('#conversation-list .select')?.textContent === 'Groceries' && `+jsText("#chat-title")+` === 'Groceries'`, jsText("#conversation-list"))
	var c struct {
		Title string `json:"title"`
	}
	alice.do(t, http.MethodGet, alice.path("/conversations/"+conv), "").want(t, http.StatusOK).decode(t, &c)
	if c.Title != "Groceries" {
		t.Errorf("the stored title is %q", c.Title)
	}
	saveScreenshot(t, b)

	// A narrow window: the panes stack, the chat first.
	b.do("narrow the window", chromedp.EmulateViewport(420, 900))
	if !eval[bool](b, `(() => {
		const box = (sel) => document.querySelector(sel).getBoundingClientRect();
		const chat = box('.chat'), conversations = box('.conversations'), tasks = box('.tasks');
		return chat.right <= 420 && tasks.right <= 420 && chat.bottom <= conversations.top && conversations.bottom <= tasks.top;
	})()`) {
		t.Error("in a 420 px window the panes do not stack")
	}
	b.do("widen the window", chromedp.EmulateViewport(1100, 720))

	// An expired credential leads back to sign-in.
	expired, err := auth.SignHS256(secret, auth.TokenClaims{UserID: alice.id, Now: time.Now().Add(-time.Hour), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	eval[bool](b, `(sessionStorage.setItem('taskchat.token', `+jsonString(expired)+`), true)`)
	b.do("reload with an expired credential", chromedp.Reload())
	b.waitJS("the sign-in form", jsSignInShown+` && `+jsNotice+`.includes('expired')`, jsNotice)

	// A wrong credential is refused; the second user sees nothing of the
	// first's.
	b.typeLine("#credential", "not-a-token")
	b.waitJS("the refusal", jsSignInShown+` && `+jsNotice+`.includes('does not accept')`, jsNotice)
	b.setValue("#credential", bob.token)
	b.enter("#credential", false)
	b.waitJS("the second user's console", jsAppShown+` && `+jsText("#whoami")+`.includes(`+jsonString(bob.id)+`)`, jsNotice)
	b.waitJS("empty lists", jsText("#conversation-list")+` === 'No conversations yet.' && `+jsText("#task-list")+` === 'No tasks.'`,
		jsText("#conversation-list")+` + ' | ' + `+jsText("#task-list"))
	if body := eval[string](b, `document.body.textContent`); strings.Contains(body, "Buy milk") || strings.Contains(body, "Groceries") || strings.Contains(body, alice.id) {
		t.Errorf("the second user's page shows the first user's data: %q", body)
	}

	// One run at a time per user here: a second message is refused
	// plainly and stays in the box; Stop cancels the answer.
	p.holdNext.Store(true)
	b.typeLine("#message-input", "help")
	p.waitEntered(t, "help")
	b.waitJS("the held answer's first words", `(() => { const a = `+jsAnswers+`; return a.length === 1 && a[0].length > 0 })()`, jsAnswers)
	b.typeLine("#message-input", "hello")
	b.waitJS("the 429 notice", jsNotice+`.includes('Too many messages')`, jsNotice)
	if v := eval[string](b, `document.getElementById('message-input').value`); v != "hello" {
		t.Errorf("the refused message is not back in the box: %q", v)
	}
	b.do("stop the answer", chromedp.Click("#stop"))
	bobConv := eval[string](b, `sessionStorage.getItem('taskchat.conversation') ?? ''`)
	bobMsgs := bob.messages(t, bobConv)
	bob.waitRun(t, bobMsgs[0].RunID, "cancelled")
	b.waitJS("the stopped answer", jsText("#messages .message.assistant .status")+` === 'Stopped.' && document.getElementById('stop').hidden`, jsText("#messages"))

	// Delete the conversation (the page asks first; the test says yes).
	b.do("delete the conversation", chromedp.Click(`#conversation-list button[aria-label^="Delete"]`))
	b.waitJS("the empty list", jsText("#conversation-list")+` === 'No conversations yet.'`, jsText("#conversation-list"))
	if n := countRows(t, "conversations", bob.id); n != 0 {
		t.Errorf("%d conversations left after the delete", n)
	}

	// Credentials travel in headers only and reach no log.
	for _, r := range b.sent() {
		if strings.Contains(r.url, alice.token) || strings.Contains(r.url, bob.token) || strings.Contains(r.url, "access_token") {
			t.Errorf("a request carries a credential in its URL: %s", r.url)
		}
		if strings.Contains(r.url, "/api/") && !strings.HasPrefix(r.headers["authorization"], "Bearer ") {
			t.Errorf("an API request without an Authorization header: %s", r.url)
		}
	}
	if logs := s.logs.String(); strings.Contains(logs, alice.token) || strings.Contains(logs, bob.token) {
		t.Error("a token is in the service logs")
	}
	if problems := b.pageProblems(); len(problems) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(problems, "\n"))
	}
}

// resumedAfter reports whether, among the requests the page sent after
// the first n, one opened conversation conv's events with Last-Event-ID.
func resumedAfter(b *browser, n int, conv string) bool {
	for _, r := range b.sent()[n:] {
		if strings.Contains(r.url, "/conversations/"+conv+"/events") && r.headers["last-event-id"] != "" {
			return true
		}
	}
	return false
}

// waitAnswer waits until conversation conv has n stored answers and the
// page shows the n-th as stored, and returns its text.
func waitAnswer(t *testing.T, b *browser, u *apiUser, conv string, n int) string {
	t.Helper()
	var text string
	eventually(t, fmt.Sprintf("answer %d to be stored", n), func() bool {
		var answers []string
		for _, m := range u.messages(t, conv) {
			if m.Role == "assistant" {
				answers = append(answers, m.Content)
			}
		}
		if len(answers) < n {
			return false
		}
		text = answers[n-1]
		return true
	}, nil)
	b.waitJS(fmt.Sprintf("the page to show answer %d", n),
		`(() => { const a = `+jsAnswers+`; return a.length === `+strconv.Itoa(n)+` && a[`+strconv.Itoa(n-1)+`] === `+jsonString(text)+` })()`, jsAnswers)
	return text
}

// checkStreamed checks every text the n-th answer showed since
// jsRecordAnswers ran: each must be the start of final (no piece missing,
// none twice). It returns how many different texts it showed.
func checkStreamed(t *testing.T, b *browser, n int, final string) int {
	t.Helper()
	seen := map[string]bool{}
	for _, texts := range eval[[][]string](b, `window.__states`) {
		if len(texts) < n || texts[n-1] == "" {
			continue
		}
		if !strings.HasPrefix(final, texts[n-1]) {
			t.Errorf("answer %d showed %q, which is not the start of %q", n, texts[n-1], final)
		}
		seen[texts[n-1]] = true
	}
	return len(seen)
}

// saveScreenshot writes the page, as it is, to docs/console.png when
// UPDATE_SCREENSHOT=1: the README's picture of the console in use.
func saveScreenshot(t *testing.T, b *browser) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOT") != "1" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	const maxSize = 150 << 10
	if len(png) > maxSize {
		t.Fatalf("the screenshot is %d KiB, more than %d KiB: keep the README light", len(png)>>10, maxSize>>10)
	}
	path := filepath.Join(repoRoot, "docs", "console.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d KiB)", path, len(png)>>10)
}
