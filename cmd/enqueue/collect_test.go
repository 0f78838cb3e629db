package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

func TestResultsGolden(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	key, encoded := testKey(t, 1)
	seedJob(t, rd, results.NewKeyring(key), "job-done", true)

	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{name: "json", args: []string{"results", "job-done"}, golden: "results.json"},
		{name: "csv", args: []string{"results", "job-done", "--format", "csv"}, golden: "results.csv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, invocation{env: map[string]string{"RESULTS_KEY": encoded}}, append(tc.args, "--redis-url", rd.URL)...)
			if got.code != exitFailed {
				t.Fatalf("exit code %d, want 1 for a job with failed users\n%s", got.code, got)
			}
			if got.stderr != "" {
				t.Errorf("stderr = %q, want nothing", got.stderr)
			}
			checkGolden(t, tc.golden, got.stdout)
		})
	}
}

func TestResultsKeys(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	key, encoded := testKey(t, 1)
	other, otherEncoded := testKey(t, 2)
	seedJob(t, rd, results.NewKeyring(key), "job-done", true)
	keyFile := filepath.Join(t.TempDir(), "results-key")
	if err := os.WriteFile(keyFile, []byte(encoded+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		env  map[string]string
		code int
		want []string // stderr fragments for failures
	}{
		{name: "key", env: map[string]string{"RESULTS_KEY": encoded}, code: exitFailed},
		{name: "key file", env: map[string]string{"RESULTS_KEY_FILE": keyFile}, code: exitFailed},
		{name: "previous key", env: map[string]string{"RESULTS_KEY": otherEncoded, "RESULTS_KEY_PREVIOUS": encoded}, code: exitFailed},
		{name: "no key", code: exitUsage, want: []string{"no results key is configured", "set RESULTS_KEY or RESULTS_KEY_FILE"}},
		{name: "wrong key", env: map[string]string{"RESULTS_KEY": otherEncoded}, code: exitUsage,
			want: []string{"encrypted with results key " + key.ID(), "configured keys are " + other.ID(), "RESULTS_KEY_PREVIOUS"}},
		{name: "both key and file", env: map[string]string{"RESULTS_KEY": encoded, "RESULTS_KEY_FILE": keyFile}, code: exitUsage,
			want: []string{"both RESULTS_KEY and RESULTS_KEY_FILE are set"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"results", "job-done", "--redis-url", rd.URL}
			if tc.code != exitFailed {
				// A failed read must keep the record even when --delete was asked for.
				args = append(args, "--delete")
			}
			got := runCLI(t, invocation{env: tc.env}, args...)
			if got.code != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", got.code, tc.code, got)
			}
			if tc.code == exitFailed {
				if !strings.Contains(got.stdout, `"newPassword":"=Secret-1,\"x\""`) {
					t.Errorf("stdout does not show user 1's value:\n%s", got.stdout)
				}
				return
			}
			if got.stdout != "" {
				t.Errorf("stdout = %q, want nothing when reading fails", got.stdout)
			}
			requireStderr(t, got, tc.want...)
			if strings.Contains(got.stderr, encoded) || strings.Contains(got.stderr, otherEncoded) {
				t.Errorf("stderr contains key material:\n%s", got.stderr)
			}
			if _, err := results.NewStore(rd.Client).Job(context.Background(), "job-done"); err != nil {
				t.Errorf("record is gone after a failed read with --delete: %v", err)
			}
		})
	}
}

func TestResultsPlaintextWithKey(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)
	_, encoded := testKey(t, 1)

	got := runCLI(t, invocation{env: map[string]string{"RESULTS_KEY": encoded}}, "results", "job-done", "--redis-url", rd.URL)
	if got.code != exitUsage {
		t.Fatalf("exit code %d, want 2\n%s", got.code, got)
	}
	requireStderr(t, got, "plaintext secret but a results key is configured", "RESULTS_KEY and RESULTS_KEY_FILE unset")
}

func TestResultsDelete(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-running", false)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)
	store := results.NewStore(rd.Client)

	running := runCLI(t, invocation{}, "results", "job-running", "--delete", "--redis-url", rd.URL)
	if running.code != exitUsage {
		t.Fatalf("--delete of a running job: %s", running)
	}
	requireStderr(t, running, "job job-running is running", "enqueue cancel job-running")
	if _, err := store.Job(context.Background(), "job-running"); err != nil {
		t.Errorf("running job's record is gone: %v", err)
	}

	done := runCLI(t, invocation{}, "results", "job-done", "--delete", "--redis-url", rd.URL)
	if done.code != exitFailed {
		t.Fatalf("--delete of a finished job: %s", done)
	}
	if !strings.Contains(done.stdout, "user0005@example.com") {
		t.Errorf("stdout misses the rows:\n%s", done.stdout)
	}
	requireStderr(t, done, "deleted the record of job job-done")
	if _, err := store.Job(context.Background(), "job-done"); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("after --delete, reading the job returns %v, want ErrNotFound", err)
	}
	again := runCLI(t, invocation{}, "results", "job-done", "--redis-url", rd.URL)
	if again.code != exitUsage {
		t.Errorf("results after --delete: %s", again)
	}
}

func TestResultsOfRunningJob(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-running", false)

	got := runCLI(t, invocation{}, "results", "job-running", "--redis-url", rd.URL)
	if got.code != exitFailed {
		t.Fatalf("results of a running job: %s; want exit 1 because not every user is applied", got)
	}
	requireStderr(t, got, "job job-running is running: 2 users are not reset yet")
	if !strings.Contains(got.stdout, `"error":"not reset yet: the job is running"`) {
		t.Errorf("pending rows do not say so:\n%s", got.stdout)
	}
}

func TestResultsOut(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-done", true)
	out := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(out, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}

	got := runCLI(t, invocation{}, "results", "job-done", "--out", out, "--redis-url", rd.URL)
	if got.code != exitFailed {
		t.Fatalf("results --out: %s", got)
	}
	if got.stdout != "" {
		t.Errorf("stdout = %q, want nothing with --out", got.stdout)
	}
	requireStderr(t, got, "wrote the results of job job-done to "+out)

	info, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode %v, want 0600 even when replacing a 0644 file", mode)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "[\n  {\"userId\":\"user0001@example.com\"") {
		t.Errorf("file content:\n%s", data)
	}
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the results file (no temporary files)", len(entries))
	}
}

func TestWriteFileAtomicKeepsOldFileOnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "out.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("read failed")
	err := writeFileAtomic(path, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return failure
	})
	if !errors.Is(err, failure) {
		t.Fatalf("writeFileAtomic = %v, want the write error", err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "old" {
		t.Errorf("file holds %q after a failed write, want the old content", data)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the temporary file removed", len(entries))
	}
}

// TestResultsDeleteWaitsForTasks: a cancelled job whose fan-out task asynq still holds
// must keep its record, because that fan-out, run again, would create a new record and
// reset every user.
func TestResultsDeleteWaitsForTasks(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	seedJob(t, rd, results.Plaintext{}, "job-cancelled", false)
	store := results.NewStore(rd.Client)
	if _, err := store.Cancel(context.Background(), "job-cancelled"); err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClientFromRedisClient(rd.Client)
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeBulkReset, []byte(`{}`)),
		asynq.TaskID("job-cancelled"), asynq.Queue(tasks.QueueDefault)); err != nil {
		t.Fatal(err)
	}

	rejected := runCLI(t, invocation{}, "results", "job-cancelled", "--delete", "--redis-url", rd.URL)
	if rejected.code != exitUsage {
		t.Fatalf("--delete while the fan-out task waits: %s", rejected)
	}
	requireStderr(t, rejected, "1 of its tasks is still on the workers", "job-cancelled (pending)", "run this again once they are gone")
	if _, err := store.Job(context.Background(), "job-cancelled"); err != nil {
		t.Errorf("the record is gone after a rejected --delete: %v", err)
	}

	inspector := asynq.NewInspectorFromRedisClient(rd.Client)
	if err := inspector.DeleteTask(tasks.QueueDefault, "job-cancelled"); err != nil {
		t.Fatal(err)
	}
	deleted := runCLI(t, invocation{}, "results", "job-cancelled", "--delete", "--redis-url", rd.URL)
	requireStderr(t, deleted, "deleted the record of job job-cancelled")
}
