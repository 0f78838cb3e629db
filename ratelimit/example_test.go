package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/ratelimit"
)

func Example() {
	// A miniredis plays the Redis server that all workers share.
	server, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer server.Close()
	rdb := redis.NewClient(&redis.Options{Addr: server.Addr()})
	defer rdb.Close()

	// Every worker builds its Limiter for the same Odin base URL.
	ctx := context.Background()
	limiter, err := ratelimit.New(rdb, "https://odin.example.com/api/v2", ratelimit.Limit{Rate: 5, Burst: 1})
	if err != nil {
		panic(err)
	}

	// Wait before each Odin request: at 5 per second the third one goes out
	// 400 ms after the first.
	for range 3 {
		if err := limiter.Wait(ctx); err != nil {
			panic(err)
		}
	}
	fmt.Println("sent 3 requests")

	// A 429 response with Retry-After: 30 pauses the whole fleet. The pause
	// is longer than the maximum wait, so Wait returns at once.
	if err := limiter.Pause(ctx, 30*time.Second, "Odin returned 429"); err != nil {
		panic(err)
	}
	err = limiter.Wait(ctx)
	var delayErr *ratelimit.DelayError
	if errors.As(err, &delayErr) {
		fmt.Printf("not sent: %s, retry in about %v\n", delayErr.Reason, delayErr.Delay.Round(time.Second))
	}

	// Output:
	// sent 3 requests
	// not sent: Odin returned 429, retry in about 30s
}
