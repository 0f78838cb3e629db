package policytest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWorkerRejectsUnsafeRedis starts the worker binary against Redis servers that asynq
// cannot run on safely. It must refuse to start, exit with status 1 and name the
// problem and the fix.
func TestWorkerRejectsUnsafeRedis(t *testing.T) {
	bins := requireBinaries(t)
	odinURL := idleOdinURL(t)
	key, _ := newResultsKey(t)

	tests := []struct {
		name     string
		redisURL func(t *testing.T) string
		// want lists parts of the message the worker must print.
		want []string
	}{
		{
			name:     "eviction policy allkeys-lru",
			redisURL: func(t *testing.T) string { return startRedisServer(t, "allkeys-lru").URL },
			want:     []string{`maxmemory-policy "allkeys-lru"`, "noeviction"},
		},
		{
			name:     "Redis 6.0",
			redisURL: func(t *testing.T) string { return startFakeRedis(t, "6.0.16") },
			want:     []string{`version "6.0.16"`, "6.2 or later"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startWorker(t, bins, "worker", tt.redisURL(t), odinURL, key, nil)
			code := p.wait(t, 30*time.Second)
			output := p.log()
			if code != 1 {
				t.Errorf("worker exited with %d, want 1", code)
			}
			for _, want := range tt.want {
				if !strings.Contains(output, want) {
					t.Errorf("worker output does not contain %q:\n%s", want, output)
				}
			}
			if strings.Contains(output, "worker started") {
				t.Errorf("worker started on an unsafe Redis:\n%s", output)
			}
		})
	}

	t.Run("safe Redis accepted", func(t *testing.T) {
		p := startWorker(t, bins, "worker", startRedisServer(t, "noeviction").URL, odinURL, key, nil)
		waitUntil(t, 30*time.Second, "the worker to start", func() bool {
			return strings.Contains(p.log(), "worker started")
		})
	})
}

// idleOdinURL returns the base URL of a loopback listener that accepts nothing, so a
// worker has a valid Odin URL that no test traffic leaves the machine for.
func idleOdinURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return "http://" + ln.Addr().String() + "/api/v2"
}

// startFakeRedis serves the Redis protocol on a loopback port well enough for a client
// to connect and read INFO, reporting the given server version and the noeviction
// policy. It returns a redis:// URL for it.
func startFakeRedis(t *testing.T, version string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFakeRedis(conn, version)
		}
	}()
	return "redis://" + ln.Addr().String() + "/0"
}

func serveFakeRedis(conn net.Conn, version string) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		var reply string
		switch strings.ToUpper(args[0]) {
		case "HELLO":
			reply = "-ERR unknown command 'HELLO'\r\n"
		case "PING":
			reply = "+PONG\r\n"
		case "INFO":
			info := fmt.Sprintf("# Server\r\nredis_version:%s\r\n# Memory\r\nmaxmemory_policy:noeviction\r\n", version)
			reply = fmt.Sprintf("$%d\r\n%s\r\n", len(info), info)
		default:
			reply = "+OK\r\n"
		}
		if _, err := io.WriteString(conn, reply); err != nil {
			return
		}
	}
}

// readCommand reads one command, sent as a RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	header, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(header, "*")))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("unexpected command header %q", header)
	}
	args := make([]string, n)
	for i := range args {
		lengthLine, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		length, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(lengthLine, "$")))
		if err != nil {
			return nil, fmt.Errorf("unexpected bulk string header %q", lengthLine)
		}
		buf := make([]byte, length+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:length])
	}
	return args, nil
}
