// Command bench measures the reset pipeline end to end and checks it against its
// performance targets. For each scenario it starts a dedicated redis-server, the Odin
// simulator (cmd/odin-sim) with the scenario's latency and limits, and N worker processes
// (cmd/worker). It submits one batch with cmd/enqueue and reports the wall time and
// users per second, Odin calls per user by endpoint, the simulator's highest one-second
// request count and its 429 responses. It also reports the workers' peak RSS, Redis
// memory per user once the job is complete, and the fan-out time. In the same run it can measure an asynq no-op task
// baseline on the same Redis, and a sequential baseline that resets one user at a time
// as the original Python library did.
//
// Run "go run ./bench -h" for the scenarios and flags; docs/BENCHMARKS.md records the
// results and the commands that produced them.
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
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
