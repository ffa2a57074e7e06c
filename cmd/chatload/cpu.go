package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uptrace/bun"
)

// cpuSample is the CPU time used so far by this process, by the Postgres
// backends serving the load database, and by the whole machine (Linux;
// zero elsewhere). Differences between two samples say where a phase's
// CPU went: the ratio of the pipeline to its baseline is only half the
// story when both are bound by the same two cores.
type cpuSample struct {
	self     time.Duration
	backends map[int]time.Duration // pid → CPU time
	busy     time.Duration         // the machine, every process
	total    time.Duration         // the machine, busy and idle
}

// clockTick is the unit of /proc's CPU times (USER_HZ: 100 on Linux).
const clockTick = 10 * time.Millisecond

// sampleCPU reads the CPU times now. The backends are the sessions of
// db's database (pg_stat_activity), read from /proc: only when Postgres
// runs on this machine, which a loopback load run assumes.
func sampleCPU(ctx context.Context, db *bun.DB) cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.busy, s.total = machineCPU()
	var pids []int
	if err := db.NewRaw("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").Scan(ctx, &pids); err == nil {
		s.backends = make(map[int]time.Duration, len(pids))
		for _, pid := range pids {
			if d, ok := processCPU(pid); ok {
				s.backends[pid] = d
			}
		}
	}
	return s
}

// cpuUse is the CPU used between two samples.
type cpuUse struct {
	self, backends, busy, total time.Duration
}

func (a cpuSample) until(b cpuSample) cpuUse {
	u := cpuUse{self: b.self - a.self, busy: b.busy - a.busy, total: b.total - a.total}
	for pid, d := range b.backends {
		// A backend that started within the window counts from zero.
		u.backends += d - a.backends[pid]
	}
	return u
}

// machineCPU reads the first line of /proc/stat: the busy and the total
// time of all CPUs.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		if i >= 8 { // guest time is already in user
			break
		}
		d := time.Duration(n) * clockTick
		total += d
		if i != 3 && i != 4 { // idle, iowait
			busy += d
		}
	}
	return busy, total
}

// processCPU reads the user and system time of process pid.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces; the fields follow its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * clockTick, true
}
