package clustertest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// envFull selects the full-size runs of the deployment tests.
const envFull = "ODINRESET_FULL"

// workerBin is the cmd/worker binary that TestMain builds, or "" when it was not built.
var workerBin string

// buildErr is why workerBin is empty.
var buildErr error

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	_, lookErr := exec.LookPath("redis-server")
	if !testing.Short() && lookErr == nil {
		dir, err := os.MkdirTemp("", "clustertest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "clustertest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		workerBin, buildErr = buildWorker(dir)
	}
	return m.Run()
}

// buildWorker compiles cmd/worker into dir; the module root is two levels up.
func buildWorker(dir string) (string, error) {
	bin := filepath.Join(dir, "worker")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/worker")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/worker: %v\n%s", err, out)
	}
	return bin, nil
}

// requireWorker skips the test in -short mode and where redis-server is missing, and
// fails it when the worker binary did not build.
func requireWorker(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Redis Cluster or Sentinel processes and worker processes: skipped in -short mode")
	}
	requireBinaries(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if workerBin == "" {
		t.Fatal("the worker binary was not built")
	}
	return workerBin
}

// fullSize reports whether ODINRESET_FULL=1 selects the full-size runs.
func fullSize() bool { return os.Getenv(envFull) == "1" }
