package app_test

// A headless Chromium driven through the DevTools protocol (chromedp), for
// the console's browser test (console_test.go): Debian's chromium, a fresh
// profile per test, no network but the test's own servers. It records
// every request the page sends and everything the page writes to its
// console, and saves a screenshot when the test fails.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds the whole browser session of a test.
const browserTimeout = 3 * time.Minute

// browser is one tab of a headless Chromium.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	requests []sentRequest
	problems []string // exceptions, console errors, CSP violations
}

// sentRequest is a request the page sent.
type sentRequest struct {
	url     string
	headers map[string]string
}

// newBrowser starts Chromium with a fresh profile, sized width×height; it
// stops when the test ends. Without chromium the test fails: it is never
// skipped (CI installs chromium).
func newBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the console's browser test needs Debian's chromium (apt-get install -y chromium; .ci/run installs it): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	timeout, cancelTimeout := context.WithTimeout(context.Background(), browserTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(timeout, opts...)
	var chromeLog strings.Builder
	var logMu sync.Mutex
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(format string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(&chromeLog, format+"\n", a...)
	}))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		cancelTimeout()
		logMu.Lock()
		defer logMu.Unlock()
		if t.Failed() && chromeLog.Len() > 0 {
			t.Logf("chromedp errors:\n%s", chromeLog.String())
		}
	})
	b := &browser{t: t, ctx: ctx}
	// Listen starts the browser.
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("viewport: %v", err)
	}
	go b.readConsole()
	// Registered last, so it runs first: the page is still there.
	t.Cleanup(b.screenshotOnFailure)
	return b
}

// record keeps the page's requests and answers its dialogs (confirm()
// says yes). It runs on chromedp's reading goroutine: no commands here.
func (b *browser) record(ev any) {
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		h := map[string]string{}
		for k, v := range ev.Request.Headers {
			h[strings.ToLower(k)] = fmt.Sprint(v)
		}
		b.mu.Lock()
		b.requests = append(b.requests, sentRequest{url: ev.Request.URL, headers: h}) // the fragment is never sent
		b.mu.Unlock()
	case *page.EventJavascriptDialogOpening:
		go func() {
			_, _ = chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}()
	}
}

// readConsole keeps what the page reports as wrong: an uncaught exception,
// console.error, or a blocked resource (a CSP violation). Failed loads (a
// 401, a 429, a stream cut on purpose) are expected: the browser logs each
// as "Failed to load resource".
func (b *browser) readConsole() {
	for m, err := range chromedp.Console(b.ctx) {
		if err != nil {
			return
		}
		bad := m.Type == chromedp.ConsoleException ||
			(m.Type == chromedp.ConsoleError && !strings.HasPrefix(m.Text, "Failed to load resource"))
		if bad || strings.Contains(m.Text, "Content Security Policy") {
			b.mu.Lock()
			b.problems = append(b.problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
			b.mu.Unlock()
		}
	}
}

// screenshotOnFailure saves what the page showed when the test failed, in
// a directory that outlives the test, and says where.
func (b *browser) screenshotOnFailure() {
	if !b.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("no screenshot: %v", err)
		return
	}
	dir, err := os.MkdirTemp("", "taskchat-console-")
	if err == nil {
		path := filepath.Join(dir, "failure.png")
		if err = os.WriteFile(path, png, 0o644); err == nil {
			b.t.Logf("screenshot of the failure: %s", path)
			return
		}
	}
	b.t.Logf("no screenshot: %v", err)
}

// do runs actions, failing the test with what when one fails. An element
// the page re-rendered between being found and being acted on (a list
// refreshed by an event) is found again: the action had not happened.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := chromedp.Do(b.ctx, actions...)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "Could not find node with given id") || time.Now().After(deadline) {
			b.t.Fatalf("%s: %v", what, err)
		}
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is true, failing the test
// after waitFor with what and, when given, the value of the expression
// state.
func (b *browser) waitJS(what, expr, state string) {
	b.t.Helper()
	var last string
	eventually(b.t, what, func() bool {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
		if err != nil && !errors.Is(err, chromedp.ErrJSUndefined) {
			last = err.Error()
			return false
		}
		return ok
	}, func() string {
		if state != "" {
			if v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](state)); err == nil {
				return fmt.Sprintf("%v", v)
			}
		}
		return last
	})
}

// sent returns the requests the page sent so far.
func (b *browser) sent() []sentRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]sentRequest(nil), b.requests...)
}

// pageProblems returns what the page reported as wrong so far.
func (b *browser) pageProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// setValue sets the value of the form field sel, as typing would, with the
// input and change events the page listens to.
func (b *browser) setValue(sel, value string) {
	b.t.Helper()
	if !eval[bool](b, `(() => {
		const f = document.querySelector(`+strconv.Quote(sel)+`);
		if (!f) return false;
		f.value = `+strconv.Quote(value)+`;
		f.dispatchEvent(new Event('input', { bubbles: true }));
		f.dispatchEvent(new Event('change', { bubbles: true }));
		return true; })()`) {
		b.t.Fatalf("no field %s to set", sel)
	}
}

// enter focuses the field sel and presses Enter (with Shift when shift) as
// a keyboard does: one keyDown that carries the text, so that a page which
// prevents the keydown's default gets no new line. (chromedp's SendKeys
// sends the text as a char event of its own, which no keydown handler can
// prevent.)
func (b *browser) enter(sel string, shift bool) {
	b.t.Helper()
	b.do("focus "+sel, chromedp.Focus(sel))
	var mods int64
	if shift {
		mods = int64(chromedp.ModifierShift)
	}
	down := input.DispatchKeyEventParams{
		Type: input.DispatchKeyEventTypeKeyDown, Modifiers: mods, Key: "Enter", Code: "Enter",
		Text: "\r", UnmodifiedText: "\r", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
	}
	up := down
	up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
	for _, p := range []input.DispatchKeyEventParams{down, up} {
		if _, err := chromedp.Call(b.ctx, input.DispatchKeyEvent, p); err != nil {
			b.t.Fatalf("press Enter in %s: %v", sel, err)
		}
	}
}

// typeLine types text into the field sel and presses Enter.
func (b *browser) typeLine(sel, text string) {
	b.t.Helper()
	b.do("type into "+sel, chromedp.SendKeys(sel, text))
	b.enter(sel, false)
}
