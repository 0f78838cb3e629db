package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// newLogger builds the process logger: JSON lines, or zerolog's console format when
// asked for or when auto-detected on a terminal.
func newLogger(cfg Config, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	console := cfg.LogFormat == "console"
	if cfg.LogFormat == "auto" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			console = true
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("service", "odinreset-worker").Logger()
}

// redisLogger sends go-redis's own messages (failed dials, Sentinel master changes) to
// the worker's log as JSON instead of plain text on standard error.
type redisLogger struct{ log zerolog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Str("component", "go-redis").Msg(fmt.Sprintf(format, v...))
}

func init() {
	// Durations in log lines are in milliseconds, and their field names end in _ms. This
	// is zerolog's package-level setting, so it is set once here rather than per logger.
	zerolog.DurationFieldUnit = time.Millisecond
}

// redisLoggerOnce makes the first worker of the process own go-redis's package-level
// logger; tests start several workers in one process.
var redisLoggerOnce sync.Once

func setRedisLogger(log zerolog.Logger) {
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{log}) })
}
