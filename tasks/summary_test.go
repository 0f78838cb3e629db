package tasks_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
