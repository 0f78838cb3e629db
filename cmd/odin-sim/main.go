// Command odin-sim serves the Odin API simulator from package odintest as a process, for
// docker-compose, benchmarks and manual tests. Run "odin-sim -h" for its options.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()

	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return
	case errors.As(err, new(*usageError)):
		fmt.Fprintln(os.Stderr, "odin-sim:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "odin-sim:", err)
		os.Exit(1)
	}
}
