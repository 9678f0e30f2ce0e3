// Package cpuuse is the -cpu flag of the benchmark programs under
// examples/: the CPU time the machine, and the servers that share it with
// the program, used while a run was measured (Linux: /proc).
package cpuuse

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Use is the CPU time used up to one moment: the machine's, and by group
// of processes.
type Use struct {
	Machine time.Duration            // all CPUs, busy (not idle, not waiting for I/O)
	ByGroup map[string]time.Duration // the groups of Read's names, "this process" and "other"
}

// Self is the group of the calling process.
const Self = "this process"

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// Read reads the machine's busy time from /proc/stat and each process's
// from /proc/<pid>/stat, grouped by command name: each of names (such as
// "postgres", "mariadbd", "beam.smp") is a group, the calling process is
// Self, and every other process is "other". A process that exits between
// two reads takes its time with it (the servers here keep theirs).
func Read(names ...string) (Use, error) {
	u := Use{ByGroup: map[string]time.Duration{}}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return u, fmt.Errorf("cpuuse: -cpu needs Linux's /proc: %w", err)
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	for i, f := range strings.Fields(line)[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(f, 10, 64)
		u.Machine += time.Duration(n) * clockTick
	}
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		// utime and stime are the 14th and 15th fields of the line, the
		// 12th and 13th after the command name.
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		group := "other"
		if name := s[open+1 : closing]; filepath.Base(filepath.Dir(p)) == self {
			group = Self
		} else {
			for _, n := range names {
				if name == n {
					group = n
				}
			}
		}
		u.ByGroup[group] += time.Duration(ut+st) * clockTick
	}
	return u, nil
}

// PerMessage formats the CPU time used from a to b per message, of msgs
// messages: the machine's, then each group's, names first.
func PerMessage(a, b Use, msgs int, names ...string) string {
	if msgs <= 0 {
		return "CPU per message: no messages"
	}
	per := func(d time.Duration) string {
		return fmt.Sprintf("%.0fµs", float64(d.Microseconds())/float64(msgs))
	}
	out := "CPU per message: machine " + per(b.Machine-a.Machine)
	for _, n := range append(names, Self, "other") {
		out += ", " + n + " " + per(b.ByGroup[n]-a.ByGroup[n])
	}
	return out
}
