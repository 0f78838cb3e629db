package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// portRange is a span of loopback TCP ports that the package may listen on.
type portRange struct{ first, last int }

// The ranges reserved for these tests. A cluster node takes two ports of its range: its
// client port and its cluster bus port.
var (
	clusterPorts  = portRange{first: 7100, last: 7199}
	sentinelPorts = portRange{first: 7200, last: 7299}
)

// startAttempts is how many ports startServer tries when another process takes the
// probed port before the server binds it.
const startAttempts = 5

var (
	portsMu sync.Mutex
	// portsInUse holds the ports handed out in this process and not yet released.
	portsInUse = map[int]bool{}
)

// takePort returns a port of r that this process has not handed out and that nothing
// listens on now. It starts at a random offset, so test processes running at the same
// time rarely probe the same ports. Another process can still bind the port before the
// server does, which is why startServer checks that the server it reaches is its own.
func takePort(r portRange) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()

	n := r.last - r.first + 1
	offset := rand.IntN(n)
	for i := range n {
		port := r.first + (offset+i)%n
		if portsInUse[port] || !portFree(port) {
			continue
		}
		portsInUse[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d on 127.0.0.1: stop the servers that use them", r.first, r.last)
}

func releasePort(port int) {
	portsMu.Lock()
	defer portsMu.Unlock()
	delete(portsInUse, port)
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", addrOf(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func addrOf(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// requireBinaries skips the test unless redis-server and redis-cli are installed, and
// returns their paths.
func requireBinaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: install Redis 6.2 or later (apt-get install redis-server) to run the Cluster and Sentinel tests")
	}
	cli, err = exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed: install Redis 6.2 or later (apt-get install redis-server) to run the Cluster and Sentinel tests")
	}
	return server, cli
}

// server is one redis-server process, data node or Sentinel, that a test started.
type server struct {
	// Name is the node's role at start, for messages: "master", "replica", "sentinel-1"...
	Name string
	Port int
	Addr string
	// Dir holds the node's configuration, data and log file.
	Dir string

	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	client *redis.Client // direct connection to this node only
}

// serverArgs builds the command line of a node with its files in dir. ports[0] is the
// client port; a cluster node gets a second port for its cluster bus.
type serverArgs func(ports []int, dir string) ([]string, error)

// startServer starts redis-server with the arguments args builds and waits until the
// process responds as itself. It takes 1+extraPorts ports of r, and tries other ones when
// a port turns out to be taken. password is the node's requirepass, empty for none. The
// test's cleanup stops the server.
func startServer(t testing.TB, name string, r portRange, extraPorts int, password string, args serverArgs) *server {
	t.Helper()
	bin, _ := requireBinaries(t)

	var lastErr error
	for range startAttempts {
		ports := make([]int, 0, 1+extraPorts)
		release := func() {
			for _, p := range ports {
				releasePort(p)
			}
		}
		for range 1 + extraPorts {
			port, err := takePort(r)
			if err != nil {
				release()
				t.Fatal(err)
			}
			ports = append(ports, port)
		}
		dir, err := os.MkdirTemp(t.TempDir(), name+"-")
		if err != nil {
			release()
			t.Fatal(err)
		}
		argv, err := args(ports, dir)
		if err != nil {
			release()
			t.Fatalf("%s: %v", name, err)
		}

		s, err := launch(name, bin, ports[0], dir, password, argv)
		if err == nil {
			t.Cleanup(func() {
				s.stop(t)
				release()
			})
			return s
		}
		release()
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return nil
}

// errPortTaken reports that another process bound the port first.
var errPortTaken = errors.New("port taken by another process")

// launch runs one redis-server and waits up to 15 seconds for it to respond.
func launch(name, bin string, port int, dir, password string, argv []string) (*server, error) {
	cmd := exec.Command(bin, argv...)
	cmd.Dir = dir
	// redis-server logs to its logfile; anything it prints before opening it, such as a
	// configuration error, lands here.
	var early bytes.Buffer
	cmd.Stdout, cmd.Stderr = &early, &early
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}

	s := &server{
		Name: name, Port: port, Addr: addrOf(port), Dir: dir,
		cmd: cmd, exited: make(chan struct{}),
		client: redis.NewClient(&redis.Options{Addr: addrOf(port), Password: password, MaxRetries: -1, DialTimeout: time.Second}),
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := pollUntil(ctx, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-s.exited:
			log := early.String() + s.logTail(20)
			if strings.Contains(log, "Address already in use") {
				return false, fmt.Errorf("%s on %s: %w", name, s.Addr, errPortTaken)
			}
			return false, fmt.Errorf("%s on %s exited at start:\n%s", name, s.Addr, log)
		default:
		}
		info, err := s.client.Info(ctx, "server").Result()
		if err != nil {
			return false, nil
		}
		if pid := infoField(info, "process_id"); pid != strconv.Itoa(cmd.Process.Pid) {
			// Another process responds on this port, so ours cannot have bound it.
			return false, fmt.Errorf("%s on %s: %w (process %s responds)", name, s.Addr, errPortTaken, pid)
		}
		return true, nil
	})
	if err != nil {
		// kill waits for the process to exit, after which its output is complete and
		// safe to read.
		s.kill()
		s.client.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%s on %s did not respond within 15s:\n%s", name, s.Addr, early.String()+s.logTail(20))
		}
		return nil, err
	}
	return s, nil
}

// stop ends the process with SIGTERM, and with SIGKILL when it has not exited within
// 10 seconds.
func (s *server) stop(t testing.TB) {
	defer s.client.Close()
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Logf("%s on %s did not stop within 10s of SIGTERM; killing it", s.Name, s.Addr)
		s.kill()
	}
}

// kill ends the process with SIGKILL and waits for it to exit.
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// logTail returns the last n lines of the node's log file.
func (s *server) logTail(n int) string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// dataNodeArgs are the settings every data node gets: loopback only, files in dir, and
// the noeviction policy that the worker requires.
func dataNodeArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"),
		"--daemonize", "no",
		"--save", "",
		"--maxmemory-policy", "noeviction",
	}
}

// pollUntil calls check every interval until it returns true or an error, or ctx ends.
func pollUntil(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// infoField returns one field of an INFO reply, or "".
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
