package tasks

import (
	"testing"
	"time"
)

func TestIsLoginWait(t *testing.T) {
	tests := []struct {
		lastErr string
		want    bool
	}{
		{(&WaitError{Delay: 4 * time.Minute, Reason: loginFailedPrefix + "Odin: Invalid username or password"}).Error(), true},
		// A task that met the pause in the limiter carries the pause's reason.
		{(&WaitError{Delay: 90 * time.Second, Reason: loginFailedPrefix + "Odin: Invalid username or password; every worker's Odin calls are paused until 03:12:00 UTC"}).Error(), true},
		{(&WaitError{Delay: time.Minute, Reason: "Odin asked to slow down: Odin: Too many requests"}).Error(), false},
		{(&WaitError{Delay: time.Minute, Reason: "waiting for the default queue"}).Error(), false},
		{"Odin PUT /users/passwords: 500 Internal Server Error: Odin login failed: no", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isLoginWait(tt.lastErr); got != tt.want {
			t.Errorf("isLoginWait(%q) = %v, want %v", tt.lastErr, got, tt.want)
		}
	}
}
