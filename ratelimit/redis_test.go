package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// testRedisURLEnv names the environment variable with the URL of a real Redis
// server for the tests. Without it the tests run on miniredis.
const testRedisURLEnv = "ODINRESET_TEST_REDIS_URL"

// testRedis is the Redis server of one test and the key prefix that keeps the
// test's keys apart from those of other tests on the same server.
type testRedis struct {
	options   *redis.Options
	keyPrefix string
	miniredis bool
}

// newTestRedis connects to the server named by ODINRESET_TEST_REDIS_URL, or
// starts a miniredis for the test. On a real server it deletes the test's
// keys when the test ends.
func newTestRedis(t *testing.T) *testRedis {
	t.Helper()

	r := &testRedis{keyPrefix: "odinreset-test:" + randomHex(t) + ":"}
	url := os.Getenv(testRedisURLEnv)
	if url == "" {
		r.options = &redis.Options{Addr: miniredis.RunT(t).Addr()}
		r.miniredis = true
		return r
	}

	options, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse %s: %v", testRedisURLEnv, err)
	}
	r.options = options
	rdb := r.client(t)
	t.Cleanup(func() {
		// The test context is already cancelled during cleanup.
		ctx := context.WithoutCancel(t.Context())
		keys, err := rdb.Keys(ctx, r.keyPrefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = rdb.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("delete the test keys: %v", err)
		}
	})
	return r
}

// skipOnMiniredis skips a test whose timing cannot hold on miniredis. It runs
// inside the test process, and one script run there costs about 0.5 ms of CPU
// under the race detector, so callers starting at once get their replies tens
// of milliseconds late and unevenly.
func (r *testRedis) skipOnMiniredis(t *testing.T) {
	t.Helper()

	if r.miniredis {
		t.Skipf("timing too uneven on miniredis; set %s to run it on a real Redis", testRedisURLEnv)
	}
}

// client returns a new client with its own connection pool, as a separate
// worker process would have. It is closed when the test ends.
func (r *testRedis) client(t *testing.T) *redis.Client {
	t.Helper()

	rdb := redis.NewClient(r.options)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newLimiter builds a Limiter for odinURL on a new client and the test's key
// prefix.
func (r *testRedis) newLimiter(t *testing.T, odinURL string, limit Limit, opts ...Option) *Limiter {
	t.Helper()

	opts = append([]Option{WithKeyPrefix(r.keyPrefix)}, opts...)
	l, err := New(r.client(t), odinURL, limit, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func randomHex(t *testing.T) string {
	t.Helper()

	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("read random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

// fakeClock is a Clock whose timers do not take real time. It records every
// timer length. Without a timers channel each timer fires at once. With one,
// each timer is sent there and fires when the test sends on it.
type fakeClock struct {
	timers chan fakeTimer

	mu    sync.Mutex
	waits []time.Duration
}

type fakeTimer struct {
	length time.Duration
	fire   chan<- time.Time
}

func (c *fakeClock) Now() time.Time { return time.Now() }

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()

	fire := make(chan time.Time, 1)
	if c.timers == nil {
		fire <- time.Now()
	} else {
		c.timers <- fakeTimer{length: d, fire: fire}
	}
	return fire, func() bool { return true }
}

func (c *fakeClock) recordedWaits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// approxDuration makes cmp treat durations within tolerance as equal. The
// tests need it because the callers of one test reach Redis a few
// milliseconds apart.
func approxDuration(tolerance time.Duration) cmp.Option {
	return cmp.Comparer(func(a, b time.Duration) bool {
		return (a - b).Abs() <= tolerance
	})
}
