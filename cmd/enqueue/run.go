package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// Exit codes. The README documents them.
const (
	exitOK       = 0 // success, and for a waited submit, results and status: every user applied
	exitFailed   = 1 // some users failed or were not reset
	exitUsage    = 2 // invalid input, usage, or configuration the operator must fix
	exitInfra    = 3 // Redis or another part of the infrastructure failed
	exitTimedOut = 4 // --wait stopped before the job finished
)

// app is one invocation of the CLI and everything it takes from its surroundings, so
// tests can run it in process with buffers, a fixed clock and their own environment.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time

	// stderrIsTerminal selects the progress bar of --wait, and stdoutIsTerminal the
	// in-place redraws of status --watch.
	stderrIsTerminal bool
	stdoutIsTerminal bool
	// pollInterval is how often --wait and --watch read the job. Default 500 ms.
	pollInterval time.Duration
	// progressInterval is how often --wait prints a plain progress line when stderr is
	// not a terminal. Default 5 s.
	progressInterval time.Duration
	// sealer, when set, replaces the results key configured in the environment.
	sealer results.Sealer
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{
		stdin: stdin, stdout: stdout, stderr: stderr,
		getenv: os.Getenv, now: time.Now,
		stderrIsTerminal: isTerminal(stderr), stdoutIsTerminal: isTerminal(stdout),
	}
	return a.run(ctx, args)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// run dispatches to a command and turns its error into an exit code and a message.
func (a *app) run(ctx context.Context, args []string) int {
	if a.pollInterval == 0 {
		a.pollInterval = 500 * time.Millisecond
	}
	if a.progressInterval == 0 {
		a.progressInterval = 5 * time.Second
	}

	err := a.dispatch(ctx, args)
	code := exitCode(err)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(a.stderr, "enqueue: "+msg)
		}
	}
	return code
}

func (a *app) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, mainUsage)
		return usageErrorf("no command or job given: see the usage above")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if args[0] == "help" && len(args) > 1 {
			return a.dispatch(ctx, []string{args[1], "--help"})
		}
		fmt.Fprint(a.stdout, mainUsage)
		return nil
	case "submit":
		return a.cmdSubmit(ctx, args[1:])
	case "status":
		return a.cmdStatus(ctx, args[1:])
	case "results":
		return a.cmdResults(ctx, args[1:])
	case "cancel":
		return a.cmdCancel(ctx, args[1:])
	case "retry":
		return a.cmdRetry(ctx, args[1:])
	case "list":
		return a.cmdList(ctx, args[1:])
	case "completion":
		return a.cmdCompletion(args[1:])
	}
	if !strings.HasPrefix(args[0], "-") {
		return usageErrorf("unknown command %q: use submit, status, results, cancel, retry, list or completion (see enqueue --help)", args[0])
	}
	return a.cmdSubmit(ctx, args)
}

// exitError carries the exit code of a failure. An empty message prints nothing, for
// outcomes the command has already reported (some users failed).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports invalid input or configuration: exit 2.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// infraError reports a Redis or other infrastructure failure: exit 3.
func infraError(err error) error {
	return &exitError{code: exitInfra, err: err}
}

// errSomeFailed ends a command whose output already shows which users failed.
var errSomeFailed = &exitError{code: exitFailed}

// exitCode maps an error to the exit code: typed errors of the libraries that mean "fix
// the input or the configuration" give 2, and anything not classified gives 3, because
// after validation what is left to fail is Redis.
func exitCode(err error) int {
	var exit *exitError
	var validation *tasks.ValidationError
	var invalidType *results.InvalidTypeError
	var conflict *tasks.ConflictError
	var mismatch *results.KeyMismatchError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &exit):
		return exit.code
	case errors.As(err, &validation), errors.As(err, &invalidType), errors.As(err, &conflict),
		errors.As(err, &mismatch), errors.Is(err, results.ErrNoKey),
		errors.Is(err, results.ErrPlaintextRefused), errors.Is(err, results.ErrNotFound):
		return exitUsage
	}
	return exitInfra
}
