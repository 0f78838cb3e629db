package tasks_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// TestSummaryJSON pins the body of the completion callback, which receivers parse: the
// device fields appear only for SIP jobs with a device step.
func TestSummaryJSON(t *testing.T) {
	created := time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)
	base := results.Job{
		ID: "job-1", State: results.JobCompleted, Type: results.SIP, ServiceProviderID: "sp1", GroupID: "grp1",
		Total: 3, Applied: 2, Failed: 1, RequestedBy: "ops", CreatedAt: created, CompletedAt: created.Add(time.Minute),
	}
	withDevices := base
	withDevices.Devices, withDevices.DeviceTotal, withDevices.DeviceDone = results.DevicesReset, 2, 2

	tests := []struct {
		name string
		job  results.Job
		want map[string]any
	}{
		{name: "no device step", job: base, want: map[string]any{
			"jobId": "job-1", "state": "completed", "type": "sip", "serviceProviderId": "sp1", "groupId": "grp1",
			"total": 3.0, "applied": 2.0, "failed": 1.0, "requestedBy": "ops",
			"createdAt": "2026-12-04T23:00:00Z", "completedAt": "2026-12-04T23:01:00Z",
		}},
		{name: "reset devices", job: withDevices, want: map[string]any{
			"jobId": "job-1", "state": "completed", "type": "sip", "serviceProviderId": "sp1", "groupId": "grp1",
			"total": 3.0, "applied": 2.0, "failed": 1.0, "requestedBy": "ops",
			"devices": "reset", "deviceTotal": 2.0, "deviceDone": 2.0,
			"createdAt": "2026-12-04T23:00:00Z", "completedAt": "2026-12-04T23:01:00Z",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tasks.SummaryOf(tt.job))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("callback body (-want +got):\n%s", diff)
			}
		})
	}
}

// countingObserver counts JobFinished calls.
type countingObserver struct{ finished int }

func (o *countingObserver) UserSettled(results.CredentialType, results.UserState) {}
func (o *countingObserver) JobFinished(results.Job)                               { o.finished++ }

// TestCompleteCancelledJobOnce runs reset:complete of a cancelled job twice, the first
// time against a callback receiver that fails: the receiver must get the summary with
// state "cancelled", and the job must be counted once.
func TestCompleteCancelledJobOnce(t *testing.T) {
	t.Parallel()
	rd := testredis.New(t)
	store := results.NewStore(rd.Client)
	var (
		mu     sync.Mutex
		bodies []string
		fail   = true
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(b))
		if fail {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer receiver.Close()
	ctx := t.Context()
	if _, _, err := store.CreateJob(ctx, results.Job{ID: "job-c", Type: results.Web, ServiceProviderID: "sp1", GroupID: "grp1",
		CallbackURL: receiver.URL, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Cancel(ctx, "job-c"); err != nil {
		t.Fatal(err)
	}
	observer := &countingObserver{}
	h := &tasks.Handlers{Store: store, Observer: observer}
	task, err := tasks.NewCompleteTask("job-c", tasks.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}

	if err := h.HandleComplete(ctx, task); err == nil {
		t.Fatal("HandleComplete = nil with a failing receiver, want an error so asynq retries")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if err := h.HandleComplete(ctx, task); err != nil {
		t.Fatalf("HandleComplete on retry: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 2 || !strings.Contains(bodies[1], `"state":"cancelled"`) {
		t.Errorf("receiver got %q, want two posts of the summary with state cancelled", bodies)
	}
	if observer.finished != 1 {
		t.Errorf("JobFinished called %d times, want 1 across the retry", observer.finished)
	}
}
