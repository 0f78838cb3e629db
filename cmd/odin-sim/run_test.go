package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/odin/odintest"
)

// lineWriter collects output and signals each complete line.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 16)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSuffix(line, "\n"):
		default:
		}
	}
}

var startupLine = regexp.MustCompile(`^odin-sim: serving (http://127\.0\.0\.1:\d+/api/v2) \(service provider "ent1", group "grpA", 3 users, login "ops" with the password from --password\); inspect at (http://127\.0\.0\.1:\d+)/_sim/$`)

func TestRunServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := newLineWriter()
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"--addr", "127.0.0.1:0", "--users", "2", "--extra-user", "a b@example.com",
			"--service-provider", "ent1", "--group", "grpA", "--username", "ops", "--password", "s3cret-pass",
			"--without-auth", "1", "--reject-first", "user0002@example.com",
		}, &stdout, stderr)
	}()

	var line string
	select {
	case line = <-stderr.lines:
	case err := <-done:
		t.Fatalf("run returned %v before serving", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no startup line within 10s")
	}
	match := startupLine.FindStringSubmatch(line)
	if match == nil {
		t.Fatalf("startup line %q does not match %s", line, startupLine)
	}
	if strings.Contains(line, "s3cret-pass") {
		t.Errorf("startup line %q contains the admin password", line)
	}
	apiURL, root := match[1], match[2]

	body := strings.NewReader(`{"username":"ops","password":"s3cret-pass"}`)
	resp, err := http.Post(apiURL+"/auth/token", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: status %d, want 200", resp.StatusCode)
	}

	resp, err = http.Get(root + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st odintest.Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("decoding /_sim/stats: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"POST /auth/token": 1}, st.Requests); diff != "" {
		t.Errorf("stats requests mismatch (-want +got):\n%s", diff)
	}
	if st.Logins != 1 {
		t.Errorf("stats logins = %d, want 1", st.Logins)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
	if want := "requests 1, max per second 1,"; !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("stdout %q, want a summary starting %q", stdout.String(), want)
	}
}

func TestParseArgs(t *testing.T) {
	t.Setenv("ODIN_SIM_PASSWORD", "from-env")
	tests := []struct {
		name string
		args []string
		want odintest.Config
	}{
		{
			name: "defaults",
			want: odintest.Config{
				ServiceProviderID: "sp1", GroupID: "grp1", OtherGroupID: "grp2", Users: 100, Username: "admin", Password: "from-env",
				TokenLifetime: time.Hour, PasswordMinLength: 12, SIPPasswordLength: 12, PasscodeMinLength: 6,
				PasscodeMaxLength: 8, MaxGenerateLimit: 1000, Faults: odintest.Faults{HangDuration: 30 * time.Second},
			},
		},
		{
			name: "counts take consecutive users",
			args: []string{"--users", "6", "--without-auth", "2", "--without-voicemail", "1", "--reject-first", "2", "--no-device", "1", "--password", "p"},
			want: odintest.Config{
				ServiceProviderID: "sp1", GroupID: "grp1", OtherGroupID: "grp2", Users: 6, Username: "admin", Password: "p",
				TokenLifetime: time.Hour, PasswordMinLength: 12, SIPPasswordLength: 12, PasscodeMinLength: 6,
				PasscodeMaxLength: 8, MaxGenerateLimit: 1000, Faults: odintest.Faults{HangDuration: 30 * time.Second},
				WithoutAuthentication: []string{"user0001@example.com", "user0002@example.com"},
				WithoutVoiceMessaging: []string{"user0003@example.com"},
				RejectFirst:           []string{"user0004@example.com", "user0005@example.com"},
				Devices:               odintest.DeviceLayout{NoDevice: []string{"user0006@example.com"}},
			},
		},
		{
			name: "lists, faults and devices",
			args: []string{
				"--users", "3", "--extra-user", "x@y", "--other-group-user", "o@y", "--other-group", "grpB", "--reject-first", "x@y, user0001@example.com",
				"--sp-device", "user0002@example.com", "--shared-device", "lobby=user0003@example.com,x@y",
				"--error-500", "0.1", "--error-502", "0.2", "--reset", "0.05", "--hang", "0.01", "--hang-duration", "2s",
				"--faults-include-auth", "--apply-before-fault", "0.5", "--fault-seed", "9",
				"--rate-limit", "5", "--retry-after-date", "--latency", "10ms", "--jitter", "5ms",
				"--sip-generator-limit", "--max-generate-limit", "50", "--token-lifetime", "2m", "--password-change-required",
				"--passcode-min-length", "4", "--passcode-max-length", "4", "--password-min-length", "20", "--sip-password-length", "16",
			},
			want: odintest.Config{
				ServiceProviderID: "sp1", GroupID: "grp1", Users: 3, ExtraUsers: []string{"x@y"}, OtherGroupUsers: []string{"o@y"}, OtherGroupID: "grpB", Username: "admin", Password: "from-env",
				TokenLifetime: 2 * time.Minute, LoginPasswordChangeRequired: true,
				PasswordMinLength: 20, SIPPasswordLength: 16, PasscodeMinLength: 4, PasscodeMaxLength: 4,
				SIPGeneratorAcceptsLimit: true, MaxGenerateLimit: 50,
				Latency: 10 * time.Millisecond, LatencyJitter: 5 * time.Millisecond, RateLimit: 5, RetryAfterHTTPDate: true,
				RejectFirst: []string{"x@y", "user0001@example.com"},
				Faults: odintest.Faults{
					Error500: 0.1, Error502HTML: 0.2, Reset: 0.05, Hang: 0.01, HangDuration: 2 * time.Second,
					IncludeAuth: true, ApplyBeforeFault: 0.5, Seed: 9,
				},
				Devices: odintest.DeviceLayout{
					ServiceProviderLevel: []string{"user0002@example.com"},
					Shared:               map[string][]string{"lobby": {"user0003@example.com", "x@y"}},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := parseArgs(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parseArgs: %v", err)
			}
			if diff := cmp.Diff(tt.want, opts.cfg); diff != "" {
				t.Errorf("config mismatch (-want +got):\n%s", diff)
			}
			if _, err := odintest.New(opts.cfg); err != nil {
				t.Errorf("odintest.New rejects the parsed config: %v", err)
			}
		})
	}
}

func TestRunRejectsBadUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown flag", []string{"--nope"}, "flag provided but not defined"},
		{"stray argument", []string{"serve"}, `unexpected argument "serve"`},
		{"negative users", []string{"--users", "-1"}, "--users is -1"},
		{"count past the group", []string{"--users", "3", "--without-auth", "2", "--reject-first", "2"}, "--reject-first: count 2 is invalid: 1 of the 3 users are left"},
		{"unknown listed user", []string{"--users", "3", "--no-device", "ghost@example.com"}, "ghost@example.com"},
		{"bad shared device", []string{"--shared-device", "lobby"}, "want NAME=ID,ID,..."},
		{"fault above 1", []string{"--error-500", "2"}, "Faults.Error500"},
		{"bad duration", []string{"--latency", "soon"}, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tt.args...), io.Discard, io.Discard)
			var usage *usageError
			if !errors.As(err, &usage) {
				t.Fatalf("run: error %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run: error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-h"}, io.Discard, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run -h: error %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "--without-auth") || !strings.Contains(stderr.String(), "-rate-limit") {
		t.Errorf("help text lacks the options:\n%s", stderr.String())
	}
}
