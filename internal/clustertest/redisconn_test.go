package clustertest

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// TestSentinelKeepsDBAndPassword opens a password-protected Sentinel deployment with a
// database number and checks that the go-redis client, asynq's connection option and
// asynq's client all write to that database on the master. asynq v0.25.1 drops the
// database number and the master password when it parses a Sentinel URI, so the settings
// must survive redisconn's explicit options.
func TestSentinelKeepsDBAndPassword(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel deployment: skipped in -short mode")
	}
	const (
		password = "master-password-for-tests"
		db       = 5
	)
	d := StartSentinel(t, SentinelOptions{Password: password})
	cfg := d.Config()
	cfg.Password, cfg.DB = password, db
	asynqOpt, rdb, err := cfg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()

	masterAddr, err := d.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inDB := redis.NewClient(&redis.Options{Addr: masterAddr, Password: password, DB: db})
	defer inDB.Close()

	asynqRedis, ok := asynqOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		t.Fatalf("asynq's connection option makes a %T, want a redis.UniversalClient", asynqOpt.MakeRedisClient())
	}
	defer asynqRedis.Close()

	tests := []struct {
		name  string
		write func() error
		key   string
	}{
		{
			name:  "go-redis client",
			write: func() error { return rdb.Set(ctx, "written-by-go-redis", "1", 0).Err() },
			key:   "written-by-go-redis",
		},
		{
			name:  "client of asynq's connection option",
			write: func() error { return asynqRedis.Set(ctx, "written-by-asynq-option", "1", 0).Err() },
			key:   "written-by-asynq-option",
		},
		{
			name: "asynq client",
			write: func() error {
				client := asynq.NewClient(asynqOpt)
				defer client.Close()
				_, err := client.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("conn-test"))
				return err
			},
			key: "asynq:{conn-test}:pending",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.write(); err != nil {
				t.Fatalf("write through the Sentinels: %v", err)
			}
			n, err := inDB.Exists(ctx, tt.key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("key %s is not in database %d of the master %s", tt.key, db, masterAddr)
			}
		})
	}
}

// TestAsynqSentinelURIDropsSettings pins the asynq v0.25.1 behaviour that redisconn works
// around: a Sentinel URI loses its database number and master password.
func TestAsynqSentinelURIDropsSettings(t *testing.T) {
	opt, err := asynq.ParseRedisURI("redis-sentinel://:master-password@127.0.0.1:26379/5?master=odinreset")
	if err != nil {
		t.Fatal(err)
	}
	failover, ok := opt.(asynq.RedisFailoverClientOpt)
	if !ok {
		t.Fatalf("ParseRedisURI returned a %T, want asynq.RedisFailoverClientOpt", opt)
	}
	type droppedFields struct {
		DB       int
		Password string
	}
	got := droppedFields{DB: failover.DB, Password: failover.Password}
	if diff := cmp.Diff(droppedFields{}, got); diff != "" {
		t.Errorf("asynq kept settings it used to drop; redisconn's explicit options may no longer be needed (-want +got):\n%s", diff)
	}
}
