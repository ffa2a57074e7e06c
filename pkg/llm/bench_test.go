package llm_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskchat/taskchat/pkg/agent"
	"github.com/taskchat/taskchat/pkg/llm/llmtest"
)

// BenchmarkFirstDelta measures what the provider adds to a model's time to
// first token: from Complete's call to its first delta, less the fake
// model's own time from the request's arrival to its first chunk. The
// baseline, in the same run, is the least any client can do: a plain
// net/http POST of the same body, reading up to the first data line.
//
//	go test ./pkg/llm -run '^$' -bench FirstDelta -benchtime 2000x
func BenchmarkFirstDelta(b *testing.B) {
	fake := llmtest.New(b)
	fake.Respond(func(llmtest.Request) llmtest.Response {
		return llmtest.Response{Chunks: llmtest.Text("Hello", ", how can I help?")}
	})
	req := agent.Request{
		Messages: []agent.Message{
			{Role: agent.RoleSystem, Content: agent.DefaultSystemPrompt},
			{Role: agent.RoleUser, Content: "add buy milk"},
		},
		Tools: agent.ToolSpecs(),
	}

	b.Run("plain net/http (baseline)", func(b *testing.B) {
		// The same body the provider sends: one call records it.
		p := newProvider(b, fake)
		if _, err := p.Complete(context.Background(), req, func(string) {}); err != nil {
			b.Fatal(err)
		}
		sent := fake.Requests()[len(fake.Requests())-1].Body
		hc := &http.Client{}
		measure(b, fake, func() time.Duration {
			start := time.Now()
			r, err := http.NewRequest(http.MethodPost, fake.URL()+"/chat/completions", bytes.NewReader(sent))
			if err != nil {
				b.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasPrefix(line, "data: ") {
					d := time.Since(start)
					for err == nil { // the rest, so the connection is reused
						_, err = br.ReadString('\n')
					}
					return d
				}
			}
		})
	})

	b.Run("provider", func(b *testing.B) {
		p := newProvider(b, fake)
		measure(b, fake, func() time.Duration {
			start := time.Now()
			var first time.Duration
			_, err := p.Complete(context.Background(), req, func(string) {
				if first == 0 {
					first = time.Since(start)
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			return first
		})
	})
}

// measure runs one b.N times and reports the p50 and p99 of its time to
// first token less the fake's own time to its first chunk.
func measure(b *testing.B, fake *llmtest.Server, one func() time.Duration) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		before := len(fake.FirstByte())
		d := one()
		fb := fake.FirstByte()
		if len(fb) != before+1 {
			b.Fatalf("the fake answered %d requests, want 1", len(fb)-before)
		}
		lat = append(lat, d-fb[before])
	}
	b.StopTimer()
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds())
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
