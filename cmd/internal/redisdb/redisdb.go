// Package redisdb explains to the worker and the enqueue CLI why a Redis server rejected
// the database number of their settings, which go-redis selects on every new connection.
package redisdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/redisconn"
)

// outOfRange is the reply of redis-server 7.0 and miniredis v2 to SELECT of a database
// number the server does not have. go-redis returns it from the first command on a
// connection, because it sends SELECT when it opens one.
const outOfRange = "DB index is out of range"

// countTimeout bounds the second connection that reads the server's database count.
const countTimeout = 5 * time.Second

// IsOutOfRange reports whether err is the server's rejection of the database number.
func IsOutOfRange(err error) bool {
	return err != nil && strings.Contains(err.Error(), outOfRange)
}

// Setting returns the name of the setting that holds cfg's database number: --redis-url
// when urlFromFlag is true, REDIS_URL for a URL from the environment, and REDIS_DB for a
// Sentinel deployment. A Cluster has only database 0, so it never needs the name.
func Setting(cfg redisconn.Config, urlFromFlag bool) string {
	switch {
	case urlFromFlag:
		return "--redis-url"
	case cfg.URL != "":
		return "REDIS_URL"
	}
	return "REDIS_DB"
}

// OutOfRangeError builds the message for a rejection of cfg's database number that
// IsOutOfRange matched. setting names where the number comes from, as Setting returns
// it. The message gives the server's database count when CONFIG GET databases succeeds on
// database 0. Many managed Redis services disable CONFIG, and then the message names only
// the number and the setting.
func OutOfRangeError(ctx context.Context, cfg redisconn.Config, setting string) error {
	db := databaseOf(cfg)
	count, err := databaseCount(ctx, cfg)
	if err != nil || count < 1 || db < count {
		return fmt.Errorf("Redis at %s rejected SELECT %d as %q, so database %d does not exist there: check the database number in %s",
			cfg.Describe(), db, outOfRange, db, setting)
	}

	last := strconv.Itoa(count - 1)
	fix := "set a database number from 0 to " + last + " in " + setting
	if setting == "REDIS_DB" {
		fix = "set REDIS_DB to a number from 0 to " + last
	}
	return fmt.Errorf("Redis at %s has %d databases, 0 to %s, so database %d does not exist: %s",
		cfg.Describe(), count, last, db, fix)
}

// databaseOf returns the database number that cfg selects.
func databaseOf(cfg redisconn.Config) int {
	if cfg.URL != "" {
		if opt, err := redis.ParseURL(cfg.URL); err == nil {
			return opt.DB
		}
	}
	return cfg.DB
}

// databaseCount reads the server's `databases` setting over a new connection to
// database 0, which every server has.
func databaseCount(ctx context.Context, cfg redisconn.Config) (int, error) {
	var rdb redis.UniversalClient
	if cfg.URL != "" {
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return 0, err
		}
		opt.DB = 0
		rdb = redis.NewClient(opt)
	} else {
		cfg.DB = 0
		_, client, err := cfg.Open()
		if err != nil {
			return 0, err
		}
		rdb = client
	}
	defer rdb.Close()

	ctx, cancel := context.WithTimeout(ctx, countTimeout)
	defer cancel()
	values, err := rdb.ConfigGet(ctx, "databases").Result()
	if err != nil {
		return 0, err
	}
	v, ok := values["databases"]
	if !ok {
		return 0, errors.New("CONFIG GET databases returned no value")
	}
	return strconv.Atoi(v)
}
