package results_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/odinreset/odinreset/internal/testredis"
	"github.com/odinreset/odinreset/results"
)

// testNow is the fixed time of every test store's clock.
var testNow = time.Date(2025, 3, 14, 22, 30, 0, 0, time.UTC)

// ignoreRaw skips the stored form that UserRecord keeps for compare-and-set.
var ignoreRaw = cmpopts.IgnoreUnexported(results.UserRecord{})

// newStore returns a Store on a fresh Redis database with its clock fixed at testNow, and
// the client of that database for checks on the raw keys.
func newStore(t *testing.T, opts ...results.Option) (*results.Store, *redis.Client) {
	t.Helper()
	r := testredis.New(t)
	opts = append([]results.Option{results.WithClock(func() time.Time { return testNow })}, opts...)
	return results.NewStore(r.Client, opts...), r.Client
}

// createJob creates a job with the given ID and type and fails the test on error.
func createJob(t *testing.T, s *results.Store, id string, typ results.CredentialType) results.Job {
	t.Helper()
	job, created, err := s.CreateJob(t.Context(), results.Job{
		ID: id, Type: typ, ServiceProviderID: "sp1", GroupID: "g1", TTL: time.Hour,
	})
	if err != nil {
		t.Fatalf("CreateJob(%s): %v", id, err)
	}
	if !created {
		t.Fatalf("CreateJob(%s) found an existing job", id)
	}
	return job
}

// startJob creates a job and loads its users.
func startJob(t *testing.T, s *results.Store, id string, typ results.CredentialType, users []string) results.Job {
	t.Helper()
	createJob(t, s, id, typ)
	job, err := s.LoadUsers(t.Context(), id, users)
	if err != nil {
		t.Fatalf("LoadUsers(%s): %v", id, err)
	}
	return job
}

// userIDs returns u1 to un.
func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%d", i+1)
	}
	return ids
}

// secretsFor returns a distinct secret per user, prefixed with tag to distinguish two calls.
func secretsFor(users []string, tag string) map[string]string {
	m := make(map[string]string, len(users))
	for _, u := range users {
		m[u] = tag + "-" + u
	}
	return m
}

func writeAhead(t *testing.T, s *results.Store, jobID string, secrets map[string]string) []string {
	t.Helper()
	written, err := s.WriteAhead(t.Context(), jobID, secrets)
	if err != nil {
		t.Fatalf("WriteAhead: %v", err)
	}
	slices.Sort(written)
	return written
}

func readUser(t *testing.T, s *results.Store, jobID, userID string) results.UserRecord {
	t.Helper()
	rec, err := s.User(t.Context(), jobID, userID)
	if err != nil {
		t.Fatalf("User(%s, %s): %v", jobID, userID, err)
	}
	return rec
}

func readJob(t *testing.T, s *results.Store, jobID string) results.Job {
	t.Helper()
	job, err := s.Job(t.Context(), jobID)
	if err != nil {
		t.Fatalf("Job(%s): %v", jobID, err)
	}
	return job
}

// applyUser reads the user and marks it applied, returning whether that completed the job.
func applyUser(t *testing.T, s *results.Store, jobID, userID string) bool {
	t.Helper()
	completed, err := s.MarkApplied(t.Context(), jobID, readUser(t, s, jobID, userID), 1)
	if err != nil {
		t.Fatalf("MarkApplied(%s): %v", userID, err)
	}
	return completed
}

// failUser reads the user and marks it failed, returning whether that completed the job.
func failUser(t *testing.T, s *results.Store, jobID, userID, reason string) bool {
	t.Helper()
	completed, err := s.MarkFailed(t.Context(), jobID, readUser(t, s, jobID, userID), reason, 3)
	if err != nil {
		t.Fatalf("MarkFailed(%s): %v", userID, err)
	}
	return completed
}

// allKeys returns every key of the test database, sorted.
func allKeys(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	var keys []string
	iter := rdb.Scan(t.Context(), 0, "*", 100).Iterator()
	for iter.Next(t.Context()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// checkTTLs fails the test for every key of the database that has no TTL, and for every
// job key whose TTL is above maxTTL, naming the step that wrote it. The index of jobs
// lives for MaxTTL.
func checkTTLs(t *testing.T, rdb *redis.Client, step string, maxTTL time.Duration) {
	t.Helper()
	keys := allKeys(t, rdb)
	if len(keys) == 0 {
		t.Fatalf("after %s: the database has no keys", step)
	}
	for _, key := range keys {
		ttl, err := rdb.PTTL(t.Context(), key).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		if ttl <= 0 {
			t.Errorf("after %s: key %s has TTL %v, want a positive TTL", step, key, ttl)
			continue
		}
		limit := maxTTL
		if strings.HasSuffix(key, ":jobs") {
			limit = results.MaxTTL
		}
		if ttl > limit {
			t.Errorf("after %s: key %s has TTL %v, want at most %v", step, key, ttl, limit)
		}
	}
}

// jobKey returns the key of the job's hash with the given suffix under the default prefix.
func jobKey(jobID, suffix string) string {
	return results.DefaultKeyPrefix + "{" + jobID + "}:" + suffix
}

// hashTag returns the part of key that Redis Cluster hashes: the text between the first
// '{' and the next '}', when it is not empty, else the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}
