package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// submitOptions are the flags of the submit command.
type submitOptions struct {
	redisURL        string
	serviceProvider string
	group           string
	credType        string
	users           stringList
	usersFile       string
	allUsers        bool
	jobID           string
	resultTTL       string
	priority        string
	at              string
	in              string
	callbackURL     string
	requestedBy     string
	rebuildDevices  bool
	resetDevices    bool
	dryRun          bool
	wait            bool
	timeout         string
	format          string
	out             string
	// announce is written to standard error once the job is enqueued.
	announce string
}

// submission is a validated request, ready to be enqueued.
type submission struct {
	payload    tasks.BulkResetPayload
	duplicates []string
	// startAt is the scheduled start, zero to start at once.
	startAt time.Time
	options []asynq.Option
	timeout time.Duration
}

func (a *app) cmdSubmit(ctx context.Context, args []string) error {
	var o submitOptions
	fs := o.flags(a.stdout)
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		switch positional[0] {
		case "submit", "status", "results", "cancel", "retry", "list", "completion":
			return usageErrorf("unexpected argument %q after flags: put the command first, like enqueue %s --redis-url URL ...", positional[0], positional[0])
		}
		return usageErrorf("unexpected argument %q: give users with --user or --users-file, and commands are submit, status, results, cancel, retry, list and completion", positional[0])
	}

	return a.submit(ctx, &o, setFlags(fs))
}

// submit validates the request of o, with set naming the flags given, enqueues it, and
// with --wait follows the job and prints its results.
func (a *app) submit(ctx context.Context, o *submitOptions, set map[string]bool) error {
	sub, err := a.validateSubmission(o, set)
	if err != nil {
		return err
	}
	return a.submitValidated(ctx, o, sub)
}

// submitValidated enqueues the validated request sub of o, and with --wait follows the
// job and prints its results.
func (a *app) submitValidated(ctx context.Context, o *submitOptions, sub submission) error {
	var err error
	if len(sub.duplicates) > 0 {
		action := "reset"
		if o.dryRun {
			action = "checked"
		}
		fmt.Fprintf(a.stderr, "enqueue: warning: %s removed, each user is %s once: %s\n",
			plural(len(sub.duplicates), "duplicate user ID", "duplicate user IDs"), action, describeDuplicates(sub.duplicates))
	}
	var sealer results.Sealer
	if o.wait {
		if sealer, err = a.resultsSealer(); err != nil {
			return err
		}
	}

	c, err := a.connect(ctx, o.redisURL)
	if err != nil {
		return err
	}
	defer c.close()

	if o.wait {
		// With a key the workers' values cannot be opened with, --wait would reset the
		// users and then fail to print their new values.
		err := a.secretStore(c, sealer).VerifySealing(ctx)
		var mismatch *results.SealingMismatchError
		if errors.As(err, &mismatch) {
			return usageErrorf("nothing was submitted: %s", err)
		}
		if err != nil {
			return c.wrap(err)
		}
	}
	result, err := tasks.Submit(ctx, c.client, a.metaStore(c), sub.payload, sub.options...)
	if err != nil {
		return c.wrap(err)
	}
	if o.announce != "" && !result.AlreadySubmitted {
		fmt.Fprint(a.stderr, o.announce)
	}
	if !sub.startAt.IsZero() && !result.AlreadySubmitted {
		// For status: asynq keeps the start time only while the task waits.
		_ = a.metaStore(c).SetAudit(ctx, sub.payload.JobID, map[string]string{"scheduled_for": sub.startAt.UTC().Format(time.RFC3339)})
	}
	a.reportSubmission(sub, result, o.wait)
	if !o.wait {
		fmt.Fprintln(a.stdout, sub.payload.JobID)
		return nil
	}

	store := a.secretStore(c, sealer)
	job, err := a.waitForJob(ctx, c, a.metaStore(c), store, sub.payload.JobID, sub.timeout, sub.startAt)
	if err != nil {
		return err
	}
	if err := a.writeResults(ctx, store, job.ID, o.format, o.out); err != nil {
		return c.wrap(fmt.Errorf("job %s finished, but writing its results failed: %w; collect them with: enqueue results %s", job.ID, err, job.ID))
	}
	return a.reportOutcome(job, o.out)
}

// flags defines the submit flags over o.
func (o *submitOptions) flags(stdout io.Writer) *flagSet {
	fs := newFlagSet("submit", submitUsage, submitExamples, stdout)
	fs.StringVar(&o.redisURL, "redis-url", "", redisURLHelp)
	fs.StringVar(&o.serviceProvider, "service-provider", "", "service provider `ID` of the group (required)")
	fs.StringVar(&o.group, "group", "", "group `ID` (required)")
	fs.StringVar(&o.credType, "type", "", "credential to reset: sip, voicemail (or vm) or web, in any case (required)")
	fs.Var(&o.users, "user", "user `ID` to reset; repeat for more users")
	fs.StringVar(&o.usersFile, "users-file", "", "`file` with one user ID per line (- reads standard input); blank lines and # comments are skipped")
	fs.BoolVar(&o.allUsers, "all-users", false, "reset every user that Odin lists in the group when the job starts")
	fs.StringVar(&o.jobID, "job-id", "", "job `ID`; submitting the same ID again enqueues nothing new (default: generated, reset-YYYYMMDD-HHMM-<8 hex>)")
	fs.StringVar(&o.resultTTL, "result-ttl", "72h", "how long the results are kept after the job's last change, from 1m to 90d (`duration`: 90m, 72h, 7d)")
	fs.StringVar(&o.priority, "priority", "default", "queue priority: high, default or low")
	fs.StringVar(&o.at, "at", "", "start the job at this RFC 3339 `time` (at most 30 days ahead)")
	fs.StringVar(&o.in, "in", "", "start the job after this `duration` (at most 30 days)")
	fs.StringVar(&o.callbackURL, "callback-url", "", "http(s) `URL` that receives a POST with the job summary (never secrets) when the job finishes")
	fs.StringVar(&o.requestedBy, "requested-by", "", "who asks for the reset, stored with the job (default: the OS user name)")
	fs.BoolVar(&o.rebuildDevices, "rebuild-devices", false, "SIP only: rebuild each affected phone's configuration files")
	fs.BoolVar(&o.resetDevices, "reset-devices", false, "SIP only: rebuild each affected phone's configuration and make it re-sync")
	fs.BoolVar(&o.dryRun, "dry-run", false, "check every user (exists, has the service the credential needs, and a group-level device with a device step) without changing anything; the results list ok or the reason per user")
	fs.BoolVar(&o.wait, "wait", false, "wait until the job finishes, showing progress on standard error, then print the results")
	fs.StringVar(&o.timeout, "timeout", "", "with --wait: stop waiting after this `duration` (exit 4); the job continues")
	fs.StringVar(&o.format, "format", "json", "with --wait: output format, json or csv")
	fs.StringVar(&o.out, "out", "", "with --wait: write the results to this `file` (mode 0600) instead of standard output")
	return fs
}

// plural returns "1 user" or "n users".
func plural(n int, singular, pluralForm string) string {
	if n == 1 {
		return "1 " + singular
	}
	return fmt.Sprintf("%d %s", n, pluralForm)
}

// reportSubmission writes to standard error what was submitted and how to follow it.
func (a *app) reportSubmission(sub submission, result tasks.Submission, waiting bool) {
	p := sub.payload
	if result.AlreadySubmitted {
		job := result.Job
		fmt.Fprintf(a.stderr, "enqueue: job %s was submitted before (state %s, %d applied, %d failed of %d): nothing new was enqueued and no user is reset twice\n",
			p.JobID, job.State, job.Applied, job.Failed, job.Total)
	} else {
		users := plural(len(p.Users), "user", "users")
		if p.AllUsers {
			users = "all users"
		}
		when := ""
		if !sub.startAt.IsZero() {
			when = ", starting at " + sub.startAt.UTC().Format(time.RFC3339)
		}
		label := "submitted job"
		if p.DryRun {
			label = "submitted dry run"
		}
		fmt.Fprintf(a.stderr, "enqueue: %s %s: %s credential of %s in service provider %s, group %s, priority %s%s\n",
			label, p.JobID, p.Type, users, p.ServiceProviderID, p.GroupID, p.Priority, when)
		if p.DryRun {
			fmt.Fprintf(a.stderr, "enqueue: a dry run changes nothing on Odin: \"applied\" users passed the checks, the results say \"ok\" or the reason\n")
		}
	}
	if !waiting {
		fmt.Fprintf(a.stderr, "enqueue: follow it with: enqueue status %s --watch\n", p.JobID)
		if p.DryRun {
			fmt.Fprintf(a.stderr, "enqueue: collect the checks with: enqueue results %s --out %s.json\n", p.JobID, p.JobID)
		} else {
			fmt.Fprintf(a.stderr, "enqueue: collect the new values with: enqueue results %s --out %s.json\n", p.JobID, p.JobID)
		}
	}
}

// reportOutcome summarises a finished job on standard error and returns its exit status:
// nil when every user was applied.
func (a *app) reportOutcome(job results.Job, out string) error {
	where := ""
	if out != "" {
		where = "; results written to " + out
	}
	if job.DryRun {
		fmt.Fprintf(a.stderr, "enqueue: dry run %s %s: %d ok, %d failed the checks, %d not checked of %d; nothing was changed on Odin%s\n",
			job.ID, job.State, job.Applied, job.Failed, job.Pending(), job.Total, where)
	} else {
		fmt.Fprintf(a.stderr, "enqueue: job %s %s: %d applied, %d failed, %d not reset of %d%s\n",
			job.ID, job.State, job.Applied, job.Failed, job.Pending(), job.Total, where)
	}
	if allApplied(job) {
		return nil
	}
	return errSomeFailed
}

// allApplied reports whether a job completed with every user applied.
func allApplied(job results.Job) bool {
	return job.State == results.JobCompleted && job.Failed == 0 && job.Applied == job.Total
}
