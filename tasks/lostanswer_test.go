package tasks_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/ratelimit"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// scriptedOdin serves logins and the web password generator like Odin, and passes each
// PUT /users/passwords to put with the number of the user's PUT, counted from 1.
type scriptedOdin struct {
	put func(w http.ResponseWriter, n int, value string)

	mu      sync.Mutex
	gen     int
	puts    map[string]int
	current map[string]string // the value Odin has for each user
}

func newScriptedOdin(put func(w http.ResponseWriter, n int, value string)) *scriptedOdin {
	return &scriptedOdin{put: put, puts: map[string]int{}, current: map[string]string{}}
}

func (f *scriptedOdin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/api/v2/auth/token":
		fmt.Fprint(w, `{"token":"token"}`)
	case r.URL.Path == "/api/v2/password/generate":
		n := 1
		fmt.Sscan(r.URL.Query().Get("limit"), &n)
		f.mu.Lock()
		values := make([]string, n)
		for i := range values {
			f.gen++
			values[i] = fmt.Sprintf("Gen%03d-xY9!q", f.gen)
		}
		f.mu.Unlock()
		if r.URL.Query().Get("limit") == "" {
			json.NewEncoder(w).Encode(map[string]string{"password": values[0]})
			return
		}
		json.NewEncoder(w).Encode(map[string][]string{"passwords": values})
	case r.URL.Path == "/api/v2/users/passwords" && r.Method == http.MethodPut:
		var body struct{ UserID, NewPassword string }
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.puts[body.UserID]++
		n := f.puts[body.UserID]
		f.mu.Unlock()
		f.put(w, n, body.NewPassword)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"Not found"}`)
	}
}

// holds records that Odin set the user's value.
func (f *scriptedOdin) holds(user, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current[user] = value
}

// quickPipeline runs the real handlers on an in-process asynq server against odinURL,
// with retries after 50 ms (waits after 200 ms) instead of seconds.
func quickPipeline(t *testing.T, odinURL string, odinTimeout time.Duration) (*asynq.Client, *results.Store, *asynq.Inspector) {
	t.Helper()
	queue, store, inspector, _ := quickPipelineWithLimiter(t, odinURL, odinTimeout)
	return queue, store, inspector
}

func quickPipelineWithLimiter(t *testing.T, odinURL string, odinTimeout time.Duration) (*asynq.Client, *results.Store, *asynq.Inspector, *ratelimit.Limiter) {
	t.Helper()

	rd := testredis.New(t)
	key, err := results.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	store := results.NewStore(rd.Client, results.WithSealer(results.NewKeyring(key)))
	limiter, err := ratelimit.New(rd.Client, odinURL, ratelimit.Limit{Rate: 1000, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	client, err := odin.NewClient(odinURL, "admin", "admin-password", odin.WithLimiter(limiter), odin.WithTimeout(odinTimeout))
	if err != nil {
		t.Fatal(err)
	}

	queue := asynq.NewClient(rd.Opt)
	h := &tasks.Handlers{Store: store, Odin: client, Client: queue, Pauser: limiter, LoginCooldown: time.Second}
	srv := asynq.NewServer(rd.Opt, asynq.Config{
		Concurrency: 4, Queues: tasks.Queues(), StrictPriority: true,
		RetryDelayFunc: func(_ int, err error, _ *asynq.Task) time.Duration {
			var wait *tasks.WaitError
			if errors.As(err, &wait) {
				return 200 * time.Millisecond
			}
			return 50 * time.Millisecond
		},
		IsFailure:    tasks.IsFailure,
		ErrorHandler: asynq.ErrorHandlerFunc(h.HandleError),
		LogLevel:     asynq.FatalLevel, DelayedTaskCheckInterval: 100 * time.Millisecond, TaskCheckInterval: 50 * time.Millisecond,
	})

	mux := asynq.NewServeMux()
	h.Register(mux, zerolog.Nop())
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	inspector := asynq.NewInspector(rd.Opt)
	t.Cleanup(func() {
		srv.Shutdown()
		queue.Close()
		inspector.Close()
	})
	return queue, store, inspector, limiter
}

func waitFinished(t *testing.T, store *results.Store, jobID string, timeout time.Duration) results.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		job, err := store.Job(t.Context(), jobID)
		if err == nil && job.State.Finished() {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not finished after %v: %+v (%v)", jobID, timeout, job, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHistoryRejectionKeepsPossiblySetValue: Odin sets the first value but its response
// arrives after the client's timeout, and then rejects the resend of the same value by its
// password history. The value Odin has must stay in the record and in the export.
func TestHistoryRejectionKeepsPossiblySetValue(t *testing.T) {
	t.Parallel()
	const user = "alice@example.com"
	var f *scriptedOdin
	f = newScriptedOdin(func(w http.ResponseWriter, n int, value string) {
		if n == 1 {
			f.holds(user, value)
			time.Sleep(700 * time.Millisecond) // set, but the response arrives after the client's timeout
			fmt.Fprint(w, `{}`)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"[Error 4010] Password was used previously and cannot be reused","status":400}`)
	})
	ts := httptest.NewServer(f)
	defer ts.Close()
	queue, store, _ := quickPipeline(t, ts.URL+"/api/v2", 300*time.Millisecond)

	if _, err := tasks.Submit(t.Context(), queue, store, tasks.BulkResetPayload{
		JobID: "history", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Users: []string{user},
	}); err != nil {
		t.Fatal(err)
	}
	job := waitFinished(t, store, "history", 20*time.Second)

	f.mu.Lock()
	odinValue, puts := f.current[user], f.puts[user]
	f.mu.Unlock()
	rec, err := store.User(t.Context(), "history", user)
	if err != nil {
		t.Fatal(err)
	}
	var export strings.Builder
	if err := store.WriteJSON(t.Context(), "history", &export); err != nil {
		t.Fatal(err)
	}
	if job.Failed != 1 {
		t.Errorf("job: %d applied, %d failed; want the user failed, since Odin never confirmed", job.Applied, job.Failed)
	}
	if rec.Secret != odinValue {
		t.Errorf("record contains %q, Odin has %q: a regenerated value replaced the one Odin may have", rec.Secret, odinValue)
	}
	if !rec.Unconfirmed {
		t.Errorf("record is not marked unconfirmed")
	}
	if !strings.Contains(export.String(), odinValue) || !strings.Contains(export.String(), "may have set") {
		t.Errorf("export %s lacks the value Odin has or the note that an earlier attempt may have set it", export.String())
	}
	if puts != 2 {
		t.Errorf("Odin got %d PUTs, want 2: no regenerated value after a resend", puts)
	}
}

// TestWaitOnLastAttemptRunsAgain: every PUT of the user fails with a 500 until the
// handlers' last attempt, which gets a 429. asynq archives a task whose last attempt
// returns any error, so without a spare attempt the wait would strand the user.
func TestWaitOnLastAttemptRunsAgain(t *testing.T) {
	t.Parallel()
	const user = "bob@example.com"
	var f *scriptedOdin
	f = newScriptedOdin(func(w http.ResponseWriter, n int, value string) {
		switch {
		case n <= tasks.UserMaxRetry: // every attempt before the last
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error":"Internal server error","status":500}`)
		case n == tasks.UserMaxRetry+1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"Too many requests","status":429}`)
		default:
			f.holds(user, value)
			fmt.Fprint(w, `{}`)
		}
	})
	ts := httptest.NewServer(f)
	defer ts.Close()
	queue, store, inspector := quickPipeline(t, ts.URL+"/api/v2", time.Second)

	if _, err := tasks.Submit(t.Context(), queue, store, tasks.BulkResetPayload{
		JobID: "last-wait", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Users: []string{user},
	}); err != nil {
		t.Fatal(err)
	}
	job := waitFinished(t, store, "last-wait", 30*time.Second)

	rec, err := store.User(t.Context(), "last-wait", user)
	if err != nil {
		t.Fatal(err)
	}
	if job.Applied != 1 || rec.State != results.UserApplied {
		t.Fatalf("job %d applied, user %s (%s); want the user applied after the wait", job.Applied, rec.State, rec.Reason)
	}
	f.mu.Lock()
	odinValue := f.current[user]
	f.mu.Unlock()
	if rec.Secret != odinValue {
		t.Errorf("record contains %q, Odin has %q", rec.Secret, odinValue)
	}
	if info, err := inspector.GetTaskInfo(tasks.QueueDefault, tasks.UserTaskID("last-wait", user)); err == nil && info.State == asynq.TaskStateArchived {
		t.Errorf("task archived: %s", info.LastErr)
	}
}

// TestFailedAfterLostAnswerShowsValue: the first PUT times out after Odin set the value,
// and the resend gets a permanent error that is not a password rule. The value must be
// exported next to the error, marked unconfirmed.
func TestFailedAfterLostAnswerShowsValue(t *testing.T) {
	t.Parallel()
	const user = "carol@example.com"
	var f *scriptedOdin
	f = newScriptedOdin(func(w http.ResponseWriter, n int, value string) {
		if n == 1 {
			f.holds(user, value)
			time.Sleep(700 * time.Millisecond)
			fmt.Fprint(w, `{}`)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"[Error 4410] Service is not assigned to this subscriber","status":400}`)
	})
	ts := httptest.NewServer(f)
	defer ts.Close()
	queue, store, _ := quickPipeline(t, ts.URL+"/api/v2", 300*time.Millisecond)

	if _, err := tasks.Submit(t.Context(), queue, store, tasks.BulkResetPayload{
		JobID: "lost-answer", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Users: []string{user},
	}); err != nil {
		t.Fatal(err)
	}
	waitFinished(t, store, "lost-answer", 20*time.Second)

	f.mu.Lock()
	odinValue := f.current[user]
	f.mu.Unlock()
	var export strings.Builder
	if err := store.WriteJSON(t.Context(), "lost-answer", &export); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(export.String(), odinValue) || !strings.Contains(export.String(), "without confirmation") {
		t.Errorf("export %s lacks the value Odin has (%s) or the unconfirmed note", export.String(), odinValue)
	}
}

// TestRetryAfterPauseIsCapped: a 503 with a Retry-After of one day, as a
// proxy's maintenance page may send, pauses the fleet for MaxFleetPause, not a day.
func TestRetryAfterPauseIsCapped(t *testing.T) {
	t.Parallel()
	f := newScriptedOdin(func(w http.ResponseWriter, n int, value string) {
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"Service unavailable","status":503}`)
	})
	ts := httptest.NewServer(f)
	defer ts.Close()
	queue, store, _, limiter := quickPipelineWithLimiter(t, ts.URL+"/api/v2", time.Second)

	if _, err := tasks.Submit(t.Context(), queue, store, tasks.BulkResetPayload{
		JobID: "long-pause", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Users: []string{"dave@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		remaining, reason, err := limiter.Paused(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if remaining > 0 {
			if remaining > tasks.MaxFleetPause {
				t.Errorf("fleet paused for %v (%s), want at most %v", remaining.Round(time.Second), reason, tasks.MaxFleetPause)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the fleet was not paused after the 503 with Retry-After")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRejectingGeneratorKeepsWrittenUsers: the generator returns one value for each of
// two calls (the first is discarded, since three were requested), fails transiently until
// the fan-out gives up for now, then rejects every request. The user whose value was
// written ahead must still be reset, the other two recorded as failed, and the job must
// complete rather than wait for the sweeper.
func TestRejectingGeneratorKeepsWrittenUsers(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		gens int
	)
	f := newScriptedOdin(func(w http.ResponseWriter, n int, value string) { fmt.Fprint(w, `{}`) })
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v2/password/generate", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gens++
		n := gens
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case n <= 2: // one value per call, whatever the limit
			fmt.Fprintf(w, `{"passwords":["Value-%d-Abc!xyz"]}`, n)
		case n <= 8: // more failures in a row than generate retries in place
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error":"Internal server error","status":500}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"Group not found","status":404}`)
		}
	})
	mux.Handle("/", f)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	queue, store, _ := quickPipeline(t, ts.URL+"/api/v2", time.Second)

	users := []string{"u1@example.com", "u2@example.com", "u3@example.com"}
	if _, err := tasks.Submit(t.Context(), queue, store, tasks.BulkResetPayload{
		JobID: "refused", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1", Users: users,
	}); err != nil {
		t.Fatal(err)
	}
	job := waitFinished(t, store, "refused", 30*time.Second)

	if job.State != results.JobCompleted || job.Applied != 1 || job.Failed != 2 {
		t.Errorf("job %s with %d applied and %d failed, want completed with 1 applied and 2 failed", job.State, job.Applied, job.Failed)
	}
	first, err := store.User(t.Context(), "refused", "u1@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if first.State != results.UserApplied {
		t.Errorf("u1, whose value was written ahead, is %s (%s), want applied", first.State, first.Reason)
	}
	last, err := store.User(t.Context(), "refused", "u3@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(last.Reason, "cannot generate new values") {
		t.Errorf("u3 reason %q, want the generator's refusal", last.Reason)
	}
	if job.Reason != "" {
		t.Errorf("job reason %q after it completed, want none: the users' reasons say why", job.Reason)
	}
}
