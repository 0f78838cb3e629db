package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/odin/odintest"
)

// redisServer is a dedicated redis-server on loopback, without persistence.
type redisServer struct {
	proc   *proc
	addr   string
	url    string
	client *redis.Client
}

// startRedis starts redis-server on the first free port of ports. The server keeps its
// data in memory only and evicts nothing, as the worker requires.
func startRedis(ctx context.Context, dir string, ports []int) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found in PATH: install Redis 6.2 or later (apt-get install redis-server)")
	}

	// When every port of the range is taken, one ephemeral loopback port is tried.
	var candidates []int
	for _, port := range ports {
		if portFree(port) {
			candidates = append(candidates, port)
		}
	}
	if len(candidates) == 0 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		candidates = append(candidates, port)
	}

	var lastErr error
	for _, port := range candidates {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
			"--dir", dir, "--daemonize", "no", "--loglevel", "warning",
		}
		p, err := startProc("redis-server", dir, bin, args, nil)
		if err != nil {
			return nil, err
		}
		client := redis.NewClient(&redis.Options{Addr: addr})
		err = waitFor(ctx, p, 10*time.Second, "PING", func() bool {
			return client.Ping(ctx).Err() == nil
		})
		if err == nil {
			return &redisServer{proc: p, addr: addr, url: "redis://" + addr + "/0", client: client}, nil
		}
		client.Close()
		p.stop(5 * time.Second)
		lastErr = err
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func (r *redisServer) stop() {
	if r == nil {
		return
	}
	r.client.Close()
	r.proc.stop(10 * time.Second)
}

// asynqOpt returns the asynq connection to the server.
func (r *redisServer) asynqOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: r.addr}
}

// usedMemory returns INFO memory's used_memory: the bytes Redis has allocated for data.
func (r *redisServer) usedMemory(ctx context.Context) (int64, error) {
	info, err := r.client.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("read Redis memory: %w", err)
	}
	v, ok := infoField(info, "used_memory")
	if !ok {
		return 0, errors.New("read Redis memory: INFO memory has no used_memory")
	}
	return strconv.ParseInt(v, 10, 64)
}

// version returns the server's redis_version.
func (r *redisServer) version(ctx context.Context) string {
	info, err := r.client.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	v, _ := infoField(info, "redis_version")
	return v
}

// infoField returns one "name:value" line of an INFO reply.
func infoField(info, name string) (string, bool) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v, true
		}
	}
	return "", false
}

// simServer is cmd/odin-sim running as a process.
type simServer struct {
	proc *proc
	// url is the API base URL the workers use; root serves /_sim/.
	url  string
	root string
	http *http.Client
}

// simConfig is the simulator configuration of a scenario.
type simConfig struct {
	users             int
	latency           time.Duration
	rateLimit         float64 // requests per second before 429; 0 for none
	sipGeneratorLimit bool
}

// startSim starts cmd/odin-sim on a free loopback port with the default admin login
// (admin / odin-sim-password), retrying on another port when the first was taken.
func startSim(ctx context.Context, bin, dir string, cfg simConfig) (*simServer, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args := []string{
			"--addr", addr,
			"--users", strconv.Itoa(cfg.users),
			"--latency", cfg.latency.String(),
			"--rate-limit", strconv.FormatFloat(cfg.rateLimit, 'f', -1, 64),
			"--max-generate-limit", "1000",
		}
		if cfg.sipGeneratorLimit {
			args = append(args, "--sip-generator-limit")
		}
		p, err := startProc("odin-sim", dir, bin, args, []string{"ODIN_SIM_PASSWORD=" + simPassword})
		if err != nil {
			return nil, err
		}
		s := &simServer{
			proc: p, url: "http://" + addr + "/api/v2", root: "http://" + addr,
			http: &http.Client{Timeout: time.Minute},
		}
		err = waitFor(ctx, p, 30*time.Second, "GET /_sim/stats", func() bool {
			_, err := s.stats(ctx)
			return err == nil
		})
		if err == nil {
			return s, nil
		}
		p.stop(5 * time.Second)
		lastErr = err
	}
	return nil, fmt.Errorf("start odin-sim: %w", lastErr)
}

// The simulator's admin login, which the workers and the sequential baseline use.
const (
	simUsername = "admin"
	simPassword = "odin-sim-password"
)

func (s *simServer) stop() {
	if s != nil {
		s.proc.stop(10 * time.Second)
	}
}

// stats returns GET /_sim/stats: API requests by endpoint, the highest one-second count
// and the 429s since the last resetStats.
func (s *simServer) stats(ctx context.Context) (odintest.Stats, error) {
	var st odintest.Stats
	err := s.do(ctx, http.MethodGet, "/_sim/stats", &st)
	return st, err
}

// resetStats zeroes the simulator's counters, including the one-second maximum.
func (s *simServer) resetStats(ctx context.Context) error {
	return s.do(ctx, http.MethodPost, "/_sim/reset-stats", nil)
}

// credentials returns every value set so far, by user ID and kind.
func (s *simServer) credentials(ctx context.Context) (map[string]map[odintest.Kind]odintest.Credential, error) {
	var creds map[string]map[odintest.Kind]odintest.Credential
	err := s.do(ctx, http.MethodGet, "/_sim/credentials", &creds)
	return creds, err
}

func (s *simServer) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.root+path, nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("simulator %s %s: status %s: %s", method, path, resp.Status, body)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("simulator %s %s: decode: %w", method, path, err)
	}
	return nil
}

// workerConfig is the environment of each worker process.
type workerConfig struct {
	redisURL    string
	odinURL     string
	resultsKey  string // base64 AES-256 key
	rateLimit   float64
	concurrency int
	// extraEnv is added to every worker's environment, for experiments such as
	// GOMAXPROCS=1.
	extraEnv []string
}

// startWorkers starts n cmd/worker processes and waits until each has registered both
// its asynq servers (urgent and batch) in Redis.
func startWorkers(ctx context.Context, bin, dir string, n int, cfg workerConfig, rs *redisServer) ([]*proc, error) {
	env := []string{
		"REDIS_URL=" + cfg.redisURL,
		"ODIN_BASE_URL=" + cfg.odinURL,
		"ODIN_USERNAME=" + simUsername,
		"ODIN_PASSWORD=" + simPassword,
		"RESULTS_KEY=" + cfg.resultsKey,
		"ODIN_RATE_LIMIT=" + strconv.FormatFloat(cfg.rateLimit, 'f', -1, 64),
		"WORKER_CONCURRENCY=" + strconv.Itoa(cfg.concurrency),
		"LOG_LEVEL=warn",
		"LOG_FORMAT=json",
	}
	env = append(env, cfg.extraEnv...)
	// An empty HTTP address turns the endpoints off; the environment variable cannot,
	// because an empty HTTP_ADDR means the default address.
	args := []string{"--http-addr="}

	workers := make([]*proc, 0, n)
	for i := range n {
		p, err := startProc(fmt.Sprintf("worker-%d", i+1), dir, bin, args, env)
		if err != nil {
			stopAll(workers)
			return nil, err
		}
		workers = append(workers, p)
	}

	inspector := asynq.NewInspector(rs.asynqOpt())
	defer inspector.Close()
	for _, p := range workers {
		err := waitFor(ctx, p, 30*time.Second, "registration of both asynq servers", func() bool {
			servers, err := inspector.Servers()
			if err != nil {
				return false
			}
			registered := 0
			for _, s := range servers {
				if s.PID == p.pid() {
					registered++
				}
			}
			return registered == 2
		})
		if err != nil {
			stopAll(workers)
			return nil, err
		}
	}
	return workers, nil
}

// stopAll stops processes in parallel; workers finish running tasks first.
func stopAll(procs []*proc) {
	done := make(chan struct{}, len(procs))
	for _, p := range procs {
		go func() {
			p.stop(60 * time.Second)
			done <- struct{}{}
		}()
	}
	for range procs {
		<-done
	}
}

// buildBinaries builds cmd/worker, cmd/odin-sim and cmd/enqueue into dir. A failed
// build of cmd/enqueue is returned apart, so the harness can submit through the library.
func buildBinaries(ctx context.Context, dir string) (enqueueErr error, err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"worker", "odin-sim", "enqueue"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = root
		out, buildErr := cmd.CombinedOutput()
		if buildErr == nil {
			continue
		}
		buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, buildErr, strings.TrimSpace(string(out)))
		if name == "enqueue" {
			return buildErr, nil
		}
		return nil, buildErr
	}
	return nil, nil
}

// moduleRoot returns the directory of this module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the odinreset module: run bench from the repository")
	}
	return filepath.Dir(gomod), nil
}

// commandStat is one line of INFO commandstats.
type commandStat struct {
	Command string  `json:"command"`
	Calls   int64   `json:"calls"`
	Usec    int64   `json:"usec"`
	PerCall float64 `json:"usecPerCall"`
}

// resetStats zeroes INFO commandstats and the slow log before a measurement.
func (r *redisServer) resetStats(ctx context.Context) error {
	if err := r.client.ConfigResetStat(ctx).Err(); err != nil {
		return fmt.Errorf("reset Redis statistics: %w", err)
	}
	if err := r.client.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		return fmt.Errorf("reset the Redis slow log: %w", err)
	}
	return nil
}

// commandStats returns INFO commandstats, the commands that used the most server time
// first.
func (r *redisServer) commandStats(ctx context.Context) ([]commandStat, error) {
	info, err := r.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("read Redis command statistics: %w", err)
	}
	var stats []commandStat
	for line := range strings.SplitSeq(info, "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		command, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat {
			continue
		}
		st := commandStat{Command: command}
		for field := range strings.SplitSeq(fields, ",") {
			key, value, _ := strings.Cut(field, "=")
			switch key {
			case "calls":
				st.Calls, _ = strconv.ParseInt(value, 10, 64)
			case "usec":
				st.Usec, _ = strconv.ParseInt(value, 10, 64)
			case "usec_per_call":
				st.PerCall, _ = strconv.ParseFloat(value, 64)
			}
		}
		stats = append(stats, st)
	}
	slices.SortFunc(stats, func(a, b commandStat) int { return cmp.Compare(b.Usec, a.Usec) })
	return stats, nil
}

// slowLogLength returns the number of slow log entries: commands that ran longer than
// slowlog-log-slower-than, 10 ms by default.
func (r *redisServer) slowLogLength(ctx context.Context) (int64, error) {
	n, err := r.client.Do(ctx, "SLOWLOG", "LEN").Int64()
	if err != nil {
		return 0, fmt.Errorf("read the Redis slow log: %w", err)
	}
	return n, nil
}
