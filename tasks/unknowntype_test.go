package tasks_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/tasks"
)

func TestRejectUnknownTypesLogs(t *testing.T) {
	var logs bytes.Buffer
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeComplete, func(context.Context, *asynq.Task) error { return nil })
	handler := tasks.RejectUnknownTypes(mux, zerolog.New(&logs))

	err := handler.ProcessTask(context.Background(), asynq.NewTask("reset:whatever", []byte(`{}`)))
	if !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("unknown type: %v, want an error that skips retries", err)
	}
	if got := logs.String(); !strings.Contains(got, `"task_type":"reset:whatever"`) || !strings.Contains(got, "no handler for this task type") {
		t.Errorf("log %q, want an error line naming the task type", got)
	}

	logs.Reset()
	if err := handler.ProcessTask(context.Background(), asynq.NewTask(tasks.TypeComplete, nil)); err != nil {
		t.Errorf("known type: %v", err)
	}
	if logs.Len() != 0 {
		t.Errorf("log %q for a known type, want nothing from this handler", logs.String())
	}
}
