package main

import (
	"fmt"
	"slices"
)

// stat is one metric over the runs of a case.
type stat struct {
	values           []float64
	median, min, max float64
}

// newStat summarises values; the median of an even count is the mean of the middle two.
func newStat(values []float64) stat {
	if len(values) == 0 {
		return stat{}
	}
	sorted := slices.Sorted(slices.Values(values))
	mid := len(sorted) / 2
	median := sorted[mid]
	if len(sorted)%2 == 0 {
		median = (sorted[mid-1] + sorted[mid]) / 2
	}
	return stat{values: values, median: median, min: sorted[0], max: sorted[len(sorted)-1]}
}

// caseSummary is one case over all its runs. Durations are in seconds and sizes in
// bytes. Ratios are computed per run, from measurements taken side by side, and then
// summarised.
type caseSummary struct {
	params params
	runs   []batchResult

	wall           stat
	fanOut         stat
	usersPerSecond stat
	callsPerUser   stat
	maxPerSecond   stat
	tooMany        stat
	applied        stat
	mismatches     stat
	// peakRSS is the largest worker's peak RSS of each run.
	peakRSS        stat
	redisPerUser   stat
	taskHashesLeft stat

	noopPerSecond stat
	// noopRatio is users/s over no-op tasks/s on one queue, and workerQueuesRatio the
	// same over the no-op on the worker's queues.
	noopRatio          stat
	workerQueuesPerSec stat
	workerQueuesRatio  stat
	// sequentialWall and cappedWall are the sequential baselines' wall times, scaled
	// to the batch's user count when they ran on fewer users. The ratios divide them
	// by the batch's wall time.
	sequentialWall  stat
	sequentialRatio stat
	cappedWall      stat
	cappedRatio     stat
}

func summarise(p params, runs []batchResult) caseSummary {
	s := caseSummary{params: p, runs: runs}
	collect := func(get func(r batchResult) (float64, bool)) stat {
		var values []float64
		for _, r := range runs {
			if v, ok := get(r); ok {
				values = append(values, v)
			}
		}
		return newStat(values)
	}
	always := func(get func(r batchResult) float64) stat {
		return collect(func(r batchResult) (float64, bool) { return get(r), true })
	}

	s.wall = always(func(r batchResult) float64 { return r.Wall.Seconds() })
	s.fanOut = always(func(r batchResult) float64 { return r.FanOut.Seconds() })
	s.usersPerSecond = always(func(r batchResult) float64 { return r.UsersPerSecond })
	s.callsPerUser = always(func(r batchResult) float64 { return r.CallsPerUser })
	s.maxPerSecond = always(func(r batchResult) float64 { return float64(r.MaxPerSecond) })
	s.tooMany = always(func(r batchResult) float64 { return float64(r.TooMany) })
	s.applied = always(func(r batchResult) float64 { return float64(r.Applied) })
	s.mismatches = always(func(r batchResult) float64 { return float64(r.Mismatches) })
	s.peakRSS = collect(func(r batchResult) (float64, bool) {
		if len(r.PeakRSS) == 0 {
			return 0, false
		}
		return float64(slices.Max(r.PeakRSS)), true
	})
	s.redisPerUser = always(func(r batchResult) float64 { return r.RedisPerUser })
	s.taskHashesLeft = always(func(r batchResult) float64 { return float64(r.TaskHashes) })

	s.noopPerSecond = collect(func(r batchResult) (float64, bool) {
		if r.Noop == nil {
			return 0, false
		}
		return r.Noop.TasksPerSecond, true
	})
	s.noopRatio = collect(func(r batchResult) (float64, bool) {
		if r.Noop == nil {
			return 0, false
		}
		return r.UsersPerSecond / r.Noop.TasksPerSecond, true
	})
	s.workerQueuesPerSec = collect(func(r batchResult) (float64, bool) {
		if r.NoopWorkerQueues == nil {
			return 0, false
		}
		return r.NoopWorkerQueues.TasksPerSecond, true
	})
	s.workerQueuesRatio = collect(func(r batchResult) (float64, bool) {
		if r.NoopWorkerQueues == nil {
			return 0, false
		}
		return r.UsersPerSecond / r.NoopWorkerQueues.TasksPerSecond, true
	})
	scaled := func(seq *sequentialResult, users int) float64 {
		return seq.PerUser.Seconds() * float64(users)
	}
	s.sequentialWall = collect(func(r batchResult) (float64, bool) {
		if r.Sequential == nil {
			return 0, false
		}
		return scaled(r.Sequential, r.Users), true
	})
	s.sequentialRatio = collect(func(r batchResult) (float64, bool) {
		if r.Sequential == nil {
			return 0, false
		}
		return scaled(r.Sequential, r.Users) / r.Wall.Seconds(), true
	})
	s.cappedWall = collect(func(r batchResult) (float64, bool) {
		if r.SequentialCapped == nil {
			return 0, false
		}
		return scaled(r.SequentialCapped, r.Users), true
	})
	s.cappedRatio = collect(func(r batchResult) (float64, bool) {
		if r.SequentialCapped == nil {
			return 0, false
		}
		return scaled(r.SequentialCapped, r.Users) / r.Wall.Seconds(), true
	})
	return s
}

// fmtSeconds formats a duration given in seconds, with more digits for short ones.
func fmtSeconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

// fmtMB formats bytes as megabytes (2^20 bytes).
func fmtMB(b float64) string { return fmt.Sprintf("%.1f MB", b/(1<<20)) }
