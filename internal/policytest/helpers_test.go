package policytest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/odin/odintest"
	"github.com/odinreset/odinreset/results"
	"github.com/odinreset/odinreset/tasks"
)

// fullSize reports whether ODINRESET_FULL requests the full-size runs.
func fullSize() bool { return os.Getenv("ODINRESET_FULL") != "" }

// sized returns full when ODINRESET_FULL is set and short otherwise.
func sized[T any](short, full T) T {
	if fullSize() {
		return full
	}
	return short
}

// requireRealRedis skips the test unless testredis, and so testenv, uses a real
// redis-server: the one named by ODINRESET_TEST_REDIS_URL, or the one TestMain started.
func requireRealRedis(t *testing.T) {
	t.Helper()
	if !testredis.RealAvailable() {
		t.Skipf("needs a real redis-server: set %s or install redis-server", testredis.EnvURL)
	}
}

// waitUntil checks cond every 20 ms until it returns true, and fails the test when
// timeout passes first.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-ticker.C
	}
}

// waitJob waits until the job is finished and returns it.
func waitJob(t testing.TB, store *results.Store, jobID string, timeout time.Duration) results.Job {
	t.Helper()
	var job results.Job
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		var err error
		job, err = store.Job(context.Background(), jobID)
		if err == nil && job.State.Finished() {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not finished after %v: state %s, %d applied and %d failed of %d, reason %q",
				jobID, timeout, job.State, job.Applied, job.Failed, job.Total, job.Reason)
		}
		<-ticker.C
	}
}

// seededUsers returns the IDs of the simulator's first n seeded users.
func seededUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = odintest.SeededUserID(i + 1)
	}
	return users
}

// newResultsKey returns a random results key, base64-encoded as RESULTS_KEY takes it,
// and the keyring that opens values sealed with it.
func newResultsKey(t *testing.T) (encoded string, keyring *results.Keyring) {
	t.Helper()
	raw := make([]byte, results.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	encoded = base64.StdEncoding.EncodeToString(raw)
	key, err := results.ParseKey(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return encoded, results.NewKeyring(key)
}

// submit submits a job through tasks.Submit, as cmd/enqueue does, and fails the test on
// error.
func submit(t testing.TB, client *asynq.Client, store *results.Store, p tasks.BulkResetPayload) {
	t.Helper()
	if _, err := tasks.Submit(context.Background(), client, store, p); err != nil {
		t.Fatalf("submit job %s: %v", p.JobID, err)
	}
}

// credentialSource returns the value Odin holds for a user's credential of kind, and
// how many times it was set.
type credentialSource func(userID string, kind odintest.Kind) (value string, setCount int)

// mismatches compares every user of the job in the record with Odin's state and returns
// one line per difference. A difference is an applied user whose value Odin does not
// hold, or a user who is not applied but has a value on Odin that the record lacks.
func mismatches(t testing.TB, store *results.Store, jobID string, odin credentialSource) []string {
	t.Helper()
	ctx := context.Background()
	job, err := store.Job(ctx, jobID)
	if err != nil {
		t.Fatalf("read job %s: %v", jobID, err)
	}
	kind := simKind(job.Type)
	var out []string
	err = store.ForEachUser(ctx, jobID, func(rec results.UserRecord) error {
		value, count := odin(rec.UserID, kind)
		switch {
		case rec.State == results.UserApplied && value != rec.Secret:
			out = append(out, fmt.Sprintf("%s: applied in the record, but Odin holds another value (set %d times)", rec.UserID, count))
		case rec.State != results.UserApplied && value != "" && value != rec.Secret:
			out = append(out, fmt.Sprintf("%s: %s in the record, but Odin holds a value the record does not", rec.UserID, rec.State))
		case rec.State == results.UserPending && value != "" && !rec.MaybeSent:
			out = append(out, fmt.Sprintf("%s: pending, Odin holds its value, but the record says no attempt began, so the export would hide it", rec.UserID))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the users of job %s: %v", jobID, err)
	}
	return out
}

// simKind maps a credential type to the simulator's kind.
func simKind(t results.CredentialType) odintest.Kind {
	switch t {
	case results.SIP:
		return odintest.KindSIP
	case results.Voicemail:
		return odintest.KindVoicemail
	}
	return odintest.KindWeb
}

// fromSimulator reads credentials from an in-process simulator.
func fromSimulator(sim *odintest.Simulator) credentialSource {
	return func(userID string, kind odintest.Kind) (string, int) {
		value, count, _ := sim.Credential(userID, kind)
		return value, count
	}
}

// fromSnapshot reads credentials from a copy taken through GET /_sim/credentials.
func fromSnapshot(creds map[string]map[odintest.Kind]odintest.Credential) credentialSource {
	return func(userID string, kind odintest.Kind) (string, int) {
		c := creds[userID][kind]
		return c.Value, c.SetCount
	}
}
