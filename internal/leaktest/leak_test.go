package leaktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/chaos"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// workerBinary is built once by TestMain; empty when redis-server is missing.
var workerBinary string

func TestMain(m *testing.M) {
	code := func() int {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "odinreset-leaktest-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if workerBinary, err = chaos.BuildWorker(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// secretFields are the JSON fields of Odin requests and responses that carry a generated
// value, a new value being set, the admin password or a session token.
var secretFields = map[string]bool{
	"password": true, "passwords": true, "passcode": true, "passcodes": true,
	"newPassword": true, "newPasscode": true, "token": true,
}

// recorder collects every secret that crosses the simulator's API, in either direction.
type recorder struct {
	mu      sync.Mutex
	secrets map[string]string // value -> where it was seen first
}

func (r *recorder) add(value, where string) {
	if value == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.secrets[value]; !ok {
		r.secrets[value] = where
	}
}

// collect walks a JSON document and records the values of secretFields.
func (r *recorder) collect(body []byte, where string) {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return
	}
	var walk func(v any, secret bool)
	walk = func(v any, secret bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				walk(child, secretFields[k])
			}
		case []any:
			for _, child := range v {
				walk(child, secret)
			}
		case string:
			if secret {
				r.add(v, where)
			}
		case float64:
			if secret {
				r.add(fmt.Sprint(v), where)
			}
		}
	}
	walk(doc, false)
}

// wrap serves next and records the secrets in each request body and response body.
func (r *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		endpoint := req.Method + " " + req.URL.Path
		if req.Body != nil {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			r.collect(body, "request "+endpoint)
		}
		tee := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(tee, req)
		r.collect(tee.body.Bytes(), "response "+endpoint)
	})
}

// teeWriter copies a response body. Unwrap lets http.ResponseController reach the
// connection, which the simulator hijacks to inject connection resets.
type teeWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.body.Write(p)
	return t.ResponseWriter.Write(p)
}

func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// corpus is every text the test searches, by source.
type corpus struct {
	mu    sync.Mutex
	texts map[string]string // text -> source
}

func (c *corpus) add(source, text string) {
	if text == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.texts[text]; !ok {
		c.texts[text] = source
	}
}

func (c *corpus) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, source := range c.texts {
		if strings.HasPrefix(source, prefix) {
			n++
		}
	}
	return n
}

// snapshotTasks adds the payload and last error of every task in every state of the
// worker's queues, and the payloads of the tasks each server reports as running: the
// data asynqmon shows.
func snapshotTasks(inspector *asynq.Inspector, c *corpus) {
	type lister func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	listers := map[string]lister{
		"pending": inspector.ListPendingTasks, "active": inspector.ListActiveTasks,
		"scheduled": inspector.ListScheduledTasks, "retry": inspector.ListRetryTasks,
		"archived": inspector.ListArchivedTasks, "completed": inspector.ListCompletedTasks,
	}
	for queue := range tasks.Queues() {
		for state, list := range listers {
			for page := 1; ; page++ {
				infos, err := list(queue, asynq.Page(page), asynq.PageSize(500))
				if err != nil || len(infos) == 0 {
					break
				}
				for _, info := range infos {
					c.add("asynq "+state+" payload", string(info.Payload))
					c.add("asynq "+state+" last error", info.LastErr)
				}
			}
		}
	}
	servers, _ := inspector.Servers()
	for _, s := range servers {
		for _, w := range s.ActiveWorkers {
			c.add("asynq server active worker payload", string(w.TaskPayload))
		}
	}
}

// dumpRedis adds every value of every key in the database.
func dumpRedis(ctx context.Context, t *testing.T, rdb *redis.Client, c *corpus) {
	t.Helper()
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		var values []string
		switch rdb.Type(ctx, key).Val() {
		case "string":
			values = []string{rdb.Get(ctx, key).Val()}
		case "hash":
			for field, v := range rdb.HGetAll(ctx, key).Val() {
				values = append(values, field, v)
			}
		case "list":
			values = rdb.LRange(ctx, key, 0, -1).Val()
		case "set":
			values = rdb.SMembers(ctx, key).Val()
		case "zset":
			values = rdb.ZRange(ctx, key, 0, -1).Val()
		}
		c.add("Redis key", key)
		for _, v := range values {
			c.add("Redis value of "+key, v)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan Redis: %v", err)
	}
}

// TestNoSecretOutsideRecord runs a SIP, a voicemail and a web batch through two worker
// processes and checks that no secret appears anywhere but, encrypted, in the record.
func TestNoSecretOutsideRecord(t *testing.T) {
	if workerBinary == "" {
		t.Skip("needs redis-server on PATH (apt-get install redis-server)")
	}
	ctx := context.Background()
	redisPassword := rand.Text()
	rd := chaos.StartRedis(t, chaos.RedisOptions{Password: redisPassword})

	// The simulator fails 10% of requests, and half of those take effect before they fail.
	// Some users lack a service and some reject their first value by a rule. Passcodes
	// have 12 to 14 digits, so none matches a number in a log line by chance.
	const usersPerJob = 40
	rec := &recorder{secrets: map[string]string{}}
	simCfg := odintest.Config{
		Users:                 usersPerJob,
		Password:              rand.Text(),
		PasscodeMinLength:     12,
		PasscodeMaxLength:     14,
		RejectFirst:           []string{odintest.SeededUserID(3), odintest.SeededUserID(4)},
		WithoutAuthentication: []string{odintest.SeededUserID(5)},
		WithoutVoiceMessaging: []string{odintest.SeededUserID(6)},
		Faults: odintest.Faults{
			Error500: 0.03, Error502HTML: 0.03, Reset: 0.02, Hang: 0.02,
			HangDuration: 2 * time.Second, ApplyBeforeFault: 0.5,
		},
	}
	sim, err := odintest.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	simServer := httptest.NewServer(rec.wrap(sim))
	t.Cleanup(simServer.Close)

	var webhookMu sync.Mutex
	var webhookBodies []string
	webhook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		webhookMu.Lock()
		webhookBodies = append(webhookBodies, string(body))
		webhookMu.Unlock()
	}))
	t.Cleanup(webhook.Close)

	rawKey := make([]byte, results.KeySize)
	_, _ = rand.Read(rawKey)
	resultsKey := base64.StdEncoding.EncodeToString(rawKey)
	key, err := results.ParseKey(resultsKey)
	if err != nil {
		t.Fatal(err)
	}
	store := results.NewStore(rd.Client, results.WithSealer(results.NewKeyring(key)))
	monitoringPassword := rand.Text()
	odinUser, odinPassword := sim.Login()

	env := []string{
		"REDIS_URL=" + rd.URL,
		"ODIN_BASE_URL=" + simServer.URL + "/api/v2",
		"ODIN_USERNAME=" + odinUser,
		"ODIN_PASSWORD=" + odinPassword,
		"ODIN_RATE_LIMIT=300",
		"ODIN_RATE_BURST=5",
		"WORKER_CONCURRENCY=4",
		"ODIN_TIMEOUT=1s",
		"SHUTDOWN_TIMEOUT=2s",
		"ODIN_LOGIN_COOLDOWN=1s",
		"RESULTS_KEY=" + resultsKey,
		"LOG_LEVEL=debug",
		"LOG_FORMAT=json",
		"HTTP_ADDR=127.0.0.1:0",
		"MONITORING_USER=ops",
		"MONITORING_PASSWORD=" + monitoringPassword,
	}
	logDir := t.TempDir()
	var workers []*chaos.Worker
	for i := range 2 {
		name := fmt.Sprintf("worker%d", i+1)
		w := chaos.NewWorker(workerBinary, name, env, filepath.Join(logDir, name+".log"))
		t.Cleanup(w.Stop)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}

	inspector := asynq.NewInspector(rd.Opt)
	t.Cleanup(func() { inspector.Close() })
	client := asynq.NewClient(rd.Opt)
	t.Cleanup(func() { client.Close() })
	found := &corpus{texts: map[string]string{}}

	// Snapshot asynq's view while the jobs run: tasks are deleted once they succeed.
	snapCtx, stopSnapshots := context.WithCancel(ctx)
	snapDone := make(chan struct{})
	go func() {
		defer close(snapDone)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			snapshotTasks(inspector, found)
			select {
			case <-snapCtx.Done():
				return
			case <-ticker.C:
			}
		}
	}()

	users := append(sim.Users(), "ghost@example.com")
	jobIDs := []string{"leak-sip", "leak-voicemail", "leak-web"}
	for i, credential := range []results.CredentialType{results.SIP, results.Voicemail, results.Web} {
		_, err := tasks.Submit(ctx, client, store, tasks.BulkResetPayload{
			JobID: jobIDs[i], Type: credential, ServiceProviderID: sim.ServiceProviderID(), GroupID: sim.GroupID(),
			Users: users, RequestedBy: "leak test", CallbackURL: webhook.URL + "/done/" + jobIDs[i],
		})
		if err != nil {
			t.Fatalf("submit %s: %v", jobIDs[i], err)
		}
	}

	// A failed login: the admin password changes on Odin and every token expires. Each
	// worker's next call then logs in, fails and pauses the fleet, until the password is
	// changed back.
	waitSettled(t, store, "leak-sip", 5, 30*time.Second)
	sim.SetCredentials(odinUser, "changed-"+rand.Text())
	sim.ExpireTokens()
	waitForLog(t, workers, "Odin login failed; pausing every worker's Odin calls", 30*time.Second)
	sim.SetCredentials(odinUser, odinPassword)

	for _, id := range jobIDs {
		job, err := chaos.WaitJob(ctx, store, id, 3*time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != results.JobCompleted {
			t.Errorf("job %s ended %s, want completed", id, job.State)
		}
	}
	waitForCallbacks(t, &webhookMu, &webhookBodies, len(jobIDs), 30*time.Second)

	// Collect the rest: metrics, a last look at asynq, and all of Redis.
	for _, w := range workers {
		addr := logField(t, w, "HTTP endpoints listening: /healthz /readyz /metrics", "addr")
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics of %s: %v", w.Name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		found.add("/metrics of "+w.Name, string(body))
	}
	stopSnapshots()
	<-snapDone
	snapshotTasks(inspector, found)
	dumpRedis(ctx, t, rd.Client, found)
	for _, w := range workers {
		if _, _, err := w.Terminate(10 * time.Second); err != nil {
			t.Error(err)
		}
	}
	logLines := 0
	for _, w := range workers {
		f, err := os.Open(w.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		_ = chaos.ScanLines(f, func(line []byte) {
			logLines++
			found.add("log of "+w.Name, string(line))
		})
		f.Close()
	}
	webhookMu.Lock()
	for _, body := range webhookBodies {
		found.add("completion callback body", body)
	}
	webhookMu.Unlock()

	// The secrets: every value Odin generated or received, the tokens it issued, and the
	// configured passwords and key.
	rec.add(odinPassword, "ODIN_PASSWORD")
	rec.add(redisPassword, "Redis password")
	rec.add(monitoringPassword, "MONITORING_PASSWORD")
	rec.add(resultsKey, "RESULTS_KEY")

	// The search must be able to find a secret: every applied value is one.
	exported := exportAll(ctx, t, store, jobIDs)
	checkRun(t, sim, rec, found, exported, logLines)

	rec.mu.Lock()
	secrets := rec.secrets
	rec.mu.Unlock()
	found.mu.Lock()
	defer found.mu.Unlock()
	leaks := map[string]int{}
	for secret, origin := range secrets {
		for text, source := range found.texts {
			if strings.Contains(text, secret) {
				leaks[fmt.Sprintf("%s found in %s", origin, source)]++
			}
		}
	}
	var lines []string
	for leak, n := range leaks {
		lines = append(lines, fmt.Sprintf("%s (%d times)", leak, n))
	}
	sort.Strings(lines)
	if len(lines) > 0 {
		t.Errorf("secrets outside the record (the values themselves are not printed):\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("searched %d texts (%d log lines, %d asynq payloads and errors, %d Redis values, %d callbacks) for %d secrets: %d hits",
		len(found.texts), logLines, countPrefix(found.texts, "asynq"), countPrefix(found.texts, "Redis"), len(webhookBodies), len(secrets), len(lines))
}

// checkRun makes sure the run exercised what the test claims: faults, retries, a failed
// login, rule rejections, failures, debug lines, callbacks, and secrets the search finds.
func checkRun(t *testing.T, sim *odintest.Simulator, rec *recorder, found *corpus, exported string, logLines int) {
	t.Helper()
	stats := sim.Stats()
	faults := 0
	for _, n := range stats.Faults {
		faults += n
	}
	if faults == 0 {
		t.Error("the simulator injected no fault")
	}
	if found.count("asynq retry last error") == 0 {
		t.Error("no task was seen waiting for a retry")
	}
	if stats.Statuses["POST /auth/token"][http.StatusUnauthorized] == 0 {
		t.Error("no login failed")
	}
	if logLines == 0 || !found.contains(`"level":"debug"`) {
		t.Error("no debug log line was written")
	}
	if !found.contains("generating one fresh value") {
		t.Error("no value was regenerated after a rule rejection")
	}

	// Every value in the export must be among the recorded secrets, or the recorder
	// misses some and the search proves less than it claims.
	values := exportedSecrets(exported)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(values) < 3*30 {
		t.Errorf("the export holds %d values, want one per applied user of three jobs", len(values))
	}
	unseen := 0
	for _, v := range values {
		if _, ok := rec.secrets[v]; !ok {
			unseen++
		}
	}
	if unseen > 0 {
		t.Errorf("%d exported values were never seen on the Odin API: the recorder misses secrets", unseen)
	}
}

// exportAll returns the decrypted JSON export of the jobs.
func exportAll(ctx context.Context, t *testing.T, store *results.Store, jobIDs []string) string {
	t.Helper()
	var b strings.Builder
	for _, id := range jobIDs {
		if err := store.WriteJSON(ctx, id, &b); err != nil {
			t.Fatalf("export %s: %v", id, err)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// exportedSecrets returns the new values in JSON exports.
func exportedSecrets(exported string) []string {
	var out []string
	dec := json.NewDecoder(strings.NewReader(exported))
	for {
		var rows []results.Row
		if dec.Decode(&rows) != nil {
			return out
		}
		for _, row := range rows {
			for _, v := range []string{row.NewPassword, row.NewPasscode} {
				if v != "" {
					out = append(out, v)
				}
			}
		}
	}
}

func (c *corpus) contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for text := range c.texts {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

func countPrefix(texts map[string]string, prefix string) int {
	n := 0
	for _, source := range texts {
		if strings.HasPrefix(source, prefix) {
			n++
		}
	}
	return n
}

// waitSettled waits until at least n users of the job are applied or failed.
func waitSettled(t *testing.T, store *results.Store, jobID string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		job, err := store.Job(context.Background(), jobID)
		if err == nil && job.Applied+job.Failed >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d users of job %s settled within %s", n, jobID, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForLog waits until one of the workers has logged a line with message.
func waitForLog(t *testing.T, workers []*chaos.Worker, message string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, w := range workers {
			if b, err := os.ReadFile(w.LogPath); err == nil && bytes.Contains(b, []byte(`"message":"`+message+`"`)) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no worker logged %q within %s", message, timeout)
}

// waitForCallbacks waits until n completion callbacks arrived.
func waitForCallbacks(t *testing.T, mu *sync.Mutex, bodies *[]string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		mu.Lock()
		got := len(*bodies)
		mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d completion callbacks arrived within %s", got, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logField returns a string field of the first line of w's log with message.
func logField(t *testing.T, w *chaos.Worker, message, field string) string {
	t.Helper()
	f, err := os.Open(w.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	value := ""
	_ = chaos.ScanLines(f, func(line []byte) {
		var entry map[string]any
		if value == "" && json.Unmarshal(line, &entry) == nil && entry["message"] == message {
			value, _ = entry[field].(string)
		}
	})
	if value == "" {
		t.Fatalf("%s logged no %q with a %s field", w.Name, message, field)
	}
	return value
}
