package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// machine describes where the numbers were measured.
type machine struct {
	cpus       int
	cpuModel   string
	memory     string
	kernel     string
	goVersion  string
	redis      string
	loadBefore string
	loadAfter  string
}

func readMachine(ctx context.Context) machine {
	m := machine{
		cpus:       runtime.NumCPU(),
		cpuModel:   "unknown",
		memory:     "unknown",
		kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		goVersion:  runtime.Version(),
		redis:      "unknown",
		loadBefore: readLoad(),
	}
	for line := range strings.SplitSeq(readFile("/proc/cpuinfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			m.cpuModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	for line := range strings.SplitSeq(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			m.memory = strings.TrimSpace(v)
			break
		}
	}
	if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
		m.redis = strings.TrimSpace(string(out))
	}
	return m
}

// readLoad returns the 1, 5 and 15 minute load averages.
func readLoad() string {
	fields := strings.Fields(readFile("/proc/loadavg"))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

func readFile(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}

// report is everything one bench invocation measured.
type report struct {
	machine     machine
	command     string
	runs        int
	submittedBy string
	scenarios   []scenarioReport
}

type scenarioReport struct {
	scenario scenario
	sums     []caseSummary
	checks   []check
}

// allMet reports whether every deciding check passed.
func (r *report) allMet() bool {
	for _, sr := range r.scenarios {
		for _, c := range sr.checks {
			if !c.info && !c.ok {
				return false
			}
		}
	}
	return true
}

func verdict(c check) string {
	switch {
	case c.info:
		return "info"
	case c.ok:
		return "met"
	}
	return "MISSED"
}

// writeText prints the machine, each case's medians and each check.
func (r *report) writeText(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s RAM, Linux %s, %s, %s\n", m.cpus, m.cpuModel, m.memory, m.kernel, m.goVersion, m.redis)
	fmt.Fprintf(w, "load average: %s before, %s after\n", m.loadBefore, m.loadAfter)
	fmt.Fprintf(w, "command: %s\nruns per case: %d; batches submitted with %s\n", r.command, r.runs, r.submittedBy)

	for _, sr := range r.scenarios {
		fmt.Fprintf(w, "\n== %s: %s\n", sr.scenario.name, sr.scenario.target)
		for _, s := range sr.sums {
			writeCase(w, s)
		}
		for _, c := range sr.checks {
			fmt.Fprintf(w, "  [%s] %s: %s (want %s)\n", verdict(c), c.name, c.got, c.want)
		}
	}
}

func writeCase(w io.Writer, s caseSummary) {
	p := s.params
	fmt.Fprintf(w, "  case %s: %d %s users, %d workers x %d, rate %g req/s, simulator limit %g req/s, latency %s\n",
		p.label, p.users, p.credType, p.workers, p.concurrency, p.rate, p.simRate, p.latency)
	row := func(name string, st stat, format func(float64) string) {
		if len(st.values) == 0 {
			return
		}
		values := make([]string, len(st.values))
		for i, v := range st.values {
			values[i] = format(v)
		}
		fmt.Fprintf(w, "    %-26s median %-12s min %-12s max %-12s runs: %s\n",
			name, format(st.median), format(st.min), format(st.max), strings.Join(values, ", "))
	}
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	row("wall time", s.wall, fmtSeconds)
	row("fan-out time", s.fanOut, fmtSeconds)
	row("users/s", s.usersPerSecond, count)
	row("Odin calls per user", s.callsPerUser, func(v float64) string { return fmt.Sprintf("%.4f", v) })
	row("max requests in 1 s", s.maxPerSecond, count)
	row("429 responses", s.tooMany, count)
	row("worker peak RSS", s.peakRSS, fmtMB)
	row("Redis bytes per user", s.redisPerUser, count)
	row("asynq task hashes left", s.taskHashesLeft, count)
	row("no-op tasks/s", s.noopPerSecond, count)
	row("users/s / no-op tasks/s", s.noopRatio, func(v float64) string { return fmt.Sprintf("%.2f", v) })
	row("no-op, worker queues", s.workerQueuesPerSec, count)
	row("users/s / that", s.workerQueuesRatio, func(v float64) string { return fmt.Sprintf("%.2f", v) })
	row("sequential wall", s.sequentialWall, fmtSeconds)
	row("speed-up over sequential", s.sequentialRatio, func(v float64) string { return fmt.Sprintf("%.1fx", v) })
	row("sequential wall, 5 req/s", s.cappedWall, fmtSeconds)
	row("speed-up over 5 req/s", s.cappedRatio, func(v float64) string { return fmt.Sprintf("%.0fx", v) })

	if len(s.runs) > 0 {
		last := s.runs[len(s.runs)-1]
		fmt.Fprintf(w, "    calls by endpoint (last run): %s\n", formatCalls(last.Calls, last.Users))
		fmt.Fprintf(w, "    CPU from submission to completion (last run): %s\n", formatCPU(last.CPU, last.Wall))
		fmt.Fprintf(w, "    Redis server time by command (last run): %s; %d commands over 10 ms\n", formatCommands(last.Commands, last.Users), last.SlowLog)
		if last.Noop != nil {
			fmt.Fprintf(w, "    CPU of the no-op baseline (last run): %s; enqueueing took %s\n", formatCPU(last.Noop.CPU, last.Noop.Wall), fmtSeconds(last.Noop.Enqueue.Seconds()))
		}
		if last.NoopWorkerQueues != nil {
			fmt.Fprintf(w, "    CPU of the no-op baseline on the worker queues (last run): %s\n", formatCPU(last.NoopWorkerQueues.CPU, last.NoopWorkerQueues.Wall))
		}
		if last.Profile != "" {
			fmt.Fprintf(w, "    CPU profile (last run): %s\n", last.Profile)
		}
	}
}

// formatCalls lists calls per user by endpoint, most frequent first.
func formatCalls(calls map[string]int, users int) string {
	endpoints := make([]string, 0, len(calls))
	for e := range calls {
		endpoints = append(endpoints, e)
	}
	sort.Slice(endpoints, func(i, j int) bool {
		if calls[endpoints[i]] != calls[endpoints[j]] {
			return calls[endpoints[i]] > calls[endpoints[j]]
		}
		return endpoints[i] < endpoints[j]
	})
	parts := make([]string, len(endpoints))
	for i, e := range endpoints {
		parts[i] = fmt.Sprintf("%s %d (%.4f/user)", e, calls[e], float64(calls[e])/float64(max(1, users)))
	}
	return strings.Join(parts, ", ")
}

// writeMarkdown prints one table row per check, for docs/BENCHMARKS.md.
func (r *report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n| scenario | check | want | measured | verdict |\n|---|---|---|---|---|\n")
	for _, sr := range r.scenarios {
		for _, c := range sr.checks {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", sr.scenario.name, c.name, c.want, c.got, verdict(c))
		}
	}
}

// formatCPU lists CPU seconds per component and as a share of the wall time.
func formatCPU(cpu map[string]time.Duration, wall time.Duration) string {
	names := make([]string, 0, len(cpu))
	for name := range cpu {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f s (%.0f%% of one core)", name, cpu[name].Seconds(), 100*cpu[name].Seconds()/wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// formatCommands lists the six commands that used the most Redis server time, with
// their calls per user.
func formatCommands(stats []commandStat, users int) string {
	parts := make([]string, 0, 6)
	for _, st := range stats[:min(6, len(stats))] {
		parts = append(parts, fmt.Sprintf("%s %.2f s (%.2f calls/user, %.1f us/call)",
			st.Command, float64(st.Usec)/1e6, float64(st.Calls)/float64(max(1, users)), st.PerCall))
	}
	return strings.Join(parts, ", ")
}
