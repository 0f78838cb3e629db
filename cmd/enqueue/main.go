// Command enqueue submits bulk credential resets (SIP password, voicemail passcode, web
// password) of BroadWorks users to the reset workers through Redis, waits for them,
// and prints, lists, collects and cancels jobs. It never talks to Odin itself.
// Run "enqueue --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs failed dials to standard error by itself, but run reports them once,
	// with the address and what to check.
	redis.SetLogger(silentLogger{})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}
