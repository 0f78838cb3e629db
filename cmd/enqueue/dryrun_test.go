package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/odinreset/odinreset/internal/testenv"
	"github.com/odinreset/odinreset/odin/odintest"
)

func TestSubmitDryRunWait(t *testing.T) {
	t.Parallel()
	broken := odintest.SeededUserID(2)
	env := testenv.Start(t, testenv.Options{Sim: odintest.Config{Users: 3, WithoutAuthentication: []string{broken}}})

	got := runCLI(t, invocation{sealer: env.Keyring},
		"submit", "--redis-url", env.Redis.URL, "--service-provider", env.Sim.ServiceProviderID(), "--group", env.Sim.GroupID(),
		"--type", "sip", "--user", odintest.SeededUserID(1), "--user", broken, "--job-id", "dry1", "--dry-run", "--wait")

	if got.code != exitFailed {
		t.Fatalf("exit code %d, want 1 because one user fails its check\n%s", got.code, got)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(got.stdout), &rows); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, got)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2\n%s", len(rows), got)
	}
	if rows[0]["check"] != "ok" {
		t.Errorf("row of user 1 = %v, want check ok", rows[0])
	}
	if !strings.Contains(rows[1]["error"], "4410") {
		t.Errorf("row of %s = %v, want Odin's error 4410", broken, rows[1])
	}
	if n := env.Sim.Stats().Requests["PUT /users/authentication"]; n != 0 {
		t.Errorf("dry run sent %d PUT requests", n)
	}
	requireStderr(t, got, "submitted dry run dry1", "changes nothing on Odin", "dry run dry1 completed: 1 ok, 1 failed the checks")

	status := runCLI(t, invocation{}, "status", "dry1", "--redis-url", env.Redis.URL)
	if !strings.Contains(status.stdout, "dry run: nothing is changed on Odin") {
		t.Errorf("status does not say it is a dry run:\n%s", status.stdout)
	}
	list := runCLI(t, invocation{}, "list", "--redis-url", env.Redis.URL)
	if !strings.Contains(list.stdout, "sip (dry run)") {
		t.Errorf("list does not mark the dry run:\n%s", list.stdout)
	}
}
