package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
)

// maxListLimit bounds --limit: each listed job costs one Redis round trip.
const maxListLimit = 1000

func (a *app) cmdList(ctx context.Context, args []string) error {
	fs := newFlagSet("list", listUsage, listExamples, a.stdout)
	redisURL := fs.String("redis-url", "", redisURLHelp)
	limit := fs.Int("limit", 20, "show at most this many jobs, newest first (1 to 1000)")
	asJSON := fs.Bool("json", false, "print a JSON array of jobs")
	quiet := fs.Bool("quiet", false, "print only the job IDs, one per line (shell completion uses it)")
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usageErrorf("unexpected argument %q: enqueue list takes no job ID; use enqueue status JOB for one job", positional[0])
	}
	if *limit < 1 || *limit > maxListLimit {
		return usageErrorf("invalid --limit %d: use 1 to %d", *limit, maxListLimit)
	}

	c, err := a.connect(ctx, *redisURL)
	if err != nil {
		return err
	}
	defer c.close()
	jobs, err := a.metaStore(c).Jobs(ctx, *limit)
	if err != nil {
		return c.wrap(err)
	}

	if *quiet {
		for _, job := range jobs {
			fmt.Fprintln(a.stdout, job.ID)
		}
		return nil
	}
	if *asJSON {
		views := make([]jobView, 0, len(jobs))
		for _, job := range jobs {
			views = append(views, newJobView(job, nil, a.now()))
		}
		b, err := json.MarshalIndent(views, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.stdout, string(b))
		return err
	}

	if len(jobs) == 0 {
		fmt.Fprintf(a.stderr, "enqueue: no jobs in Redis at %s\n", c.where)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB ID\tSTATE\tTYPE\tSERVICE PROVIDER\tGROUP\tAPPLIED\tFAILED\tPENDING\tTOTAL\tCREATED")
	for _, job := range jobs {
		total := strconv.Itoa(job.Total)
		if !job.UsersLoaded {
			total = "-"
		}
		typ := string(job.Type)
		if job.DryRun {
			typ += " (dry run)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n",
			job.ID, job.State, typ, job.ServiceProviderID, job.GroupID,
			job.Applied, job.Failed, job.Pending(), total, formatTime(job.CreatedAt))
	}
	return tw.Flush()
}
