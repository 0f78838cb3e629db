package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/odinreset/odinreset/results"
)

// usageError is an invalid command line; main exits with status 2 for it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// errTargetMissed is returned when every batch ran but a check failed.
var errTargetMissed = errors.New("performance target missed: see the checks above")

// Submission modes.
const (
	submitEnqueue = "enqueue"
	submitLibrary = "library"
)

// options are the parsed command line.
type options struct {
	scenarios  []string
	runs       int
	binDir     string
	workDir    string
	keep       bool
	submit     string
	redisPorts []int
	profileDir string
	markdown   bool
	jsonPath   string
	// workerEnv is added to each worker process's environment.
	workerEnv []string
	// override changes every case of the selected scenarios, for runs at other sizes.
	override func(*params)
	args     []string
}

// run parses args, runs the selected scenarios and prints their report to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}

	workDir := opts.workDir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "odinreset-bench-"); err != nil {
			return err
		}
		if !opts.keep {
			defer os.RemoveAll(workDir)
		}
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return err
	}

	h := &harness{opts: opts, workDir: workDir, binDir: opts.binDir, log: logf}
	if h.binDir == "" {
		h.binDir = workDir
		logf("building cmd/worker, cmd/odin-sim and cmd/enqueue into %s", workDir)
		if h.enqueueErr, err = buildBinaries(ctx, workDir); err != nil {
			return err
		}
	} else if _, err := os.Stat(filepath.Join(h.binDir, "enqueue")); err != nil {
		h.enqueueErr = err
	}
	if opts.submit == submitEnqueue && h.enqueueErr != nil {
		logf("submitting through tasks.Submit in this process, because cmd/enqueue is not available: %v", h.enqueueErr)
	}

	report := &report{machine: readMachine(ctx), command: commandLine(opts.args), runs: opts.runs, submittedBy: h.submitMode()}
	runErr := h.runScenarios(ctx, report)
	report.machine.loadAfter = readLoad()
	if opts.keep {
		logf("logs kept in %s", workDir)
	}

	// A failed batch still leaves the report of the scenarios that finished before it.
	report.writeText(stdout)
	if opts.markdown {
		report.writeMarkdown(stdout)
	}
	if opts.jsonPath != "" {
		if err := report.writeJSON(opts.jsonPath); err != nil {
			return err
		}
	}
	switch {
	case runErr != nil:
		return runErr
	case !report.allMet():
		return errTargetMissed
	}
	return nil
}

// runScenarios runs every run of every case of the selected scenarios and adds each
// finished scenario to the report. It stops at the first batch that fails.
func (h *harness) runScenarios(ctx context.Context, report *report) error {
	for _, name := range h.opts.scenarios {
		sc := findScenario(name)
		var sums []caseSummary
		for ci, p := range sc.cases {
			if h.opts.override != nil {
				h.opts.override(&p)
			}
			var runs []batchResult
			for r := range h.opts.runs {
				batchName := fmt.Sprintf("%s-%d-run%d", sc.name, ci+1, r+1)
				res, err := h.runBatch(ctx, batchName, p)
				if err != nil {
					return fmt.Errorf("scenario %s, case %s, run %d: %w", sc.name, p.label, r+1, err)
				}
				h.log("%s: %s", batchName, oneLine(res))
				runs = append(runs, res)
			}
			sums = append(sums, summarise(p, runs))
		}
		checks := append(sc.check(sums), integrityChecks(sums)...)
		report.scenarios = append(report.scenarios, scenarioReport{scenario: sc, sums: sums, checks: checks})
	}
	return nil
}

// submitMode describes how batches are submitted, for the report.
func (h *harness) submitMode() string {
	if h.opts.submit == submitEnqueue && h.enqueueErr == nil {
		return "cmd/enqueue"
	}
	return "tasks.Submit in the bench process"
}

// integrityChecks confirm that every batch did the work it timed: every user applied,
// and the record holds what the simulator holds.
func integrityChecks(sums []caseSummary) []check {
	var checks []check
	for _, s := range sums {
		checks = append(checks, check{
			name: fmt.Sprintf("users applied, record equal to Odin, %s (worst run)", s.params.label),
			want: fmt.Sprintf("%d applied, 0 differences", s.params.users),
			got:  fmt.Sprintf("%.0f applied, %.0f differences", s.applied.min, s.mismatches.max),
			ok:   s.applied.min == float64(s.params.users) && s.mismatches.max == 0,
		})
	}
	return checks
}

func findScenario(name string) scenario {
	for _, sc := range scenarios() {
		if sc.name == name {
			return sc
		}
	}
	panic("unknown scenario " + name) // parseOptions accepts known names only
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	opts := options{args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(fs, stderr) }

	var ports, credType string
	var users, workers, concurrency, seqUsers, cappedUsers int
	var rate, simRate float64
	var latency time.Duration
	fs.IntVar(&opts.runs, "runs", 1, "runs of each case; the report gives medians and worst values")
	fs.StringVar(&opts.binDir, "bin-dir", "", "`directory` with prebuilt worker, odin-sim and enqueue binaries (default: build them)")
	fs.StringVar(&opts.workDir, "work-dir", "", "`directory` for logs and Redis files (default: a temporary directory, removed unless --keep)")
	fs.BoolVar(&opts.keep, "keep", false, "keep the work directory with every process's log")
	fs.StringVar(&opts.submit, "submit", submitEnqueue, "how to submit a batch: enqueue (the cmd/enqueue binary) or library (tasks.Submit in the bench process)")
	fs.StringVar(&ports, "redis-ports", "6391-6399", "loopback `range` of ports to try for the dedicated redis-server")
	fs.StringVar(&opts.profileDir, "profile", "", "run the workers inside the bench process and write a CPU profile per batch into `directory` (no peak RSS then)")
	fs.BoolVar(&opts.markdown, "markdown", false, "also print the result rows as a Markdown table")
	fs.StringVar(&opts.jsonPath, "json", "", "write every measurement as JSON to `file`")
	fs.Var((*stringList)(&opts.workerEnv), "worker-env", "add `NAME=VALUE` to every worker process's environment, like GOMAXPROCS=1 (repeatable)")
	fs.IntVar(&users, "users", 0, "override: users per batch")
	fs.StringVar(&credType, "type", "", "override: credential type, sip, voicemail or web")
	fs.IntVar(&workers, "workers", 0, "override: worker processes")
	fs.IntVar(&concurrency, "concurrency", 0, "override: tasks per worker process")
	fs.Float64Var(&rate, "rate", 0, "override: fleet-wide Odin requests per second (10000 stands for no limit)")
	fs.Float64Var(&simRate, "sim-rate", -1, "override: the simulator's own requests per second before 429, 0 for none")
	fs.DurationVar(&latency, "latency", -1, "override: simulated Odin latency per request")
	fs.IntVar(&seqUsers, "sequential-users", -1, "override: users of the uncapped sequential baseline, 0 to skip it")
	fs.IntVar(&cappedUsers, "sequential-capped-users", -1, "override: users of the sequential baseline at 5 requests/s, 0 to skip it")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, err
		}
		return options{}, &usageError{err: err}
	}

	var problems []string
	for _, name := range fs.Args() {
		switch {
		case name == "all":
			opts.scenarios = append(opts.scenarios, targetNames...)
		case slices.ContainsFunc(scenarios(), func(sc scenario) bool { return sc.name == name }):
			opts.scenarios = append(opts.scenarios, name)
		default:
			problems = append(problems, fmt.Sprintf("unknown scenario %q: use %s or all", name, strings.Join(scenarioNames(), ", ")))
		}
	}
	if len(fs.Args()) == 0 {
		problems = append(problems, fmt.Sprintf("no scenario given: name one or more of %s, or all", strings.Join(scenarioNames(), ", ")))
	}
	if opts.runs < 1 || opts.runs > 50 {
		problems = append(problems, fmt.Sprintf("--runs %d is out of range: use 1 to 50", opts.runs))
	}
	if opts.submit != submitEnqueue && opts.submit != submitLibrary {
		problems = append(problems, fmt.Sprintf("--submit %q is invalid: use enqueue or library", opts.submit))
	}
	var err error
	if opts.redisPorts, err = parsePorts(ports); err != nil {
		problems = append(problems, err.Error())
	}
	for _, kv := range opts.workerEnv {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			problems = append(problems, fmt.Sprintf("--worker-env %q is invalid: use NAME=VALUE", kv))
		}
	}
	var t results.CredentialType
	if credType != "" {
		if t, err = results.ParseCredentialType(credType); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if users < 0 || users > 500_000 || workers < 0 || workers > 64 || concurrency < 0 || concurrency > 1000 {
		problems = append(problems, "--users (1 to 500000), --workers (1 to 64) or --concurrency (1 to 1000) is out of range")
	}
	if rate < 0 || rate > noLimit {
		problems = append(problems, fmt.Sprintf("--rate %g is out of range: use 0.01 to %d requests per second", rate, noLimit))
	}
	if len(problems) > 0 {
		return options{}, &usageError{err: errors.New(strings.Join(problems, "; "))}
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	opts.override = func(p *params) {
		if set["users"] {
			p.users = users
			p.sequentialUsers = min(p.sequentialUsers, users)
			p.sequentialCappedUsers = min(p.sequentialCappedUsers, users)
		}
		if set["type"] {
			p.credType = t
		}
		if set["workers"] {
			p.workers = workers
		}
		if set["concurrency"] {
			p.concurrency = concurrency
		}
		if set["rate"] {
			p.rate = rate
		}
		if set["sim-rate"] {
			p.simRate = simRate
		}
		if set["latency"] {
			p.latency = latency
		}
		if set["sequential-users"] {
			p.sequentialUsers = seqUsers
		}
		if set["sequential-capped-users"] {
			p.sequentialCappedUsers = cappedUsers
		}
	}
	return opts, nil
}

func scenarioNames() []string {
	var names []string
	for _, sc := range scenarios() {
		names = append(names, sc.name)
	}
	return names
}

// parsePorts reads "6391-6399" or a single port.
func parsePorts(spec string) ([]int, error) {
	first, last, isRange := strings.Cut(spec, "-")
	if !isRange {
		last = first
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(first))
	hi, err2 := strconv.Atoi(strings.TrimSpace(last))
	if err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || lo > hi {
		return nil, fmt.Errorf("--redis-ports %q is invalid: use a port or a range like 6391-6399, from 1024 to 65535", spec)
	}
	var ports []int
	for p := lo; p <= hi; p++ {
		ports = append(ports, p)
	}
	return ports, nil
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `bench measures the reset pipeline against its performance targets.

Usage:
  go run ./bench [flags] SCENARIO...

Each batch starts its own redis-server on loopback, cmd/odin-sim and the worker
processes, submits one job with cmd/enqueue and stops everything again.

Scenarios:
`)
	for _, sc := range scenarios() {
		fmt.Fprintf(w, "  %-11s %s\n", sc.name, sc.target)
	}
	fmt.Fprint(w, `  all         every scenario above except ci

Examples:
  go run ./bench ci
  go run ./bench --runs 3 --markdown all
  go run ./bench --users 2000 --profile /tmp/prof throughput

Flags:
`)
	fs.PrintDefaults()
}

// commandLine returns the command that reproduces this run.
func commandLine(args []string) string {
	return strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
}

// oneLine sums up a batch for the progress log.
func oneLine(r batchResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d users in %s (%.0f users/s), fan-out %s, %.3f calls/user, max %d req/s, %d x 429",
		r.Users, fmtSeconds(r.Wall.Seconds()), r.UsersPerSecond, fmtSeconds(r.FanOut.Seconds()), r.CallsPerUser, r.MaxPerSecond, r.TooMany)
	if len(r.PeakRSS) > 0 {
		fmt.Fprintf(&b, ", peak RSS %s", fmtMB(float64(slices.Max(r.PeakRSS))))
	}
	fmt.Fprintf(&b, ", Redis %.0f B/user", r.RedisPerUser)
	if r.Noop != nil {
		fmt.Fprintf(&b, "; no-op %.0f tasks/s", r.Noop.TasksPerSecond)
	}
	if r.NoopWorkerQueues != nil {
		fmt.Fprintf(&b, ", %.0f on the worker queues", r.NoopWorkerQueues.TasksPerSecond)
	}
	if r.Sequential != nil {
		fmt.Fprintf(&b, "; sequential %s per user", r.Sequential.PerUser.Round(time.Microsecond))
	}
	if r.SequentialCapped != nil {
		fmt.Fprintf(&b, "; capped %s per user", r.SequentialCapped.PerUser.Round(time.Millisecond))
	}
	return b.String()
}

// writeJSON stores every run of every case.
func (r *report) writeJSON(path string) error {
	type caseJSON struct {
		Scenario string        `json:"scenario"`
		Case     string        `json:"case"`
		Runs     []batchResult `json:"runs"`
	}
	var out []caseJSON
	for _, sr := range r.scenarios {
		for _, s := range sr.sums {
			out = append(out, caseJSON{Scenario: sr.scenario.name, Case: s.params.label, Runs: s.runs})
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
