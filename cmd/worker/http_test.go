package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/metrics"
	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// workerOptions configure a test worker started through serve.
type workerOptions struct {
	sim                odintest.Config
	rateLimit          float64 // fleet-wide Odin requests per second; default 1000
	monitoringUser     string
	monitoringPassword string
	monitoringWritable bool
}

// testWorker is one worker run by serve, as runWorker runs it, with its HTTP endpoints on
// a free loopback port.
type testWorker struct {
	baseURL string
	logs    *logRecorder
	redis   *testredis.Redis
	sim     *odintest.Server
	store   *results.Store
	client  *asynq.Client
}

func startTestWorker(t *testing.T, opts workerOptions) *testWorker {
	t.Helper()
	if opts.sim.Users == 0 {
		opts.sim.Users = 5
	}
	if opts.rateLimit == 0 {
		opts.rateLimit = 1000
	}

	rd := testredis.New(t)
	sim, err := odintest.NewServer(opts.sim)
	if err != nil {
		t.Fatalf("start Odin simulator: %v", err)
	}
	t.Cleanup(sim.Close)
	key, err := results.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	keyring := results.NewKeyring(key)

	simUser, simPassword := sim.Login()
	cfg := Config{
		Redis:              redisconn.Config{URL: rd.URL},
		OdinBaseURL:        sim.URL,
		OdinUsername:       simUser,
		odinPassword:       simPassword,
		OdinTimeout:        2 * time.Second,
		RateLimit:          opts.rateLimit,
		RateBurst:          1,
		Concurrency:        10,
		ShutdownTimeout:    5 * time.Second,
		LoginCooldown:      time.Second,
		SweepInterval:      time.Minute,
		StallAfter:         3 * time.Minute,
		LogLevel:           "debug",
		LogFormat:          "json",
		HTTPAddr:           "127.0.0.1:0",
		MonitoringUser:     opts.monitoringUser,
		monitoringPassword: opts.monitoringPassword,
		MonitoringWritable: opts.monitoringWritable,
	}
	if problems := cfg.validate(settingNames{}); len(problems) > 0 {
		t.Fatalf("test configuration is invalid: %v", problems)
	}

	logs := newLogRecorder()
	inspector := asynq.NewInspector(rd.Opt)
	m := metrics.New(inspector)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, newLogger(cfg, logs), rd.Opt, rd.Client, keyring, m, inspector)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after the test, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("serve did not return within 20s of cancellation")
		}
		inspector.Close()
	})

	listening := logs.waitFor(t, "HTTP endpoints listening", done, 10*time.Second)
	addr, _ := listening["addr"].(string)
	if addr == "" {
		t.Fatalf("the listening log line has no addr: %v", listening)
	}

	client := asynq.NewClient(rd.Opt)
	t.Cleanup(func() { client.Close() })
	return &testWorker{
		baseURL: "http://" + addr,
		logs:    logs,
		redis:   rd,
		sim:     sim,
		store:   results.NewStore(rd.Client, results.WithSealer(keyring)),
		client:  client,
	}
}

// do sends one request with optional basic authentication and returns the status,
// headers and body.
func (w *testWorker) do(t *testing.T, method, path, user, password string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, w.baseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		// Return redirects instead of following them, so a test can check their target.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the body of %s %s: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// submitAndWait submits a job and waits until it is finished.
func (w *testWorker) submitAndWait(t *testing.T, p tasks.BulkResetPayload, timeout time.Duration) results.Job {
	t.Helper()
	ctx := context.Background()
	p.ServiceProviderID = w.sim.ServiceProviderID()
	p.GroupID = w.sim.GroupID()
	if _, err := tasks.Submit(ctx, w.client, w.store, p); err != nil {
		t.Fatalf("submit job %s: %v", p.JobID, err)
	}

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		job, err := w.store.Job(ctx, p.JobID)
		if err == nil && job.State.Finished() {
			return job
		}
		select {
		case <-deadline.C:
			t.Fatalf("job %s not finished after %s: state %s, %d applied, %d failed of %d (read error: %v)",
				p.JobID, timeout, job.State, job.Applied, job.Failed, job.Total, err)
		case <-tick.C:
		}
	}
}

// logRecorder keeps the worker's JSON log lines and wakes up waiters on each new line.
type logRecorder struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLogRecorder() *logRecorder { return &logRecorder{changed: make(chan struct{})} }

func (r *logRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	close(r.changed)
	r.changed = make(chan struct{})
	return len(p), nil
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// find returns the first log line whose message starts with msg.
func (r *logRecorder) find(msg string) (map[string]any, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(r.buf.String(), "\n") {
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) != nil {
			continue
		}
		if message, _ := fields["message"].(string); strings.HasPrefix(message, msg) {
			return fields, nil
		}
	}
	return nil, r.changed
}

// waitFor waits until a line whose message starts with msg is logged, failing the test when serve
// returns first or the timeout passes.
func (r *logRecorder) waitFor(t *testing.T, msg string, serveDone <-chan error, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		fields, changed := r.find(msg)
		if fields != nil {
			return fields
		}
		select {
		case <-changed:
		case err := <-serveDone:
			t.Fatalf("serve returned %v before logging %q; log:\n%s", err, msg, r.String())
		case <-deadline:
			t.Fatalf("no log line %q within %s; log:\n%s", msg, timeout, r.String())
		}
	}
}

func TestHTTPEndpointsDashboardOff(t *testing.T) {
	w := startTestWorker(t, workerOptions{})

	if fields, _ := w.logs.find("asynqmon dashboard off: set MONITORING_USER and MONITORING_PASSWORD to turn it on"); fields == nil {
		t.Errorf("no log line says the dashboard is off; log:\n%s", w.logs.String())
	}

	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "healthz", path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok"},
		{name: "readyz", path: "/readyz", wantStatus: http.StatusOK, wantBody: "ok"},
		{name: "metrics", path: "/metrics", wantStatus: http.StatusOK, wantBody: "odinreset_fleet_pauses_total"},
		{name: "dashboard root", path: "/monitoring/", wantStatus: http.StatusNotFound},
		{name: "dashboard queues page", path: "/monitoring/queues", wantStatus: http.StatusNotFound},
		{name: "dashboard API", path: "/monitoring/api/queues", wantStatus: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := w.do(t, http.MethodGet, tt.path, "", "")
			if status != tt.wantStatus {
				t.Errorf("GET %s status = %d, want %d; body: %.200s", tt.path, status, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s body does not contain %q: %.300s", tt.path, tt.wantBody, body)
			}
		})
	}
}

func TestHTTPEndpointsDashboardOn(t *testing.T) {
	const user, password = "operator", "dashboard-secret-1"
	w := startTestWorker(t, workerOptions{monitoringUser: user, monitoringPassword: password})

	if fields, _ := w.logs.find("asynqmon dashboard on, behind basic authentication"); fields == nil {
		t.Errorf("no log line says the dashboard is on; log:\n%s", w.logs.String())
	} else if fields["writable"] != false {
		t.Errorf("dashboard log line writable = %v, want false", fields["writable"])
	}
	if strings.Contains(w.logs.String(), password) {
		t.Errorf("the log contains the dashboard password")
	}

	tests := []struct {
		name       string
		path       string
		user       string
		password   string
		wantStatus int
		wantBody   string
	}{
		{name: "healthz needs no login", path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok"},
		{name: "metrics needs no login", path: "/metrics", wantStatus: http.StatusOK, wantBody: "odinreset_fleet_pauses_total"},
		{name: "no credentials", path: "/monitoring/", wantStatus: http.StatusUnauthorized},
		{name: "wrong password", path: "/monitoring/", user: user, password: "wrong", wantStatus: http.StatusUnauthorized},
		{name: "wrong user", path: "/monitoring/", user: "admin", password: password, wantStatus: http.StatusUnauthorized},
		{name: "empty password", path: "/monitoring/", user: user, wantStatus: http.StatusUnauthorized},
		{name: "API without credentials", path: "/monitoring/api/queues", wantStatus: http.StatusUnauthorized},
		{name: "dashboard without slash", path: "/monitoring", wantStatus: http.StatusTemporaryRedirect, wantBody: "/monitoring/"},
		{name: "dashboard page", path: "/monitoring/", user: user, password: password, wantStatus: http.StatusOK, wantBody: "<html"},
		{name: "queues page", path: "/monitoring/queues", user: user, password: password, wantStatus: http.StatusOK, wantBody: "<html"},
		{name: "queues API", path: "/monitoring/api/queues", user: user, password: password, wantStatus: http.StatusOK, wantBody: `"queues"`},
		{name: "servers API lists this worker", path: "/monitoring/api/servers", user: user, password: password, wantStatus: http.StatusOK, wantBody: "reset-default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, body := w.do(t, http.MethodGet, tt.path, tt.user, tt.password)
			if status != tt.wantStatus {
				t.Errorf("GET %s status = %d, want %d; body: %.200s", tt.path, status, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s body does not contain %q: %.300s", tt.path, tt.wantBody, body)
			}
			if tt.wantStatus == http.StatusUnauthorized {
				if got := header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("GET %s WWW-Authenticate = %q, want a Basic challenge", tt.path, got)
				}
				if strings.Contains(body, "reset-default") {
					t.Errorf("GET %s without valid credentials shows queue data: %.300s", tt.path, body)
				}
			}
		})
	}
}

func TestDashboardReadOnlyUnlessWritable(t *testing.T) {
	const user, password = "operator", "dashboard-secret-2"
	tests := []struct {
		name       string
		writable   bool
		wantStatus int
		wantPaused bool
	}{
		{name: "read-only by default", writable: false, wantStatus: http.StatusMethodNotAllowed, wantPaused: false},
		{name: "writable", writable: true, wantStatus: http.StatusNoContent, wantPaused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startTestWorker(t, workerOptions{monitoringUser: user, monitoringPassword: password, monitoringWritable: tt.writable})

			// A task scheduled an hour ahead makes the queue exist without being run.
			task := asynq.NewTask("test:idle", nil)
			if _, err := w.client.Enqueue(task, asynq.Queue(tasks.QueueLow), asynq.ProcessIn(time.Hour)); err != nil {
				t.Fatalf("enqueue a scheduled task: %v", err)
			}

			path := "/monitoring/api/queues/" + tasks.QueueLow + ":pause"
			status, _, body := w.do(t, http.MethodPost, path, user, password)
			if status != tt.wantStatus {
				t.Errorf("POST %s status = %d, want %d; body: %.200s", path, status, tt.wantStatus, body)
			}

			inspector := asynq.NewInspector(w.redis.Opt)
			defer inspector.Close()
			info, err := inspector.GetQueueInfo(tasks.QueueLow)
			if err != nil {
				t.Fatalf("read queue %s: %v", tasks.QueueLow, err)
			}
			if info.Paused != tt.wantPaused {
				t.Errorf("queue %s paused = %v, want %v", tasks.QueueLow, info.Paused, tt.wantPaused)
			}
		})
	}
}

func TestReadyzRedisUnreachable(t *testing.T) {
	// A port that was free a moment ago plays a Redis server that is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: deadAddr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()

	cfg := Config{HTTPAddr: "127.0.0.1:0", LogLevel: "info", LogFormat: "json"}
	logs := newLogRecorder()
	m := metrics.New(nil)
	errc := make(chan error, 1)
	srv, err := startHTTP(cfg, newLogger(cfg, logs), rdb, asynq.RedisClientOpt{Addr: deadAddr}, m, errc)
	if err != nil {
		t.Fatalf("startHTTP: %v", err)
	}
	defer srv.Close()
	w := &testWorker{baseURL: "http://" + srv.Addr}

	tests := []struct {
		name       string
		path       string
		wantStatus int
	}{
		{name: "healthz stays up", path: "/healthz", wantStatus: http.StatusOK},
		{name: "readyz reports Redis", path: "/readyz", wantStatus: http.StatusServiceUnavailable},
		{name: "metrics stay up", path: "/metrics", wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := w.do(t, http.MethodGet, tt.path, "", "")
			if status != tt.wantStatus {
				t.Errorf("GET %s status = %d, want %d; body: %.200s", tt.path, status, tt.wantStatus, body)
			}
		})
	}
}

func TestMetricsAfterBatch(t *testing.T) {
	const users = 40
	// The simulator accepts fewer requests per second than the worker sends, so Odin
	// returns 429 and the fleet pauses.
	w := startTestWorker(t, workerOptions{
		sim:       odintest.Config{Users: users, RateLimit: 10},
		rateLimit: 60,
	})
	ghost := "ghost@example.com" // unknown to Odin: the setter returns 404 and the user fails
	job := w.submitAndWait(t, tasks.BulkResetPayload{
		JobID: "metrics-batch", Type: results.Web, Users: append(w.sim.Users(), ghost),
	}, 90*time.Second)
	if job.Applied != users || job.Failed != 1 {
		t.Fatalf("job %s: %d applied, %d failed, want %d and 1", job.ID, job.Applied, job.Failed, users)
	}

	// The job is completed when its last user settles. The reset:complete task, which
	// counts it as finished, runs a moment later.
	families, body := w.scrapeUntil(t, 10*time.Second, func(families map[string]*dto.MetricFamily) bool {
		finished, ok := families["odinreset_jobs_finished_total"]
		if !ok {
			return false
		}
		n, _ := sumMatching(finished, map[string]string{"state": "completed"})
		return n == 1
	})

	tests := []struct {
		name   string
		metric string
		labels map[string]string
		check  func(v float64) bool
		want   string
	}{
		{name: "Odin PUTs by endpoint and status", metric: "odinreset_odin_requests_total",
			labels: map[string]string{"endpoint": "PUT /users/passwords", "status": "200"},
			check:  func(v float64) bool { return v >= users }, want: fmt.Sprintf(">= %d", users)},
		{name: "Odin 404 of the unknown user", metric: "odinreset_odin_requests_total",
			labels: map[string]string{"endpoint": "PUT /users/passwords", "status": "404"},
			check:  func(v float64) bool { return v >= 1 }, want: ">= 1"},
		{name: "Odin 429s", metric: "odinreset_odin_requests_total",
			labels: map[string]string{"status": "429"},
			check:  func(v float64) bool { return v >= 1 }, want: ">= 1"},
		{name: "Odin latency histogram", metric: "odinreset_odin_request_duration_seconds",
			labels: map[string]string{"endpoint": "POST /auth/token"},
			check:  func(v float64) bool { return v >= 1 }, want: ">= 1 observation"},
		{name: "applied resets", metric: "odinreset_resets_total",
			labels: map[string]string{"type": "web", "outcome": "applied"},
			check:  func(v float64) bool { return v == users }, want: fmt.Sprint(users)},
		{name: "failed resets", metric: "odinreset_resets_total",
			labels: map[string]string{"type": "web", "outcome": "failed"},
			check:  func(v float64) bool { return v == 1 }, want: "1"},
		{name: "unused reset series at zero", metric: "odinreset_resets_total",
			labels: map[string]string{"type": "voicemail", "outcome": "applied"},
			check:  func(v float64) bool { return v == 0 }, want: "0"},
		{name: "finished jobs", metric: "odinreset_jobs_finished_total",
			labels: map[string]string{"state": "completed", "type": "web"},
			check:  func(v float64) bool { return v == 1 }, want: "1"},
		{name: "rate-limit waits", metric: "odinreset_rate_limit_wait_seconds",
			labels: map[string]string{"result": "sent"},
			check:  func(v float64) bool { return v >= users }, want: fmt.Sprintf(">= %d observations", users)},
		{name: "rate-limit delays", metric: "odinreset_rate_limit_delays_total",
			labels: map[string]string{"reason": "pause"},
			check:  func(v float64) bool { return v >= 0 }, want: "present"},
		{name: "fleet pauses after 429", metric: "odinreset_fleet_pauses_total",
			check: func(v float64) bool { return v >= 1 }, want: ">= 1"},
		{name: "fleet pause remaining", metric: "odinreset_fleet_pause_remaining_seconds",
			check: func(v float64) bool { return v >= 0 }, want: "present"},
		{name: "jobs by state", metric: "odinreset_jobs",
			labels: map[string]string{"state": "completed", "type": "web"},
			check:  func(v float64) bool { return v == 1 }, want: "1"},
		{name: "no running jobs", metric: "odinreset_jobs",
			labels: map[string]string{"state": "running", "type": "web"},
			check:  func(v float64) bool { return v == 0 }, want: "0"},
		{name: "no pending users", metric: "odinreset_job_users_pending",
			check: func(v float64) bool { return v == 0 }, want: "0"},
		{name: "no waiting jobs", metric: "odinreset_jobs_waiting",
			check: func(v float64) bool { return v == 0 }, want: "0"},
		{name: "asynq queue size", metric: "asynq_queue_size",
			labels: map[string]string{"queue": tasks.QueueDefault},
			check:  func(v float64) bool { return v >= 0 }, want: "present"},
		{name: "asynq pending tasks", metric: "asynq_tasks_enqueued_total",
			labels: map[string]string{"queue": tasks.QueueDefault, "state": "pending"},
			check:  func(v float64) bool { return v == 0 }, want: "0"},
		{name: "asynq processed tasks", metric: "asynq_tasks_processed_total",
			labels: map[string]string{"queue": tasks.QueueDefault},
			check:  func(v float64) bool { return v >= users }, want: fmt.Sprintf(">= %d", users)},
		{name: "asynq queue latency", metric: "asynq_queue_latency_seconds",
			labels: map[string]string{"queue": tasks.QueueDefault},
			check:  func(v float64) bool { return v >= 0 }, want: "present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			family, ok := families[tt.metric]
			if !ok {
				t.Fatalf("metric %s is missing from /metrics", tt.metric)
			}
			v, found := sumMatching(family, tt.labels)
			if !found {
				t.Fatalf("metric %s has no series with labels %v", tt.metric, tt.labels)
			}
			if !tt.check(v) {
				t.Errorf("metric %s%v = %g, want %s", tt.metric, tt.labels, v, tt.want)
			}
		})
	}

	t.Run("no secret in metrics or logs", func(t *testing.T) {
		var leaked []string
		err := w.store.ForEachUser(context.Background(), job.ID, func(rec results.UserRecord) error {
			if rec.Secret == "" {
				return nil
			}
			if strings.Contains(body, rec.Secret) || strings.Contains(w.logs.String(), rec.Secret) {
				leaked = append(leaked, rec.UserID)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read the users of job %s: %v", job.ID, err)
		}
		if diff := cmp.Diff([]string(nil), leaked); diff != "" {
			t.Errorf("users whose new value appears in /metrics or the log (-want +got):\n%s", diff)
		}
	})
}

// scrapeUntil reads /metrics until ready returns true for the parsed metrics, and returns
// them with the raw body. It fails the test after timeout.
func (w *testWorker) scrapeUntil(t *testing.T, timeout time.Duration, ready func(map[string]*dto.MetricFamily) bool) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		status, _, body := w.do(t, http.MethodGet, "/metrics", "", "")
		if status != http.StatusOK {
			t.Fatalf("GET /metrics status = %d, want 200; body: %.300s", status, body)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("/metrics is not in the Prometheus text format: %v", err)
		}
		if ready(families) {
			return families, body
		}
		select {
		case <-deadline.C:
			t.Fatalf("/metrics did not reach the expected state within %s; last scrape:\n%s", timeout, body)
		case <-tick.C:
		}
	}
}

// sumMatching adds up the series of family whose labels include want: counter and gauge
// values, or the observation count of a histogram.
func sumMatching(family *dto.MetricFamily, want map[string]string) (float64, bool) {
	total, found := 0.0, false
	for _, metric := range family.GetMetric() {
		labels := map[string]string{}
		for _, pair := range metric.GetLabel() {
			labels[pair.GetName()] = pair.GetValue()
		}
		matches := true
		for name, value := range want {
			if labels[name] != value {
				matches = false
			}
		}
		if !matches {
			continue
		}
		found = true
		switch {
		case metric.Counter != nil:
			total += metric.Counter.GetValue()
		case metric.Gauge != nil:
			total += metric.Gauge.GetValue()
		case metric.Histogram != nil:
			total += float64(metric.Histogram.GetSampleCount())
		case metric.Untyped != nil:
			total += metric.Untyped.GetValue()
		}
	}
	return total, found
}

// TestReadyzRedisHangs points /readyz at a server that accepts connections and never
// responds: the probe must return 503 within its 2-second budget, not after go-redis's
// read and pool timeouts.
func TestReadyzRedisHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // kept open, never responded to
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	defer rdb.Close()

	cfg := Config{HTTPAddr: "127.0.0.1:0", LogLevel: "info", LogFormat: "json"}
	srv, err := startHTTP(cfg, newLogger(cfg, newLogRecorder()), rdb, asynq.RedisClientOpt{Addr: ln.Addr().String()}, metrics.New(nil), make(chan error, 1))
	if err != nil {
		t.Fatalf("startHTTP: %v", err)
	}
	defer srv.Close()
	w := &testWorker{baseURL: "http://" + srv.Addr}

	start := time.Now()
	status, _, body := w.do(t, http.MethodGet, "/readyz", "", "")
	took := time.Since(start)
	if status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz status = %d, want 503; body: %.200s", status, body)
	}
	// The budget is 2 s. Without it, go-redis keeps the probe waiting for its read timeout
	// (3 s) plus its pool timeout, about 5 s in all. The margin is for a loaded machine.
	if took >= 4500*time.Millisecond {
		t.Errorf("GET /readyz took %v against a Redis that never answers, want about 2 s", took.Round(time.Millisecond))
	}
}
