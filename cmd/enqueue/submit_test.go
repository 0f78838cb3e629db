package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// bulkTask returns the job's reset:bulk task from its queue and its decoded payload.
func bulkTask(t *testing.T, rd *testredis.Redis, queue, jobID string) (*asynq.TaskInfo, tasks.BulkResetPayload) {
	t.Helper()
	inspector := asynq.NewInspector(rd.Opt)
	t.Cleanup(func() { inspector.Close() })
	info, err := inspector.GetTaskInfo(queue, jobID)
	if err != nil {
		t.Fatalf("task %s in queue %s: %v", jobID, queue, err)
	}
	var p tasks.BulkResetPayload
	if err := json.Unmarshal(info.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return info, p
}

func TestSubmitEnqueuesJob(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)

	got := runCLI(t, invocation{stdin: "# users\nuser0002@example.com\r\nuser0001@example.com\n"},
		"--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", "VM",
		"--user", "user0001@example.com", "--users-file", "-", "--job-id", "job-1",
		"--result-ttl", "7d", "--priority", "high", "--requested-by", "carol",
		"--callback-url", "https://hooks.example.com/done")
	if got.code != exitOK {
		t.Fatalf("submit: %s", got)
	}
	if got.stdout != "job-1\n" {
		t.Errorf("stdout = %q, want the job ID line", got.stdout)
	}
	requireStderr(t, got,
		"warning: 1 duplicate user ID removed, each user is reset once: user0001@example.com",
		"submitted job job-1: voicemail credential of 2 users",
		"enqueue status job-1 --watch", "enqueue results job-1")

	info, p := bulkTask(t, rd, tasks.QueueHigh, "job-1")
	if info.State != asynq.TaskStatePending {
		t.Errorf("task state = %v, want pending", info.State)
	}
	want := tasks.BulkResetPayload{
		JobID: "job-1", Type: results.Voicemail, ServiceProviderID: "sp1", GroupID: "grp1",
		Users: []string{"user0001@example.com", "user0002@example.com"}, ResultTTLSeconds: 7 * 24 * 3600,
		Priority: "high", RequestedBy: "carol", CallbackURL: "https://hooks.example.com/done",
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}

	store := results.NewStore(rd.Client)
	audit, err := store.AuditFields(context.Background(), "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if audit["submitted_by"] != "carol" {
		t.Errorf("audit submitted_by = %q, want carol", audit["submitted_by"])
	}
}

func TestSubmitGeneratesJobID(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	now := time.Date(2026, 12, 4, 23, 1, 30, 0, time.UTC)

	got := runCLI(t, invocation{now: now},
		"submit", "--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1",
		"--type", "web", "--all-users", "--reset-devices=false")
	if got.code != exitOK {
		t.Fatalf("submit: %s", got)
	}
	jobID := strings.TrimSpace(got.stdout)
	if !regexp.MustCompile(`^reset-20261204-2301-[0-9a-f]{8}$`).MatchString(jobID) {
		t.Errorf("generated job ID %q, want reset-20261204-2301-<8 hex>", jobID)
	}
	_, p := bulkTask(t, rd, tasks.QueueDefault, jobID)
	if !p.AllUsers || len(p.Users) != 0 {
		t.Errorf("payload allUsers=%v users=%v, want all users and no list", p.AllUsers, p.Users)
	}
}

func TestSubmitScheduled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want time.Duration // from now
	}{
		{name: "in", args: []string{"--in", "6h"}, want: 6 * time.Hour},
		{name: "at", args: []string{"--at", time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)}, want: 48 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rd := testredis.New(t)
			args := append([]string{"--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1",
				"--type", "sip", "--user", "u@x", "--job-id", "sched", "--rebuild-devices"}, tc.args...)
			got := runCLI(t, invocation{}, args...)
			if got.code != exitOK {
				t.Fatalf("submit: %s", got)
			}
			requireStderr(t, got, ", starting at ")

			info, p := bulkTask(t, rd, tasks.QueueDefault, "sched")
			if info.State != asynq.TaskStateScheduled {
				t.Errorf("task state = %v, want scheduled", info.State)
			}
			if d := time.Until(info.NextProcessAt) - tc.want; d > time.Minute || d < -time.Minute {
				t.Errorf("task runs at %v, want about now + %v", info.NextProcessAt, tc.want)
			}
			if p.Devices != results.DevicesRebuild {
				t.Errorf("devices = %q, want rebuild", p.Devices)
			}
		})
	}
}

func TestSubmitAgainIsNoOp(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	args := []string{"--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", "web", "--user", "u@x", "--job-id", "same"}

	first := runCLI(t, invocation{}, args...)
	if first.code != exitOK {
		t.Fatalf("first submit: %s", first)
	}
	second := runCLI(t, invocation{}, args...)
	if second.code != exitOK {
		t.Fatalf("second submit: %s", second)
	}
	requireStderr(t, second, "job same was submitted before", "nothing new was enqueued")

	other := runCLI(t, invocation{}, "--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp2",
		"--type", "web", "--user", "u@x", "--job-id", "same")
	if other.code != exitUsage {
		t.Fatalf("conflicting submit: %s", other)
	}
	requireStderr(t, other, "job ID same is already used", "requests a web job for sp1/grp2", "choose another job ID")

	otherUsers := runCLI(t, invocation{}, "--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1",
		"--type", "web", "--user", "u@x", "--user", "v@x", "--job-id", "same")
	if otherUsers.code != exitUsage {
		t.Fatalf("submit with another user list: %s", otherUsers)
	}
	requireStderr(t, otherUsers, "job ID same is already used", "requests another user list")

	// The same users in another order ask for the same job.
	twoUsers := []string{"--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", "web", "--job-id", "pair"}
	if got := runCLI(t, invocation{}, append(twoUsers, "--user", "u@x", "--user", "v@x")...); got.code != exitOK {
		t.Fatalf("submit pair: %s", got)
	}
	reordered := runCLI(t, invocation{}, append(twoUsers, "--user", "v@x", "--user", "u@x")...)
	if reordered.code != exitOK {
		t.Fatalf("submit pair reordered: %s", reordered)
	}
	requireStderr(t, reordered, "nothing new was enqueued")
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestSubmitRejectsBadInput runs every invalid request against one empty Redis database:
// each must exit 2 (3 for infrastructure), name the value and the fix, and store nothing.
func TestSubmitRejectsBadInput(t *testing.T) {
	rd := testredis.New(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	commentsOnly := write("comments.txt", "# nobody yet\n\n")
	hugeLine := write("huge.txt", "a@x\n"+strings.Repeat("x", 10<<20)+"\n")
	badUTF8 := write("latin1.txt", "a@x\nm\xfcller@x\n")
	longID := write("long.txt", strings.Repeat("y", 162)+"\n")
	csvFile := write("export.csv", "userId,name\na@x,Alice\n")
	now := time.Now()

	base := []string{"--redis-url", rd.URL, "--service-provider", "sp1", "--group", "grp1", "--type", "sip"}
	with := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }
	without := func(flag string, extra ...string) []string {
		var out []string
		for i := 0; i < len(base); i += 2 {
			if base[i] != flag {
				out = append(out, base[i], base[i+1])
			}
		}
		return append(out, extra...)
	}

	tests := []struct {
		name  string
		args  []string
		stdin string
		env   map[string]string
		code  int
		want  []string // fragments of stderr: the value and the fix
	}{
		{name: "unknown type", args: without("--type", "--type", "pin", "--user", "u@x"), want: []string{`"pin"`, "sip, voicemail (or vm), web"}},
		{name: "missing type", args: without("--type", "--user", "u@x"), want: []string{"missing --type", "sip, voicemail (or vm), web"}},
		{name: "empty user", args: with("--user", ""), want: []string{"empty user ID", "remove the blank entry"}},
		{name: "whitespace user", args: with("--user", "   "), want: []string{"empty user ID", "remove the blank entry"}},
		{name: "control character in user", args: with("--user", "a\x01b@x"), want: []string{`"a\x01b@x"`, "control character"}},
		{name: "space in user", args: with("--user", "user 1@example.com"), want: []string{`--user "user 1@example.com" contains a space or tab`, "one user ID per --user"}},
		{name: "column header", args: with("--users-file", "-"), stdin: "userId\nuser1@example.com\n", want: []string{`standard input line 1: "userId" looks like a column header`, "starting it with #"}},
		{name: "only comments", args: with("--users-file", commentsOnly), want: []string{commentsOnly, "contains no user IDs", "add user IDs, one per line"}},
		{name: "only comments on stdin", args: with("--users-file", "-"), stdin: "# x\n", want: []string{"standard input contains no user IDs"}},
		{name: "10 MB line", args: with("--users-file", hugeLine), want: []string{hugeLine + " line 2", "longer than 4096 bytes", "one user ID per line"}},
		{name: "invalid UTF-8", args: with("--users-file", badUTF8), want: []string{badUTF8 + " line 2", "save the list as UTF-8"}},
		{name: "user ID too long", args: with("--users-file", longID), want: []string{longID + " line 1", "162 characters", "at most 161"}},
		{name: "CSV export", args: with("--users-file", csvFile), want: []string{"line 1", `"userId,name"`, "looks like CSV"}},
		{name: "missing users file", args: with("--users-file", filepath.Join(dir, "nope.txt")), want: []string{"nope.txt", "no such file", "check the path"}},
		{name: "missing service provider", args: without("--service-provider", "--user", "u@x"), want: []string{"missing service provider ID", "--service-provider"}},
		{name: "missing group", args: without("--group", "--user", "u@x"), want: []string{"missing group ID", "set --group"}},
		{name: "control character in group", args: without("--group", "--group", "g\x01", "--user", "u@x"), want: []string{`group ID "g\x01"`, "control character"}},
		{name: "no users", args: with(), want: []string{"no users given", "--user", "--users-file", "--all-users"}},
		{name: "user and all users", args: with("--user", "u@x", "--all-users"), want: []string{"--all-users cannot be combined", "not both"}},
		{name: "TTL zero", args: with("--user", "u@x", "--result-ttl", "0s"), want: []string{`--result-ttl "0s"`, "from 1m to 2160h"}},
		{name: "TTL negative", args: with("--user", "u@x", "--result-ttl", "-1h"), want: []string{`--result-ttl "-1h"`, "from 1m to 2160h"}},
		{name: "TTL ten years", args: with("--user", "u@x", "--result-ttl", "10y"), want: []string{`--result-ttl "10y"`, "such as 90m, 72h or 7d"}},
		{name: "TTL over maximum", args: with("--user", "u@x", "--result-ttl", "100d"), want: []string{`--result-ttl "100d"`, "from 1m to 2160h"}},
		{name: "at in the past", args: with("--user", "u@x", "--at", "2020-01-01T00:00:00Z"), want: []string{"--at 2020-01-01T00:00:00Z is in the past", "give a future time"}},
		{name: "at not RFC 3339", args: with("--user", "u@x", "--at", "tomorrow 23:00"), want: []string{`--at "tomorrow 23:00"`, "RFC 3339"}},
		{name: "at too far", args: with("--user", "u@x", "--at", now.Add(40*24*time.Hour).UTC().Format(time.RFC3339)), want: []string{"more than 30 days ahead"}},
		{name: "in negative", args: with("--user", "u@x", "--in", "-5m"), want: []string{`--in "-5m"`, "positive duration"}},
		{name: "in and at", args: with("--user", "u@x", "--in", "1h", "--at", now.Add(time.Hour).Format(time.RFC3339)), want: []string{"--at and --in exclude each other"}},
		{name: "schedule beyond TTL", args: with("--user", "u@x", "--in", "5d"), want: []string{"starts in 120h", "kept only 72h", "raise --result-ttl to at least 122h"}},
		{name: "bad priority", args: with("--user", "u@x", "--priority", "urgent"), want: []string{`"urgent"`, "high, default or low"}},
		{name: "callback not http", args: with("--user", "u@x", "--callback-url", "ftp://hooks.example.com/x"), want: []string{`"ftp://hooks.example.com/x"`, "http:// or https://"}},
		{name: "callback relative", args: with("--user", "u@x", "--callback-url", "hooks/done"), want: []string{`"hooks/done"`, "absolute"}},
		{name: "reset devices for web", args: without("--type", "--type", "web", "--user", "u@x", "--reset-devices"), want: []string{"SIP jobs only, not web", "drop --rebuild-devices/--reset-devices"}},
		{name: "both device flags", args: with("--user", "u@x", "--reset-devices", "--rebuild-devices"), want: []string{"exclude each other", "give only one"}},
		{name: "bad job ID", args: with("--user", "u@x", "--job-id", "my job/1"), want: []string{`"my job/1"`, "letters, digits"}},
		{name: "requested by with newline", args: with("--user", "u@x", "--requested-by", "eve\nforged"), want: []string{"--requested-by", "control character"}},
		{name: "out in missing directory", args: with("--user", "u@x", "--wait", "--out", filepath.Join(dir, "missing", "r.json")), want: []string{"missing", "does not exist", "create it"}},
		{name: "user with an invisible character", args: with("--user", "a\u200b@x"), want: []string{"--user", "invisible character U+200B"}},
		{name: "quoted user", args: with("--user", `"a@x"`), want: []string{"--user", "is in quotes"}},
		{name: "users file is a directory", args: with("--users-file", dir), want: []string{dir + " is a directory", "one user ID per line"}},
		{name: "out without wait", args: with("--user", "u@x", "--out", filepath.Join(dir, "r.json")), want: []string{"--out applies only with --wait"}},
		{name: "timeout without wait", args: with("--user", "u@x", "--timeout", "1m"), want: []string{"--timeout applies only with --wait", "enqueue status JOB --watch"}},
		{name: "bad timeout", args: with("--user", "u@x", "--wait", "--timeout", "soon"), want: []string{`--timeout "soon"`, "such as 30m"}},
		{name: "bad format", args: with("--user", "u@x", "--wait", "--format", "xml"), want: []string{`--format "xml"`, "json or csv"}},
		{name: "malformed results key", args: with("--user", "u@x", "--wait"), env: map[string]string{"RESULTS_KEY": "c2hvcnQ="}, want: []string{"RESULTS_KEY", "need 32", "openssl rand -base64 32"}},
		{name: "unknown flag", args: with("--user", "u@x", "--dry-runn"), want: []string{"-dry-runn", "enqueue submit --help"}},
		{name: "stray argument", args: with("u@x"), want: []string{`unexpected argument "u@x"`, "--user"}},
		{name: "command after flags", args: with("status", "job-1"), want: []string{`unexpected argument "status" after flags`, "put the command first"}},
		{name: "unknown command", args: []string{"stauts", "job-1"}, want: []string{`unknown command "stauts"`, "status"}},
		{name: "no Redis configured", args: []string{"--service-provider", "sp1", "--group", "grp1", "--type", "sip", "--user", "u@x"}, want: []string{"no Redis configured", "REDIS_URL"}},
		{name: "invalid Redis URL", args: without("--redis-url", "--redis-url", "http://127.0.0.1:1", "--user", "u@x"), want: []string{"invalid --redis-url", "redis://"}},
		{name: "REDIS_DB not a number", args: with("--user", "u@x"), env: map[string]string{"REDIS_DB": "one"}, want: []string{`REDIS_DB "one"`}},
		{name: "unreachable Redis", code: exitInfra, args: without("--redis-url", "--redis-url", "redis://"+closedPort(t)+"/0", "--user", "u@x"), want: []string{"cannot reach Redis at redis://127.0.0.1:", "connection refused"}},
		{name: "status of unknown job", args: []string{"status", "no-such-job", "--redis-url", rd.URL}, want: []string{"job no-such-job not found", "enqueue list"}},
		{name: "results of unknown job", args: []string{"results", "no-such-job", "--redis-url", rd.URL}, want: []string{"job no-such-job not found"}},
		{name: "cancel of unknown job", args: []string{"cancel", "no-such-job", "--redis-url", rd.URL}, want: []string{"job no-such-job not found"}},
		{name: "status without job", args: []string{"status", "--redis-url", rd.URL}, want: []string{"missing job ID", "enqueue status JOB"}},
		{name: "status of invalid job ID", args: []string{"status", "a/b", "--redis-url", rd.URL}, want: []string{`invalid job ID "a/b"`}},
		{name: "results bad format", args: []string{"results", "--format", "yaml", "x", "--redis-url", rd.URL}, want: []string{`--format "yaml"`}},
		{name: "list limit zero", args: []string{"list", "--limit", "0", "--redis-url", rd.URL}, want: []string{"--limit 0", "1 to 1000"}},
		{name: "completion for powershell", args: []string{"completion", "powershell"}, want: []string{`"powershell"`, "bash, zsh or fish"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.code
			if want == 0 {
				want = exitUsage
			}
			got := runCLI(t, invocation{stdin: tc.stdin, env: tc.env}, tc.args...)
			if got.code != want {
				t.Errorf("exit code %d, want %d\n%s", got.code, want, got)
			}
			if got.stdout != "" {
				t.Errorf("stdout = %q, want nothing", got.stdout)
			}
			requireStderr(t, got, tc.want...)
			if len(got.stderr) > 2000 {
				t.Errorf("stderr is %d bytes, want a short message", len(got.stderr))
			}
			requireEmptyRedis(t, rd)
		})
	}
}

// TestSubmitWaitWithAnotherKey: the workers on the Redis seal with one key and enqueue
// has another. submit --wait must refuse before it submits, because it could not print
// the new values of the users it would reset.
func TestSubmitWaitWithAnotherKey(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	workersKey, _ := testKey(t, 1)
	if err := results.NewStore(rd.Client, results.WithSealer(results.NewKeyring(workersKey))).CheckSealing(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, otherKey := testKey(t, 2)

	got := runCLI(t, invocation{env: map[string]string{"RESULTS_KEY": otherKey}}, "--redis-url", rd.URL,
		"--service-provider", "sp1", "--group", "grp1", "--type", "web", "--user", "u@x", "--job-id", "wrong-key", "--wait")
	if got.code != exitUsage {
		t.Fatalf("submit --wait with another key: %s", got)
	}
	requireStderr(t, got, "nothing was submitted", "results key "+workersKey.ID(), "RESULTS_KEY_PREVIOUS")
	inspector := asynq.NewInspector(rd.Opt)
	defer inspector.Close()
	if _, err := inspector.GetTaskInfo(tasks.QueueDefault, "wrong-key"); !errors.Is(err, asynq.ErrQueueNotFound) && !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("the job's task: %v, want none queued", err)
	}
}
