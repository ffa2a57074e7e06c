package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/taskchat/taskchat/pkg/bus"
	"github.com/taskchat/taskchat/pkg/chat"
	"github.com/taskchat/taskchat/pkg/config"
	"github.com/taskchat/taskchat/pkg/pgdb"
)

// defaultStuckAfter is how long a queued run waits before runs list
// --stuck shows it, unless --older-than says otherwise.
const defaultStuckAfter = time.Minute

// natsConnectWait bounds runs requeue's connection to NATS (Connect
// retries until then); a variable so that tests need not wait as long.
var natsConnectWait = 10 * time.Second

// openMaintenance connects to DATABASE_URL for the runs commands.
// chat.Maintenance is the one path over every user's runs.
func openMaintenance(ctx context.Context, getenv config.Getenv) (*chat.Maintenance, func(), error) {
	cfg, _, err := loadDatabase(getenv)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = 2
	db, err := pgdb.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return chat.NewMaintenance(db), func() { db.Close() }, nil
}

var runStatuses = []chat.RunStatus{chat.RunQueued, chat.RunRunning, chat.RunCompleted, chat.RunFailed, chat.RunCancelled}

// parseStatuses reads --status: statuses separated by commas.
func parseStatuses(raw string) ([]chat.RunStatus, error) {
	var out []chat.RunStatus
	for _, f := range strings.Split(raw, ",") {
		s := chat.RunStatus(strings.ToLower(strings.TrimSpace(f)))
		switch {
		case s == "":
			continue
		case !isRunStatus(s):
			return nil, usagef("--status %q is not one of queued, running, completed, failed, cancelled", strings.TrimSpace(f))
		}
		out = append(out, s)
	}
	return out, nil
}

func isRunStatus(s chat.RunStatus) bool {
	for _, k := range runStatuses {
		if s == k {
			return true
		}
	}
	return false
}

// runsList prints runs of every user (or one), newest first. It shows ids,
// statuses, codes and times only: a run's messages and its error message
// are the user's text or derived from it.
func runsList(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	status := fs.String("status", "", "only runs in these statuses, separated by commas: queued, running, completed, failed, cancelled")
	stuck := fs.Bool("stuck", false, "only runs nobody is working on: queued for longer than --older-than, or running under an expired lease")
	olderThan := fs.Duration("older-than", 0, "only runs created longer ago than this; with --stuck, how long a queued run waits before it counts (default 1m)")
	userID := fs.String("user-id", "", "only this user's runs")
	limit := fs.Int("limit", chat.DefaultRunListLimit, fmt.Sprintf("at most this many runs, newest first (1-%d)", chat.MaxRunListLimit))
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 1 || *limit > chat.MaxRunListLimit {
		return usagef("--limit must be between 1 and %d", chat.MaxRunListLimit)
	}
	if *olderThan < 0 {
		return usagef("--older-than must not be negative")
	}
	statuses, err := parseStatuses(*status)
	if err != nil {
		return err
	}
	age := *olderThan
	if *stuck && !flagGiven(fs, "older-than") {
		age = defaultStuckAfter
	}
	f := chat.RunFilter{Statuses: statuses, UserID: *userID, Stuck: *stuck, NewestFirst: true, Limit: *limit}
	if age > 0 {
		f.CreatedBefore = time.Now().Add(-age)
	}

	m, closeDB, err := openMaintenance(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()
	runs, err := m.ListRuns(ctx, f)
	if err != nil {
		return err
	}
	return printRuns(out, runs)
}

// flagGiven reports whether name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// printRuns prints runs as a table. The lease columns are filled for
// running runs only; an expired lease is marked.
func printRuns(out io.Writer, runs []chat.RunInfo) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tCONVERSATION\tSTATUS\tATTEMPTS\tERROR\tCREATED\tSTARTED\tFINISHED\tLEASE OWNER\tLEASE EXPIRES")
	for _, r := range runs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			text(r.ID), text(r.UserID), text(r.ConversationID), runStatus(r), r.Attempts, errorCode(r.Run),
			stamp(r.CreatedAt), stampPtr(r.StartedAt), stampPtr(r.FinishedAt), leaseOwner(r), leaseExpires(r))
	}
	return w.Flush()
}

// runStatus is the run's status, marked when its user asked to cancel it
// while it ran.
func runStatus(r chat.RunInfo) string {
	if r.CancelRequested && r.Status == chat.RunRunning {
		return string(r.Status) + " (cancel requested)"
	}
	return string(r.Status)
}

// errorCode is the code of a failed or cancelled run; never its message,
// which may quote the user's text.
func errorCode(r chat.Run) string {
	if r.Error == nil || r.Error.Code == "" {
		return "-"
	}
	return text(r.Error.Code)
}

func leaseOwner(r chat.RunInfo) string {
	if r.Status != chat.RunRunning || r.LeaseOwner == "" {
		return "-"
	}
	return text(r.LeaseOwner)
}

func leaseExpires(r chat.RunInfo) string {
	if r.Status != chat.RunRunning || r.LeaseExpiresAt == nil {
		return "-"
	}
	if r.LeaseExpired {
		return stamp(*r.LeaseExpiresAt) + " (expired)"
	}
	return stamp(*r.LeaseExpiresAt)
}

func stampPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return stamp(*t)
}

// runsRequeue puts a failed or stuck run back in the queue
// (chat.Maintenance.RequeueRun) and, with NATS_URL set, publishes its run
// request so that a worker takes it at once; otherwise the workers' relay
// publishes it. NATS is reached before anything changes, so an unreachable
// NATS leaves the run as it was.
func runsRequeue(ctx context.Context, fs *flag.FlagSet, args []string, out io.Writer, getenv config.Getenv) error {
	force := fs.Bool("force", false, "requeue a running run even while its worker's lease is live (the worker loses the run and another one resumes it from its ledger)")
	id, err := parseID(fs, args, "run ID")
	if err != nil {
		return err
	}
	natsCfg, err := loadBus(getenv)
	if err != nil {
		return err
	}
	m, closeDB, err := openMaintenance(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeDB()

	before, err := m.GetRun(ctx, id)
	switch {
	case errors.Is(err, chat.ErrNotFound):
		return fmt.Errorf("no run with id %q", id)
	case err != nil:
		return err
	}
	if err := requeueable(before, *force); err != nil {
		return err
	}

	var b *bus.Bus
	if natsCfg.URL != "" {
		cctx, cancel := context.WithTimeout(ctx, natsConnectWait)
		b, err = bus.Connect(cctx, natsCfg, bus.WithoutDeclaring())
		cancel()
		if err != nil {
			return fmt.Errorf("nothing changed: %w (without NATS_URL the run is requeued and the workers' relay publishes it)", err)
		}
		defer b.Close()
	}

	ref, err := m.RequeueRun(ctx, before.ID)
	switch {
	case errors.Is(err, chat.ErrNotFound):
		return fmt.Errorf("no run with id %q (its conversation was deleted meanwhile)", id)
	case errors.Is(err, chat.ErrRunFinished) && before.Status == chat.RunFailed:
		return fmt.Errorf("run %s failed after its answer was written: it is not run again", before.ID)
	case errors.Is(err, chat.ErrRunFinished):
		return fmt.Errorf("run %s finished meanwhile: it is not run again", before.ID)
	case err != nil:
		return err
	}
	if err := printRequeued(out, before, ref); err != nil {
		return err
	}

	if b == nil {
		fmt.Fprintln(out, "\nNot published: NATS_URL is not set. A worker's relay publishes a queued run created more than RELAY_QUEUED_AFTER ago (default 15s) on its next pass, every few seconds.")
		return nil
	}
	// A fresh message id, as the relay does: the run id may still be in
	// the runs stream's duplicate window, which would drop the request.
	req := bus.RunRequest{V: bus.RunVersion, RunID: ref.RunID, UserID: ref.UserID, ConversationID: ref.ConversationID,
		MsgID: ref.RunID + ".requeue." + strconv.FormatInt(time.Now().UnixNano(), 36)}
	if err := b.PublishRun(ctx, req); err != nil {
		return fmt.Errorf("run %s is queued again but its request was not published: %w (a worker's relay publishes it within RELAY_QUEUED_AFTER)", ref.RunID, err)
	}
	fmt.Fprintf(out, "\nPublished to %s: a worker takes the run as soon as it is next in its conversation.\n", natsCfg.RunsStream())
	return nil
}

// requeueable refuses what requeuing would not help: a finished run, and
// (without force) a running run its worker still holds.
func requeueable(r chat.RunInfo, force bool) error {
	switch r.Status {
	case chat.RunCompleted:
		return fmt.Errorf("run %s is completed: only a failed or stuck run can be requeued", r.ID)
	case chat.RunCancelled:
		return fmt.Errorf("run %s was cancelled: only a failed or stuck run can be requeued", r.ID)
	case chat.RunRunning:
		if !r.LeaseExpired && !force {
			until := "-"
			if r.LeaseExpiresAt != nil {
				until = stamp(*r.LeaseExpiresAt)
			}
			return fmt.Errorf("run %s is running: worker %s holds it until %s; it is not stuck (pass --force to take it away)", r.ID, text(r.LeaseOwner), until)
		}
	}
	return nil
}

// printRequeued prints the run as requeued and what it was before.
func printRequeued(out io.Writer, before chat.RunInfo, ref chat.RunRef) error {
	if before.Status == chat.RunQueued {
		fmt.Fprintf(out, "Run %s is queued already.\n", text(ref.RunID))
	} else {
		fmt.Fprintf(out, "Requeued run %s.\n", text(ref.RunID))
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "User\t%s\n", text(ref.UserID))
	fmt.Fprintf(w, "Conversation\t%s\n", text(ref.ConversationID))
	fmt.Fprintf(w, "Status\t%s (was %s)\n", ref.Status, before.Status)
	attempts := strconv.Itoa(before.Attempts)
	if before.Status == chat.RunFailed {
		attempts = fmt.Sprintf("0 (was %d)", before.Attempts)
	}
	fmt.Fprintf(w, "Attempts\t%s\n", attempts)
	if before.Error != nil {
		fmt.Fprintf(w, "Error\tnone (was %s)\n", errorCode(before.Run))
	}
	return w.Flush()
}
