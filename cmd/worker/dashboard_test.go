package main

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// findChromium returns the Chromium binary named by CHROMIUM or found on PATH, or "".
func findChromium() string {
	if path := os.Getenv("CHROMIUM"); path != "" {
		return path
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// queueRow matches the queue table of asynqmon's queues page once the tags are gone:
// the queue name, its state (run or paused) and its size.
var queueRow = regexp.MustCompile(`\|reset-default\|(run|paused)\|(\d+)\|`)

// TestDashboardInChromium loads the embedded asynqmon dashboard in headless Chromium
// through scripts/dashboard-screenshot.sh while a batch runs, and checks that the queues
// page lists the queue with its tasks.
func TestDashboardInChromium(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium not found: install the Debian package chromium, or set CHROMIUM, to run the dashboard check")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found: the dashboard check runs scripts/dashboard-screenshot.sh")
	}

	const user, password = "operator", "dashboard-secret-3"
	// 400 users at 10 Odin requests per second keep tasks pending for about 40 s, longer
	// than the check takes.
	w := startTestWorker(t, workerOptions{
		sim:                odintest.Config{Users: 400},
		rateLimit:          10,
		monitoringUser:     user,
		monitoringPassword: password,
	})
	if _, err := tasks.Submit(context.Background(), w.client, w.store, tasks.BulkResetPayload{
		JobID: "dashboard-check", Type: results.Web, AllUsers: true,
		ServiceProviderID: w.sim.ServiceProviderID(), GroupID: w.sim.GroupID(),
	}); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitForPending(t, w, tasks.QueueDefault, 30*time.Second)

	tests := []struct {
		name     string
		password string
		wantOK   bool
	}{
		{name: "valid login", password: password, wantOK: true},
		{name: "wrong password", password: "wrong", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			shot := filepath.Join(dir, "dashboard.png")
			dom := filepath.Join(dir, "dashboard.html")

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "..", "scripts", "dashboard-screenshot.sh"),
				"--url", w.baseURL+"/monitoring/", "--out", shot, "--dom", dom, "--expect", tasks.QueueDefault)
			cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "MONITORING_USER="+user, "MONITORING_PASSWORD="+tt.password)
			// On timeout, kill the script's whole process group, Chromium included.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()

			var exitErr *exec.ExitError
			switch {
			case tt.wantOK && err != nil:
				t.Fatalf("dashboard-screenshot.sh failed: %v\n%s", err, stderr.String())
			case !tt.wantOK && !errors.As(err, &exitErr):
				t.Fatalf("dashboard-screenshot.sh returned %v with a wrong password, want exit status 1\n%s", err, stderr.String())
			case !tt.wantOK:
				if code := exitErr.ExitCode(); code != 1 {
					t.Errorf("exit status with a wrong password = %d, want 1\n%s", code, stderr.String())
				}
				if want := `does not contain "` + tasks.QueueDefault + `"`; !strings.Contains(stderr.String(), want) {
					t.Errorf("the script's output with a wrong password lacks %q:\n%s", want, stderr.String())
				}
				return
			}

			checkScreenshot(t, shot)

			html, err := os.ReadFile(dom)
			if err != nil {
				t.Fatalf("read the rendered page: %v", err)
			}
			text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(string(html), "|")
			text = regexp.MustCompile(`\|+`).ReplaceAllString(text, "|")
			row := queueRow.FindStringSubmatch(text)
			if row == nil {
				t.Fatalf("the queues page has no row for %s with a state and a size; page text:\n%.3000s", tasks.QueueDefault, text)
			}
			if row[1] != "run" {
				t.Errorf("queue %s state on the page = %q, want run", tasks.QueueDefault, row[1])
			}
			if size, _ := strconv.Atoi(row[2]); size == 0 {
				t.Errorf("queue %s size on the page = 0, want the batch's tasks", tasks.QueueDefault)
			}
		})
	}
}

// waitForPending waits until queue has pending tasks.
func waitForPending(t *testing.T, w *testWorker, queue string, timeout time.Duration) {
	t.Helper()
	inspector := asynq.NewInspector(w.redis.Opt)
	defer inspector.Close()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := inspector.GetQueueInfo(queue)
		if err == nil && info.Pending > 0 {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("queue %s has no pending task after %s (last error: %v)", queue, timeout, err)
		case <-tick.C:
		}
	}
}

// checkScreenshot checks that path is a PNG of the script's window size, 1400x900.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open the screenshot: %v", err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if cfg.Width != 1400 || cfg.Height != 900 {
		t.Errorf("screenshot size = %dx%d, want 1400x900", cfg.Width, cfg.Height)
	}
}
