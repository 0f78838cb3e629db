package results_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/results"
)

// compactJSON returns b without insignificant white space, failing the test if b is not JSON.
func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("output is not valid JSON: %v\n%s", err, b)
	}
	return out.String()
}

func exportJSON(t *testing.T, s *results.Store, jobID string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.WriteJSON(t.Context(), jobID, &buf); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	return buf.Bytes()
}

func TestWriteJSONShape(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "8H]}3y", "u2": "unused"})
	applyUser(t, s, "job-1", "u1")
	failUser(t, s, "job-1", "u2", "Odin: [Error 4410] Service is not assigned")

	got := exportJSON(t, s, "job-1")

	want := `[{"userId":"u1","newPassword":"8H]}3y"},{"userId":"u2","error":"Odin: [Error 4410] Service is not assigned"}]`
	if diff := cmp.Diff(want, compactJSON(t, got)); diff != "" {
		t.Errorf("WriteJSON (-want +got):\n%s", diff)
	}
	if !bytes.HasSuffix(got, []byte("]\n")) {
		t.Errorf("WriteJSON output does not end with a newline: %q", got)
	}
}

func TestWriteJSONRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		typ    results.CredentialType
		cancel bool
		want   []map[string]string
	}{
		{
			name: "web",
			typ:  results.Web,
			want: []map[string]string{
				{"userId": "u1", "newPassword": "s-u1"},
				{"userId": "u2", "error": "rejected by rule"},
				{"userId": "u3", "error": "not reset yet: the job is running"},
				{"userId": "u4", "error": "not reset yet: the job is running"},
			},
		},
		{
			name: "voicemail",
			typ:  results.Voicemail,
			want: []map[string]string{
				{"userId": "u1", "newPasscode": "s-u1"},
				{"userId": "u2", "error": "rejected by rule"},
				{"userId": "u3", "error": "not reset yet: the job is running"},
				{"userId": "u4", "error": "not reset yet: the job is running"},
			},
		},
		{
			name:   "cancelled sip",
			typ:    results.SIP,
			cancel: true,
			want: []map[string]string{
				{"userId": "u1", "newPassword": "s-u1"},
				{"userId": "u2", "error": "rejected by rule"},
				{"userId": "u3", "newPassword": "s-u3", "error": "not reset: the job was cancelled; the value shown was sent to Odin without confirmation and may be set"},
				{"userId": "u4", "error": "not reset: the job was cancelled"},
				{"userId": "u5", "error": "not reset: the job was cancelled"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t)
			users := []string{"u1", "u2", "u3", "u4"}
			if tt.cancel {
				users = append(users, "u5")
			}
			startJob(t, s, "job-1", tt.typ, users)
			written := []string{"u1", "u3"}
			if tt.cancel {
				written = append(written, "u5")
			}
			writeAhead(t, s, "job-1", secretsFor(written, "s"))
			applyUser(t, s, "job-1", "u1")
			failUser(t, s, "job-1", "u2", "rejected by rule")
			if tt.cancel {
				// u3's attempt began before the cancel, so its value may be on Odin. u5
				// has a value too, but its attempt never began, so it was never sent.
				if _, _, err := s.BeginAttempt(t.Context(), "job-1", "u3"); err != nil {
					t.Fatalf("BeginAttempt: %v", err)
				}
				if _, err := s.Cancel(t.Context(), "job-1"); err != nil {
					t.Fatalf("Cancel: %v", err)
				}
			}

			var got []map[string]string
			if err := json.Unmarshal(exportJSON(t, s, "job-1"), &got); err != nil {
				t.Fatalf("decode WriteJSON output: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

// A user that failed without a definitive response from Odin may have the value sent
// last, so the export shows that value next to the error.
func TestWriteJSONUnconfirmedFailure(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Voicemail, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "8812", "u2": "9934"})

	rec := readUser(t, s, "job-1", "u1")
	rec.Unconfirmed = true
	if _, err := s.MarkFailed(t.Context(), "job-1", rec, "retries exhausted: timeout", 5); err != nil {
		t.Fatalf("MarkFailed: %v", err)
	}
	failUser(t, s, "job-1", "u2", "[Error 4410] Service is not assigned")

	if got := readUser(t, s, "job-1", "u1"); !got.Unconfirmed {
		t.Errorf("Unconfirmed was not stored: %+v", got)
	}
	want := `[{"userId":"u1","newPasscode":"8812","error":"retries exhausted: timeout; the value shown was sent to Odin without confirmation and may be set"},` +
		`{"userId":"u2","error":"[Error 4410] Service is not assigned"}]`
	if diff := cmp.Diff(want, compactJSON(t, exportJSON(t, s, "job-1"))); diff != "" {
		t.Errorf("WriteJSON (-want +got):\n%s", diff)
	}
}

func TestWriteJSONEmptyJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "empty", results.Web, nil)
	createJob(t, s, "queued", results.Web)

	for _, id := range []string{"empty", "queued"} {
		if got := string(exportJSON(t, s, id)); got != "[]\n" {
			t.Errorf("WriteJSON(%s) = %q, want %q", id, got, "[]\n")
		}
	}
}

func TestWriteJSONDevice(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.SIP, []string{"u1"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})
	applyUser(t, s, "job-1", "u1")
	if _, err := s.SetDevice(t.Context(), "job-1", readUser(t, s, "job-1", "u1"), "Polycom-1", "rebuilt"); err != nil {
		t.Fatalf("SetDevice: %v", err)
	}

	want := `[{"userId":"u1","newPassword":"pw1","device":"rebuilt"}]`
	if diff := cmp.Diff(want, compactJSON(t, exportJSON(t, s, "job-1"))); diff != "" {
		t.Errorf("WriteJSON (-want +got):\n%s", diff)
	}
}

func TestWriteJSONLargeJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	users := userIDs(1203)
	startJob(t, s, "job-1", results.Web, users)
	writeAhead(t, s, "job-1", secretsFor(users, "pw"))
	// A cancelled job's pending users whose attempt began show their value.
	for _, u := range users {
		if _, _, err := s.BeginAttempt(t.Context(), "job-1", u); err != nil {
			t.Fatalf("BeginAttempt(%s): %v", u, err)
		}
	}
	if _, err := s.Cancel(t.Context(), "job-1"); err != nil {
		t.Fatalf("Cancel: %v", err)
	}

	var rows []results.Row
	if err := json.Unmarshal(exportJSON(t, s, "job-1"), &rows); err != nil {
		t.Fatalf("decode WriteJSON output: %v", err)
	}
	if len(rows) != len(users) {
		t.Fatalf("WriteJSON wrote %d rows, want %d", len(rows), len(users))
	}
	for i, row := range rows {
		if row.UserID != users[i] || row.NewPassword != "pw-"+users[i] {
			t.Errorf("row %d = %+v, want user %s with its value", i, row, users[i])
		}
	}
}

func TestExportMissingJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	var buf bytes.Buffer
	if err := s.WriteJSON(t.Context(), "missing", &buf); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("WriteJSON(missing) error = %v, want ErrNotFound", err)
	}
	if err := s.WriteCSV(t.Context(), "missing", &buf); !errors.Is(err, results.ErrNotFound) {
		t.Errorf("WriteCSV(missing) error = %v, want ErrNotFound", err)
	}
	if buf.Len() != 0 {
		t.Errorf("export of a missing job wrote %q", buf.String())
	}
}

func TestWriteCSV(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.Voicemail, []string{"u1", "u2", "u3", "u4"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "004711", "u2": "1234", "u3": "-12,34"})
	applyUser(t, s, "job-1", "u1")
	failUser(t, s, "job-1", "u2", `=HYPERLINK("http://x")`)

	var buf bytes.Buffer
	if err := s.WriteCSV(t.Context(), "job-1", &buf); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	got, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output is not valid CSV: %v", err)
	}

	want := [][]string{
		{"userId", "type", "status", "value", "error", "attempts", "appliedAt", "device"},
		{"u1", "voicemail", "applied", "004711", "", "1", "2025-03-14T22:30:00Z", ""},
		// Text from Odin is defused against formula injection; a generated value is not.
		{"u2", "voicemail", "failed", "", `'=HYPERLINK("http://x")`, "3", "", ""},
		{"u3", "voicemail", "pending", "", "not reset yet: the job is running", "0", "", ""},
		{"u4", "voicemail", "pending", "", "not reset yet: the job is running", "0", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CSV (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(results.CSVHeader, got[0]); diff != "" {
		t.Errorf("header differs from CSVHeader (-want +got):\n%s", diff)
	}
}

func TestWriteCSVEmptyJob(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	startJob(t, s, "job-1", results.SIP, nil)

	var buf bytes.Buffer
	if err := s.WriteCSV(t.Context(), "job-1", &buf); err != nil {
		t.Fatalf("WriteCSV: %v", err)
	}
	want := strings.Join(results.CSVHeader, ",") + "\n"
	if got := buf.String(); got != want {
		t.Errorf("WriteCSV of an empty job = %q, want only the header %q", got, want)
	}
}

func TestRowFor(t *testing.T) {
	running := results.Job{Type: results.Web, State: results.JobRunning}
	tests := []struct {
		name string
		job  results.Job
		rec  results.UserRecord
		want results.Row
	}{
		{
			name: "applied web",
			job:  running,
			rec:  results.UserRecord{UserID: "u1", State: results.UserApplied, Secret: "pw"},
			want: results.Row{UserID: "u1", NewPassword: "pw"},
		},
		{
			name: "applied voicemail",
			job:  results.Job{Type: results.Voicemail, State: results.JobCompleted},
			rec:  results.UserRecord{UserID: "u1", State: results.UserApplied, Secret: "1234"},
			want: results.Row{UserID: "u1", NewPasscode: "1234"},
		},
		{
			name: "failed keeps the secret out",
			job:  running,
			rec:  results.UserRecord{UserID: "u1", State: results.UserFailed, Secret: "pw", Reason: "no service"},
			want: results.Row{UserID: "u1", Error: "no service"},
		},
		{
			name: "failed without a reason",
			job:  running,
			rec:  results.UserRecord{UserID: "u1", State: results.UserFailed},
			want: results.Row{UserID: "u1", Error: "failed"},
		},
		{
			name: "pending in a queued job",
			job:  results.Job{Type: results.SIP, State: results.JobQueued},
			rec:  results.UserRecord{UserID: "u1", State: results.UserPending},
			want: results.Row{UserID: "u1", Error: "not reset yet: the job is queued"},
		},
		{
			name: "device outcome",
			job:  results.Job{Type: results.SIP, State: results.JobCompleted},
			rec:  results.UserRecord{UserID: "u1", State: results.UserApplied, Secret: "pw", Device: "skipped: no device"},
			want: results.Row{UserID: "u1", NewPassword: "pw", Device: "skipped: no device"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, results.RowFor(tt.job, tt.rec)); diff != "" {
				t.Errorf("RowFor (-want +got):\n%s", diff)
			}
		})
	}
}
