// Command worker runs bulk credential resets of BroadWorks users through the Odin API.
// It is an asynq worker that fans each job out into per-user tasks and sets the new
// values on Odin at a fleet-wide rate, keeping them in the Redis results record. With --demo it runs a
// self-contained demonstration against an embedded Redis and the Odin simulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return // --help printed the usage
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		var usage *usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run parses the configuration and runs the worker, or the demo, until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Demo {
		return runDemo(ctx, cfg, getenv, stdout, stderr)
	}
	return runWorker(ctx, cfg, getenv, stderr)
}
