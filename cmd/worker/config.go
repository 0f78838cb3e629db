package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/secrets"
)

// Config is every setting of the worker. Each has an environment variable and a flag
// (the flag wins); secrets have only environment variables, because flags show in `ps`.
type Config struct {
	// Redis selects the Redis deployment: REDIS_URL, or REDIS_SENTINEL_ADDRS with
	// REDIS_SENTINEL_MASTER, or REDIS_CLUSTER_ADDRS (see redisconn.FromEnv).
	Redis redisconn.Config
	// redisURLFromFlag is true when --redis-url set Redis.URL, so messages name the flag.
	redisURLFromFlag bool
	// OdinBaseURL is Odin's API root, like https://odin.example.com/api/v2.
	OdinBaseURL string
	// OdinUsername logs in to Odin; the password comes from ODIN_PASSWORD or
	// ODIN_PASSWORD_FILE.
	OdinUsername string
	odinPassword string
	// odinPasswordReported is true when reading the password failed with its own error.
	odinPasswordReported bool
	// OdinTimeout bounds one Odin request. Default 30s.
	OdinTimeout time.Duration
	// RateLimit is the fleet-wide Odin request rate in requests per second, shared by
	// every worker on the same Redis. Default 5, the rate the original Python library used.
	RateLimit float64
	// RateBurst is how many requests may go out back to back. Default 1.
	RateBurst int
	// Concurrency is how many tasks this process runs at once for batch jobs, and again
	// for urgent (high-priority) jobs. Default 20.
	Concurrency int
	// ShutdownTimeout is how long SIGTERM lets running tasks finish. Default 40s, more
	// than OdinTimeout so an in-flight Odin call can complete and be recorded.
	ShutdownTimeout time.Duration
	// LoginCooldown is how long every worker stops calling Odin after a failed login.
	// Default 60s.
	LoginCooldown time.Duration
	// SweepInterval is how often the fleet looks for stalled jobs. Default 1m.
	SweepInterval time.Duration
	// StallAfter is how long a running job may go without progress before the sweeper
	// inspects its tasks. Default 3m, longer than asynq's crash recovery of 1 to 2 minutes.
	StallAfter time.Duration
	// InsecurePlaintextResults stores new secrets unencrypted when no results key is set.
	InsecurePlaintextResults bool
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// LogFormat is json, console, or auto (console on a terminal, json otherwise).
	LogFormat string
	// HTTPAddr serves /healthz, /readyz, /metrics and /monitoring. Default
	// 127.0.0.1:8080; empty disables the HTTP server.
	HTTPAddr string
	// MonitoringUser and the password from MONITORING_PASSWORD(_FILE) protect the
	// embedded asynqmon dashboard; without them it is off.
	MonitoringUser     string
	monitoringPassword string
	// MonitoringWritable lets dashboard users delete, retry and cancel tasks.
	MonitoringWritable bool
	// Demo runs the embedded demonstration and exits.
	Demo bool
	// DemoType is the credential type of the demo: sip, voicemail, web. Default sip.
	DemoType string
	// DemoUsers is the number of users in the demo group. Default 25.
	DemoUsers int
}

// parseConfig reads the environment, then the flags, and validates the result.
func parseConfig(args []string, getenv secrets.Getenv, stderr io.Writer) (Config, error) {
	c := Config{
		OdinBaseURL:     getenv("ODIN_BASE_URL"),
		OdinUsername:    getenv("ODIN_USERNAME"),
		OdinTimeout:     30 * time.Second,
		RateLimit:       5,
		RateBurst:       1,
		Concurrency:     20,
		ShutdownTimeout: 40 * time.Second,
		LoginCooldown:   time.Minute,
		SweepInterval:   time.Minute,
		StallAfter:      3 * time.Minute,
		LogLevel:        orDefault(getenv("LOG_LEVEL"), "info"),
		LogFormat:       orDefault(getenv("LOG_FORMAT"), "auto"),
		HTTPAddr:        httpAddrFromEnv(getenv("HTTP_ADDR")),
		MonitoringUser:  getenv("MONITORING_USER"),
		DemoType:        "sip",
		DemoUsers:       25,
	}
	var problems []string
	envFloat(getenv, "ODIN_RATE_LIMIT", &c.RateLimit, &problems)
	envInt(getenv, "ODIN_RATE_BURST", &c.RateBurst, &problems)
	envInt(getenv, "WORKER_CONCURRENCY", &c.Concurrency, &problems)
	envDuration(getenv, "ODIN_TIMEOUT", &c.OdinTimeout, &problems)
	envDuration(getenv, "SHUTDOWN_TIMEOUT", &c.ShutdownTimeout, &problems)
	envDuration(getenv, "ODIN_LOGIN_COOLDOWN", &c.LoginCooldown, &problems)
	envDuration(getenv, "SWEEP_INTERVAL", &c.SweepInterval, &problems)
	envDuration(getenv, "STALL_AFTER", &c.StallAfter, &problems)
	envBool(getenv, "INSECURE_PLAINTEXT_RESULTS", &c.InsecurePlaintextResults, &problems)
	envBool(getenv, "MONITORING_WRITABLE", &c.MonitoringWritable, &problems)

	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(fs, stderr) }
	var redisURL string
	fs.StringVar(&redisURL, "redis-url", "", "Redis URL, redis://[user:password@]host:port/db or rediss://; wins over every REDIS_* deployment variable (env REDIS_URL)")
	fs.StringVar(&c.OdinBaseURL, "odin-url", c.OdinBaseURL, "Odin API base URL, like https://odin.example.com/api/v2 (env ODIN_BASE_URL)")
	fs.StringVar(&c.OdinUsername, "odin-username", c.OdinUsername, "Odin admin user name (env ODIN_USERNAME); the password comes only from ODIN_PASSWORD or ODIN_PASSWORD_FILE")
	fs.DurationVar(&c.OdinTimeout, "odin-timeout", c.OdinTimeout, "timeout of one Odin request (env ODIN_TIMEOUT)")
	fs.Float64Var(&c.RateLimit, "rate-limit", c.RateLimit, "Odin requests per second for the whole fleet of workers (env ODIN_RATE_LIMIT)")
	fs.IntVar(&c.RateBurst, "rate-burst", c.RateBurst, "Odin requests that may go out back to back (env ODIN_RATE_BURST)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "tasks this process runs at once, for batch jobs and again for high-priority jobs (env WORKER_CONCURRENCY)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "time running tasks get to finish on SIGTERM (env SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.LoginCooldown, "login-cooldown", c.LoginCooldown, "pause of every worker after a failed Odin login, doubled for each further one in a row up to 15m (env ODIN_LOGIN_COOLDOWN)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", c.SweepInterval, "how often the fleet looks for stalled jobs (env SWEEP_INTERVAL)")
	fs.DurationVar(&c.StallAfter, "stall-after", c.StallAfter, "time without progress after which the sweeper repairs a running job's lost tasks (env STALL_AFTER)")
	fs.BoolVar(&c.InsecurePlaintextResults, "insecure-plaintext-results", c.InsecurePlaintextResults, "store new secrets unencrypted when RESULTS_KEY is not set (env INSECURE_PLAINTEXT_RESULTS)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "json, console, or auto: console on a terminal (env LOG_FORMAT)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "address of /healthz, /readyz, /metrics and /monitoring; off or empty to disable (env HTTP_ADDR, where off disables)")
	fs.StringVar(&c.MonitoringUser, "monitoring-user", c.MonitoringUser, "user name for the /monitoring dashboard (env MONITORING_USER; password from MONITORING_PASSWORD or _FILE)")
	fs.BoolVar(&c.MonitoringWritable, "monitoring-writable", c.MonitoringWritable, "let dashboard users delete, retry and cancel tasks (env MONITORING_WRITABLE)")
	fs.BoolVar(&c.Demo, "demo", false, "run a demonstration reset against an embedded Redis and Odin simulator, print the result JSON and exit")
	fs.StringVar(&c.DemoType, "demo-type", c.DemoType, "credential type of the demo: sip, voicemail or web")
	fs.IntVar(&c.DemoUsers, "demo-users", c.DemoUsers, "number of users in the demo group")
	if err := fs.Parse(args); err != nil {
		return Config{}, &usageError{err}
	}
	if fs.NArg() > 0 {
		return Config{}, &usageError{fmt.Errorf("unexpected argument %q: the worker takes only flags", fs.Arg(0))}
	}
	if strings.EqualFold(strings.TrimSpace(c.HTTPAddr), "off") {
		c.HTTPAddr = ""
	}

	var err error
	if c.odinPassword, _, err = secrets.FromEnvOrFile(getenv, "ODIN_PASSWORD"); err != nil {
		problems = append(problems, err.Error())
		c.odinPasswordReported = true // so validate does not add a wrong "missing"
	}
	if !c.Demo {
		if c.Redis, err = redisconn.FromEnv(getenv, redisURL); err != nil {
			problems = append(problems, err.Error())
		}
		c.redisURLFromFlag = redisURL != ""
	}
	if c.monitoringPassword, _, err = secrets.FromEnvOrFile(getenv, "MONITORING_PASSWORD"); err != nil {
		problems = append(problems, err.Error())
	}

	setFlags := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setFlags[f.Name] = true })
	problems = append(problems, c.validate(settingNames{flags: setFlags, getenv: getenv})...)
	if len(problems) > 0 {
		return Config{}, &usageError{errors.New("invalid configuration:\n  - " + strings.Join(problems, "\n  - "))}
	}
	return c, nil
}

// settingNames names a setting in problem messages after where its value came from.
type settingNames struct {
	// flags contains the names, without dashes, of the flags on the command line.
	flags  map[string]bool
	getenv secrets.Getenv
}

// of returns the flag's name when the command line sets it, because the flag wins, and
// the environment variable's name when only that is set. A default value or a missing
// setting gets both names, since either place can fix it.
func (n settingNames) of(flagName, envName string) string {
	if n.flags[flagName] {
		return "--" + flagName
	}
	if n.getenv != nil && n.getenv(envName) != "" {
		return envName
	}
	return "--" + flagName + " / " + envName
}

// httpAddrFromEnv returns the HTTP address that HTTP_ADDR sets: the default
// 127.0.0.1:8080 when it is unset or empty, because an empty variable usually means
// unset, and "" (no HTTP server) for "off".
func httpAddrFromEnv(v string) string {
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return ""
	}
	return orDefault(v, "127.0.0.1:8080")
}

// validate returns one problem per bad setting, each naming the setting as names does
// and the fix.
func (c Config) validate(names settingNames) []string {
	var p []string
	if c.Demo {
		switch strings.ToLower(c.DemoType) {
		case "sip", "voicemail", "vm", "web":
		default:
			p = append(p, fmt.Sprintf("--demo-type %q is invalid: use sip, voicemail or web", c.DemoType))
		}
		if c.DemoUsers < 1 || c.DemoUsers > 10000 {
			p = append(p, fmt.Sprintf("--demo-users %d is out of range: use 1 to 10000", c.DemoUsers))
		}
	} else {
		if c.OdinBaseURL == "" {
			p = append(p, names.of("odin-url", "ODIN_BASE_URL")+" is missing: set it to Odin's API root, like https://odin.example.com/api/v2")
		} else if u, err := url.Parse(c.OdinBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p = append(p, fmt.Sprintf("%s %q is invalid: use an absolute http:// or https:// URL like https://odin.example.com/api/v2",
				names.of("odin-url", "ODIN_BASE_URL"), c.OdinBaseURL))
		} else if u.User != nil {
			p = append(p, names.of("odin-url", "ODIN_BASE_URL")+" must not contain credentials: set ODIN_USERNAME and ODIN_PASSWORD instead")
		}
		if c.OdinUsername == "" {
			p = append(p, names.of("odin-username", "ODIN_USERNAME")+" is missing: set it to the Odin admin user name")
		}
		if c.odinPassword == "" && !c.odinPasswordReported {
			p = append(p, "ODIN_PASSWORD is missing: set ODIN_PASSWORD or ODIN_PASSWORD_FILE (a file holding only the password)")
		}
	}
	if c.RateLimit <= 0 || c.RateLimit > 10000 {
		p = append(p, fmt.Sprintf("%s %g is out of range: use requests per second from 0.01 to 10000", names.of("rate-limit", "ODIN_RATE_LIMIT"), c.RateLimit))
	}
	if c.RateBurst < 1 || c.RateBurst > 1000 {
		p = append(p, fmt.Sprintf("%s %d is out of range: use 1 to 1000", names.of("rate-burst", "ODIN_RATE_BURST"), c.RateBurst))
	}
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		p = append(p, fmt.Sprintf("%s %d is out of range: use 1 to 1000", names.of("concurrency", "WORKER_CONCURRENCY"), c.Concurrency))
	}
	if c.OdinTimeout < time.Second || c.OdinTimeout > 10*time.Minute {
		p = append(p, fmt.Sprintf("%s %s is out of range: use 1s to 10m", names.of("odin-timeout", "ODIN_TIMEOUT"), c.OdinTimeout))
	}
	if c.ShutdownTimeout <= c.OdinTimeout {
		p = append(p, fmt.Sprintf("%s %s must be longer than %s %s, so an Odin call in flight at shutdown can finish and be recorded",
			names.of("shutdown-timeout", "SHUTDOWN_TIMEOUT"), c.ShutdownTimeout, names.of("odin-timeout", "ODIN_TIMEOUT"), c.OdinTimeout))
	}
	if c.LoginCooldown < time.Second || c.LoginCooldown > time.Hour {
		p = append(p, fmt.Sprintf("%s %s is out of range: use 1s to 1h", names.of("login-cooldown", "ODIN_LOGIN_COOLDOWN"), c.LoginCooldown))
	}
	if c.SweepInterval < time.Second || c.SweepInterval > time.Hour {
		p = append(p, fmt.Sprintf("%s %s is out of range: use 1s to 1h", names.of("sweep-interval", "SWEEP_INTERVAL"), c.SweepInterval))
	}
	if c.StallAfter < 10*time.Second || c.StallAfter > 24*time.Hour {
		p = append(p, fmt.Sprintf("%s %s is out of range: use 10s to 24h", names.of("stall-after", "STALL_AFTER"), c.StallAfter))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p = append(p, fmt.Sprintf("%s %q is invalid: use debug, info, warn or error", names.of("log-level", "LOG_LEVEL"), c.LogLevel))
	}
	switch c.LogFormat {
	case "json", "console", "auto":
	default:
		p = append(p, fmt.Sprintf("%s %q is invalid: use json, console or auto", names.of("log-format", "LOG_FORMAT"), c.LogFormat))
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			p = append(p, fmt.Sprintf("%s %q is invalid: use host:port, like 127.0.0.1:8080 or :8080", names.of("http-addr", "HTTP_ADDR"), c.HTTPAddr))
		}
	}
	if (c.MonitoringUser == "") != (c.monitoringPassword == "") {
		p = append(p, "set both "+names.of("monitoring-user", "MONITORING_USER")+" and MONITORING_PASSWORD (or MONITORING_PASSWORD_FILE) to turn the dashboard on, or neither")
	}
	return p
}

// usageError marks errors that exit with status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `worker runs bulk credential resets of BroadWorks users through the Odin API.

Usage:
  worker [flags]          run a worker (configuration from environment variables and flags)
  worker --demo           run a demonstration against an embedded Redis and Odin simulator

Secrets come only from the environment: ODIN_PASSWORD or ODIN_PASSWORD_FILE,
RESULTS_KEY or RESULTS_KEY_FILE (and RESULTS_KEY_PREVIOUS when rotating),
REDIS_PASSWORD(_FILE), REDIS_SENTINEL_PASSWORD(_FILE), MONITORING_PASSWORD(_FILE).

Examples:
  go run ./cmd/worker --demo
  REDIS_URL=redis://127.0.0.1:6379/0 ODIN_BASE_URL=https://odin.example.com/api/v2 \
    ODIN_USERNAME=admin ODIN_PASSWORD_FILE=/run/secrets/odin RESULTS_KEY_FILE=/run/secrets/results-key \
    worker --concurrency 20 --rate-limit 5

Flags:
`)
	fs.PrintDefaults()
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func envInt(getenv secrets.Getenv, name string, dst *int, problems *[]string) {
	if v := getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("%s=%q is not a whole number", name, v))
			return
		}
		*dst = n
	}
}

func envFloat(getenv secrets.Getenv, name string, dst *float64, problems *[]string) {
	if v := getenv(name); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("%s=%q is not a number", name, v))
			return
		}
		*dst = f
	}
}

func envDuration(getenv secrets.Getenv, name string, dst *time.Duration, problems *[]string) {
	if v := getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("%s=%q is not a duration: use a form like 30s, 5m or 1h", name, v))
			return
		}
		*dst = d
	}
}

func envBool(getenv secrets.Getenv, name string, dst *bool, problems *[]string) {
	if v := getenv(name); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("%s=%q is not a boolean: use true or false", name, v))
			return
		}
		*dst = b
	}
}
