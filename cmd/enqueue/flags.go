package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// flagSet is a command's flags and the help it prints for --help.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlagSet returns a flag set that prints nothing by itself: parseArgs reports errors
// in one line and prints usage, options and examples for --help.
func newFlagSet(name, usage, examples string, stdout io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help := func() {
		fmt.Fprint(stdout, usage)
		fmt.Fprintln(stdout, "\nOptions:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprint(stdout, examples)
	}
	return &flagSet{FlagSet: fs, help: help}
}

// parseArgs parses flags that may come before, between or after positional arguments
// ("enqueue status JOB --json") and returns the positional arguments. --help prints the
// help and returns flag.ErrHelp. Anything invalid is a usage error naming the command.
func parseArgs(fs *flagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, err
			}
			return nil, usageErrorf("%v: see %s --help", err, commandName(fs.FlagSet))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumedTerminator(args, rest) {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// consumedTerminator reports whether the last Parse stopped at "--", after which every
// argument is positional even when it starts with "-".
func consumedTerminator(args, rest []string) bool {
	i := len(args) - len(rest) - 1
	return i >= 0 && args[i] == "--"
}

func commandName(fs *flag.FlagSet) string {
	if fs.Name() == "submit" {
		return "enqueue submit"
	}
	return "enqueue " + fs.Name()
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseDuration accepts Go durations (90m, 72h) and whole or fractional days (7d),
// because result lifetimes are thought of in days.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n > 1e5 || n < -1e5 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}

// formatDuration prints a duration rounded for people: 1h2m, 3m4s, 5s.
func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		d = d.Round(time.Minute)
	case d >= time.Second:
		d = d.Round(time.Second)
	default:
		d = d.Round(time.Millisecond)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
