package worker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

type ctxKey struct{}

// TestWarmHandlerRunsTasks checks that the pool passes the task, the context and the
// error through.
func TestWarmHandlerRunsTasks(t *testing.T) {
	want := errors.New("odin failed")
	next := asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		if got := ctx.Value(ctxKey{}); got != "job1" {
			t.Errorf("context value %v, want job1", got)
		}
		if task.Type() != "reset:user" {
			t.Errorf("task type %q, want reset:user", task.Type())
		}
		return want
	})
	h := newWarmHandler(t.Context(), next, 2)

	ctx := context.WithValue(t.Context(), ctxKey{}, "job1")
	for range 10 {
		if err := h.ProcessTask(ctx, asynq.NewTask("reset:user", nil)); !errors.Is(err, want) {
			t.Fatalf("ProcessTask returned %v, want %v", err, want)
		}
	}
}

// TestWarmHandlerPanics checks that a handler's panic is raised again on the caller's
// goroutine, where asynq recovers it, with the handler's stack in its text.
func TestWarmHandlerPanics(t *testing.T) {
	next := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		panic("nil map")
	})
	h := newWarmHandler(t.Context(), next, 1)

	// Until its goroutine waits for work, the pool runs tasks on the caller's goroutine,
	// which panics with the handler's own value.
	var recovered any
	for range 100 {
		func() {
			defer func() { recovered = recover() }()
			_ = h.ProcessTask(t.Context(), asynq.NewTask("reset:user", nil))
		}()
		if _, onPool := recovered.(*warmPanic); onPool {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p, ok := recovered.(*warmPanic)
	if !ok {
		t.Fatalf("recovered %v (%T), want a *warmPanic", recovered, recovered)
	}
	if p.value != "nil map" {
		t.Errorf("panic value %v, want nil map", p.value)
	}
	if !strings.Contains(p.String(), "TestWarmHandlerPanics") {
		t.Errorf("panic text lacks the handler's stack:\n%s", p)
	}

	// The pool goroutine survived the panic.
	h.next = asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
	if err := h.ProcessTask(t.Context(), asynq.NewTask("reset:user", nil)); err != nil {
		t.Errorf("ProcessTask after a panic: %v", err)
	}
}

// TestWarmHandlerBusyPool checks that a task runs on the caller's goroutine when every
// pool goroutine is busy, instead of waiting for one.
func TestWarmHandlerBusyPool(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	next := asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		if ctx.Value(ctxKey{}) == "blocker" {
			once.Do(func() { close(started) })
			<-release
		}
		return nil
	})
	h := newWarmHandler(t.Context(), next, 1)

	blocked := make(chan error, 1)
	go func() {
		blocked <- h.ProcessTask(context.WithValue(t.Context(), ctxKey{}, "blocker"), asynq.NewTask("reset:user", nil))
	}()
	<-started

	if err := h.ProcessTask(t.Context(), asynq.NewTask("reset:user", nil)); err != nil {
		t.Errorf("ProcessTask with a busy pool: %v", err)
	}
	close(release)
	if err := <-blocked; err != nil {
		t.Errorf("ProcessTask of the blocking task: %v", err)
	}
}

// TestWarmHandlerStops checks that the pool goroutines end with their context and that
// tasks then run on the caller's goroutine.
func TestWarmHandlerStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	runs := 0
	h := newWarmHandler(ctx, asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		runs++
		return nil
	}), 3)
	cancel()

	for range 5 {
		if err := h.ProcessTask(t.Context(), asynq.NewTask("reset:user", nil)); err != nil {
			t.Fatalf("ProcessTask after the pool stopped: %v", err)
		}
	}
	if runs != 5 {
		t.Errorf("handler ran %d times, want 5", runs)
	}
}
