package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
)

// passwordRow is the only shape an applied web or SIP row may have.
type passwordRow struct {
	UserID      string `json:"userId"`
	NewPassword string `json:"newPassword"`
}

func seededUserList(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(odintest.SeededUserID(i) + "\n")
	}
	return b.String()
}

func TestWaitFiveHundredUsers(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 500}, Concurrency: 20, RateLimit: 5000})

	got := runCLI(t, invocation{stdin: seededUserList(500), sealer: env.Keyring},
		"--redis-url", env.Redis.URL, "--service-provider", env.Sim.ServiceProviderID(), "--group", env.Sim.GroupID(),
		"--type", "web", "--users-file", "-", "--job-id", "wait-500", "--wait", "--timeout", "2m")
	if got.code != exitOK {
		t.Fatalf("submit --wait: %s", got)
	}

	var rows []passwordRow
	dec := json.NewDecoder(strings.NewReader(got.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("stdout is not [{userId, newPassword}]: %v\n%.500s", err, got.stdout)
	}
	if len(rows) != 500 {
		t.Fatalf("got %d rows, want 500", len(rows))
	}
	for i, row := range rows {
		if want := odintest.SeededUserID(i + 1); row.UserID != want {
			t.Errorf("row %d is %s, want %s", i, row.UserID, want)
		}
		value, count, ok := env.Sim.Credential(row.UserID, odintest.KindWeb)
		if !ok || row.NewPassword == "" || row.NewPassword != value || count != 1 {
			t.Errorf("user %s: printed value matches the simulator: %v, set %d times; want a match set once",
				row.UserID, row.NewPassword == value, count)
		}
	}
	requireStderr(t, got, "enqueue: submitted job wait-500", "enqueue: job wait-500 completed: 500 applied, 0 failed")
	if strings.Contains(got.stderr, rows[0].NewPassword) {
		t.Errorf("stderr contains a new password")
	}
}

func TestWaitSomeUsersFail(t *testing.T) {
	t.Parallel()
	broken := odintest.SeededUserID(3)
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 10, WithoutAuthentication: []string{broken}}})
	out := filepath.Join(t.TempDir(), "results.csv")

	got := runCLI(t, invocation{stdin: seededUserList(10), sealer: env.Keyring, terminal: true},
		"submit", "--redis-url", env.Redis.URL, "--service-provider", env.Sim.ServiceProviderID(), "--group", env.Sim.GroupID(),
		"--type", "sip", "--users-file", "-", "--job-id", "wait-fail", "--wait", "--format", "csv", "--out", out)
	if got.code != exitFailed {
		t.Fatalf("exit code %d, want 1\n%s", got.code, got)
	}
	if got.stdout != "" {
		t.Errorf("stdout = %q, want nothing with --out", got.stdout)
	}
	requireStderr(t, got, "9 applied, 1 failed, 0 not reset of 10", "results written to "+out)

	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("results file mode %v, want 0600", mode)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "userId,type,status,value,error") {
		t.Fatalf("CSV has %d lines, header %q; want a header and 10 rows", len(lines), lines[0])
	}
	if row := lines[3]; !strings.HasPrefix(row, broken+",sip,failed,,") || !strings.Contains(row, "4410") {
		t.Errorf("row of %s = %q, want failed with Odin's error 4410", broken, row)
	}
}

func TestWaitTimesOut(t *testing.T) {
	t.Parallel()
	// No worker runs, so the job stays queued.
	rd := testredis.New(t)

	start := time.Now()
	got := runCLI(t, invocation{},
		"--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", "web",
		"--user", "u@x", "--job-id", "slow", "--wait", "--timeout", "300ms")
	if got.code != exitTimedOut {
		t.Fatalf("exit code %d, want 4\n%s", got.code, got)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("returned after %v, want soon after the 300ms timeout", elapsed)
	}
	if got.stdout != "" {
		t.Errorf("stdout = %q, want nothing", got.stdout)
	}
	requireStderr(t, got, "timed out after 300ms waiting for job slow", "queued",
		"the job continues", "enqueue status slow", "enqueue results slow",
		"job slow: queued, waiting for a worker to start it")
}

func TestWaitWithoutResultsKey(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 3}})

	// No sealer and no RESULTS_KEY: the wait stops as soon as the first value is written,
	// and the job goes on.
	got := runCLI(t, invocation{stdin: seededUserList(3)},
		"--redis-url", env.Redis.URL, "--service-provider", env.Sim.ServiceProviderID(), "--group", env.Sim.GroupID(),
		"--type", "voicemail", "--users-file", "-", "--job-id", "no-key", "--wait")
	if got.code != exitUsage {
		t.Fatalf("exit code %d, want 2\n%s", got.code, got)
	}
	if got.stdout != "" {
		t.Errorf("stdout = %q, want nothing", got.stdout)
	}
	requireStderr(t, got, "its new values cannot be read", "no results key is configured", "RESULTS_KEY",
		"enqueue results no-key")
	env.Wait("no-key", 30*time.Second)

	// The values are still there for a run with the key.
	again := runCLI(t, invocation{sealer: env.Keyring}, "results", "no-key", "--redis-url", env.Redis.URL)
	if again.code != exitOK {
		t.Fatalf("results with the key: %s", again)
	}
	var rows []results.Row
	if err := json.Unmarshal([]byte(again.stdout), &rows); err != nil || len(rows) != 3 || rows[0].NewPasscode == "" {
		t.Errorf("rows = %+v (%v), want 3 rows with passcodes", rows, err)
	}
}

func TestStatusAndListOfRealJob(t *testing.T) {
	t.Parallel()
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 5}})
	submit := runCLI(t, invocation{stdin: seededUserList(5)},
		"--redis-url", env.Redis.URL, "--service-provider", env.Sim.ServiceProviderID(), "--group", env.Sim.GroupID(),
		"--type", "web", "--users-file", "-", "--job-id", "real-1")
	if submit.code != exitOK {
		t.Fatalf("submit: %s", submit)
	}

	watch := runCLI(t, invocation{}, "status", "real-1", "--watch", "--json", "--redis-url", env.Redis.URL)
	if watch.code != exitOK {
		t.Fatalf("status --watch: %s", watch)
	}
	lines := strings.Split(strings.TrimSpace(watch.stdout), "\n")
	var last jobView
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last watch line is not JSON: %v\n%s", err, watch.stdout)
	}
	if last.State != "completed" || last.Applied != 5 || last.Pending != 0 {
		t.Errorf("last watch line = %+v, want completed with 5 applied", last)
	}
	if last.Audit["submitted_by"] == "" {
		t.Errorf("audit = %v, want submitted_by", last.Audit)
	}

	list := runCLI(t, invocation{}, "list", "--redis-url", env.Redis.URL)
	if list.code != exitOK || !strings.Contains(list.stdout, "real-1") || !strings.Contains(list.stdout, "completed") {
		t.Errorf("list: %s", list)
	}
}
