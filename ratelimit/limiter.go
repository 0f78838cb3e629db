package ratelimit

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultKeyPrefix starts the name of every Redis key unless WithKeyPrefix
// sets another prefix.
const DefaultKeyPrefix = "odinreset:"

// DefaultMaxWait is the longest Wait blocks unless WithMaxWait sets another
// maximum.
const DefaultMaxWait = 5 * time.Second

// ReasonRateLimit is the DelayError reason when the rate limit, not a pause,
// keeps the caller waiting.
const ReasonRateLimit = "rate limit"

const (
	// keyTTLMargin keeps a key this long after its state stops mattering, so
	// rounding to milliseconds never drops state that is still needed.
	keyTTLMargin = 2 * time.Second

	// maxBurstWindow bounds Burst/Rate. It keeps every time the scripts
	// compute well inside the integers a Lua double holds exactly.
	maxBurstWindow = 24 * time.Hour
)

// Limit is the request rate that all Limiters sharing a key obey together.
type Limit struct {
	// Rate is the number of requests per second, greater than 0. It may be
	// fractional: 0.5 means one request every two seconds.
	Rate float64

	// Burst is the number of requests that may go out at once after an idle
	// period, at least 1. With Burst 1 requests are spaced 1/Rate apart.
	Burst int
}

// rediser lists the Redis commands the Limiter uses. Every
// redis.UniversalClient implements it.
type rediser interface {
	redis.Scripter
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// Limiter is a rate limiter and pause switch shared through Redis by every
// Limiter built for the same key. Its methods are safe for concurrent use.
type Limiter struct {
	rdb       rediser
	gcraKey   string
	laneKey   string // turns of low-priority callers
	pauseKey  string
	seriesKey string // the pauses of PauseEscalating in a row
	limitKey  string // the rate and burst the limiters of this key last announced

	limit    Limit
	emission time.Duration
	burst    int

	maxWait   time.Duration
	headroom  time.Duration
	keyPrefix string
	clock     Clock
}

// Option changes a Limiter built by New.
type Option func(*Limiter)

// WithMaxWait sets the longest time Wait blocks. When the caller's slot is
// further away, Wait returns a *DelayError at once. It must not be negative,
// and 0 makes Wait return a *DelayError whenever it cannot proceed at once.
// The default is DefaultMaxWait.
func WithMaxWait(d time.Duration) Option {
	return func(l *Limiter) { l.maxWait = d }
}

// WithKeyPrefix sets the prefix of every Redis key of the Limiter. The
// default is DefaultKeyPrefix.
func WithKeyPrefix(p string) Option {
	return func(l *Limiter) { l.keyPrefix = p }
}

// WithClock replaces the local clock that Wait sleeps on, for tests. The
// clock does not decide the schedule: slots are computed on the Redis
// server's clock. Context deadlines are always measured on the real clock.
func WithClock(c Clock) Option {
	return func(l *Limiter) { l.clock = c }
}

// New builds a Limiter for the Odin API at key, its base URL. Trailing
// slashes of key are ignored, so "https://host/api/v2/" and
// "https://host/api/v2" share one limit. New does not contact Redis.
//
// New returns an error when rdb is nil, key is empty, limit is out of range
// (Rate not greater than 0, Burst below 1, or Burst/Rate longer than 24 hours)
// or an option is invalid.
func New(rdb redis.UniversalClient, key string, limit Limit, opts ...Option) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("ratelimit: the Redis client is nil")
	}
	key = normalizeKey(key)
	if key == "" {
		return nil, errors.New("ratelimit: missing key: pass the Odin base URL")
	}
	if err := limit.validate(); err != nil {
		return nil, err
	}

	l := &Limiter{
		rdb:       rdb,
		limit:     limit,
		emission:  limit.emissionInterval(),
		burst:     limit.Burst,
		maxWait:   DefaultMaxWait,
		headroom:  DefaultHeadroom,
		keyPrefix: DefaultKeyPrefix,
		clock:     systemClock{},
	}
	for _, opt := range opts {
		opt(l)
	}
	if l.maxWait < 0 {
		return nil, fmt.Errorf("ratelimit: invalid maximum wait %v: it must not be negative", l.maxWait)
	}
	if l.headroom <= 0 {
		return nil, fmt.Errorf("ratelimit: invalid headroom %v: it must be greater than 0", l.headroom)
	}
	if l.clock == nil {
		return nil, errors.New("ratelimit: the clock is nil")
	}

	sum := sha1.Sum([]byte(key))
	hashTag := "{rl:" + hex.EncodeToString(sum[:])[:12] + "}"
	l.gcraKey = l.keyPrefix + hashTag + ":gcra"
	l.laneKey = l.keyPrefix + hashTag + ":gcra-low"
	l.pauseKey = l.keyPrefix + hashTag + ":pause"
	l.seriesKey = l.keyPrefix + hashTag + ":pause-series"
	l.limitKey = l.keyPrefix + hashTag + ":limit"
	return l, nil
}

// AnnounceInterval is how often a running process should call Announce. An announced
// limit is remembered for three intervals, so the limit of a process that stopped is
// forgotten within three minutes.
const AnnounceInterval = time.Minute

// announceTTL is how long an announced limit is remembered without a new announcement.
const announceTTL = 3 * AnnounceInterval

// Announce records this limiter's rate and burst for the other processes that share its
// key, and returns the ones announced before when they differ. Limiters with different
// limits share one schedule, so the fleet then keeps neither rate: the caller should
// warn. Call it at start and every AnnounceInterval after. During a change of the limit,
// processes still on the old one differ until they restart.
func (l *Limiter) Announce(ctx context.Context) (previous Limit, differs bool, err error) {
	own := strconv.FormatFloat(l.limit.Rate, 'g', -1, 64) + "/" + strconv.Itoa(l.limit.Burst)
	old, err := announceScript.Run(ctx, l.rdb, []string{l.limitKey}, own, int64(announceTTL/time.Second)).Text()
	if err != nil {
		return Limit{}, false, &RedisError{Op: "announce the rate limit in Redis", Err: err}
	}
	if old == "" || old == own {
		return Limit{}, false, nil
	}
	rate, burst, ok := strings.Cut(old, "/")
	previous.Rate, _ = strconv.ParseFloat(rate, 64)
	previous.Burst, _ = strconv.Atoi(burst)
	return previous, ok, nil
}

func (limit Limit) validate() error {
	if math.IsNaN(limit.Rate) || math.IsInf(limit.Rate, 0) || limit.Rate <= 0 {
		return fmt.Errorf("ratelimit: invalid rate %v: it must be a finite number of requests per second greater than 0", limit.Rate)
	}
	if limit.Rate > 1e6 {
		return fmt.Errorf("ratelimit: invalid rate %v: it must be at most 1e6 requests per second", limit.Rate)
	}
	if limit.Burst < 1 {
		return fmt.Errorf("ratelimit: invalid burst %d: it must be at least 1", limit.Burst)
	}
	if window := float64(limit.Burst) / limit.Rate; window > maxBurstWindow.Seconds() {
		return fmt.Errorf("ratelimit: invalid limit: burst %d at rate %v spans %.0f s, more than the maximum of %v",
			limit.Burst, limit.Rate, window, maxBurstWindow)
	}
	return nil
}

// emissionInterval returns 1/Rate rounded up to a whole microsecond, so that
// rounding can only make the limiter slower than Rate, never faster.
func (limit Limit) emissionInterval() time.Duration {
	return time.Duration(math.Ceil(1e6/limit.Rate)) * time.Microsecond
}

// DelayError reports that Wait did not reserve a request slot because the
// caller would have had to wait longer than the maximum wait.
type DelayError struct {
	// Delay is how long from now until a slot would have been free. It is an
	// estimate: other callers may reserve slots in the meantime.
	Delay time.Duration

	// Reason is ReasonRateLimit, or the reason passed to Pause while the
	// fleet is paused.
	Reason string
}

// Error returns the reason and the delay.
func (e *DelayError) Error() string {
	return fmt.Sprintf("ratelimit: %s: no Odin request slot free for %v", e.Reason, e.Delay.Round(time.Millisecond))
}

// Wait blocks until the caller may send one Odin request.
//
// It returns nil when the caller's slot has come, and otherwise:
//   - ctx.Err() when ctx ends first, never a *DelayError then.
//   - An error wrapping context.DeadlineExceeded, at once, when the slot lies
//     past the deadline of ctx but within the maximum wait. No slot is
//     reserved then.
//   - A *DelayError when the slot, or the end of a pause, lies further away
//     than the maximum wait. No slot is reserved then.
//   - A wrapped Redis error.
//
// A caller whose ctx carries LowPriority waits for its turn among the
// low-priority callers first, and the maximum wait covers that too. A caller
// whose ctx ends while it sleeps gives its reserved slot up unused. A caller
// that wakes too late for its slot (see maxLateness) reserves a new one. The maximum wait bounds the whole call apart from Redis round trips,
// including a pause waited out and a second reservation after a pause that
// began during the sleep or after a late wake-up.
func (l *Limiter) Wait(ctx context.Context) error {
	start := l.clock.Now()
	lowPriority := isLowPriority(ctx)
	// horizon is how far ahead a caller may reserve its request slot: the
	// budget left, and for a low-priority caller at most the headroom.
	horizon := func() (maxWait, budget, horizon time.Duration) {
		maxWait = max(l.maxWait-l.clock.Now().Sub(start), 0)
		budget = maxWait
		if deadline, ok := ctx.Deadline(); ok {
			budget = min(budget, time.Until(deadline))
		}
		if lowPriority {
			return maxWait, budget, min(budget, l.headroom)
		}
		return maxWait, budget, budget
	}

	// reserved is a slot reservation made with the low-priority turn. requestedAt is the
	// local time just before the last reservation request.
	var reserved *reservation
	var requestedAt time.Time
	if lowPriority {
		_, _, h := horizon()
		requestedAt = l.clock.Now()
		var err error
		if reserved, err = l.awaitTurn(ctx, h); err != nil {
			return err
		}
	}

	for {
		if err := ctx.Err(); err != nil {
			return err
		}

		maxWait, budget, h := horizon()
		var res reservation
		if reserved != nil {
			res, reserved = *reserved, nil
		} else {
			requestedAt = l.clock.Now()
			var err error
			res, err = l.reserveIn(ctx, l.gcraKey, h)
			if err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return ctxErr
				}
				return err
			}
		}
		if !res.reserved && lowPriority && res.wait <= budget {
			// Callers without the low-priority mark hold the headroom. Try
			// again once their slots have passed.
			if err := l.sleep(ctx, max(res.wait-l.headroom, l.emission)); err != nil {
				return err
			}
			continue
		}
		if !res.reserved {
			return l.notReservedError(ctx, res, maxWait)
		}
		if res.wait <= 0 {
			return nil
		}

		if err := l.sleep(ctx, res.wait); err != nil {
			return err
		}

		// Redis computed the wait after requestedAt, so the caller is late by at most the
		// local time since requestedAt minus the wait. When that bound is within
		// maxLateness after a short sleep, the caller sends without reading the pause and
		// the Redis clock again. At high rates most requests sleep under a millisecond,
		// and that read cost one more round trip each. A pause that began during such a
		// sleep applies from the next request on, as it does to requests already sent.
		if res.wait <= shortSleep && l.clock.Now().Sub(requestedAt)-res.wait <= l.maxLateness() {
			return nil
		}

		// A pause that began while this caller slept, and ends after its
		// slot, applies to it too. Its slot is lost, and it reserves a new
		// one behind the pause.
		state, err := l.pausedAfter(ctx, res.slotMicros)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return err
		}
		if state.remaining > 0 {
			continue
		}

		// A caller held up past its slot, by a stalled process or a stalled
		// Redis, would send together with the callers whose slots come next,
		// and stalls hold up many callers at once. Such a caller gives its
		// slot up and queues again instead.
		late := time.Duration(state.nowMicros-res.slotMicros) * time.Microsecond
		if late <= l.maxLateness() {
			return nil
		}
	}
}

// shortSleep is the longest sleep after which Wait may send without reading the pause
// and the Redis clock again.
const shortSleep = 5 * time.Millisecond

// maxLateness is how long after its slot, on the Redis clock, a caller that
// slept may still send: 40 ms, or one emission interval when that is longer.
// With Burst 1, Wait then returns in any window of W seconds for at most
// (W + maxLateness) * Rate + 1 slots, which is 53 in one second at 50 requests
// per second.
//
// NOTE: the check reads the Redis clock after the sleep, so a Redis server
// whose round trip nears 80 ms would make most slots count as late, and the
// fleet would then send well below its rate.
func (l *Limiter) maxLateness() time.Duration {
	return max(40*time.Millisecond, l.emission)
}

// notReservedError returns the error for a slot that reserve did not take
// because it lay beyond the budget.
func (l *Limiter) notReservedError(ctx context.Context, res reservation, maxWait time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if res.wait > maxWait {
		reason := res.pauseReason
		if reason == "" {
			reason = ReasonRateLimit
		}
		return &DelayError{Delay: res.wait, Reason: reason}
	}
	return fmt.Errorf("ratelimit: the next Odin request slot is %v away, past the context deadline: %w",
		res.wait.Round(time.Millisecond), context.DeadlineExceeded)
}

// sleep waits for d or until ctx ends, and returns ctx.Err() in the second
// case.
func (l *Limiter) sleep(ctx context.Context, d time.Duration) error {
	fired, stop := l.clock.NewTimer(d)
	defer stop()

	select {
	case <-fired:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reservation is the outcome of one run of reserveScript.
type reservation struct {
	reserved    bool
	wait        time.Duration
	pauseReason string // empty unless a pause was on
	slotMicros  int64  // start of the slot, microseconds since the Unix epoch on the Redis clock
}

// reserve takes the next request slot if it is at most budget away.
func (l *Limiter) reserve(ctx context.Context, budget time.Duration) (reservation, error) {
	return l.reserveIn(ctx, l.gcraKey, budget)
}

// RedisError is a failure of the limiter's Redis, as opposed to a wait: no request
// slot was reserved, and the caller sent nothing to Odin.
type RedisError struct {
	// Op is the operation that failed, such as "reserve an Odin request slot in Redis".
	Op  string
	Err error
}

func (e *RedisError) Error() string { return "ratelimit: " + e.Op + ": " + e.Err.Error() }

func (e *RedisError) Unwrap() error { return e.Err }

// normalizeKey returns the limiter key for key. An absolute http or https URL is
// normalised, so workers that spell the same Odin differently (ODIN.example.com,
// odin.example.com:443/api/v2/) share one limit: the scheme and host are lower-cased, a
// default port is dropped, and the path is cleaned ("/./", "//", "..", trailing slashes). Any other key is only trimmed of
// surrounding spaces and trailing slashes.
func normalizeKey(key string) string {
	key = strings.TrimRight(strings.TrimSpace(key), "/")
	u, err := url.Parse(key)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return key // url.Parse lower-cases the scheme
	}
	u.Host = strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		u.Host = strings.TrimSuffix(u.Host, ":"+port)
	}
	if u.Path != "" {
		u.Path = strings.TrimRight(path.Clean(u.Path), "/")
	}
	u.RawPath = ""
	return u.String()
}

// reserveLow takes the next low-priority turn if it is at most budget away,
// and when the turn is at most half the headroom away, reserves the request
// slot too if that is at most slotHorizon away. slot is nil when it was not
// tried.
func (l *Limiter) reserveLow(ctx context.Context, budget, slotHorizon time.Duration) (turn reservation, slot *reservation, err error) {
	keys := []string{l.laneKey, l.gcraKey, l.pauseKey}
	args := []any{
		l.emission.Microseconds(),
		l.burst,
		max(budget.Microseconds(), 0),
		keyTTLMargin.Milliseconds(),
		(l.headroom / 2).Microseconds(),
		max(slotHorizon.Microseconds(), 0),
	}
	values, err := reserveLowScript.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return reservation{}, nil, &RedisError{Op: "reserve an Odin request slot in Redis", Err: err}
	}

	if len(values) != 8 {
		return reservation{}, nil, fmt.Errorf("ratelimit: reserve an Odin request slot in Redis: unexpected reply %v", values)
	}
	ints := make([]int64, len(values))
	ok := true
	for i, v := range values {
		if i == 2 {
			continue
		}
		n, isInt := v.(int64)
		ints[i], ok = n, ok && isInt
	}
	reason, isString := values[2].(string)
	if !ok || !isString {
		return reservation{}, nil, fmt.Errorf("ratelimit: reserve an Odin request slot in Redis: unexpected reply %v", values)
	}

	turn = reservation{
		reserved:    ints[0] == 1,
		wait:        time.Duration(ints[1]) * time.Microsecond,
		pauseReason: reason,
		slotMicros:  ints[3],
	}
	if ints[4] == 1 {
		slot = &reservation{
			reserved:    ints[5] == 1,
			wait:        time.Duration(ints[6]) * time.Microsecond,
			pauseReason: reason,
			slotMicros:  ints[7],
		}
	}
	return turn, slot, nil
}

// reserveIn takes the next slot of the schedule kept in tatKey, the request
// slots or the turns of low-priority callers, if it is at most budget away.
func (l *Limiter) reserveIn(ctx context.Context, tatKey string, budget time.Duration) (reservation, error) {
	keys := []string{tatKey, l.pauseKey}
	args := []any{
		l.emission.Microseconds(),
		l.burst,
		max(budget.Microseconds(), 0),
		keyTTLMargin.Milliseconds(),
	}
	values, err := reserveScript.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return reservation{}, &RedisError{Op: "reserve an Odin request slot in Redis", Err: err}
	}

	if len(values) != 4 {
		return reservation{}, fmt.Errorf("ratelimit: reserve an Odin request slot in Redis: unexpected reply %v", values)
	}
	reserved, ok1 := values[0].(int64)
	waitMicros, ok2 := values[1].(int64)
	reason, ok3 := values[2].(string)
	slotMicros, ok4 := values[3].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return reservation{}, fmt.Errorf("ratelimit: reserve an Odin request slot in Redis: unexpected reply %v", values)
	}
	return reservation{
		reserved:    reserved == 1,
		wait:        time.Duration(waitMicros) * time.Microsecond,
		pauseReason: reason,
		slotMicros:  slotMicros,
	}, nil
}
