package tasks_test

import (
	"context"
	"testing"
	"time"

	"github.com/odinreset/odinreset/tasks"
)

// TestSweepSkipsWhileFleetPaused: during a fleet pause every job looks stalled, and a
// sweep would read the task of every pending user. The sweeper must not touch the store
// then; this one has none, so any access would panic.
func TestSweepSkipsWhileFleetPaused(t *testing.T) {
	s := &tasks.Sweeper{Paused: func(context.Context) (time.Duration, string, error) {
		return time.Minute, "Odin login failed", nil
	}}
	if err := s.HandleSweep(t.Context(), nil); err != nil {
		t.Fatalf("HandleSweep during a pause = %v, want nil", err)
	}
}
