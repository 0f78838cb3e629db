package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/odinreset/odinreset/odin/odintest"
)

// shutdownTimeout bounds how long a stop waits for running requests before it closes
// their connections.
const shutdownTimeout = 5 * time.Second

// usageError is an invalid command line. main exits with status 2 for it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// options are the parsed command line.
type options struct {
	addr     string
	cfg      odintest.Config
	password string // the admin password's source, for the startup line
}

// run serves the simulator until ctx ends, then stops it gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}

	sim, err := odintest.New(opts.cfg)
	if err != nil {
		return &usageError{err: err}
	}
	listener, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("listening on %s failed: %w", opts.addr, err)
	}
	srv := odintest.Serve(sim, listener)

	username, _ := sim.Login()
	others := ""
	if n := len(opts.cfg.OtherGroupUsers); n > 0 {
		others = fmt.Sprintf(", %d more in group %q", n, opts.cfg.OtherGroupID)
	}
	fmt.Fprintf(stderr, "odin-sim: serving %s (service provider %q, group %q, %d users%s, login %q with %s); inspect at %s/_sim/\n",
		srv.URL, sim.ServiceProviderID(), sim.GroupID(), len(sim.Users()), others, username, opts.password, srv.Root())

	<-ctx.Done()
	fmt.Fprintln(stderr, "odin-sim: stopping")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintf(stderr, "odin-sim: closed requests still running after %v\n", shutdownTimeout)
	}

	st := sim.Stats()
	fmt.Fprintf(stdout, "requests %d, max per second %d, 429s %d, logins %d, refreshes %d\n",
		st.Total, st.MaxPerSecond, st.TooManyRequests, st.Logins, st.Refreshes)
	return nil
}

// parseArgs turns the command line into options. It returns flag.ErrHelp for -h and a
// *usageError for anything invalid.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("odin-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: odin-sim [options]\n\n"+
			"Serves a simulated Odin API under /api/v2 and inspection endpoints under /_sim/.\n"+
			"User lists (SPEC) are either a count N or comma-separated user IDs. Counts take\n"+
			"consecutive users in this order: --without-auth, --without-voicemail,\n"+
			"--reject-first, --no-device, --sp-device, so\n"+
			"\"--without-auth 2 --reject-first 3\" picks users 1-2 and 3-5.\n\nOptions:\n")
		fs.PrintDefaults()
	}

	var (
		opts                                       options
		cfg                                        = &opts.cfg
		extraUsers, otherGroupUsers                listFlag
		withoutAuth, withoutVoicemail, rejectFirst string
		noDevice, spDevice                         string
		sharedDevices                              listFlag
	)
	fs.StringVar(&opts.addr, "addr", "127.0.0.1:8089", "`host:port` to listen on")
	fs.IntVar(&cfg.Users, "users", 100, "number of seeded users user0001@example.com, user0002@example.com, ...")
	fs.Var(&extraUsers, "extra-user", "add a user `ID` to the group (repeatable)")
	fs.StringVar(&cfg.ServiceProviderID, "service-provider", "sp1", "service provider `ID`")
	fs.StringVar(&cfg.GroupID, "group", "grp1", "group `ID`")
	fs.Var(&otherGroupUsers, "other-group-user", "add a user `ID` to another group of the service provider, named by --other-group (repeatable)")
	fs.StringVar(&cfg.OtherGroupID, "other-group", "grp2", "group `ID` of the --other-group-user users")
	fs.StringVar(&cfg.Username, "username", "admin", "admin user `name` for POST /auth/token")
	password := fs.String("password", "", "admin password (default from ODIN_SIM_PASSWORD, else \"odin-sim-password\")")
	fs.DurationVar(&cfg.TokenLifetime, "token-lifetime", time.Hour, "lifetime of issued tokens")
	fs.BoolVar(&cfg.LoginPasswordChangeRequired, "password-change-required", false, "reject correct logins with 402, password change required")

	fs.StringVar(&withoutAuth, "without-auth", "", "users without the Authentication service (`SPEC`)")
	fs.StringVar(&withoutVoicemail, "without-voicemail", "", "users without the Voice Messaging User service (`SPEC`)")
	fs.StringVar(&rejectFirst, "reject-first", "", "users whose first value of each kind is rejected as used before (`SPEC`)")
	fs.StringVar(&noDevice, "no-device", "", "users without a phone (`SPEC`)")
	fs.StringVar(&spDevice, "sp-device", "", "users whose phone is at service provider level (`SPEC`)")
	fs.Var(&sharedDevices, "shared-device", "a group-level phone shared by users, as `NAME=ID,ID,...` (repeatable)")

	fs.IntVar(&cfg.PasswordMinLength, "password-min-length", 12, "minimum web password length")
	fs.IntVar(&cfg.SIPPasswordLength, "sip-password-length", 12, "length of generated SIP passwords")
	fs.IntVar(&cfg.PasscodeMinLength, "passcode-min-length", 6, "minimum passcode length")
	fs.IntVar(&cfg.PasscodeMaxLength, "passcode-max-length", 8, "maximum passcode length")
	fs.BoolVar(&cfg.SIPGeneratorAcceptsLimit, "sip-generator-limit", false, "let GET /sip-password/generate honour limit")
	fs.IntVar(&cfg.MaxGenerateLimit, "max-generate-limit", 1000, "largest limit the generators accept")

	fs.DurationVar(&cfg.Latency, "latency", 0, "delay added to every API request")
	fs.DurationVar(&cfg.LatencyJitter, "jitter", 0, "random extra delay, uniform from 0 up to this")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 0, "API requests per second before 429 (0 for unlimited)")
	fs.BoolVar(&cfg.RetryAfterHTTPDate, "retry-after-date", false, "send Retry-After as an HTTP date instead of seconds")

	fs.Float64Var(&cfg.Faults.Error500, "error-500", 0, "fraction of API requests that get 500")
	fs.Float64Var(&cfg.Faults.Error502HTML, "error-502", 0, "fraction of API requests that get an HTML 502")
	fs.Float64Var(&cfg.Faults.Reset, "reset", 0, "fraction of API requests whose connection is reset")
	fs.Float64Var(&cfg.Faults.Hang, "hang", 0, "fraction of API requests that hang, then get 504")
	fs.DurationVar(&cfg.Faults.HangDuration, "hang-duration", 30*time.Second, "how long a hanging request waits")
	fs.BoolVar(&cfg.Faults.IncludeAuth, "faults-include-auth", false, "inject faults into login and refresh too")
	fs.Float64Var(&cfg.Faults.ApplyBeforeFault, "apply-before-fault", 0, "fraction of faulted requests that take effect before failing")
	fs.Int64Var(&cfg.Faults.Seed, "fault-seed", 0, "seed for a repeatable choice of faulted requests (0 for random)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, err
		}
		return options{}, &usageError{err: err}
	}
	if fs.NArg() > 0 {
		return options{}, usagef("unexpected argument %q: odin-sim takes options only", fs.Arg(0))
	}
	if cfg.Users < 0 {
		return options{}, usagef("--users is %d, want 0 or more", cfg.Users)
	}

	cfg.ExtraUsers = extraUsers
	cfg.OtherGroupUsers = otherGroupUsers
	switch {
	case *password != "":
		cfg.Password, opts.password = *password, "the password from --password"
	case os.Getenv("ODIN_SIM_PASSWORD") != "":
		cfg.Password, opts.password = os.Getenv("ODIN_SIM_PASSWORD"), "the password from ODIN_SIM_PASSWORD"
	default:
		cfg.Password, opts.password = "odin-sim-password", `the default password "odin-sim-password"`
	}

	picker := userPicker{users: cfg.Users, extraUsers: cfg.ExtraUsers}
	specs := []struct {
		flag string
		spec string
		dest *[]string
	}{
		{"--without-auth", withoutAuth, &cfg.WithoutAuthentication},
		{"--without-voicemail", withoutVoicemail, &cfg.WithoutVoiceMessaging},
		{"--reject-first", rejectFirst, &cfg.RejectFirst},
		{"--no-device", noDevice, &cfg.Devices.NoDevice},
		{"--sp-device", spDevice, &cfg.Devices.ServiceProviderLevel},
	}
	for _, s := range specs {
		ids, err := picker.pick(s.spec)
		if err != nil {
			return options{}, usagef("%s: %w", s.flag, err)
		}
		*s.dest = ids
	}

	for _, shared := range sharedDevices {
		name, ids, ok := strings.Cut(shared, "=")
		if !ok || name == "" || ids == "" {
			return options{}, usagef("--shared-device %q: want NAME=ID,ID,...", shared)
		}
		if cfg.Devices.Shared == nil {
			cfg.Devices.Shared = make(map[string][]string)
		}
		cfg.Devices.Shared[name] = append(cfg.Devices.Shared[name], splitList(ids)...)
	}
	return opts, nil
}

// userPicker hands out user IDs for the SPEC options.
type userPicker struct {
	users      int
	extraUsers []string
	next       int // index in group order of the next user a count hands out
}

// pick returns the users a SPEC names: "" for none, a count N for the next N users in
// group order, or comma-separated user IDs.
func (p *userPicker) pick(spec string) ([]string, error) {
	if spec == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(spec)
	if err != nil {
		return splitList(spec), nil
	}

	total := p.users + len(p.extraUsers)
	if n < 0 || p.next+n > total {
		return nil, fmt.Errorf("count %d is invalid: %d of the %d users are left", n, total-p.next, total)
	}
	ids := make([]string, 0, n)
	for i := p.next; i < p.next+n; i++ {
		if i < p.users {
			ids = append(ids, odintest.SeededUserID(i+1))
		} else {
			ids = append(ids, p.extraUsers[i-p.users])
		}
	}
	p.next += n
	return ids, nil
}

func splitList(list string) []string {
	var items []string
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(value string) error {
	*l = append(*l, value)
	return nil
}
