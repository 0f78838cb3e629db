package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
)

// mapEnv returns a getenv over vars.
func mapEnv(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// baseEnv returns the smallest valid worker environment, with a Redis URL whose socket
// does not exist: a test that reaches Redis gets a connection error, never a server.
func baseEnv(t *testing.T) map[string]string {
	return map[string]string{
		"REDIS_URL":     "unix://" + filepath.Join(t.TempDir(), "no-redis.sock"),
		"ODIN_BASE_URL": "https://odin.example.com/api/v2",
		"ODIN_USERNAME": "admin",
		"ODIN_PASSWORD": "odin-admin-secret",
	}
}

func with(vars map[string]string, extra ...string) map[string]string {
	out := make(map[string]string, len(vars)+len(extra)/2)
	for k, v := range vars {
		out[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			delete(out, extra[i])
			continue
		}
		out[extra[i]] = extra[i+1]
	}
	return out
}

func newResultsKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, results.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	cfg, err := parseConfig(nil, mapEnv(env), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Redis:           redisconn.Config{URL: env["REDIS_URL"]},
		OdinBaseURL:     "https://odin.example.com/api/v2",
		OdinUsername:    "admin",
		odinPassword:    "odin-admin-secret",
		OdinTimeout:     30 * time.Second,
		RateLimit:       5,
		RateBurst:       1,
		Concurrency:     20,
		ShutdownTimeout: 40 * time.Second,
		LoginCooldown:   time.Minute,
		SweepInterval:   time.Minute,
		StallAfter:      3 * time.Minute,
		LogLevel:        "info",
		LogFormat:       "auto",
		HTTPAddr:        "127.0.0.1:8080",
		DemoType:        "sip",
		DemoUsers:       25,
	}
	if diff := cmp.Diff(want, cfg, cmp.AllowUnexported(Config{})); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestParseConfigFlagsOverrideEnv(t *testing.T) {
	t.Parallel()
	passwordFile := filepath.Join(t.TempDir(), "odin-password")
	if err := os.WriteFile(passwordFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := with(baseEnv(t),
		"ODIN_PASSWORD", "", "ODIN_PASSWORD_FILE", passwordFile,
		"ODIN_RATE_LIMIT", "2.5", "ODIN_RATE_BURST", "3", "WORKER_CONCURRENCY", "7",
		"ODIN_TIMEOUT", "10s", "SHUTDOWN_TIMEOUT", "15s", "ODIN_LOGIN_COOLDOWN", "5s",
		"SWEEP_INTERVAL", "30s", "STALL_AFTER", "90s",
		"INSECURE_PLAINTEXT_RESULTS", "true", "LOG_LEVEL", "debug", "LOG_FORMAT", "json",
		"HTTP_ADDR", ":9090", "MONITORING_USER", "ops", "MONITORING_PASSWORD", "dashboard-secret",
		"MONITORING_WRITABLE", "1",
	)
	args := []string{"--rate-limit", "4", "--concurrency", "9", "--odin-timeout", "12s", "--log-level", "warn", "--http-addr", "", "--stall-after", "2m"}

	cfg, err := parseConfig(args, mapEnv(env), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"odinPassword": cfg.odinPassword, "RateLimit": cfg.RateLimit, "RateBurst": cfg.RateBurst,
		"Concurrency": cfg.Concurrency, "OdinTimeout": cfg.OdinTimeout, "ShutdownTimeout": cfg.ShutdownTimeout,
		"LoginCooldown": cfg.LoginCooldown, "InsecurePlaintextResults": cfg.InsecurePlaintextResults,
		"SweepInterval": cfg.SweepInterval, "StallAfter": cfg.StallAfter,
		"LogLevel": cfg.LogLevel, "LogFormat": cfg.LogFormat, "HTTPAddr": cfg.HTTPAddr,
		"MonitoringUser": cfg.MonitoringUser, "monitoringPassword": cfg.monitoringPassword,
		"MonitoringWritable": cfg.MonitoringWritable,
	}
	want := map[string]any{
		"odinPassword": "from-a-file", "RateLimit": 4.0, "RateBurst": 3,
		"Concurrency": 9, "OdinTimeout": 12 * time.Second, "ShutdownTimeout": 15 * time.Second,
		"LoginCooldown": 5 * time.Second, "InsecurePlaintextResults": true,
		"SweepInterval": 30 * time.Second, "StallAfter": 2 * time.Minute,
		"LogLevel": "warn", "LogFormat": "json", "HTTPAddr": "",
		"MonitoringUser": "ops", "monitoringPassword": "dashboard-secret",
		"MonitoringWritable": true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
}

func TestParseConfigFlagFixesEnv(t *testing.T) {
	t.Parallel()
	env := with(baseEnv(t), "ODIN_RATE_LIMIT", "0", "WORKER_CONCURRENCY", "0", "LOG_LEVEL", "loud")
	args := []string{"--rate-limit", "3", "--concurrency", "4", "--log-level", "warn"}

	cfg, err := parseConfig(args, mapEnv(env), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("parseConfig rejected environment values that flags replace: %v", err)
	}
	if cfg.RateLimit != 3 {
		t.Errorf("RateLimit = %g, want 3 from --rate-limit", cfg.RateLimit)
	}
	if cfg.Concurrency != 4 {
		t.Errorf("Concurrency = %d, want 4 from --concurrency", cfg.Concurrency)
	}
	if cfg.LogLevel != "warn" {
		t.Errorf("LogLevel = %q, want warn from --log-level", cfg.LogLevel)
	}
}

func TestParseConfigInvalid(t *testing.T) {
	t.Parallel()
	missingFile := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		env  []string // changes to baseEnv: name, value ("" removes it)
		args []string
		want []string
		// notWant must not appear in the error, for example the name of a setting the
		// user did not set.
		notWant []string
		// secret must not appear in the error or the usage output.
		secret string
	}{
		{name: "no Redis", env: []string{"REDIS_URL", ""}, want: []string{"no Redis configured", "REDIS_URL"}},
		{name: "Redis URL scheme", env: []string{"REDIS_URL", "http://:redis-secret@localhost:6379"},
			want: []string{"invalid REDIS_URL", "redis://"}, secret: "redis-secret"},
		{name: "no Odin URL", env: []string{"ODIN_BASE_URL", ""}, want: []string{"--odin-url / ODIN_BASE_URL is missing"}},
		{name: "Odin URL not HTTP", env: []string{"ODIN_BASE_URL", "odin.example.com/api/v2"},
			want: []string{`ODIN_BASE_URL "odin.example.com/api/v2" is invalid`, "https://"}},
		{name: "Odin URL flag not HTTP", args: []string{"--odin-url", "odin.example.com"},
			want: []string{`--odin-url "odin.example.com" is invalid`}, notWant: []string{"ODIN_BASE_URL \""}},
		{name: "Odin URL with credentials", env: []string{"ODIN_BASE_URL", "https://admin:url-secret@odin.example.com/api/v2"},
			want: []string{"ODIN_BASE_URL must not contain credentials", "ODIN_PASSWORD"}, secret: "url-secret"},
		{name: "no Odin user", env: []string{"ODIN_USERNAME", ""}, want: []string{"--odin-username / ODIN_USERNAME is missing"}},
		{name: "no Odin password", env: []string{"ODIN_PASSWORD", ""}, want: []string{"ODIN_PASSWORD is missing", "ODIN_PASSWORD_FILE"}},
		{name: "Odin password twice", env: []string{"ODIN_PASSWORD_FILE", "/run/secrets/odin"},
			want: []string{"both ODIN_PASSWORD and ODIN_PASSWORD_FILE are set"}, secret: "odin-admin-secret"},
		{name: "Odin password file missing", env: []string{"ODIN_PASSWORD", "", "ODIN_PASSWORD_FILE", missingFile},
			want: []string{"read ODIN_PASSWORD_FILE " + missingFile}},
		{name: "Odin password as a flag", args: []string{"--odin-password", "flag-secret"},
			want: []string{"flag provided but not defined: -odin-password"}},
		{name: "rate not a number", env: []string{"ODIN_RATE_LIMIT", "fast"}, want: []string{`ODIN_RATE_LIMIT="fast" is not a number`}},
		{name: "rate zero", env: []string{"ODIN_RATE_LIMIT", "0"}, want: []string{"ODIN_RATE_LIMIT 0 is out of range"}, notWant: []string{"--rate-limit"}},
		{name: "rate flag zero", args: []string{"--rate-limit", "0"},
			want: []string{"--rate-limit 0 is out of range: use requests per second from 0.01 to 10000"}, notWant: []string{"ODIN_RATE_LIMIT"}},
		{name: "rate flag zero over env", env: []string{"ODIN_RATE_LIMIT", "5"}, args: []string{"--rate-limit", "0"},
			want: []string{"--rate-limit 0 is out of range"}, notWant: []string{"ODIN_RATE_LIMIT"}},
		{name: "burst zero", args: []string{"--rate-burst", "0"}, want: []string{"--rate-burst 0 is out of range: use 1 to 1000"}, notWant: []string{"ODIN_RATE_BURST"}},
		{name: "burst env zero", env: []string{"ODIN_RATE_BURST", "0"}, want: []string{"ODIN_RATE_BURST 0 is out of range"}, notWant: []string{"--rate-burst"}},
		{name: "concurrency too high", env: []string{"WORKER_CONCURRENCY", "1001"}, want: []string{"WORKER_CONCURRENCY 1001 is out of range"}},
		{name: "concurrency flag too high", args: []string{"--concurrency", "1001"}, want: []string{"--concurrency 1001 is out of range"}},
		{name: "concurrency not a number", env: []string{"WORKER_CONCURRENCY", "ten"}, want: []string{`WORKER_CONCURRENCY="ten" is not a whole number`}},
		{name: "timeout without unit", env: []string{"ODIN_TIMEOUT", "30"}, want: []string{`ODIN_TIMEOUT="30" is not a duration`, "30s"}},
		{name: "timeout too short", env: []string{"ODIN_TIMEOUT", "500ms"}, want: []string{"ODIN_TIMEOUT 500ms is out of range: use 1s to 10m"}},
		{name: "timeout flag too short", args: []string{"--odin-timeout", "500ms"}, want: []string{"--odin-timeout 500ms is out of range"}},
		{name: "shutdown not above timeout", env: []string{"ODIN_TIMEOUT", "30s", "SHUTDOWN_TIMEOUT", "30s"},
			want: []string{"SHUTDOWN_TIMEOUT 30s must be longer than ODIN_TIMEOUT 30s"}},
		{name: "default shutdown not above timeout", env: []string{"ODIN_TIMEOUT", "1m"},
			want: []string{"--shutdown-timeout / SHUTDOWN_TIMEOUT 40s must be longer than ODIN_TIMEOUT 1m0s"}},
		{name: "shutdown not above timeout flag", env: []string{"SHUTDOWN_TIMEOUT", "40s"}, args: []string{"--odin-timeout", "45s"},
			want: []string{"SHUTDOWN_TIMEOUT 40s must be longer than --odin-timeout 45s"}},
		{name: "cooldown too long", env: []string{"ODIN_LOGIN_COOLDOWN", "2h"}, want: []string{"ODIN_LOGIN_COOLDOWN 2h0m0s is out of range"}},
		{name: "cooldown flag too long", args: []string{"--login-cooldown", "2h"}, want: []string{"--login-cooldown 2h0m0s is out of range"}},
		{name: "sweep interval too short", env: []string{"SWEEP_INTERVAL", "100ms"}, want: []string{"SWEEP_INTERVAL 100ms is out of range: use 1s to 1h"}},
		{name: "sweep interval flag too short", args: []string{"--sweep-interval", "100ms"}, want: []string{"--sweep-interval 100ms is out of range"}},
		{name: "stall too short", args: []string{"--stall-after", "5s"}, want: []string{"--stall-after 5s is out of range: use 10s to 24h"}, notWant: []string{"STALL_AFTER"}},
		{name: "stall env too short", env: []string{"STALL_AFTER", "5s"}, want: []string{"STALL_AFTER 5s is out of range"}},
		{name: "plaintext not a boolean", env: []string{"INSECURE_PLAINTEXT_RESULTS", "maybe"},
			want: []string{`INSECURE_PLAINTEXT_RESULTS="maybe" is not a boolean`}},
		{name: "log level", env: []string{"LOG_LEVEL", "trace"}, want: []string{`LOG_LEVEL "trace" is invalid: use debug, info, warn or error`}},
		{name: "log level flag", args: []string{"--log-level", "trace"}, want: []string{`--log-level "trace" is invalid`}},
		{name: "log format", args: []string{"--log-format", "xml"}, want: []string{`--log-format "xml" is invalid`}, notWant: []string{"LOG_FORMAT"}},
		{name: "log format env", env: []string{"LOG_FORMAT", "xml"}, want: []string{`LOG_FORMAT "xml" is invalid`}},
		{name: "HTTP address without port", env: []string{"HTTP_ADDR", "8080"}, want: []string{`HTTP_ADDR "8080" is invalid`, "host:port"}},
		{name: "HTTP address flag without port", args: []string{"--http-addr", "8080"}, want: []string{`--http-addr "8080" is invalid`}},
		{name: "dashboard user without password", env: []string{"MONITORING_USER", "ops"},
			want: []string{"set both MONITORING_USER and MONITORING_PASSWORD"}},
		{name: "dashboard password without user", env: []string{"MONITORING_PASSWORD", "dash-secret"},
			want: []string{"set both --monitoring-user / MONITORING_USER and MONITORING_PASSWORD"}, secret: "dash-secret"},
		{name: "dashboard user flag without password", args: []string{"--monitoring-user", "ops"},
			want: []string{"set both --monitoring-user and MONITORING_PASSWORD"}},
		{name: "argument", args: []string{"start"}, want: []string{`unexpected argument "start": the worker takes only flags`}},
		{name: "demo type", args: []string{"--demo", "--demo-type", "fax"}, want: []string{`--demo-type "fax" is invalid`}},
		{name: "demo users", args: []string{"--demo", "--demo-users", "0"}, want: []string{"--demo-users 0 is out of range"}},
		{name: "every problem at once", env: []string{"ODIN_USERNAME", "", "LOG_LEVEL", "loud", "WORKER_CONCURRENCY", "0"},
			want: []string{"ODIN_USERNAME is missing", `LOG_LEVEL "loud"`, "WORKER_CONCURRENCY 0"}},
		{name: "every problem at once from flags", args: []string{"--odin-username", "", "--log-level", "loud", "--concurrency", "0"},
			want: []string{"--odin-username is missing", `--log-level "loud"`, "--concurrency 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var usage bytes.Buffer
			_, err := parseConfig(tt.args, mapEnv(with(baseEnv(t), tt.env...)), &usage)
			if err == nil {
				t.Fatal("parseConfig accepted the configuration, want an error")
			}
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("error is %T, want *usageError so the worker exits with status 2", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			for _, notWant := range tt.notWant {
				if strings.Contains(err.Error(), notWant) {
					t.Errorf("error contains %q:\n%v", notWant, err)
				}
			}
			if tt.secret != "" && strings.Contains(err.Error()+usage.String(), tt.secret) {
				t.Errorf("the error or usage output contains the secret %q", tt.secret)
			}
		})
	}
}

func TestRunWithoutResultsKey(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--http-addr="}, mapEnv(baseEnv(t)), &bytes.Buffer{}, &stderr)

	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("run without RESULTS_KEY returned %v, want a *usageError (exit status 2)", err)
	}
	for _, want := range []string{"no results key", "RESULTS_KEY", "RESULTS_KEY_FILE", "openssl rand -base64 32", "--insecure-plaintext-results"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	// The check comes first: the worker gave up before it connected anywhere.
	if strings.Contains(err.Error(), "Redis") {
		t.Errorf("the worker reached Redis before it checked the key: %v", err)
	}
}

func TestRunInvalidResultsKey(t *testing.T) {
	t.Parallel()
	const badKey = "c2hvcnQta2V5LW1hdGVyaWFs" // base64 of 18 bytes
	env := with(baseEnv(t), "RESULTS_KEY", badKey)
	err := run(context.Background(), []string{"--http-addr="}, mapEnv(env), &bytes.Buffer{}, &bytes.Buffer{})
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "RESULTS_KEY: invalid results key: 18 bytes") {
		t.Fatalf("run with a short key returned %v, want a usage error naming RESULTS_KEY and the length", err)
	}
	if strings.Contains(err.Error(), badKey) {
		t.Errorf("the error contains the key: %v", err)
	}
}

func TestRunPlaintextWarns(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	env := with(baseEnv(t), "LOG_FORMAT", "json")
	err := run(context.Background(), []string{"--insecure-plaintext-results", "--http-addr="}, mapEnv(env), &bytes.Buffer{}, &stderr)

	// The socket does not exist, so the worker gets as far as Redis and stops there.
	if err == nil || !strings.Contains(err.Error(), "Redis") {
		t.Errorf("run returned %v, want the Redis connection error that follows the key check", err)
	}
	line := findLogLine(t, stderr.String(), "RESULTS_KEY is not set and --insecure-plaintext-results is on: new passwords are stored UNENCRYPTED in Redis")
	if line == nil {
		t.Fatalf("no warning about plaintext results in the log:\n%s", stderr.String())
	}
	if line["level"] != "warn" {
		t.Errorf("plaintext warning has level %v, want warn", line["level"])
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
		env     []string
		args    []string
		setting string
	}{
		{name: "environment", env: []string{"REDIS_URL", url}, setting: "REDIS_URL"},
		{name: "flag", args: []string{"--redis-url", url}, setting: "--redis-url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := with(baseEnv(t), append([]string{"INSECURE_PLAINTEXT_RESULTS", "true", "LOG_FORMAT", "json"}, tc.env...)...)
			err := run(context.Background(), append([]string{"--http-addr="}, tc.args...), mapEnv(env), &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil {
				t.Fatal("run started the worker on a database the server does not have")
			}
			for _, want := range []string{
				"has " + strconv.Itoa(count) + " databases, 0 to " + last + ", so database " + strconv.Itoa(count) + " does not exist",
				"set a database number from 0 to " + last + " in " + tc.setting,
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q: %v", want, err)
				}
			}
			if strings.Contains(err.Error(), "cannot reach Redis") {
				t.Errorf("error calls a running server unreachable: %v", err)
			}
		})
	}
}

func TestRunPlaintextStarts(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	rd := testredis.New(t)
	sim, err := odintest.NewServer(odintest.Config{Users: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	user, password := sim.Login()
	env := map[string]string{
		"REDIS_URL": rd.URL, "ODIN_BASE_URL": sim.URL, "ODIN_USERNAME": user, "ODIN_PASSWORD": password,
		"INSECURE_PLAINTEXT_RESULTS": "true", "LOG_FORMAT": "json", "ODIN_TIMEOUT": "1s", "SHUTDOWN_TIMEOUT": "2s",
	}

	logs := newLogRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--http-addr="}, mapEnv(env), &bytes.Buffer{}, logs) }()
	logs.waitFor(t, "worker started", done, 20*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancellation, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return within 20s of cancellation")
	}
	if line := findLogLine(t, logs.String(), "RESULTS_KEY is not set and --insecure-plaintext-results is on: new passwords are stored UNENCRYPTED in Redis"); line == nil {
		t.Errorf("the worker started in plaintext mode without a warning:\n%s", logs.String())
	}
}

func TestDemoMakesEphemeralKey(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	// No RESULTS_KEY and no --insecure-plaintext-results: a real worker exits with a usage
	// error, but the demo makes a key of its own.
	err := run(context.Background(), []string{"--demo", "--demo-users", "5", "--demo-type", "web"}, mapEnv(nil), &stdout, &stderr)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "UNENCRYPTED") {
		t.Errorf("the demo stores results unencrypted:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "DEMO: verified: all 5 values in the result equal the simulator's") {
		t.Errorf("the demo did not verify its results:\n%s", stderr.String())
	}
	var rows []results.Row
	if err := json.Unmarshal(stdout.Bytes(), &rows); err != nil {
		t.Fatalf("demo output is not the result JSON: %v\n%s", err, stdout.String())
	}
	if len(rows) != 5 {
		t.Fatalf("demo printed %d rows, want 5", len(rows))
	}
	for _, row := range rows {
		if row.NewPassword == "" || row.Error != "" {
			t.Errorf("row %+v, want a new password and no error", row.UserID)
		}
	}
}

// findLogLine returns the first JSON log line in logs with message, or nil.
func findLogLine(t *testing.T, logs, message string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["message"] == message {
			return entry
		}
	}
	return nil
}

// TestParseConfigHTTPAddrOff checks the ways to turn the HTTP server off, and that an
// empty HTTP_ADDR means the default, as an unset variable does.
func TestParseConfigHTTPAddrOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "env off", env: with(baseEnv(t), "HTTP_ADDR", "off"), want: ""},
		{name: "env OFF", env: with(baseEnv(t), "HTTP_ADDR", " OFF "), want: ""},
		{name: "env empty", env: with(baseEnv(t), "HTTP_ADDR", ""), want: "127.0.0.1:8080"},
		{name: "flag off", env: baseEnv(t), args: []string{"--http-addr", "off"}, want: ""},
		{name: "flag empty", env: baseEnv(t), args: []string{"--http-addr="}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, mapEnv(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if cfg.HTTPAddr != tt.want {
				t.Errorf("HTTPAddr = %q, want %q", cfg.HTTPAddr, tt.want)
			}
		})
	}
}
