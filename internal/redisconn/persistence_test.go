package redisconn_test

import (
	"strings"
	"testing"

	"github.com/odinreset/odinreset/internal/redisconn"
	"github.com/odinreset/odinreset/internal/testredis"
)

// TestPersistenceWarnings checks the warning against what the server reports: the test
// Redis of CI runs without an append-only file, so there it must warn.
func TestPersistenceWarnings(t *testing.T) {
	if !testredis.RealAvailable() {
		t.Skipf("needs a real Redis (%s): the embedded one has no persistence section", testredis.EnvURL)
	}
	rd := testredis.New(t)
	info, err := rd.Client.Info(t.Context(), "persistence").Result()
	if err != nil {
		t.Fatal(err)
	}
	aofOff := strings.Contains(info, "aof_enabled:0")

	warnings, err := redisconn.PersistenceWarnings(t.Context(), rd.Client)
	if err != nil {
		t.Fatalf("PersistenceWarnings: %v", err)
	}
	switch {
	case aofOff && len(warnings) != 1:
		t.Fatalf("warnings = %q for a Redis without an append-only file, want one", warnings)
	case !aofOff && len(warnings) != 0:
		t.Fatalf("warnings = %q for a Redis with an append-only file, want none", warnings)
	}
	if aofOff && !strings.Contains(warnings[0], "appendonly yes") {
		t.Errorf("warning %q does not name the fix, appendonly yes", warnings[0])
	}
}
