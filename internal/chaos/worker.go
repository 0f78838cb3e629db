package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildWorker compiles the worker command into dir and returns the binary's path. It runs
// the go command found on PATH from the module root, which it finds with `go env GOMOD`,
// so it works from any package directory of the module.
func BuildWorker(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root with go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "worker")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/worker: %w\n%s", err, out)
	}
	return bin, nil
}

// Worker runs the worker binary as a process that can be started again after it stops.
// Every run appends its standard output and error to one log file. Methods are safe for
// concurrent use.
type Worker struct {
	// Name identifies the worker in failure messages.
	Name string
	// LogPath is the file that collects the output of every run.
	LogPath string

	binary string
	env    []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	state  *os.ProcessState
	starts int
}

// NewWorker prepares a worker process with exactly the environment env (nothing is
// inherited from the test process); Start runs it.
func NewWorker(binary, name string, env []string, logPath string) *Worker {
	return &Worker{Name: name, LogPath: logPath, binary: binary, env: env}
}

// Starts returns how many times the worker was started.
func (w *Worker) Starts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.starts
}

// Start runs a new process and waits until it logs "worker started". It returns an error
// with the end of the log when the process exits first or takes longer than 30 s.
func (w *Worker) Start(args ...string) error {
	w.mu.Lock()
	if w.cmd != nil {
		w.mu.Unlock()
		return fmt.Errorf("worker %s is already running", w.Name)
	}
	logFile, err := os.OpenFile(w.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	offset, _ := logFile.Seek(0, io.SeekEnd)

	cmd := exec.Command(w.binary, args...)
	cmd.Env = w.env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		w.mu.Unlock()
		return fmt.Errorf("start worker %s: %w", w.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		w.mu.Lock()
		w.state = cmd.ProcessState
		w.mu.Unlock()
		close(exited)
	}()
	w.cmd, w.exited, w.state = cmd, exited, nil
	w.starts++
	w.mu.Unlock()

	deadline := time.After(30 * time.Second)
	for {
		if w.logContains(offset, "worker started") {
			return nil
		}
		select {
		case <-exited:
			w.forget(cmd)
			return fmt.Errorf("worker %s exited at start; its log:\n%s", w.Name, w.LogTail(20))
		case <-deadline:
			return fmt.Errorf("worker %s did not log \"worker started\" within 30s; its log:\n%s", w.Name, w.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops the process with SIGKILL and waits for it to exit.
func (w *Worker) Kill() error {
	cmd, exited := w.running()
	if cmd == nil {
		return fmt.Errorf("worker %s is not running", w.Name)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill worker %s: %w", w.Name, err)
	}
	<-exited
	w.forget(cmd)
	return nil
}

// Terminate sends SIGTERM and waits up to timeout for the process to exit. It returns
// the exit code and how long the process took to stop; after the timeout it kills the
// process and returns an error.
func (w *Worker) Terminate(timeout time.Duration) (exitCode int, took time.Duration, err error) {
	cmd, exited := w.running()
	if cmd == nil {
		return 0, 0, fmt.Errorf("worker %s is not running", w.Name)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, 0, fmt.Errorf("send SIGTERM to worker %s: %w", w.Name, err)
	}
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		w.forget(cmd)
		return -1, time.Since(start), fmt.Errorf("worker %s still running %s after SIGTERM; killed it", w.Name, timeout)
	}
	took = time.Since(start)
	w.mu.Lock()
	code := w.state.ExitCode()
	w.mu.Unlock()
	w.forget(cmd)
	return code, took, nil
}

// Stop kills the process if it runs; for test cleanup.
func (w *Worker) Stop() {
	if cmd, _ := w.running(); cmd != nil {
		_ = w.Kill()
	}
}

func (w *Worker) running() (*exec.Cmd, chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd, w.exited
}

func (w *Worker) forget(cmd *exec.Cmd) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd == cmd {
		w.cmd, w.exited = nil, nil
	}
}

func (w *Worker) logContains(offset int64, message string) bool {
	f, err := os.Open(w.LogPath)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	found := false
	_ = ScanLines(f, func(line []byte) {
		var entry struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(line, &entry) == nil && entry.Message == message {
			found = true
		}
	})
	return found
}

// LogTail returns the last n lines of the worker's log.
func (w *Worker) LogTail(n int) string {
	b, _ := os.ReadFile(w.LogPath)
	return tail(string(b), n)
}

// ScanLines calls fn with every line of r, including lines longer than bufio's default
// limit. The slice is only valid during the call.
func ScanLines(r io.Reader, fn func(line []byte)) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			long = append(long, chunk...)
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		line := chunk
		if long != nil {
			line = append(long, chunk...)
			long = nil
		}
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			fn(line)
		}
		if err != nil {
			return nil
		}
	}
}
