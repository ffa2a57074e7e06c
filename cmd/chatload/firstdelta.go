package main

// The -first-delta mode: what taskchat adds to a model's own time to first
// token. One client sends turns one at a time with POST /chat and Accept:
// text/event-stream and times the POST to the first message.delta frame,
// twice: with the offline provider (the baseline: no model call at all)
// and with the OpenAI-compatible provider on a fake model (pkg/llm/llmtest)
// that answers at once. The fake's own time from the request's arrival to
// its first chunk is subtracted from each openai turn: what is left is the
// pipeline plus the provider (its request, the SDK, the stream's parsing).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// firstDeltaResult is one provider's measurement.
type firstDeltaResult struct {
	name string
	// lat is each turn's POST → first message.delta; model, for the openai
	// phase, the fake's arrival → first chunk of the same turn.
	lat, model []time.Duration
}

func runFirstDelta(ctx context.Context, o options, getenv config.Getenv, logOut, out, errOut io.Writer) error {
	fake := llmtest.Start(func(msg string) { fmt.Fprintln(errOut, "chatload: fake model:", msg) })
	defer fake.Close()
	fake.Respond(func(llmtest.Request) llmtest.Response {
		return llmtest.Response{Chunks: llmtest.Text("Hello", ", how can I help?")}
	})
	phases := []struct {
		name string
		env  map[string]string
	}{
		{"offline provider (baseline)", map[string]string{"AI_PROVIDER": "offline", "OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}},
		{"openai provider, fake model answering at once", map[string]string{"AI_PROVIDER": "openai", "OPENAI_BASE_URL": fake.URL(), "OPENAI_API_KEY": "", "AI_MODEL": "fake"}},
	}
	var results []firstDeltaResult
	for _, p := range phases {
		fmt.Fprintf(errOut, "chatload: %s: %d turns\n", p.name, o.fdTurns)
		t, err := startStack(ctx, func(k string) string {
			if v, ok := p.env[k]; ok {
				return v
			}
			return getenv(k)
		}, logOut, errOut, o.keepDB)
		if err != nil {
			return err
		}
		before := len(fake.FirstByte())
		lat, err := firstDeltas(ctx, t, o.fdTurns)
		err = errors.Join(err, t.close())
		if err != nil {
			return err
		}
		r := firstDeltaResult{name: p.name, lat: lat}
		if p.env["AI_PROVIDER"] == "openai" {
			// Turns run one at a time, so the fake's first chunks are in
			// the turns' order; the measured turns are the last ones.
			model := fake.FirstByte()[before:]
			if len(model) != warmupTurns+len(lat) {
				return fmt.Errorf("the fake model answered %d requests for %d turns", len(model), warmupTurns+len(lat))
			}
			r.model = model[warmupTurns:]
		}
		results = append(results, r)
	}
	reportFirstDelta(out, o, results)
	return nil
}

// warmupTurns are sent before the measured ones of each phase.
const warmupTurns = 20

// firstDeltas sends n turns (after warmupTurns unmeasured), each in a new
// conversation so every model request is the same size, and returns each
// one's POST → first message.delta.
func firstDeltas(ctx context.Context, t *target, n int) ([]time.Duration, error) {
	clients, err := newClients(ctx, t.db, t.secret, 1)
	if err != nil {
		return nil, err
	}
	c := clients[0]
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableCompression: true}}
	out := make([]time.Duration, 0, n)
	for i := range warmupTurns + n {
		d, err := firstDelta(ctx, hc, t.base, c)
		if err != nil {
			return nil, fmt.Errorf("turn %d: %w", i, err)
		}
		if i >= warmupTurns {
			out = append(out, d)
		}
	}
	return out, nil
}

// firstDelta sends one turn asking for its events and returns the time to
// its first message.delta frame; it reads the stream to its end, so the
// next turn starts on an idle stack.
func firstDelta(ctx context.Context, hc *http.Client, base string, c *client) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/"+c.user+"/chat", bytes.NewReader([]byte(`{"message":"hello"}`)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("POST /chat: %d %s", resp.StatusCode, b)
	}
	var first time.Duration
	br := bufio.NewReader(resp.Body)
	event := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if first == 0 {
				return 0, fmt.Errorf("the stream ended without a message.delta (last event %q): %w", event, err)
			}
			return first, nil // the server ends the stream after the run's final event
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
			if event == chat.EventMessageDelta && first == 0 {
				first = time.Since(start)
			}
		case strings.HasPrefix(line, "data: ") && chat.FinalEvent(event) && event != chat.EventRunCompleted:
			var d struct {
				Error json.RawMessage `json:"error"`
			}
			_ = json.Unmarshal([]byte(line[len("data: "):]), &d)
			return 0, fmt.Errorf("the run ended %s: %s", event, d.Error)
		}
	}
}

func reportFirstDelta(out io.Writer, o options, results []firstDeltaResult) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	row := func(name string, lat []time.Duration) {
		s := slices.Clone(lat)
		slices.Sort(s)
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s |\n", name, len(s),
			ms(percentile(s, 0.5)), ms(percentile(s, 0.9)), ms(percentile(s, 0.99)), ms(percentile(s, 1)))
	}
	fmt.Fprintf(out, "\nPOST /chat (Accept: text/event-stream) → first message.delta, one turn at a time, %d turns per row (ms)\n\n", o.fdTurns)
	fmt.Fprintln(out, "| what | turns | p50 | p90 | p99 | max |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|")
	for _, r := range results {
		row(r.name, r.lat)
		if r.model == nil {
			continue
		}
		row("  the fake model's own time to first chunk", r.model)
		less := make([]time.Duration, len(r.lat))
		for i := range r.lat {
			less[i] = r.lat[i] - r.model[i]
		}
		row("  openai provider minus the fake's time to first chunk", less)
	}
}
