package odintest

import (
	"maps"
	"sync"
	"time"
)

// Stats counts API requests, that is requests under /api/v2. Requests to /_sim/ are not
// counted.
type Stats struct {
	// Requests counts requests by "METHOD /path", the path without /api/v2 and query.
	Requests map[string]int `json:"requests"`
	// Statuses counts responses by "METHOD /path" and HTTP status. Status 0 counts
	// requests that got no response: reset connections and hangs the client gave up on.
	Statuses map[string]map[int]int `json:"statuses"`
	// Total is the number of API requests.
	Total int `json:"total"`
	// MaxPerSecond is the highest number of API requests that arrived within any
	// 1-second interval, measured over a window sliding with each arrival. Every
	// request counts, including those rejected with 429 or replaced by a fault.
	MaxPerSecond int `json:"maxPerSecond"`
	// TooManyRequests is the number of 429 responses sent.
	TooManyRequests int `json:"tooManyRequests"`
	// Logins and Refreshes count the sessions issued by POST and PUT /auth/token.
	Logins    int `json:"logins"`
	Refreshes int `json:"refreshes"`
	// Generated counts the values the generators sent, by credential kind.
	Generated map[Kind]int `json:"generated"`
	// Faults counts injected faults by kind: "500", "502", "reset" and "hang".
	Faults map[string]int `json:"faults"`
}

func newStats() Stats {
	return Stats{
		Requests:  make(map[string]int),
		Statuses:  make(map[string]map[int]int),
		Generated: make(map[Kind]int),
		Faults:    make(map[string]int),
	}
}

func (st Stats) clone() Stats {
	c := st
	c.Requests = maps.Clone(st.Requests)
	c.Generated = maps.Clone(st.Generated)
	c.Faults = maps.Clone(st.Faults)
	c.Statuses = make(map[string]map[int]int, len(st.Statuses))
	for endpoint, statuses := range st.Statuses {
		c.Statuses[endpoint] = maps.Clone(statuses)
	}
	return c
}

// admission counts arrivals and applies the simulator's own rate limit. One lock covers
// both so that arrival times are taken in the order the requests are admitted.
type admission struct {
	mu       sync.Mutex
	stats    Stats
	arrivals arrivalWindow
	limiter  *rateLimiter // nil when unlimited
}

// admit records the arrival of a request to endpoint and returns how long the client
// must wait when the rate limit rejects it (ok false).
func (a *admission) admit(endpoint string, now time.Time) (wait time.Duration, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()

	a.stats.Total++
	a.stats.Requests[endpoint]++
	if n := a.arrivals.add(now); n > a.stats.MaxPerSecond {
		a.stats.MaxPerSecond = n
	}

	if a.limiter == nil {
		return 0, true
	}
	wait, ok = a.limiter.allow(now)
	if !ok {
		a.stats.TooManyRequests++
	}
	return wait, ok
}

// record counts a response and runs count, if any, under the same lock.
func (a *admission) record(endpoint string, status int, count func(*Stats)) {
	a.mu.Lock()
	defer a.mu.Unlock()

	statuses := a.stats.Statuses[endpoint]
	if statuses == nil {
		statuses = make(map[int]int)
		a.stats.Statuses[endpoint] = statuses
	}
	statuses[status]++
	if count != nil {
		count(&a.stats)
	}
}

// arrivalWindow holds the arrival times of the last second, oldest first.
type arrivalWindow struct {
	times []time.Time
	head  int
}

// add appends now and returns how many arrivals lie within the second ending at now.
func (w *arrivalWindow) add(now time.Time) int {
	w.times = append(w.times, now)
	for w.head < len(w.times) && now.Sub(w.times[w.head]) >= time.Second {
		w.head++
	}
	if w.head > 1024 && w.head*2 > len(w.times) {
		w.times = append(w.times[:0], w.times[w.head:]...)
		w.head = 0
	}
	return len(w.times) - w.head
}

// rateLimiter accepts at most n requests within any interval of length window, keeping
// the times of the last n accepted requests in a ring.
type rateLimiter struct {
	window   time.Duration
	accepted []time.Time
	next     int
	filled   bool
}

// newRateLimiter returns a limiter for rps requests per second, or nil when rps is 0.
// Rates of 1 or more allow floor(rps) requests per second; lower rates allow one request
// per 1/rps seconds.
func newRateLimiter(rps float64) *rateLimiter {
	if rps <= 0 {
		return nil
	}
	if rps < 1 {
		return &rateLimiter{window: time.Duration(float64(time.Second) / rps), accepted: make([]time.Time, 1)}
	}
	return &rateLimiter{window: time.Second, accepted: make([]time.Time, int(rps))}
}

func (l *rateLimiter) allow(now time.Time) (wait time.Duration, ok bool) {
	if l.filled {
		if elapsed := now.Sub(l.accepted[l.next]); elapsed < l.window {
			return l.window - elapsed, false
		}
	}
	l.accepted[l.next] = now
	l.next++
	if l.next == len(l.accepted) {
		l.next = 0
		l.filled = true
	}
	return 0, true
}
