package clustertest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/odinreset/odinreset/internal/redisconn"
)

// Cluster is a Redis Cluster of three masters with one replica each, six redis-server
// processes on loopback.
type Cluster struct {
	// Nodes are the six nodes in the order they were created; redis-cli made the first
	// three the masters.
	Nodes []*server
}

// Addrs returns the host:port of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Config returns the connection settings of the cluster, as REDIS_CLUSTER_ADDRS with every
// node would give them.
func (c *Cluster) Config() redisconn.Config {
	return redisconn.Config{ClusterAddrs: c.Addrs()}
}

// StartCluster starts six cluster-enabled nodes on ports in 7100-7199, joins them with
// `redis-cli --cluster create --cluster-replicas 1`, and returns once every node reports
// the cluster state ok with all 16384 slots assigned. It skips the test when redis-server
// or redis-cli is missing; the test's cleanup stops the nodes.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	_, cli := requireBinaries(t)

	c := &Cluster{}
	for i := range 6 {
		c.Nodes = append(c.Nodes, startServer(t, "cluster-"+strconv.Itoa(i+1), clusterPorts, 1, "",
			func(ports []int, dir string) ([]string, error) {
				return append(dataNodeArgs(ports[0], dir),
					"--cluster-enabled", "yes",
					"--cluster-config-file", "nodes.conf",
					"--cluster-port", strconv.Itoa(ports[1]),
					"--cluster-node-timeout", "5000",
				), nil
			}))
	}

	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}

	for _, n := range c.Nodes {
		err := pollUntil(ctx, 50*time.Millisecond, func() (bool, error) {
			info, err := n.client.ClusterInfo(ctx).Result()
			if err != nil {
				return false, nil
			}
			return infoField(info, "cluster_state") == "ok" &&
				infoField(info, "cluster_slots_ok") == "16384" &&
				infoField(info, "cluster_known_nodes") == "6", nil
		})
		if err != nil {
			info, _ := n.client.ClusterInfo(context.Background()).Result()
			t.Fatalf("cluster node %s not ready: %v\nCLUSTER INFO:\n%s", n.Addr, err, info)
		}
	}
	return c
}

// Masters returns the addresses of the nodes that are masters now.
func (c *Cluster) Masters(ctx context.Context) ([]string, error) {
	var masters []string
	for _, n := range c.Nodes {
		role, err := n.client.Do(ctx, "ROLE").Slice()
		if err != nil {
			return nil, fmt.Errorf("ROLE on %s: %w", n.Addr, err)
		}
		if len(role) > 0 && role[0] == "master" {
			masters = append(masters, n.Addr)
		}
	}
	return masters, nil
}
