package clustertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// envLogDir names a directory that keeps the worker logs after the test, which otherwise
// deletes them.
const envLogDir = "ODINRESET_TEST_LOG_DIR"

// fleetOptions shape a fleet.
type fleetOptions struct {
	Sim odintest.Config
	// Workers is the number of worker processes.
	Workers int
	// Concurrency is WORKER_CONCURRENCY of each worker.
	Concurrency int
	// RateLimit is ODIN_RATE_LIMIT, the fleet-wide Odin requests per second.
	RateLimit float64
	// StallAfter is STALL_AFTER of each worker, with a sweep every fifth of it; zero
	// keeps the worker's defaults.
	StallAfter time.Duration
}

// fleet is a reset pipeline on one Redis deployment: the Odin simulator served by the
// test process, cmd/worker processes, and the test's own results store and asynq client
// for submitting and checking jobs.
type fleet struct {
	t       *testing.T
	redis   redisconn.Config
	rdb     redis.UniversalClient
	store   *results.Store
	client  *asynq.Client
	sim     *odintest.Server
	key     string // RESULTS_KEY of every worker, base64
	workers []*workerProcess
	opts    fleetOptions
}

// startFleet starts the simulator and opts.Workers worker processes on the deployment cfg,
// and waits until every worker has logged that it started.
func startFleet(t *testing.T, bin string, cfg redisconn.Config, opts fleetOptions) *fleet {
	t.Helper()

	_, rdb, err := cfg.Open()
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Describe(), err)
	}
	t.Cleanup(func() { rdb.Close() })

	raw := make([]byte, results.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	encoded := base64.StdEncoding.EncodeToString(raw)
	key, err := results.ParseKey(encoded)
	if err != nil {
		t.Fatal(err)
	}

	sim, err := odintest.NewServer(opts.Sim)
	if err != nil {
		t.Fatalf("start the Odin simulator: %v", err)
	}
	t.Cleanup(sim.Close)

	f := &fleet{
		t: t, redis: cfg, rdb: rdb, sim: sim, key: encoded, opts: opts,
		store:  results.NewStore(rdb, results.WithSealer(results.NewKeyring(key))),
		client: asynq.NewClientFromRedisClient(rdb),
	}
	for i := range opts.Workers {
		f.workers = append(f.workers, f.startWorker(bin, "worker-"+strconv.Itoa(i+1)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, w := range f.workers {
		if err := w.waitLog(ctx, "worker started"); err != nil {
			t.Fatalf("%s: %v\n%s", w.name, err, w.tail(30))
		}
	}
	return f
}

// workerProcess is one cmd/worker process; its JSON log goes to a file.
type workerProcess struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

func (f *fleet) startWorker(bin, name string) *workerProcess {
	f.t.Helper()
	user, pass := f.sim.Login()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"ODIN_BASE_URL=" + f.sim.URL,
		"ODIN_USERNAME=" + user,
		"ODIN_PASSWORD=" + pass,
		"RESULTS_KEY=" + f.key,
		"ODIN_RATE_LIMIT=" + strconv.FormatFloat(f.opts.RateLimit, 'f', -1, 64),
		"ODIN_RATE_BURST=1",
		"WORKER_CONCURRENCY=" + strconv.Itoa(f.opts.Concurrency),
		"ODIN_TIMEOUT=5s",
		"SHUTDOWN_TIMEOUT=10s",
		"LOG_LEVEL=debug",
		"LOG_FORMAT=json",
	}
	if f.opts.StallAfter > 0 {
		env = append(env, "STALL_AFTER="+f.opts.StallAfter.String(),
			"SWEEP_INTERVAL="+max(time.Second, f.opts.StallAfter/5).String())
	}
	switch {
	case len(f.redis.ClusterAddrs) > 0:
		env = append(env, "REDIS_CLUSTER_ADDRS="+strings.Join(f.redis.ClusterAddrs, ","))
	case len(f.redis.SentinelAddrs) > 0:
		env = append(env,
			"REDIS_SENTINEL_ADDRS="+strings.Join(f.redis.SentinelAddrs, ","),
			"REDIS_SENTINEL_MASTER="+f.redis.SentinelMaster)
	default:
		env = append(env, "REDIS_URL="+f.redis.URL)
	}

	dir := os.Getenv(envLogDir)
	if dir == "" {
		dir = f.t.TempDir()
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	defer logFile.Close()

	// An empty --http-addr turns the HTTP endpoints off, so the workers need no port.
	cmd := exec.Command(bin, "--http-addr=")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start %s: %v", name, err)
	}
	w := &workerProcess{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()
	f.t.Cleanup(func() { w.stop(f.t) })
	return w
}

// stop sends SIGTERM and waits for the worker to finish its running tasks and exit, and
// kills it when it has not exited within SHUTDOWN_TIMEOUT and a margin.
func (w *workerProcess) stop(t *testing.T) {
	select {
	case <-w.exited:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not exit within 20s of SIGTERM; killing it\n%s", w.name, w.tail(20))
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}

// waitLog waits until the worker's log has a line containing text.
func (w *workerProcess) waitLog(ctx context.Context, text string) error {
	return pollUntil(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-w.exited:
			return false, fmt.Errorf("exited before logging %q: %v", text, w.cmd.ProcessState)
		default:
		}
		b, err := os.ReadFile(w.logPath)
		return err == nil && strings.Contains(string(b), text), nil
	})
}

// tail returns the last n lines of the worker's log.
func (w *workerProcess) tail(n int) string {
	b, _ := os.ReadFile(w.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logLine is the part of a worker's JSON log line that the tests read.
type logLine struct {
	Level   string `json:"level"`
	Message string `json:"message"`
	Error   string `json:"error"`
	UserID  string `json:"user_id"`
}

// logLines returns the worker's log lines that decode as JSON.
func (w *workerProcess) logLines() []logLine {
	file, err := os.Open(w.logPath)
	if err != nil {
		return nil
	}
	defer file.Close()
	var out []logLine
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// appliedBy counts the users whose value this worker applied, from its debug log.
func (w *workerProcess) appliedBy() int {
	n := 0
	for _, l := range w.logLines() {
		if l.Message == "new value applied" {
			n++
		}
	}
	return n
}

// submit submits a job for users, or for the whole group when users is nil.
func (f *fleet) submit(jobID string, typ results.CredentialType, users []string) {
	f.t.Helper()
	p := tasks.BulkResetPayload{
		JobID: jobID, Type: typ, Users: users, AllUsers: users == nil,
		ServiceProviderID: f.sim.ServiceProviderID(), GroupID: f.sim.GroupID(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tasks.Submit(ctx, f.client, f.store, p); err != nil {
		f.t.Fatalf("submit job %s: %v", jobID, err)
	}
}

// waitJob waits until the job is finished and returns it. onProgress, when not nil, is
// called with every state read on the way. Redis errors, as during a failover, are retried until
// timeout.
func (f *fleet) waitJob(jobID string, timeout time.Duration, onProgress func(results.Job)) results.Job {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		job     results.Job
		lastErr error
		errs    int
	)
	err := pollUntil(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		readCtx, cancelRead := context.WithTimeout(ctx, 5*time.Second)
		defer cancelRead()
		current, err := f.store.Job(readCtx, jobID)
		if err != nil {
			lastErr = err
			errs++
			return false, nil
		}
		job = current
		if onProgress != nil {
			onProgress(job)
		}
		return job.State.Finished(), nil
	})
	if errs > 0 {
		f.t.Logf("reading job %s failed %d times while waiting, last: %v", jobID, errs, lastErr)
	}
	if err != nil {
		for _, w := range f.workers {
			f.t.Logf("%s log tail:\n%s", w.name, w.tail(15))
		}
		f.t.Fatalf("job %s not finished after %s: state %s, %d applied, %d failed of %d",
			jobID, timeout, job.State, job.Applied, job.Failed, job.Total)
	}
	return job
}

// recordCheck is the comparison of a job's record with the simulator's state.
type recordCheck struct {
	Applied, Failed, Pending int
	// Mismatches has one line per user whose record and simulator value disagree.
	Mismatches []string
	// Failures has one line per failed user, with the reason.
	Failures []string
}

// checkRecord compares every user of the job's record with the simulator. An applied
// user must have the value the simulator has. A user not applied must not have a value
// on the simulator that the record lacks, and no user outside the job may have a value.
func (f *fleet) checkRecord(jobID string, kind odintest.Kind) recordCheck {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var rc recordCheck
	inJob := map[string]bool{}
	err := f.store.ForEachUser(ctx, jobID, func(rec results.UserRecord) error {
		inJob[rec.UserID] = true
		value, _, known := f.sim.Credential(rec.UserID, kind)
		switch rec.State {
		case results.UserApplied:
			rc.Applied++
			if !known || value != rec.Secret {
				rc.Mismatches = append(rc.Mismatches, fmt.Sprintf("%s: applied, but the simulator holds another value (user known: %v)", rec.UserID, known))
			}
		case results.UserFailed:
			rc.Failed++
			rc.Failures = append(rc.Failures, fmt.Sprintf("%s: %s", rec.UserID, rec.Reason))
			if value != "" && value != rec.Secret {
				rc.Mismatches = append(rc.Mismatches, fmt.Sprintf("%s: failed, but the simulator holds a value the record does not", rec.UserID))
			}
		default:
			rc.Pending++
			if value != "" && value != rec.Secret {
				rc.Mismatches = append(rc.Mismatches, fmt.Sprintf("%s: %s, but the simulator holds a value the record does not", rec.UserID, rec.State))
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatalf("read the users of job %s: %v", jobID, err)
	}
	for userID, byKind := range f.sim.Credentials() {
		if _, set := byKind[kind]; set && !inJob[userID] {
			rc.Mismatches = append(rc.Mismatches, fmt.Sprintf("%s: the simulator holds a value but the user is not in the job", userID))
		}
	}
	return rc
}
