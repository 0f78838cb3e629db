package redisconn

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/secrets"
)

// FromEnv builds the deployment from the environment, the same way for the worker and
// the CLI: REDIS_URL, or REDIS_SENTINEL_ADDRS with REDIS_SENTINEL_MASTER and
// REDIS_SENTINEL_PASSWORD(_FILE), or REDIS_CLUSTER_ADDRS, plus REDIS_USERNAME,
// REDIS_PASSWORD(_FILE), REDIS_DB and REDIS_TLS. A non-empty urlOverride (a --redis-url
// flag) wins over every deployment variable. A password in REDIS_PASSWORD is added to a
// URL that has none, so it can stay out of the command line. The configuration is
// validated; errors name the variable and the fix.
func FromEnv(getenv secrets.Getenv, urlOverride string) (Config, error) {
	var cfg Config

	password, _, err := secrets.FromEnvOrFile(getenv, "REDIS_PASSWORD")
	if err != nil {
		return cfg, err
	}
	sentinelPassword, _, err := secrets.FromEnvOrFile(getenv, "REDIS_SENTINEL_PASSWORD")
	if err != nil {
		return cfg, err
	}

	cfg.URL = getenv("REDIS_URL")
	if urlOverride != "" {
		if _, err := redis.ParseURL(urlOverride); err != nil {
			return cfg, fmt.Errorf("invalid --redis-url %s: %v; use redis://[user:password@]host:port/db or rediss:// for TLS", Redact(urlOverride), redactErr(err, urlOverride))
		}
		cfg.URL = urlOverride
	} else {
		cfg.SentinelAddrs = splitList(getenv("REDIS_SENTINEL_ADDRS"))
		cfg.SentinelMaster = strings.TrimSpace(getenv("REDIS_SENTINEL_MASTER"))
		cfg.SentinelPassword = sentinelPassword
		cfg.ClusterAddrs = splitList(getenv("REDIS_CLUSTER_ADDRS"))
	}
	cfg.Username = getenv("REDIS_USERNAME")
	cfg.Password = password
	if v := getenv("REDIS_DB"); v != "" {
		if cfg.DB, err = strconv.Atoi(v); err != nil || cfg.DB < 0 {
			return cfg, fmt.Errorf("invalid REDIS_DB %q: use a database number such as 0", v)
		}
	}
	if v := getenv("REDIS_TLS"); v != "" {
		if cfg.TLS, err = strconv.ParseBool(v); err != nil {
			return cfg, fmt.Errorf("invalid REDIS_TLS %q: use true or false", v)
		}
	}

	if cfg.URL != "" && getenv("REDIS_DB") != "" {
		// With a URL, Open uses the URL's database and ignores DB.
		if opt, err := redis.ParseURL(cfg.URL); err == nil && opt.DB != cfg.DB {
			return cfg, fmt.Errorf("REDIS_DB=%d conflicts with database %d of the Redis URL %s: put the database number at the end of the URL and unset REDIS_DB", cfg.DB, opt.DB, Redact(cfg.URL))
		}
	}
	if cfg.URL != "" && password != "" {
		if cfg.URL, err = addURLPassword(cfg.URL, password); err != nil {
			return cfg, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// addURLPassword puts REDIS_PASSWORD into a Redis URL that carries no password.
func addURLPassword(raw, password string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("invalid Redis URL %s: use redis://host:port/db", Redact(raw))
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return "", fmt.Errorf("the Redis URL %s has a password and REDIS_PASSWORD is set too: set only one", Redact(raw))
		}
	}
	username := ""
	if u.User != nil {
		username = u.User.Username()
	}
	u.User = url.UserPassword(username, password)
	return u.String(), nil
}

func splitList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
