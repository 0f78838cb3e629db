package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// binaries builds cmd/worker, cmd/odin-sim and cmd/enqueue once for the package's tests.
var binaries struct {
	once       sync.Once
	dir        string
	enqueueErr error
	err        error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

func buildOnce(t *testing.T) (dir string, enqueueErr error) {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "odinreset-bench-bin-")
		if binaries.err == nil {
			binaries.enqueueErr, binaries.err = buildBinaries(context.Background(), binaries.dir)
		}
	})
	if binaries.err != nil {
		t.Fatalf("build the binaries: %v", binaries.err)
	}
	return binaries.dir, binaries.enqueueErr
}

// TestShortForm runs the CI scenario end to end: a dedicated redis-server, cmd/odin-sim
// and three worker processes reset 1,000 web users without a rate limit, then 300 at a
// fleet-wide 50 requests/s. It fails when Odin calls per user or the highest one-second
// request count regress.
func TestShortForm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, the simulator and three workers: skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server in PATH (apt-get install redis-server)")
	}
	binDir, enqueueErr := buildOnce(t)
	if enqueueErr != nil {
		t.Logf("cmd/enqueue does not build, submitting through tasks.Submit: %v", enqueueErr)
	}

	ports, err := parsePorts("6391-6399")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		opts:       options{submit: submitEnqueue, redisPorts: ports},
		binDir:     binDir,
		enqueueErr: enqueueErr,
		workDir:    t.TempDir(),
		log:        t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	sc := findScenario("ci")
	for i, p := range sc.cases {
		t.Run(p.label, func(t *testing.T) {
			// The one-second maximum depends on scheduling: a worker process that the
			// machine stalls for 60 ms sends the requests of its missed slots together
			// when it resumes. A second run separates such a stall from a limiter that
			// lets the fleet exceed its rate every time.
			var failed []check
			for attempt := 1; attempt <= 2; attempt++ {
				res, err := h.runBatch(ctx, fmt.Sprintf("ci-%d-attempt%d", i+1, attempt), p)
				if err != nil {
					t.Fatalf("run the CI case: %v", err)
				}
				t.Logf("attempt %d: %s", attempt, oneLine(res))
				sums := []caseSummary{summarise(p, []batchResult{res})}
				failed = failedChecks(append(sc.check(sums), integrityChecks(sums)...))
				if len(failed) == 0 {
					return
				}
				for _, c := range failed {
					t.Logf("attempt %d missed %s: got %s, want %s", attempt, c.name, c.got, c.want)
				}
			}
			for _, c := range failed {
				t.Errorf("%s: got %s, want %s", c.name, c.got, c.want)
			}
		})
	}
}

func failedChecks(checks []check) []check {
	var failed []check
	for _, c := range checks {
		if !c.info && !c.ok {
			failed = append(failed, c)
		}
	}
	return failed
}

func TestNewStat(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   [3]float64 // median, min, max
	}{
		{name: "one value", values: []float64{4}, want: [3]float64{4, 4, 4}},
		{name: "odd count", values: []float64{9, 1, 5}, want: [3]float64{5, 1, 9}},
		{name: "even count", values: []float64{4, 1, 3, 10}, want: [3]float64{3.5, 1, 10}},
		{name: "none", values: nil, want: [3]float64{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStat(tt.values)
			got := [3]float64{s.median, s.min, s.max}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("median, min, max (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewStatKeepsOrder(t *testing.T) {
	values := []float64{3, 1, 2}
	s := newStat(values)
	if diff := cmp.Diff([]float64{3, 1, 2}, s.values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    []int
		wantErr bool
	}{
		{name: "range", spec: "6391-6393", want: []int{6391, 6392, 6393}},
		{name: "single port", spec: "6395", want: []int{6395}},
		{name: "reversed range", spec: "6399-6391", wantErr: true},
		{name: "privileged port", spec: "80-90", wantErr: true},
		{name: "not a number", spec: "redis", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePorts(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePorts(%q) error = %v, want error %v", tt.spec, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parsePorts(%q) (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		wantScenarios []string
		wantErr       string
	}{
		{name: "all targets", args: []string{"all"}, wantScenarios: targetNames},
		{name: "named scenarios", args: []string{"--runs", "3", "ci", "large"}, wantScenarios: []string{"ci", "large"}},
		{name: "no scenario", args: nil, wantErr: "no scenario given"},
		{name: "unknown scenario", args: []string{"fastest"}, wantErr: `unknown scenario "fastest"`},
		{name: "runs out of range", args: []string{"--runs", "0", "ci"}, wantErr: "--runs 0 is out of range"},
		{name: "invalid type", args: []string{"--type", "pin", "ci"}, wantErr: `invalid credential type "pin"`},
		{name: "invalid submission", args: []string{"--submit", "http", "ci"}, wantErr: `--submit "http" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := parseOptions(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseOptions(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOptions(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.wantScenarios, opts.scenarios); diff != "" {
				t.Errorf("scenarios (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverrideChangesOnlyGivenFlags(t *testing.T) {
	opts, err := parseOptions([]string{"--users", "50", "--latency", "5ms", "sequential"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p := findScenario("sequential").cases[0]
	opts.override(&p)

	type view struct {
		Users, Workers, Sequential, Capped int
		Latency                            time.Duration
		Rate                               float64
	}
	want := view{Users: 50, Workers: 3, Sequential: 50, Capped: 50, Latency: 5 * time.Millisecond, Rate: noLimit}
	got := view{Users: p.users, Workers: p.workers, Sequential: p.sequentialUsers, Capped: p.sequentialCappedUsers, Latency: p.latency, Rate: p.rate}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overridden parameters (-want +got):\n%s", diff)
	}
}

func TestCheckLimitBound(t *testing.T) {
	tests := []struct {
		name string
		wall float64
		want bool
	}{
		{name: "at the bound", wall: 101, want: true},
		{name: "4 percent slow", wall: 105, want: true},
		{name: "6 percent slow", wall: 107.1, want: false},
		{name: "6 percent fast", wall: 94.9, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := caseSummary{params: params{label: "web", users: 10000, rate: 100}, wall: newStat([]float64{tt.wall}), tooMany: newStat([]float64{0})}
			got := checkLimit([]caseSummary{s})[0]
			if got.ok != tt.want {
				t.Errorf("wall %.1f s: ok = %v, want %v (%s)", tt.wall, got.ok, tt.want, got.got)
			}
		})
	}
}

func TestCPUTimeOfThisProcess(t *testing.T) {
	d, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d < 0 || d > time.Hour {
		t.Errorf("cpuTime = %s, want between 0 and an hour", d)
	}
}
