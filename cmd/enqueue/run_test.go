package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/testredis"
)

// TestRunHelp calls run itself, as main does.
func TestRunHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "main", args: []string{"--help"}, want: []string{"Commands:", "Exit codes:", "4  --wait stopped"}},
		{name: "help command", args: []string{"help", "status"}, want: []string{"Usage: enqueue status JOB", "Examples:"}},
		{name: "submit", args: []string{"submit", "-h"}, want: []string{"--users-file", "-result-ttl duration", "Examples:"}},
		{name: "status", args: []string{"status", "--help"}, want: []string{"-watch", "Examples:"}},
		{name: "results", args: []string{"results", "--help"}, want: []string{"-delete", "RESULTS_KEY", "Examples:"}},
		{name: "cancel", args: []string{"cancel", "--help"}, want: []string{"-requested-by", "Examples:"}},
		{name: "list", args: []string{"list", "--help"}, want: []string{"-limit", "Examples:"}},
		{name: "completion", args: []string{"completion", "--help"}, want: []string{"bash|zsh|fish", "Examples:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != exitOK {
				t.Fatalf("exit code %d, want 0; stderr: %s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("help does not contain %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

func TestRunWithoutArguments(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), nil, strings.NewReader(""), &stdout, &stderr); code != exitUsage {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "Usage: enqueue") {
		t.Errorf("stderr does not show the usage:\n%s", stderr.String())
	}
}

func TestRunUnreachableRedis(t *testing.T) {
	t.Parallel()
	addr := closedPort(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"list", "--redis-url", "redis://" + addr + "/0"}, strings.NewReader(""), &stdout, &stderr)
	if code != exitInfra {
		t.Fatalf("exit code %d, want 3; stderr: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "cannot reach Redis at redis://"+addr+"/0") {
		t.Errorf("stderr does not name the address:\n%s", stderr.String())
	}
}

func TestRunDatabaseOutOfRange(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	rd := testredis.New(t)
	url, count := rd.MissingDatabaseURL(t)
	last := strconv.Itoa(count - 1)

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		setting string
	}{
		{name: "flag", args: []string{"list", "--redis-url", url}, setting: "--redis-url"},
		{name: "environment", args: []string{"status", "job-1"}, env: map[string]string{"REDIS_URL": url}, setting: "REDIS_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, invocation{env: tc.env}, tc.args...)
			if got.code != exitInfra {
				t.Fatalf("exit code %d, want 3\n%s", got.code, got)
			}
			requireStderr(t, got, "has "+strconv.Itoa(count)+" databases, 0 to "+last+", so database "+strconv.Itoa(count)+" does not exist",
				"set a database number from 0 to "+last+" in "+tc.setting)
			if strings.Contains(got.stderr, "cannot reach Redis") {
				t.Errorf("stderr calls a running server unreachable:\n%s", got)
			}
		})
	}
}

// startPasswordRedis starts a redis-server that requires password on a spare loopback
// port and returns its address. It skips the test when redis-server is not installed.
func startPasswordRedis(t *testing.T, password string) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed")
	}
	for _, port := range []int{6396, 6397, 6398, 6399, 6394} {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--requirepass", password,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		if waitForPasswordRedis(addr, password, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop()
	}
	t.Skip("no spare port from 6394 to 6399 for a password-protected redis-server")
	return ""
}

// waitForPasswordRedis waits until the server at addr accepts a PING with password and
// rejects a client without it, which proves it is the server this test started. It
// returns false when the process exits first or after five seconds.
func waitForPasswordRedis(addr, password string, exited <-chan struct{}) bool {
	ctx := context.Background()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(5 * time.Second)
	for {
		with := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1})
		withErr := with.Ping(ctx).Err()
		with.Close()
		if withErr == nil {
			without := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			withoutErr := without.Ping(ctx).Err()
			without.Close()
			return withoutErr != nil && strings.HasPrefix(withoutErr.Error(), "NOAUTH")
		}
		select {
		case <-exited:
			return false
		case <-deadline:
			return false
		case <-ticker.C:
		}
	}
}

func TestRedisPasswordErrors(t *testing.T) {
	const password = "Correct-Horse-7d41"
	const wrong = "Wr0ng-Pa55word-91c2"
	addr := startPasswordRedis(t, password)
	passwordFile := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		url  string
		env  map[string]string
		code int
		want []string
	}{
		{name: "wrong password in URL", url: "redis://:" + wrong + "@" + addr + "/0", code: exitInfra,
			want: []string{"Redis at redis://:xxxxx@" + addr + "/0 rejected the password", "check the password"}},
		{name: "wrong REDIS_PASSWORD", url: "redis://" + addr + "/0", env: map[string]string{"REDIS_PASSWORD": wrong}, code: exitInfra,
			want: []string{"rejected the password"}},
		{name: "no password", url: "redis://" + addr + "/0", code: exitInfra,
			want: []string{"Redis at redis://" + addr + "/0 requires a password", "REDIS_PASSWORD"}},
		{name: "password in URL and env", url: "redis://:" + wrong + "@" + addr + "/0", env: map[string]string{"REDIS_PASSWORD": password}, code: exitUsage,
			want: []string{"has a password and REDIS_PASSWORD is set too"}},
		{name: "right REDIS_PASSWORD_FILE", url: "redis://" + addr + "/0", env: map[string]string{"REDIS_PASSWORD_FILE": passwordFile}, code: exitOK},
		{name: "right password from REDIS_URL", env: map[string]string{"REDIS_URL": "redis://:" + password + "@" + addr + "/0"}, code: exitOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"list"}
			if tc.url != "" {
				args = append(args, "--redis-url", tc.url)
			}
			got := runCLI(t, invocation{env: tc.env}, args...)
			if got.code != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", got.code, tc.code, got)
			}
			requireStderr(t, got, tc.want...)
			for _, secret := range []string{password, wrong} {
				if strings.Contains(got.stderr+got.stdout, secret) {
					t.Errorf("output contains a password:\n%s", got)
				}
			}
		})
	}

	t.Run("submit with wrong password enqueues nothing", func(t *testing.T) {
		got := runCLI(t, invocation{env: map[string]string{"REDIS_PASSWORD": wrong}},
			"--redis-url", "redis://"+addr+"/0", "--service-provider", "sp1", "--group", "grp1", "--type", "sip", "--user", "u@x")
		if got.code != exitInfra {
			t.Fatalf("exit code %d, want 3\n%s", got.code, got)
		}
		client := redis.NewClient(&redis.Options{Addr: addr, Password: password})
		defer client.Close()
		if n, err := client.DBSize(context.Background()).Result(); err != nil || n != 0 {
			t.Errorf("database holds %d keys (%v), want none", n, err)
		}
	})
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			got := runCLI(t, invocation{}, "completion", shell)
			if got.code != exitOK || !strings.Contains(got.stdout, "enqueue") {
				t.Fatalf("completion %s: %s", shell, got)
			}
			path, err := exec.LookPath(shell)
			if err != nil {
				t.Skipf("%s is not installed: the syntax check is skipped", shell)
			}
			cmd := exec.Command(path, "-n")
			cmd.Stdin = strings.NewReader(got.stdout)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n rejects the script: %v\n%s", shell, err, out)
			}
		})
	}
}
