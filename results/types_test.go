package results_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/results"
)

func TestParseCredentialType(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  results.CredentialType
	}{
		{name: "sip", input: "sip", want: results.SIP},
		{name: "upper case sip", input: "SIP", want: results.SIP},
		{name: "vm with spaces", input: " Vm ", want: results.Voicemail},
		{name: "voicemail", input: "voicemail", want: results.Voicemail},
		{name: "mixed case voicemail", input: "VoiceMail", want: results.Voicemail},
		{name: "web", input: "web", want: results.Web},
		{name: "web with tab and newline", input: "\tWEB\n", want: results.Web},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := results.ParseCredentialType(tt.input)
			if err != nil {
				t.Fatalf("ParseCredentialType(%q) error: %v", tt.input, err)
			}
			if got != tt.want {
				t.Errorf("ParseCredentialType(%q) = %q, want %q", tt.input, got, tt.want)
			}
		})
	}
}

func TestParseCredentialTypeRejects(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{name: "empty", input: ""},
		{name: "spaces only", input: "   "},
		{name: "password", input: "password"},
		{name: "passcode", input: "passcode"},
		{name: "sip with suffix", input: "sip2"},
		{name: "two types", input: "sip,web"},
		{name: "voice mail with space", input: "voice mail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := results.ParseCredentialType(tt.input)
			if err == nil {
				t.Fatalf("ParseCredentialType(%q) = %q and no error, want an error", tt.input, got)
			}
			if got != "" {
				t.Errorf("ParseCredentialType(%q) returned type %q with the error, want empty", tt.input, got)
			}

			var typeErr *results.InvalidTypeError
			if !errors.As(err, &typeErr) {
				t.Fatalf("error %v (%T) is not an *InvalidTypeError", err, err)
			}
			if typeErr.Value != tt.input {
				t.Errorf("InvalidTypeError.Value = %q, want %q", typeErr.Value, tt.input)
			}
			msg := err.Error()
			if !strings.Contains(msg, `"`+tt.input+`"`) {
				t.Errorf("error %q does not name the value %q", msg, tt.input)
			}
			for _, valid := range []string{"sip", "voicemail", "vm", "web"} {
				if !strings.Contains(msg, valid) {
					t.Errorf("error %q does not list the valid value %q", msg, valid)
				}
			}
		})
	}
}

func TestSecretField(t *testing.T) {
	tests := []struct {
		name string
		typ  results.CredentialType
		want string
	}{
		{name: "sip", typ: results.SIP, want: "newPassword"},
		{name: "voicemail", typ: results.Voicemail, want: "newPasscode"},
		{name: "web", typ: results.Web, want: "newPassword"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.typ.SecretField(); got != tt.want {
				t.Errorf("%s.SecretField() = %q, want %q", tt.typ, got, tt.want)
			}
		})
	}
}

func TestJobStateFinished(t *testing.T) {
	got := map[results.JobState]bool{}
	for _, s := range []results.JobState{results.JobQueued, results.JobRunning, results.JobCompleted, results.JobCancelled} {
		got[s] = s.Finished()
	}
	want := map[results.JobState]bool{
		results.JobQueued:    false,
		results.JobRunning:   false,
		results.JobCompleted: true,
		results.JobCancelled: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Finished() by state (-want +got):\n%s", diff)
	}
}

func TestJobPending(t *testing.T) {
	tests := []struct {
		name string
		job  results.Job
		want int
	}{
		{name: "not loaded", job: results.Job{}, want: 0},
		{name: "none settled", job: results.Job{Total: 5}, want: 5},
		{name: "some settled", job: results.Job{Total: 5, Applied: 2, Failed: 1}, want: 2},
		{name: "all settled", job: results.Job{Total: 5, Applied: 4, Failed: 1}, want: 0},
		{name: "counters past total", job: results.Job{Total: 2, Applied: 3}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.job.Pending(); got != tt.want {
				t.Errorf("Pending() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestValidateJobID(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		wantErr bool
	}{
		{name: "uuid", id: "0b6f7c1e-5d1a-4c55-9a47-2f1b5f0e9d3c"},
		{name: "dots colons underscores", id: "nightly.2025-03-14:sp_1"},
		{name: "one character", id: "a"},
		{name: "128 characters", id: strings.Repeat("a", 128)},
		{name: "empty", id: "", wantErr: true},
		{name: "129 characters", id: strings.Repeat("a", 129), wantErr: true},
		{name: "leading dash", id: "-job", wantErr: true},
		{name: "leading dot", id: ".job", wantErr: true},
		{name: "open brace", id: "job{1", wantErr: true},
		{name: "hash tag", id: "{job}", wantErr: true},
		{name: "close brace", id: "job}", wantErr: true},
		{name: "slash", id: "job/user", wantErr: true},
		{name: "space", id: "job 1", wantErr: true},
		{name: "newline", id: "job\n", wantErr: true},
		{name: "non ASCII letter", id: "jöb", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := results.ValidateJobID(tt.id)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ValidateJobID(%q) = nil, want an error", tt.id)
				}
				if !strings.Contains(err.Error(), strconv.Quote(tt.id)) {
					t.Errorf("error %q does not name the value %q", err, tt.id)
				}
				return
			}
			if err != nil {
				t.Errorf("ValidateJobID(%q) = %v, want nil", tt.id, err)
			}
		})
	}
}
