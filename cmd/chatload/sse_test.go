package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestMain lets the test binary be the -sse mode's clients' process, as
// chatload's own binary is (holdCommand).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == holdCommand {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var (
	// memRow matches the memory row: streams, per stream KiB, goroutines
	// per stream.
	memRow = regexp.MustCompile(`(?m)^\| (\d+) \| [\d.]+m?s \| [\d.]+ MiB \| [\d.]+ MiB \| ([\d.]+) KiB \| ([\d.]+) \| [\d.]+m?s \|$`)
	// fanRow matches a fan-out row: clients, events, the five figures.
	fanRow = regexp.MustCompile(`(?m)^\| (\d+) \| (\d+) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$`)
)

// TestSSEMeasures runs chatload -sse briefly: the report has the memory
// row for the idle streams (held by a child process) and one fan-out row
// per size, every event having reached every client; the load database
// is dropped afterwards.
func TestSSEMeasures(t *testing.T) {
	before := loadDatabases(t)
	var out, progress bytes.Buffer
	args := []string{"-sse", "-sse-streams", "50", "-sse-fanout", "1,5", "-sse-events", "5", "-sse-ping", "50ms"}
	if err := run(context.Background(), args, env(), &out, &progress); err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	m := memRow.FindStringSubmatch(out.String())
	if m == nil || m[1] != "50" {
		t.Fatalf("no memory row for 50 streams:\n%s", out.String())
	}
	if kib, _ := strconv.ParseFloat(m[2], 64); kib <= 0 {
		t.Errorf("%s KiB per stream", m[2])
	}
	if g, _ := strconv.ParseFloat(m[3], 64); g < 1 {
		t.Errorf("%s goroutines per stream: the streams were not open when measured", m[3])
	}
	rows := fanRow.FindAllStringSubmatch(out.String(), -1)
	if len(rows) != 2 || rows[0][1] != "1" || rows[1][1] != "5" || rows[0][2] != "5" || rows[1][2] != "5" {
		t.Fatalf("fan-out rows %q, want 1 and 5 clients, 5 events each:\n%s", rows, out.String())
	}
	if after := loadDatabases(t); after > before {
		t.Errorf("%d load databases after the run, %d before: not dropped", after, before)
	}
}
