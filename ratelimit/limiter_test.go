package ratelimit

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

const testOdinURL = "https://odin.example.com/api/v2"

func TestNewRejectsInvalidInput(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}) // never dialled
	t.Cleanup(func() { _ = rdb.Close() })

	tests := []struct {
		name  string
		rdb   redis.UniversalClient
		key   string
		limit Limit
		opts  []Option
	}{
		{name: "nil client", rdb: nil, key: testOdinURL, limit: Limit{Rate: 5, Burst: 1}},
		{name: "empty key", rdb: rdb, key: "", limit: Limit{Rate: 5, Burst: 1}},
		{name: "key of slashes", rdb: rdb, key: "//", limit: Limit{Rate: 5, Burst: 1}},
		{name: "zero rate", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 0, Burst: 1}},
		{name: "negative rate", rdb: rdb, key: testOdinURL, limit: Limit{Rate: -1, Burst: 1}},
		{name: "NaN rate", rdb: rdb, key: testOdinURL, limit: Limit{Rate: math.NaN(), Burst: 1}},
		{name: "infinite rate", rdb: rdb, key: testOdinURL, limit: Limit{Rate: math.Inf(1), Burst: 1}},
		{name: "rate above 1e6", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 2e6, Burst: 1}},
		{name: "zero burst", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 5, Burst: 0}},
		{name: "burst window over a day", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 0.001, Burst: 100}},
		{name: "negative max wait", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 5, Burst: 1},
			opts: []Option{WithMaxWait(-time.Second)}},
		{name: "nil clock", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 5, Burst: 1},
			opts: []Option{WithClock(nil)}},
		{name: "zero headroom", rdb: rdb, key: testOdinURL, limit: Limit{Rate: 5, Burst: 1},
			opts: []Option{WithHeadroom(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.rdb, tt.key, tt.limit, tt.opts...)
			if err == nil {
				t.Fatalf("New returned a Limiter %+v and no error, want an error", l)
			}
		})
	}
}

func TestNewKeyNames(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}) // never dialled
	t.Cleanup(func() { _ = rdb.Close() })

	// The hash tag is the first 12 hex digits of
	// sha1("https://odin.example.com/api/v2").
	tests := []struct {
		name      string
		key       string
		opts      []Option
		wantGCRA  string
		wantPause string
	}{
		{
			name:      "default prefix",
			key:       testOdinURL,
			wantGCRA:  "odinreset:{rl:338797f19600}:gcra",
			wantPause: "odinreset:{rl:338797f19600}:pause",
		},
		{
			name:      "trailing slash ignored",
			key:       testOdinURL + "/",
			wantGCRA:  "odinreset:{rl:338797f19600}:gcra",
			wantPause: "odinreset:{rl:338797f19600}:pause",
		},
		{
			name:      "custom prefix",
			key:       testOdinURL,
			opts:      []Option{WithKeyPrefix("staging:")},
			wantGCRA:  "staging:{rl:338797f19600}:gcra",
			wantPause: "staging:{rl:338797f19600}:pause",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(rdb, tt.key, Limit{Rate: 5, Burst: 1}, tt.opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}

			want := []string{tt.wantGCRA, tt.wantPause}
			got := []string{l.gcraKey, l.pauseKey}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("key names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReserveSchedule(t *testing.T) {
	tests := []struct {
		name      string
		limit     Limit
		wantWaits []time.Duration
	}{
		{
			name:      "rate 1 burst 1",
			limit:     Limit{Rate: 1, Burst: 1},
			wantWaits: []time.Duration{0, time.Second, 2 * time.Second},
		},
		{
			name:      "rate 10 burst 3",
			limit:     Limit{Rate: 10, Burst: 3},
			wantWaits: []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond},
		},
		{
			name:      "rate 3 rounds the interval up",
			limit:     Limit{Rate: 3, Burst: 1},
			wantWaits: []time.Duration{0, 333334 * time.Microsecond, 666668 * time.Microsecond},
		},
		{
			name:      "fractional rate 0.5 burst 1",
			limit:     Limit{Rate: 0.5, Burst: 1},
			wantWaits: []time.Duration{0, 2 * time.Second, 4 * time.Second},
		},
		{
			name:      "fractional rate 0.5 burst 2",
			limit:     Limit{Rate: 0.5, Burst: 2},
			wantWaits: []time.Duration{0, 0, 2 * time.Second, 4 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			l := r.newLimiter(t, testOdinURL, tt.limit)

			var got []time.Duration
			for range tt.wantWaits {
				res, err := l.reserve(t.Context(), time.Hour)
				if err != nil {
					t.Fatalf("reserve: %v", err)
				}
				if !res.reserved {
					t.Fatalf("reserve did not reserve a slot %v away within a budget of an hour", res.wait)
				}
				got = append(got, res.wait)
			}

			if diff := cmp.Diff(tt.wantWaits, got, approxDuration(50*time.Millisecond)); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaitMaxWait runs 10 callers at once at 1 request per second with a
// maximum wait of 3.5 s. The callers with slots 0, 1, 2 and 3 s away wait. The
// other 6 get a DelayError for the slot 4 s away and reserve nothing.
func TestWaitMaxWait(t *testing.T) {
	r := newTestRedis(t)
	clock := &fakeClock{}
	l := r.newLimiter(t, testOdinURL, Limit{Rate: 1, Burst: 1}, WithMaxWait(3500*time.Millisecond), WithClock(clock))

	const callers = 10
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { errs[i] = l.Wait(t.Context()) })
	}
	wg.Wait()

	var succeeded int
	var delays []*DelayError
	for _, err := range errs {
		var delayErr *DelayError
		switch {
		case err == nil:
			succeeded++
		case errors.As(err, &delayErr):
			delays = append(delays, delayErr)
		default:
			t.Fatalf("Wait: %v", err)
		}
	}

	if succeeded != 4 {
		t.Errorf("Wait succeeded for %d callers, want 4", succeeded)
	}
	wantDelays := slices.Repeat([]*DelayError{{Delay: 4 * time.Second, Reason: ReasonRateLimit}}, callers-4)
	if diff := cmp.Diff(wantDelays, delays, approxDuration(200*time.Millisecond)); diff != "" {
		t.Errorf("DelayErrors (-want +got):\n%s", diff)
	}
	gotWaits := clock.recordedWaits()
	slices.Sort(gotWaits)
	wantWaits := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	if diff := cmp.Diff(wantWaits, gotWaits, approxDuration(200*time.Millisecond)); diff != "" {
		t.Errorf("sleeps of the waiting callers (-want +got):\n%s", diff)
	}

	// The callers with a DelayError reserved nothing, so the next free slot is still
	// the one 4 s after the first.
	res, err := l.reserve(t.Context(), time.Hour)
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	if diff := cmp.Diff(4*time.Second, res.wait, approxDuration(200*time.Millisecond)); diff != "" {
		t.Errorf("wait for the next slot (-want +got):\n%s", diff)
	}
}

func TestWaitZeroMaxWait(t *testing.T) {
	r := newTestRedis(t)
	l := r.newLimiter(t, testOdinURL, Limit{Rate: 1, Burst: 1}, WithMaxWait(0))

	if err := l.Wait(t.Context()); err != nil {
		t.Fatalf("first Wait: %v", err)
	}
	err := l.Wait(t.Context())

	var delayErr *DelayError
	if !errors.As(err, &delayErr) {
		t.Fatalf("second Wait returned %v, want a *DelayError", err)
	}
	if diff := cmp.Diff(time.Second, delayErr.Delay, approxDuration(200*time.Millisecond)); diff != "" {
		t.Errorf("Delay (-want +got):\n%s", diff)
	}
}

func TestWaitContextEnds(t *testing.T) {
	tests := []struct {
		name string
		// run calls Wait on l, whose next slot is 1 s away, so that ctx ends
		// first, and returns what Wait returned.
		run     func(t *testing.T, l *Limiter, clock *fakeClock) error
		wantErr error
	}{
		{
			name: "cancelled before the call",
			run: func(t *testing.T, l *Limiter, _ *fakeClock) error {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return l.Wait(ctx)
			},
			wantErr: context.Canceled,
		},
		{
			name: "cancelled while sleeping",
			run: func(t *testing.T, l *Limiter, clock *fakeClock) error {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- l.Wait(ctx) }()

				<-clock.timers // Wait reserved a slot and sleeps now.
				cancel()
				select {
				case err := <-done:
					return err
				case <-time.After(2 * time.Second):
					t.Fatal("Wait did not return within 2 s after its context was cancelled")
					return nil
				}
			},
			wantErr: context.Canceled,
		},
		{
			name: "slot past the deadline",
			run: func(t *testing.T, l *Limiter, _ *fakeClock) error {
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				defer cancel()
				err := l.Wait(ctx)
				if ctx.Err() != nil {
					t.Errorf("Wait returned after the deadline, want it to return at once")
				}
				return err
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "cancelled while paused past the max wait",
			run: func(t *testing.T, l *Limiter, _ *fakeClock) error {
				if err := l.Pause(t.Context(), time.Minute, "Odin returned 429"); err != nil {
					t.Fatalf("Pause: %v", err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return l.Wait(ctx)
			},
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			clock := &fakeClock{timers: make(chan fakeTimer, 1)}
			l := r.newLimiter(t, testOdinURL, Limit{Rate: 1, Burst: 1}, WithClock(clock))
			if _, err := l.reserve(t.Context(), time.Hour); err != nil {
				t.Fatalf("reserve the first slot: %v", err)
			}

			err := tt.run(t, l, clock)

			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Wait returned %v, want %v", err, tt.wantErr)
			}
			var delayErr *DelayError
			if errors.As(err, &delayErr) {
				t.Errorf("Wait returned a DelayError %v, want none when ctx ends first", delayErr)
			}
		})
	}
}

// TestWaitContextErrorReservesNothing checks that callers whose context ends
// before their slot reserve nothing.
func TestWaitContextErrorReservesNothing(t *testing.T) {
	tests := []struct {
		name string
		ctx  func(t *testing.T) context.Context
	}{
		{
			name: "cancelled context",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
		},
		{
			name: "deadline before the slot",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			l := r.newLimiter(t, testOdinURL, Limit{Rate: 1, Burst: 1})
			if _, err := l.reserve(t.Context(), time.Hour); err != nil {
				t.Fatalf("reserve the first slot: %v", err)
			}

			for range 3 {
				if err := l.Wait(tt.ctx(t)); err == nil {
					t.Fatal("Wait returned nil, want an error")
				}
			}

			res, err := l.reserve(t.Context(), time.Hour)
			if err != nil {
				t.Fatalf("reserve: %v", err)
			}
			if diff := cmp.Diff(time.Second, res.wait, approxDuration(200*time.Millisecond)); diff != "" {
				t.Errorf("wait for the next slot (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeysHaveTTL(t *testing.T) {
	r := newTestRedis(t)
	l := r.newLimiter(t, testOdinURL, Limit{Rate: 0.5, Burst: 1})
	ctx := t.Context()

	if err := l.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := l.Pause(ctx, time.Minute, "Odin returned 429"); err != nil {
		t.Fatalf("Pause: %v", err)
	}

	rdb := r.client(t)
	keys, err := rdb.Keys(ctx, r.keyPrefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	slices.Sort(keys)
	if diff := cmp.Diff([]string{l.gcraKey, l.pauseKey}, keys); diff != "" {
		t.Fatalf("keys (-want +got):\n%s", diff)
	}

	// The TAT lies 2 s ahead after one request at 0.5 per second, and the
	// pause ends in a minute. Each key lives keyTTLMargin longer.
	wantTTL := map[string]time.Duration{
		l.gcraKey:  2*time.Second + keyTTLMargin,
		l.pauseKey: time.Minute + keyTTLMargin,
	}
	gotTTL := make(map[string]time.Duration)
	for _, key := range keys {
		ttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		gotTTL[key] = ttl
	}
	if diff := cmp.Diff(wantTTL, gotTTL, approxDuration(500*time.Millisecond)); diff != "" {
		t.Errorf("TTLs (-want +got):\n%s", diff)
	}
}

func TestDelayErrorMessage(t *testing.T) {
	err := &DelayError{Delay: 1234567 * time.Microsecond, Reason: "Odin returned 429"}

	want := "ratelimit: Odin returned 429: no Odin request slot free for 1.235s"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Error() (-want +got):\n%s", diff)
	}
}

// TestWaitLateWakeQueuesAgain holds up a caller past its slot, as a stalled process
// would, while other callers take the slots that follow. The late caller must not send
// at once, together with them, but reserve a new slot behind them.
func TestWaitLateWakeQueuesAgain(t *testing.T) {
	const emission = 50 * time.Millisecond // 20 per second: maxLateness is 40 ms

	tests := []struct {
		name string
		// stall is how long the caller's timer fires after it was set.
		stall time.Duration
		// wantSecondSleep is the sleep until the new slot, 0 for none.
		wantSecondSleep time.Duration
	}{
		{name: "on time", stall: 0},
		{name: "100 ms late", stall: 150 * time.Millisecond, wantSecondSleep: 3 * emission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t)
			r.skipOnMiniredis(t)
			others := r.newLimiter(t, testOdinURL, Limit{Rate: 20, Burst: 1})
			clock := &fakeClock{timers: make(chan fakeTimer)}
			waiter := r.newLimiter(t, testOdinURL, Limit{Rate: 20, Burst: 1}, WithClock(clock))
			if _, err := others.reserve(t.Context(), time.Hour); err != nil {
				t.Fatalf("reserve the first slot: %v", err)
			}

			done := make(chan error, 1)
			go func() { done <- waiter.Wait(t.Context()) }()
			slotTimer := <-clock.timers
			if tt.stall > 0 {
				// The stall: real time passes, then three callers on time take the
				// next slots.
				<-time.After(tt.stall)
				for range 3 {
					if _, err := others.reserve(t.Context(), time.Hour); err != nil {
						t.Fatalf("reserve a slot of a caller on time: %v", err)
					}
				}
			}
			slotTimer.fire <- time.Now()

			if tt.wantSecondSleep > 0 {
				var second fakeTimer
				select {
				case second = <-clock.timers:
				case err := <-done:
					t.Fatalf("Wait returned %v at once, want it to sleep until a new slot behind the callers on time", err)
				}
				if diff := cmp.Diff(tt.wantSecondSleep, second.length, approxDuration(30*time.Millisecond)); diff != "" {
					t.Errorf("sleep until the new slot (-want +got):\n%s", diff)
				}
				second.fire <- time.Now()
			}
			if err := <-done; err != nil {
				t.Errorf("Wait: %v", err)
			}
		})
	}
}

// TestSpellingsOfOneOdinShareALimit builds limiters for spellings of one Odin base URL:
// they must share their Redis keys, or each spelling would get the whole rate.
func TestSpellingsOfOneOdinShareALimit(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	limit := Limit{Rate: 5, Burst: 1}
	base, err := New(rdb, "https://odin.example.com/api/v2", limit)
	if err != nil {
		t.Fatal(err)
	}
	for _, spelling := range []string{
		"https://odin.example.com/api/v2/",
		"HTTPS://ODIN.example.com/api/v2",
		"https://odin.example.com:443/api/v2",
		" https://odin.example.com/api/v2 ",
		"https://odin.example.com/./api/v2",
		"https://odin.example.com//api//v2",
		"https://odin.example.com/api/x/../v2",
		"https://odin.example.com/api/%76%32",
	} {
		l, err := New(rdb, spelling, limit)
		if err != nil {
			t.Fatalf("New(%q): %v", spelling, err)
		}
		if l.gcraKey != base.gcraKey || l.pauseKey != base.pauseKey || l.laneKey != base.laneKey {
			t.Errorf("New(%q) uses %s, want %s as for https://odin.example.com/api/v2", spelling, l.gcraKey, base.gcraKey)
		}
	}
	for _, other := range []string{"https://odin.example.com:8443/api/v2", "http://odin.example.com/api/v2", "https://odin.example.com/api/v3"} {
		l, err := New(rdb, other, limit)
		if err != nil {
			t.Fatalf("New(%q): %v", other, err)
		}
		if l.gcraKey == base.gcraKey {
			t.Errorf("New(%q) shares the key of https://odin.example.com/api/v2, want its own", other)
		}
	}
}

// TestRedisDownIsARedisError: with its Redis unreachable, Wait fails with a *RedisError,
// so the caller can tell a Redis failure from a wait or an Odin error.
func TestRedisDownIsARedisError(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	for _, ctx := range []context.Context{t.Context(), LowPriority(t.Context())} {
		l, err := New(rdb, testOdinURL, Limit{Rate: 5, Burst: 1})
		if err != nil {
			t.Fatal(err)
		}
		err = l.Wait(ctx)
		var redisErr *RedisError
		if !errors.As(err, &redisErr) {
			t.Errorf("Wait with Redis down = %v, want a *RedisError", err)
		}
	}
}

// TestAnnounceSpotsDifferentLimits: processes of one Odin announce their limits; one
// with another rate learns the rate announced before it.
func TestAnnounceSpotsDifferentLimits(t *testing.T) {
	r := newTestRedis(t)
	first := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
	same := r.newLimiter(t, testOdinURL, Limit{Rate: 5, Burst: 1})
	other := r.newLimiter(t, testOdinURL, Limit{Rate: 50, Burst: 2})

	if _, differs, err := first.Announce(t.Context()); err != nil || differs {
		t.Fatalf("first Announce = differs %v, %v; want no difference", differs, err)
	}
	if _, differs, err := same.Announce(t.Context()); err != nil || differs {
		t.Fatalf("Announce of the same limit = differs %v, %v; want no difference", differs, err)
	}
	previous, differs, err := other.Announce(t.Context())
	if err != nil || !differs || previous != (Limit{Rate: 5, Burst: 1}) {
		t.Fatalf("Announce of another limit = %+v, differs %v, %v; want rate 5 burst 1, differs", previous, differs, err)
	}

	// The announcement of a process that stopped must expire soon after its last one.
	ttl, err := r.client(t).TTL(t.Context(), other.limitKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 3*AnnounceInterval {
		t.Errorf("announced limit expires in %v, want within %v", ttl, 3*AnnounceInterval)
	}
}
