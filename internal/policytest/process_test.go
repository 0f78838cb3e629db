package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin/odintest"
)

// moduleRoot is the module directory relative to this package.
const moduleRoot = "../.."

// simPassword is the admin password of the simulator processes.
const simPassword = "policytest-odin-password"

// binDir holds the binaries built for this test run; TestMain creates and removes it.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	raiseParallel()
	os.Exit(runTests(m))
}

// minParallel is the number of parallel tests this package runs at least. Its parallel
// tests spend their time waiting for timers, Redis and other processes, not on the CPU,
// so the default of GOMAXPROCS would only serialize them.
const minParallel = 8

// raiseParallel raises -test.parallel to minParallel unless the command line set it.
func raiseParallel() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if set {
		return
	}
	if current, err := strconv.Atoi(flag.Lookup("test.parallel").Value.String()); err == nil && current < minParallel {
		_ = flag.Set("test.parallel", strconv.Itoa(minParallel))
	}
}

// runTests creates the directory for built binaries and, unless ODINRESET_TEST_REDIS_URL
// names a Redis server already, starts one that in-process tests share through testredis.
func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "policytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "policytest: create a temporary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir

	if !testredis.RealAvailable() {
		if _, err := exec.LookPath("redis-server"); err == nil {
			url, stop, err := startSharedRedis(dir)
			if err != nil {
				fmt.Fprintln(os.Stderr, "policytest:", err)
				return 1
			}
			defer stop()
			os.Setenv(testredis.EnvURL, url)
		}
	}
	return m.Run()
}

// startSharedRedis starts the redis-server that in-process tests share when no
// ODINRESET_TEST_REDIS_URL is set.
func startSharedRedis(dir string) (url string, stop func(), err error) {
	for range 5 {
		port, err := freePort()
		if err != nil {
			return "", nil, err
		}
		cmd := exec.Command("redis-server", redisArgs(port, "noeviction", dir)...)
		if err := cmd.Start(); err != nil {
			return "", nil, fmt.Errorf("start redis-server: %w", err)
		}
		exited := make(chan struct{})
		p := &process{name: "redis-server", cmd: cmd, exited: exited}
		go func() {
			p.waitErr = cmd.Wait()
			close(exited)
		}()
		client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		err = awaitOwnRedis(client, p)
		client.Close()
		if err == nil {
			stop := func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-exited
			}
			return fmt.Sprintf("redis://127.0.0.1:%d/0", port), stop, nil
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	return "", nil, errors.New("start redis-server: no free port found in 5 attempts")
}

// redisArgs are the arguments of a redis-server for tests: loopback only, no
// persistence, 256 databases for testredis.
func redisArgs(port int, maxmemoryPolicy, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--databases", "256", "--maxmemory-policy", maxmemoryPolicy, "--dir", dir,
	}
}

// binaries are the paths of the commands that process-level tests run.
type binaries struct {
	worker  string
	sim     string
	enqueue string
}

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

// requireBinaries skips the test when redis-server is missing and otherwise builds
// cmd/worker, cmd/odin-sim and cmd/enqueue, once per test run.
func requireBinaries(t *testing.T) binaries {
	t.Helper()
	requireRedisServer(t)
	buildOnce.Do(func() {
		built = binaries{
			worker:  filepath.Join(binDir, "worker"),
			sim:     filepath.Join(binDir, "odin-sim"),
			enqueue: filepath.Join(binDir, "enqueue"),
		}
		for _, b := range []struct{ pkg, out string }{
			{"./cmd/worker", built.worker}, {"./cmd/odin-sim", built.sim}, {"./cmd/enqueue", built.enqueue},
		} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = moduleRoot
			if output, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, output)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func requireRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server in PATH to start worker processes against: install it, for example with apt-get install redis-server")
	}
}

// process is a child process of a test. Its output goes to a log file that the test
// prints the end of when it fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// startProcess starts path with args and exactly the environment env. The test's cleanup
// stops the process.
func startProcess(t *testing.T, name, path string, args, env []string) *process {
	t.Helper()
	logFile, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logFile.Name(), exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("last lines of the %s log:\n%s", name, p.logTail(40))
		}
	})
	return p
}

// stop sends SIGTERM and waits for the process to exit, killing it after 20 seconds.
func (p *process) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20 s of SIGTERM; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// pause stops the process with SIGSTOP for d, as a descheduled or swapped-out process
// would stall, then lets it continue.
func (p *process) pause(t *testing.T, d time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Errorf("stop %s: %v", p.name, err)
		return
	}
	<-time.After(d)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Errorf("continue %s: %v", p.name, err)
	}
}

// wait waits up to timeout for the process to exit by itself and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("%s still runs after %v", p.name, timeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *process) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// redisServer is a redis-server process of one test.
type redisServer struct {
	URL    string
	Client *redis.Client
	proc   *process
}

// startRedisServer starts redis-server on a free loopback port, without persistence, with
// the given maxmemory-policy, and stops it when the test ends.
func startRedisServer(t *testing.T, maxmemoryPolicy string) *redisServer {
	t.Helper()
	requireRedisServer(t)

	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		p := startProcess(t, "redis-server", "redis-server", redisArgs(port, maxmemoryPolicy, t.TempDir()), nil)
		client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		if lastErr = awaitOwnRedis(client, p); lastErr == nil {
			t.Cleanup(func() { client.Close() })
			return &redisServer{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Client: client, proc: p}
		}
		client.Close()
		p.stop(t)
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

// awaitOwnRedis waits until the server on client's address responds and checks that it
// is p, not another server that took the port first.
func awaitOwnRedis(client *redis.Client, p *process) error {
	deadline := time.Now().Add(10 * time.Second)
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := client.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if pid := infoField(info, "process_id"); pid != strconv.Itoa(p.cmd.Process.Pid) {
				return fmt.Errorf("the port is served by another redis-server (process %s)", pid)
			}
			return nil
		}
		select {
		case <-p.exited:
			return errors.New("redis-server exited before it responded")
		case <-ticker.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not respond within 10 s: %v", err)
		}
	}
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// simProcess is a cmd/odin-sim process.
type simProcess struct {
	*process
	// URL is the API base URL; root serves /_sim/.
	URL  string
	root string
}

// startSim starts cmd/odin-sim on a free loopback port with the extra arguments and waits
// until it serves.
func startSim(t *testing.T, bins binaries, args ...string) *simProcess {
	t.Helper()
	args = append([]string{"--addr", "127.0.0.1:0", "--password", simPassword}, args...)
	p := startProcess(t, "odin-sim", bins.sim, args, nil)

	var url string
	waitUntil(t, 10*time.Second, "odin-sim serving", func() bool {
		line, _, _ := strings.Cut(p.log(), "\n")
		rest, ok := strings.CutPrefix(line, "odin-sim: serving ")
		if !ok {
			return false
		}
		url, _, _ = strings.Cut(rest, " ")
		return true
	})
	return &simProcess{process: p, URL: url, root: strings.TrimSuffix(url, "/api/v2")}
}

// stats returns the simulator's request counters.
func (s *simProcess) stats(t *testing.T) odintest.Stats {
	t.Helper()
	var st odintest.Stats
	s.getJSON(t, "/_sim/stats", &st)
	return st
}

// credentials returns every credential the simulator holds: user ID, then kind.
func (s *simProcess) credentials(t *testing.T) map[string]map[odintest.Kind]odintest.Credential {
	t.Helper()
	var creds map[string]map[odintest.Kind]odintest.Credential
	s.getJSON(t, "/_sim/credentials", &creds)
	return creds
}

// setRateLimit sets the simulator's own limit in requests per second; 0 removes it.
func (s *simProcess) setRateLimit(t *testing.T, rps float64) {
	t.Helper()
	s.send(t, http.MethodPut, "/_sim/rate-limit", fmt.Sprintf(`{"requestsPerSecond": %g}`, rps))
}

// resetStats zeroes the simulator's counters.
func (s *simProcess) resetStats(t *testing.T) {
	t.Helper()
	s.send(t, http.MethodPost, "/_sim/reset-stats", "")
}

func (s *simProcess) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	body := s.send(t, http.MethodGet, path, "")
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
}

func (s *simProcess) send(t *testing.T, method, path, body string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, s.root+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return data
}

// workerSettings are the environment variables of a worker process beyond the
// connection settings; keys override the defaults of startWorker.
type workerSettings map[string]string

// startWorker starts a cmd/worker process against the Redis and Odin URLs with the
// results key, with its HTTP endpoints off.
func startWorker(t *testing.T, bins binaries, name, redisURL, odinURL, resultsKey string, settings workerSettings) *process {
	t.Helper()
	env := map[string]string{
		"REDIS_URL":          redisURL,
		"ODIN_BASE_URL":      odinURL,
		"ODIN_USERNAME":      "admin",
		"ODIN_PASSWORD":      simPassword,
		"RESULTS_KEY":        resultsKey,
		"ODIN_TIMEOUT":       "5s",
		"SHUTDOWN_TIMEOUT":   "8s",
		"LOG_FORMAT":         "json",
		"LOG_LEVEL":          "info",
		"WORKER_CONCURRENCY": "20",
	}
	for k, v := range settings {
		env[k] = v
	}
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	return startProcess(t, name, bins.worker, []string{"--http-addr="}, list)
}

// runEnqueue runs cmd/enqueue to completion against the Redis URL and returns its
// output and exit code.
func runEnqueue(t *testing.T, bins binaries, redisURL string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(bins.enqueue, args...)
	cmd.Env = []string{"REDIS_URL=" + redisURL}
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("run enqueue %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}
