package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/cmd/internal/redisdb"
	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/secrets"
	"github.com/odinreset/odinreset/results"
)

// redisURLHelp is the help text of every command's --redis-url flag.
const redisURLHelp = "Redis `URL`, redis://[user:password@]host:port/db or rediss:// for TLS (default: $REDIS_URL)"

// pingTimeout bounds the first contact with Redis, so an unreachable server fails fast
// with the address instead of hanging.
const pingTimeout = 10 * time.Second

// redisConn is an open Redis connection with the asynq client and inspector over it.
type redisConn struct {
	rdb       redis.UniversalClient
	client    *asynq.Client
	inspector *asynq.Inspector
	// where is the deployment as messages name it, without passwords.
	where string
	// passwords are removed from every message built from a Redis error.
	passwords []string
}

// redisSettings builds the Redis deployment from --redis-url or the environment, the
// same way the worker does (see redisconn.FromEnv).
func (a *app) redisSettings(urlFlag string) (redisconn.Config, error) {
	cfg, err := redisconn.FromEnv(secrets.Getenv(a.getenv), urlFlag)
	if err != nil {
		return cfg, usageErrorf("%v", err)
	}
	return cfg, nil
}

// connect opens the Redis deployment and checks it with a PING. A configuration error is
// a usage error (exit 2). A server that cannot be reached or rejects the password is an
// infrastructure error (exit 3) that names the address but never the password.
func (a *app) connect(ctx context.Context, urlFlag string) (*redisConn, error) {
	cfg, err := a.redisSettings(urlFlag)
	if err != nil {
		return nil, err
	}
	_, rdb, err := cfg.Open()
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	c := &redisConn{rdb: rdb, where: cfg.Describe(), passwords: passwordsOf(cfg)}

	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		rdb.Close()
		if redisdb.IsOutOfRange(err) {
			return nil, infraError(redisdb.OutOfRangeError(ctx, cfg, redisdb.Setting(cfg, urlFlag != "")))
		}
		return nil, c.describeFailure(err)
	}

	c.client = asynq.NewClientFromRedisClient(rdb)
	c.inspector = asynq.NewInspectorFromRedisClient(rdb)
	return c, nil
}

func passwordsOf(cfg redisconn.Config) []string {
	out := []string{cfg.Password, cfg.SentinelPassword}
	if opt, err := redis.ParseURL(cfg.URL); err == nil {
		out = append(out, opt.Password)
	}
	return out
}

// describeFailure turns a failed first contact into a message an operator can act on.
func (c *redisConn) describeFailure(err error) error {
	switch {
	case strings.HasPrefix(err.Error(), "NOAUTH"):
		return infraError(fmt.Errorf("Redis at %s requires a password: set it in the Redis URL or REDIS_PASSWORD (or REDIS_PASSWORD_FILE)",
			c.where))
	case redis.IsAuthError(err):
		return infraError(fmt.Errorf("Redis at %s rejected the password (%s): check the password in the Redis URL or REDIS_PASSWORD",
			c.where, c.scrub(err.Error())))
	case strings.Contains(err.Error(), "without any password configured"):
		return infraError(fmt.Errorf("Redis at %s has no password but one was given: remove it from the Redis URL or REDIS_PASSWORD",
			c.where))
	case errors.Is(err, context.Canceled):
		return infraError(fmt.Errorf("connecting to Redis at %s was interrupted", c.where))
	}
	return infraError(fmt.Errorf("cannot reach Redis at %s: %s: check that Redis runs there, and --redis-url or REDIS_URL",
		c.where, c.scrub(err.Error())))
}

// scrub removes the configured passwords from a message, in case a server or library
// echoes one.
func (c *redisConn) scrub(msg string) string {
	for _, p := range c.passwords {
		if p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// wrap marks an error of a command that talked to Redis: library errors that mean "fix
// the input" keep their exit code, anything else is an infrastructure error naming the
// deployment.
func (c *redisConn) wrap(err error) error {
	if err == nil || exitCode(err) != exitInfra {
		return err
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return err
	}
	return infraError(fmt.Errorf("%s (Redis at %s)", c.scrub(err.Error()), c.where))
}

// close closes the Redis client. The asynq client and inspector share it, and asynq
// refuses to close a shared connection itself.
func (c *redisConn) close() {
	c.rdb.Close()
}

// metaStore returns a store that reads jobs and user states without the results key:
// every secret reads as empty. Submit, status, list and cancel use it, because they
// never show or write a secret and must work without the key.
func (a *app) metaStore(c *redisConn) *results.Store {
	return results.NewStore(c.rdb, results.WithSealer(withoutSecrets{}), results.WithClock(a.now))
}

// withoutSecrets is a results.Sealer that never reveals a stored secret and refuses to
// store one.
type withoutSecrets struct{}

func (withoutSecrets) Seal(_, _, _ string) (string, error) {
	return "", errors.New("this command does not store secrets")
}

func (withoutSecrets) Open(_, _, _ string) (string, error) { return "", nil }

// secretStore returns a store that reads secrets with sealer, from resultsSealer.
func (a *app) secretStore(c *redisConn, sealer results.Sealer) *results.Store {
	return results.NewStore(c.rdb, results.WithSealer(sealer), results.WithClock(a.now))
}

// resultsSealer returns the sealer of the results key in the environment (RESULTS_KEY or
// RESULTS_KEY_FILE, and RESULTS_KEY_PREVIOUS), or results.Plaintext when no key is set:
// reading an encrypted record then fails with results.ErrNoKey. A malformed key is a
// usage error, and submit --wait checks for it before it enqueues anything.
func (a *app) resultsSealer() (results.Sealer, error) {
	if a.sealer != nil {
		return a.sealer, nil
	}
	sealer, err := secrets.Sealer(secrets.Getenv(a.getenv), true)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return sealer, nil
}
