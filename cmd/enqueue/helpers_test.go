package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the fixed creation time of the fixture jobs.
var t0 = time.Date(2026, 12, 4, 23, 1, 0, 0, time.UTC)

// invocation is what one CLI run gets besides its arguments.
type invocation struct {
	env      map[string]string
	stdin    string
	now      time.Time // zero: the real clock
	sealer   results.Sealer
	terminal bool
}

// outcome is what one CLI run produced.
type outcome struct {
	code   int
	stdout string
	stderr string
}

func (o outcome) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s\n--- stderr:\n%s", o.code, o.stdout, o.stderr)
}

// runCLI runs the CLI in process the way run does, with the invocation's environment
// instead of the process environment, so tests can run in parallel.
func runCLI(t *testing.T, inv invocation, args ...string) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{
		stdin: strings.NewReader(inv.stdin), stdout: &stdout, stderr: &stderr,
		getenv: func(name string) string { return inv.env[name] },
		now:    time.Now,
		sealer: inv.sealer,

		stderrIsTerminal: inv.terminal, stdoutIsTerminal: inv.terminal,
		pollInterval:     20 * time.Millisecond,
		progressInterval: 50 * time.Millisecond,
	}
	if !inv.now.IsZero() {
		a.now = func() time.Time { return inv.now }
	}
	code := a.run(context.Background(), args)
	return outcome{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// requireStderr fails unless the run's standard error contains every fragment.
func requireStderr(t *testing.T, got outcome, fragments ...string) {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(got.stderr, f) {
			t.Errorf("stderr does not contain %q\n%s", f, got)
		}
	}
}

// requireEmptyRedis fails when the database holds any key: no job record and no asynq
// queue or task.
func requireEmptyRedis(t *testing.T, rd *testredis.Redis) {
	t.Helper()
	keys, err := rd.Client.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	if len(keys) > 0 {
		t.Errorf("Redis holds %d keys, want none: %v", len(keys), keys)
	}
}

// fixedClock is a settable clock for fixture stores.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fixedClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// testKey returns a fixed results key and its base64 form for RESULTS_KEY.
func testKey(t *testing.T, fill byte) (results.Key, string) {
	t.Helper()
	raw := bytes.Repeat([]byte{fill}, results.KeySize)
	encoded := base64.StdEncoding.EncodeToString(raw)
	key, err := results.ParseKey(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return key, encoded
}

// fixtureUsers are the users of the fixture jobs.
var fixtureUsers = []string{
	"user0001@example.com", "user0002@example.com", "user0003@example.com",
	"user0004@example.com", "user0005@example.com",
}

// seedJob writes a web job with fixtureUsers and deterministic times: created at t0,
// started at t0+2s, users 1 and 2 applied at t0+5s, user 3 failed at t0+6s, users 4 and
// 5 pending. With finish set, user 4 is applied and user 5 fails at t0+10s, which
// completes the job.
func seedJob(t *testing.T, rd *testredis.Redis, sealer results.Sealer, jobID string, finish bool) {
	t.Helper()
	ctx := context.Background()
	clock := &fixedClock{now: t0}
	store := results.NewStore(rd.Client, results.WithSealer(sealer), results.WithClock(clock.Now))

	_, created, err := store.CreateJob(ctx, results.Job{
		ID: jobID, Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1",
		RequestedBy: "alice", Priority: "default", CallbackURL: "https://hooks.example.com/services/T0KEN?sig=abc",
	})
	if err != nil || !created {
		t.Fatalf("create job %s: created=%v, %v", jobID, created, err)
	}
	if err := store.SetAudit(ctx, jobID, map[string]string{
		"submitted_by": "alice", "submitted_from": "ops-host", "submitted_at": t0.Format(time.RFC3339),
	}); err != nil {
		t.Fatal(err)
	}

	clock.Set(t0.Add(2 * time.Second))
	if _, err := store.LoadUsers(ctx, jobID, fixtureUsers); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for i, u := range fixtureUsers {
		secrets[u] = fmt.Sprintf("=Secret-%d,\"x\"", i+1)
	}
	if _, err := store.WriteAhead(ctx, jobID, secrets); err != nil {
		t.Fatal(err)
	}
	if err := store.SetCursor(ctx, jobID, len(fixtureUsers)); err != nil {
		t.Fatal(err)
	}

	settle := func(at time.Duration, userID, failure string) {
		t.Helper()
		clock.Set(t0.Add(at))
		rec, err := store.User(ctx, jobID, userID)
		if err != nil {
			t.Fatal(err)
		}
		if failure == "" {
			_, err = store.MarkApplied(ctx, jobID, rec, 1)
		} else {
			_, err = store.MarkFailed(ctx, jobID, rec, failure, 2)
		}
		if err != nil {
			t.Fatalf("settle %s: %v", userID, err)
		}
	}
	settle(5*time.Second, fixtureUsers[0], "")
	settle(5*time.Second, fixtureUsers[1], "")
	settle(6*time.Second, fixtureUsers[2], "Odin: [Error 4410] Service is not assigned to this subscriber")
	if finish {
		settle(10*time.Second, fixtureUsers[3], "")
		settle(10*time.Second, fixtureUsers[4], "Odin: [Error 4008] User not found")
	}
}

// checkGolden compares got with testdata/name, or rewrites the file with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestMain(m *testing.M) {
	// The unreachable-Redis tests would otherwise fill the output with go-redis dial
	// logs, and main silences them the same way.
	redis.SetLogger(silentLogger{})
	flag.Parse()
	os.Exit(m.Run())
}
