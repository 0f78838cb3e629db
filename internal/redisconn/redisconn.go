// Package redisconn builds the Redis connections of the worker and the CLI from one set
// of settings: a single server (redis:// or rediss:// URL), a Sentinel failover group, or
// a Cluster. asynq and go-redis get matching connections, so the queue, the results
// record and the rate limiter always share one Redis deployment.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Config selects the deployment: exactly one of URL, SentinelAddrs and ClusterAddrs must
// be set.
type Config struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS.
	URL string
	// SentinelAddrs are host:port addresses of the Sentinels; SentinelMaster names the
	// monitored master. They are built into explicit failover options because asynq
	// v0.25.1 drops the DB number and the master password when it parses a Sentinel URI.
	SentinelAddrs    []string
	SentinelMaster   string
	SentinelPassword string
	// ClusterAddrs are host:port seed addresses of a Redis Cluster.
	ClusterAddrs []string
	// Username, Password and DB apply to Sentinel and Cluster deployments (DB to
	// Sentinel only: a cluster has only database 0). A URL carries its own.
	Username string
	Password string
	DB       int
	// TLS enables TLS for Sentinel and Cluster deployments.
	TLS bool
}

// Validate returns an error naming the setting to fix.
func (c Config) Validate() error {
	set := 0
	if c.URL != "" {
		set++
	}
	if len(c.SentinelAddrs) > 0 {
		set++
		if c.SentinelMaster == "" {
			return errors.New("REDIS_SENTINEL_MASTER is missing: set it to the master name the Sentinels monitor")
		}
	}
	if len(c.ClusterAddrs) > 0 {
		set++
	}
	switch {
	case set == 0:
		return errors.New("no Redis configured: set REDIS_URL (for example redis://127.0.0.1:6379/0), REDIS_SENTINEL_ADDRS or REDIS_CLUSTER_ADDRS")
	case set > 1:
		return errors.New("more than one Redis deployment configured: set only one of REDIS_URL, REDIS_SENTINEL_ADDRS and REDIS_CLUSTER_ADDRS")
	}
	if c.URL != "" {
		if _, err := redis.ParseURL(c.URL); err != nil {
			return fmt.Errorf("invalid REDIS_URL %s: %v; use redis://[user:password@]host:port/db or rediss:// for TLS", Redact(c.URL), redactErr(err, c.URL))
		}
	}
	if len(c.ClusterAddrs) > 0 && c.DB != 0 {
		return fmt.Errorf("REDIS_DB=%d is not possible on a Redis Cluster, which has only database 0", c.DB)
	}
	return nil
}

// Open returns the asynq connection option and a go-redis client for the deployment.
// The caller closes the client.
func (c Config) Open() (asynq.RedisConnOpt, redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	var tlsConfig *tls.Config
	if c.TLS {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}

	switch {
	case c.URL != "":
		opt, _ := redis.ParseURL(c.URL)
		aopt := asynq.RedisClientOpt{
			Network: opt.Network, Addr: opt.Addr, Username: opt.Username, Password: opt.Password,
			DB: opt.DB, TLSConfig: opt.TLSConfig, PoolSize: opt.PoolSize,
		}
		return aopt, redis.NewClient(opt), nil

	case len(c.SentinelAddrs) > 0:
		opt := failoverConnOpt{
			MasterName: c.SentinelMaster, SentinelAddrs: c.SentinelAddrs, SentinelPassword: c.SentinelPassword,
			Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tlsConfig,
			MaxRetries: failoverMaxRetries, MinRetryBackoff: failoverMinBackoff, MaxRetryBackoff: failoverMaxBackoff,
		}
		return opt, opt.newClient(), nil

	default:
		aopt := asynq.RedisClusterClientOpt{
			Addrs: c.ClusterAddrs, Username: c.Username, Password: c.Password, TLSConfig: tlsConfig,
		}
		client := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.ClusterAddrs, Username: c.Username, Password: c.Password, TLSConfig: tlsConfig,
		})
		return aopt, client, nil
	}
}

// failoverMaxRetries and the backoff bounds give Sentinel clients 20 to 26 seconds of
// retries, by go-redis v9's backoff formula. That covers the time a failover leaves no
// writable master. With one replica and min-replicas-to-write 1 it was about 15 s on
// loopback with Redis 7.0.15: Sentinel demoted the old master about 10 s after the
// promotion, and the resync then waited repl-diskless-sync-delay (5 s by default).
// Without the retries a command in that span fails, and a failed completion write costs
// the task 1 to 2 minutes, because the syncer of asynq v0.25.1 retries it with a context
// that is already cancelled, so the task waits for the recoverer. go-redis retries only
// errors it considers retryable (network errors, READONLY, NOREPLICAS, LOADING, ...), and
// the caller's context still bounds each call.
const (
	failoverMaxRetries = 20
	failoverMinBackoff = 100 * time.Millisecond
	failoverMaxBackoff = 1500 * time.Millisecond
)

// failoverConnOpt is the asynq connection option of a Sentinel deployment. It replaces
// asynq.RedisFailoverClientOpt, which cannot set go-redis's retry budget.
type failoverConnOpt redis.FailoverOptions

// MakeRedisClient implements asynq.RedisConnOpt.
func (o failoverConnOpt) MakeRedisClient() any { return o.newClient() }

// newClient returns a new client with its own copy of the options, because go-redis fills
// in defaults on the options it is given.
func (o failoverConnOpt) newClient() *redis.Client {
	opt := redis.FailoverOptions(o)
	opt.SentinelAddrs = append([]string(nil), o.SentinelAddrs...)
	return redis.NewFailoverClient(&opt)
}

// Describe returns the deployment for log lines, without passwords.
func (c Config) Describe() string {
	switch {
	case c.URL != "":
		return Redact(c.URL)
	case len(c.SentinelAddrs) > 0:
		return fmt.Sprintf("sentinel master %q via %s", c.SentinelMaster, strings.Join(c.SentinelAddrs, ","))
	case len(c.ClusterAddrs) > 0:
		return "cluster via " + strings.Join(c.ClusterAddrs, ",")
	}
	return "none"
}

// Redact replaces the password of a Redis URL with "xxxxx".
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	userinfo := rest[:at]
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		userinfo = user + ":xxxxx"
	}
	return scheme + "://" + userinfo + rest[at:]
}

func redactErr(err error, url string) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(url, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pass, ok := strings.Cut(rest[:at], ":"); ok && pass != "" {
				msg = strings.ReplaceAll(msg, pass, "xxxxx")
			}
		}
	}
	return msg
}

// Check verifies what asynq needs of a Redis server: version 6.2 or later, and the
// noeviction policy, because an evicted lease key strands a task in the active state for
// ever. On a cluster it checks every master.
func Check(ctx context.Context, rdb redis.UniversalClient) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return checkOne(ctx, c, c.Options().Addr)
		})
	}
	return checkOne(ctx, rdb, "")
}

func checkOne(ctx context.Context, rdb redis.UniversalClient, where string) error {
	if where != "" {
		where = " at " + where
	}
	server, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("cannot reach Redis%s: %w", where, err)
	}
	version := infoField(server, "redis_version")
	if !atLeast(version, 6, 2) {
		return fmt.Errorf("Redis%s is version %q; asynq needs 6.2 or later: upgrade Redis", where, version)
	}
	memory, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return fmt.Errorf("read Redis%s memory settings: %w", where, err)
	}
	if policy := infoField(memory, "maxmemory_policy"); policy != "noeviction" {
		return fmt.Errorf("Redis%s has maxmemory-policy %q; it must be noeviction, because an evicted task lease leaves tasks stuck in the active state: set `maxmemory-policy noeviction` in redis.conf", where, policy)
	}
	return nil
}

// PersistenceWarnings returns one warning for each Redis server (each master of a
// Cluster) that runs without an append-only file. There the results record, which holds
// the only copy of a new password until the operator collects it, loses every write since
// the last snapshot when Redis restarts. It is a warning, not an error: a managed Redis
// may replicate instead, and tests run without persistence on purpose.
func PersistenceWarnings(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	var (
		mu       sync.Mutex
		warnings []string
	)
	check := func(ctx context.Context, c redis.UniversalClient, where string) error {
		info, err := c.Info(ctx, "persistence").Result()
		if err != nil {
			return fmt.Errorf("read Redis%s persistence settings: %w", where, err)
		}
		if infoField(info, "aof_enabled") == "0" {
			mu.Lock()
			warnings = append(warnings, fmt.Sprintf("Redis%s runs without an append-only file: a Redis restart loses the new passwords written since its last snapshot; set `appendonly yes` in redis.conf (see docs/operations.md, Persistence and eviction)", where))
			mu.Unlock()
		}
		return nil
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return check(ctx, c, " at "+c.Options().Addr)
		})
		return warnings, err
	}
	return warnings, check(ctx, rdb, "")
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
