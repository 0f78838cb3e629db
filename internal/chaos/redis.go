package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a redis-server started by StartRedis.
type RedisOptions struct {
	// AppendOnly turns on the append-only file with appendfsync always, so a server killed
	// with SIGKILL and started again keeps every write it acknowledged.
	AppendOnly bool
	// Password sets requirepass; empty means no password.
	Password string
}

// Redis is a redis-server process of one test. It listens only on a Unix socket in a
// private directory, so it needs no TCP port and nothing outside the test can reach it.
type Redis struct {
	// Dir holds the socket, the configuration, the log and the append-only file.
	Dir string
	// Socket is the path of the Unix socket.
	Socket string
	// URL is a unix:// URL for REDIS_URL, with the password when there is one.
	URL string
	// Opt connects asynq.
	Opt asynq.RedisClientOpt
	// Client is a go-redis client of the server. It reconnects after a restart.
	Client *redis.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedis starts a redis-server for the test and stops it in the test's cleanup. It
// skips the test when redis-server is not installed.
func StartRedis(t testing.TB, opts RedisOptions) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server on PATH (apt-get install redis-server); the test starts its own server")
	}

	// A Unix socket path must fit in about 100 bytes, so the directory is a short one under
	// the system temporary directory rather than t.TempDir().
	dir, err := os.MkdirTemp("", "odr")
	if err != nil {
		t.Fatalf("create the Redis directory: %v", err)
	}
	r := &Redis{Dir: dir, Socket: filepath.Join(dir, "redis.sock")}
	if err := r.writeConfig(opts); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}

	u := url.URL{Scheme: "unix", Path: r.Socket, RawQuery: "db=0"}
	if opts.Password != "" {
		u.User = url.UserPassword("", opts.Password)
	}
	r.URL = u.String()
	r.Opt = asynq.RedisClientOpt{Network: "unix", Addr: r.Socket, Password: opts.Password}
	r.Client = redis.NewClient(&redis.Options{
		Network: "unix", Addr: r.Socket, Password: opts.Password,
		DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	})

	t.Cleanup(func() {
		r.Client.Close()
		if err := r.Kill(); err != nil {
			t.Errorf("stop redis-server: %v", err)
		}
		os.RemoveAll(dir)
	})
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *Redis) writeConfig(opts RedisOptions) error {
	lines := []string{
		"port 0",
		"unixsocket " + r.Socket,
		"unixsocketperm 700",
		"dir " + r.Dir,
		"logfile " + filepath.Join(r.Dir, "redis.log"),
		`save ""`,
		"maxmemory-policy noeviction",
		"databases 4",
	}
	if opts.AppendOnly {
		lines = append(lines, "appendonly yes", "appendfsync always")
	} else {
		lines = append(lines, "appendonly no")
	}
	if opts.Password != "" {
		lines = append(lines, "requirepass "+opts.Password)
	}
	// The file may hold the password: only the owner reads it.
	path := filepath.Join(r.Dir, "redis.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Start runs redis-server (again, after Kill) with the same directory, so an
// append-only server comes back with its data. It returns once PING succeeds.
func (r *Redis) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("redis-server is already running")
	}

	cmd := exec.Command("redis-server", filepath.Join(r.Dir, "redis.conf"))
	cmd.Dir = r.Dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		err := r.Client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start; its log:\n%s", r.logTail())
		case <-ctx.Done():
			return fmt.Errorf("redis-server did not respond to PING within 15s: %v; its log:\n%s", err, r.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops redis-server with SIGKILL, as a crash would, and waits for it to exit. It
// does nothing when the server is not running.
func (r *Redis) Kill() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return nil
	}
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill redis-server: %w", err)
	}
	<-r.exited
	r.cmd, r.exited = nil, nil
	return nil
}

func (r *Redis) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	return tail(string(b), 20)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
