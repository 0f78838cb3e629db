package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/redisconn"
)

// MasterName is the name the Sentinels of StartSentinel monitor the master under.
const MasterName = "odinreset"

// SentinelOptions shape a Sentinel deployment.
type SentinelOptions struct {
	// Replicas is the number of replicas of the master. Default 1.
	Replicas int
	// MinReplicasToWrite is min-replicas-to-write of every data node. With 1, a master
	// rejects writes (NOREPLICAS) while no replica is connected, so a master that a
	// failover has left behind cannot acknowledge writes that the new master lacks. It
	// also makes a new master with no replica in sync reject writes until one is.
	MinReplicasToWrite int
	// ImmediateResync sets repl-diskless-sync-delay 0 on the data nodes, so a replica's
	// full resynchronization starts at once instead of after Redis's default 5 s.
	ImmediateResync bool
	// Password, when set, is required by the data nodes (requirepass and masterauth); the
	// Sentinels authenticate to them with it.
	Password string
	// AppendFsyncAlways turns on the append-only file with an fsync after every write,
	// which keeps acknowledged writes across a restart of the same node. It does not help
	// across a failover, where the replica's copy is what counts.
	AppendFsyncAlways bool
}

// Sentinel is a Sentinel deployment on loopback: one master, its replicas, and three
// Sentinels that monitor them under MasterName with a quorum of two.
type Sentinel struct {
	// Data are the master and the replicas, in their roles at start.
	Data []*server
	// Sentinels are the three Sentinel processes.
	Sentinels []*server
}

// SentinelAddrs returns the host:port of every Sentinel.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// Config returns the connection settings, as REDIS_SENTINEL_ADDRS and
// REDIS_SENTINEL_MASTER would give them.
func (s *Sentinel) Config() redisconn.Config {
	return redisconn.Config{SentinelAddrs: s.SentinelAddrs(), SentinelMaster: MasterName}
}

// StartSentinel starts a master and its replicas with opts, then three Sentinels, all on
// ports in 7200-7299, and returns once the replicas are in sync and every Sentinel has learned
// about the replicas and the two other Sentinels. It skips the test when redis-server or
// redis-cli is missing; the test's cleanup stops every process.
func StartSentinel(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	s := &Sentinel{}

	dataArgs := func(ports []int, dir string) []string {
		args := dataNodeArgs(ports[0], dir)
		if opts.MinReplicasToWrite > 0 {
			args = append(args,
				"--min-replicas-to-write", strconv.Itoa(opts.MinReplicasToWrite),
				"--min-replicas-max-lag", "10")
		}
		if opts.ImmediateResync {
			args = append(args, "--repl-diskless-sync-delay", "0")
		}
		if opts.Password != "" {
			args = append(args, "--requirepass", opts.Password, "--masterauth", opts.Password)
		}
		if opts.AppendFsyncAlways {
			args = append(args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			args = append(args, "--appendonly", "no")
		}
		return args
	}
	master := startServer(t, "master", sentinelPorts, 0, opts.Password, func(ports []int, dir string) ([]string, error) {
		return dataArgs(ports, dir), nil
	})
	s.Data = []*server{master}
	for i := range opts.Replicas {
		s.Data = append(s.Data, startServer(t, "replica-"+strconv.Itoa(i+1), sentinelPorts, 0, opts.Password, func(ports []int, dir string) ([]string, error) {
			return append(dataArgs(ports, dir), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port)), nil
		}))
	}

	for i := range 3 {
		name := "sentinel-" + strconv.Itoa(i+1)
		s.Sentinels = append(s.Sentinels, startServer(t, name, sentinelPorts, 0, "", func(ports []int, dir string) ([]string, error) {
			conf := filepath.Join(dir, "sentinel.conf")
			// Sentinel rewrites its configuration file, so each gets a writable copy.
			text := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 2000
sentinel failover-timeout %s 20000
sentinel parallel-syncs %s 1
`, ports[0], dir, filepath.Join(dir, "redis.log"), MasterName, master.Port, MasterName, MasterName, MasterName)
			if opts.Password != "" {
				text += fmt.Sprintf("sentinel auth-pass %s %s\n", MasterName, opts.Password)
			}
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return nil, err
			}
			return []string{conf, "--sentinel"}, nil
		}))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, replica := range s.Data[1:] {
		if err := waitReplicaInSync(ctx, replica); err != nil {
			t.Fatalf("%s on %s: %v\n%s", replica.Name, replica.Addr, err, replica.logTail(20))
		}
	}
	for _, sn := range s.Sentinels {
		err := pollUntil(ctx, 50*time.Millisecond, func() (bool, error) {
			m, err := sn.client.Do(ctx, "SENTINEL", "MASTER", MasterName).Result()
			if err != nil {
				return false, nil
			}
			fields := sentinelFields(m)
			return fields["num-slaves"] == strconv.Itoa(opts.Replicas) && fields["num-other-sentinels"] == "2", nil
		})
		if err != nil {
			t.Fatalf("%s on %s does not know the replicas and the other Sentinels: %v\n%s", sn.Name, sn.Addr, err, sn.logTail(20))
		}
	}
	return s
}

// Failover makes the Sentinels promote a replica with SENTINEL FAILOVER. It waits until
// every Sentinel names the new master and every other data node, the old master
// included, is a replica in sync with it. Then the new master accepts writes again under
// min-replicas-to-write. Failover returns the addresses of the old and the new master.
func (s *Sentinel) Failover(ctx context.Context) (from, to string, err error) {
	from, err = s.MasterAddr(ctx)
	if err != nil {
		return "", "", err
	}
	if err := s.Sentinels[0].client.Do(ctx, "SENTINEL", "FAILOVER", MasterName).Err(); err != nil {
		return "", "", fmt.Errorf("SENTINEL FAILOVER %s on %s: %w", MasterName, s.Sentinels[0].Addr, err)
	}

	err = pollUntil(ctx, 20*time.Millisecond, func() (bool, error) {
		to = ""
		for _, sn := range s.Sentinels {
			addr, err := sn.client.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName).StringSlice()
			if err != nil || len(addr) != 2 {
				return false, nil
			}
			got := addr[0] + ":" + addr[1]
			if got == from || (to != "" && got != to) {
				return false, nil
			}
			to = got
		}
		return true, nil
	})
	if err != nil {
		return from, "", fmt.Errorf("the Sentinels did not agree on a new master: %w", err)
	}

	for _, n := range s.Data {
		if n.Addr == to {
			continue
		}
		if err := waitReplicaInSync(ctx, n); err != nil {
			return from, to, fmt.Errorf("%s (%s at start) did not become a replica of %s in sync: %w", n.Addr, n.Name, to, err)
		}
	}
	return from, to, nil
}

// MasterAddr returns the master's address as the first Sentinel reports it.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	addr, err := s.Sentinels[0].client.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName).StringSlice()
	if err != nil {
		return "", fmt.Errorf("ask %s for the master: %w", s.Sentinels[0].Addr, err)
	}
	if len(addr) != 2 {
		return "", fmt.Errorf("ask %s for the master: unexpected reply %q", s.Sentinels[0].Addr, addr)
	}
	return addr[0] + ":" + addr[1], nil
}

// waitReplicaInSync waits until n is a replica whose link to its master is up.
func waitReplicaInSync(ctx context.Context, n *server) error {
	return pollUntil(ctx, 20*time.Millisecond, func() (bool, error) {
		info, err := n.client.Info(ctx, "replication").Result()
		if err != nil {
			return false, nil
		}
		return infoField(info, "role") == "slave" && infoField(info, "master_link_status") == "up" &&
			infoField(info, "master_sync_in_progress") == "0", nil
	})
}

// sentinelFields turns a SENTINEL MASTER reply, a flat list or a map under RESP3, into
// a map.
func sentinelFields(reply any) map[string]string {
	out := map[string]string{}
	switch v := reply.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[any]any:
		for k, val := range v {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	for k, v := range out {
		out[k] = strings.TrimSpace(v)
	}
	return out
}
