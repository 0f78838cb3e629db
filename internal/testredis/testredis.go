// Package testredis gives each test its own Redis database: a real redis-server when
// ODINRESET_TEST_REDIS_URL is set (as .ci/run does), an embedded miniredis otherwise.
//
// On a real server each call takes the next database number from a counter kept in
// database 0 and flushes it, so test packages that run at the same time do not see each
// other's keys. .ci/run starts its server with --databases 256 for that reason; the
// numbers wrap around, so a run of more than 255 Redis tests at once would share one.
package testredis

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// EnvURL is the environment variable that selects a real Redis server for tests.
const EnvURL = "ODINRESET_TEST_REDIS_URL"

// Redis is one isolated Redis database for one test.
type Redis struct {
	// Client is a go-redis client for the database; the test's cleanup closes it.
	Client *redis.Client
	// Opt connects asynq to the same database.
	Opt asynq.RedisClientOpt
	// URL is a redis:// URL of the database, for processes the test starts.
	URL string
	// Real reports whether this is a real redis-server rather than miniredis.
	Real bool
	// Mini is the embedded server when Real is false, nil otherwise.
	Mini *miniredis.Miniredis
}

// Real reports whether tests in this run have a real redis-server.
func RealAvailable() bool { return os.Getenv(EnvURL) != "" }

// RequireReal skips the test when no real redis-server is configured.
func RequireReal(t testing.TB) {
	t.Helper()
	if !RealAvailable() {
		t.Skipf("needs a real redis-server: set %s (for example redis://127.0.0.1:6390/0); .ci/run does", EnvURL)
	}
}

// New returns a fresh, empty Redis database for the test.
func New(t testing.TB) *Redis {
	t.Helper()

	url := os.Getenv(EnvURL)
	if url == "" {
		return newMini(t)
	}

	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s=%q is not a valid Redis URL: %v", EnvURL, url, err)
	}
	ctx := context.Background()
	admin := redis.NewClient(opt)
	defer admin.Close()
	n, err := admin.Incr(ctx, "odinreset-test:db-counter").Result()
	if err != nil {
		t.Fatalf("reach the test Redis at %s: %v", EnvURL, err)
	}
	databases := 16
	if cfg, err := admin.ConfigGet(ctx, "databases").Result(); err == nil {
		if v, err := strconv.Atoi(cfg["databases"]); err == nil && v > 1 {
			databases = v
		}
	}
	db := 1 + int(n)%(databases-1)

	dbOpt := *opt
	dbOpt.DB = db
	client := redis.NewClient(&dbOpt)
	if err := client.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("flush test database %d: %v", db, err)
	}
	t.Cleanup(func() { client.Close() })

	return &Redis{
		Client: client,
		Opt:    asynq.RedisClientOpt{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: db},
		URL:    withDB(opt, db),
		Real:   true,
	}
}

func newMini(t testing.TB) *Redis {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	return &Redis{
		Client: client,
		Opt:    asynq.RedisClientOpt{Addr: mr.Addr()},
		URL:    "redis://" + mr.Addr() + "/0",
		Mini:   mr,
	}
}

func withDB(opt *redis.Options, db int) string {
	auth := ""
	switch {
	case opt.Username != "" && opt.Password != "":
		auth = opt.Username + ":" + opt.Password + "@"
	case opt.Password != "":
		auth = ":" + opt.Password + "@"
	}
	return fmt.Sprintf("redis://%s%s/%d", auth, opt.Addr, db)
}

// MissingDatabaseURL returns the URL of the first database number the server does not
// have, which equals its database count, and that count.
func (r *Redis) MissingDatabaseURL(t testing.TB) (url string, count int) {
	t.Helper()
	values, err := r.Client.ConfigGet(context.Background(), "databases").Result()
	if err != nil {
		t.Fatalf("CONFIG GET databases: %v", err)
	}
	count, err = strconv.Atoi(values["databases"])
	if err != nil {
		t.Fatalf("CONFIG GET databases = %v: %v", values, err)
	}
	return r.URL[:strings.LastIndex(r.URL, "/")] + "/" + strconv.Itoa(count), count
}
