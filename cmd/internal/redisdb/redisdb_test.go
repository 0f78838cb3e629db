package redisdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/testredis"
)

func TestIsOutOfRange(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{err: nil, want: false},
		{err: errors.New("ERR DB index is out of range"), want: true},
		{err: fmt.Errorf("cannot reach Redis: %w", errors.New("ERR DB index is out of range")), want: true},
		{err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), want: false},
	}
	for _, tc := range tests {
		if got := IsOutOfRange(tc.err); got != tc.want {
			t.Errorf("IsOutOfRange(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestSetting(t *testing.T) {
	url := redisconn.Config{URL: "redis://127.0.0.1:6379/3"}
	sentinel := redisconn.Config{SentinelAddrs: []string{"127.0.0.1:26379"}, SentinelMaster: "m", DB: 3}
	if got := Setting(url, true); got != "--redis-url" {
		t.Errorf("Setting of a flag URL = %q, want --redis-url", got)
	}
	if got := Setting(url, false); got != "REDIS_URL" {
		t.Errorf("Setting of an environment URL = %q, want REDIS_URL", got)
	}
	if got := Setting(sentinel, false); got != "REDIS_DB" {
		t.Errorf("Setting of a Sentinel deployment = %q, want REDIS_DB", got)
	}
}

func TestOutOfRangeErrorNamesCount(t *testing.T) {
	testredis.RequireReal(t)
	rd := testredis.New(t)
	url, count := rd.MissingDatabaseURL(t)
	cfg := redisconn.Config{URL: url}

	err := pingDatabase(t, url)
	if !IsOutOfRange(err) {
		t.Fatalf("PING on database %d returned %v, want the out-of-range rejection", count, err)
	}
	got := OutOfRangeError(context.Background(), cfg, "REDIS_URL").Error()
	want := fmt.Sprintf("Redis at %s has %d databases, 0 to %d, so database %d does not exist: set a database number from 0 to %d in REDIS_URL",
		redisconn.Redact(url), count, count-1, count, count-1)
	if got != want {
		t.Errorf("OutOfRangeError =\n%s\nwant\n%s", got, want)
	}
}

// TestOutOfRangeErrorWithoutConfig connects as an ACL user that may not run CONFIG, as
// on managed Redis services, so the message cannot give the count.
func TestOutOfRangeErrorWithoutConfig(t *testing.T) {
	testredis.RequireReal(t)
	rd := testredis.New(t)
	url, count := rd.MissingDatabaseURL(t)
	if strings.Contains(rd.URL, "@") {
		t.Skip("the test Redis URL has credentials of its own")
	}
	ctx := context.Background()

	const user, password = "odinreset-test-no-config", "No-Config-5e1f"
	if err := rd.Client.Do(ctx, "ACL", "SETUSER", user, "on", ">"+password, "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatalf("create an ACL user without CONFIG: %v", err)
	}
	t.Cleanup(func() { rd.Client.Do(context.Background(), "ACL", "DELUSER", user) })
	limitedURL := strings.Replace(url, "redis://", "redis://"+user+":"+password+"@", 1)

	got := OutOfRangeError(ctx, redisconn.Config{URL: limitedURL}, "--redis-url").Error()
	want := fmt.Sprintf(`Redis at %s rejected SELECT %d as "DB index is out of range", so database %d does not exist there: check the database number in --redis-url`,
		redisconn.Redact(limitedURL), count, count)
	if got != want {
		t.Errorf("OutOfRangeError =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, password) {
		t.Errorf("the message contains the password: %s", got)
	}
}

func pingDatabase(t *testing.T, url string) error {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	return client.Ping(context.Background()).Err()
}
