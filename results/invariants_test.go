package results_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/results"
)

// Every key the store writes must expire, after every kind of write, so an abandoned job
// never stays in Redis for good.
func TestEveryKeyHasTTL(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := t.Context()
	const ttl = time.Hour

	steps := []struct {
		name string
		run  func() error
	}{
		{name: "CreateJob", run: func() error { createJob(t, s, "job-1", results.SIP); return nil }},
		{name: "SetAudit", run: func() error {
			return s.SetAudit(ctx, "job-1", map[string]string{"submitted_by": "ops"})
		}},
		{name: "LoadUsers", run: func() error {
			_, err := s.LoadUsers(ctx, "job-1", []string{"u1", "u2", "u3"})
			return err
		}},
		{name: "WriteAhead", run: func() error {
			_, err := s.WriteAhead(ctx, "job-1", secretsFor([]string{"u1", "u2", "u3"}, "pw"))
			return err
		}},
		{name: "SetCursor", run: func() error { return s.SetCursor(ctx, "job-1", 3) }},
		{name: "SetReason", run: func() error { return s.SetReason(ctx, "job-1", "waiting for Odin") }},
		{name: "ReplaceSecret", run: func() error {
			_, err := s.ReplaceSecret(ctx, "job-1", readUser(t, s, "job-1", "u1"), "fresh")
			return err
		}},
		{name: "MarkApplied", run: func() error {
			_, err := s.MarkApplied(ctx, "job-1", readUser(t, s, "job-1", "u1"), 2)
			return err
		}},
		{name: "SetDevice", run: func() error {
			_, err := s.SetDevice(ctx, "job-1", readUser(t, s, "job-1", "u1"), "Polycom-1", "rebuilt")
			return err
		}},
		{name: "MarkFailed", run: func() error {
			_, err := s.MarkFailed(ctx, "job-1", readUser(t, s, "job-1", "u2"), "rejected", 1)
			return err
		}},
		{name: "MarkApplied of the last user", run: func() error {
			completed, err := s.MarkApplied(ctx, "job-1", readUser(t, s, "job-1", "u3"), 1)
			if err == nil && !completed {
				err = errors.New("the last settle did not complete the job")
			}
			return err
		}},
		{name: "CreateJob of a second job", run: func() error { startJob(t, s, "job-2", results.Web, []string{"u1"}); return nil }},
		{name: "Cancel", run: func() error { _, err := s.Cancel(ctx, "job-2"); return err }},
		{name: "LoadUsers of an empty job", run: func() error { startJob(t, s, "job-3", results.Web, nil); return nil }},
		{name: "Delete", run: func() error { return s.Delete(ctx, "job-2") }},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		checkTTLs(t, rdb, step.name, results.MaxTTL)
	}

	// Apart from the index of jobs, every key belongs to a job and lives for the job's TTL.
	for _, key := range allKeys(t, rdb) {
		if key == results.DefaultKeyPrefix+"jobs" {
			continue
		}
		got, err := rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		if got > ttl {
			t.Errorf("key %s has TTL %v, want at most the job's TTL %v", key, got, ttl)
		}
	}
}

// shortenTTLs sets every key of the job to expire in d, as if the job had been idle.
func shortenTTLs(t *testing.T, s *results.Store, jobID string, d time.Duration) {
	t.Helper()
	rdb := s.Redis()
	for _, suffix := range []string{"meta", "users", "order"} {
		if err := rdb.Expire(t.Context(), jobKey(jobID, suffix), d).Err(); err != nil {
			t.Fatalf("EXPIRE: %v", err)
		}
	}
}

// requireJobTTLs fails unless every existing key of the job expires in more than min.
func requireJobTTLs(t *testing.T, s *results.Store, jobID string, min time.Duration) {
	t.Helper()
	for _, suffix := range []string{"meta", "users", "order"} {
		key := jobKey(jobID, suffix)
		ttl, err := s.Redis().TTL(t.Context(), key).Result()
		if err != nil {
			t.Fatalf("TTL %s: %v", key, err)
		}
		if ttl <= min {
			t.Errorf("key %s expires in %v, want more than %v", key, ttl, min)
		}
	}
}

// The TTL counts from the job's last change, so a run longer than the TTL keeps its record,
// and a completed job's record lives for the full TTL from its completion.
func TestTTLRefreshedByChanges(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	users := []string{"u1", "u2", "u3", "u4"}
	startJob(t, s, "job-1", results.Web, users)

	steps := []struct {
		name string
		run  func() error
	}{
		{name: "WriteAhead", run: func() error {
			_, err := s.WriteAhead(t.Context(), "job-1", secretsFor(users, "pw"))
			return err
		}},
		{name: "ReplaceSecret", run: func() error {
			_, err := s.ReplaceSecret(t.Context(), "job-1", readUser(t, s, "job-1", "u1"), "fresh")
			return err
		}},
		{name: "MarkApplied", run: func() error {
			_, err := s.MarkApplied(t.Context(), "job-1", readUser(t, s, "job-1", "u1"), 1)
			return err
		}},
		{name: "MarkFailed", run: func() error {
			_, err := s.MarkFailed(t.Context(), "job-1", readUser(t, s, "job-1", "u2"), "rejected", 1)
			return err
		}},
		{name: "SetCursor", run: func() error { return s.SetCursor(t.Context(), "job-1", 4) }},
		{name: "MarkApplied completing the job", run: func() error {
			if _, err := s.MarkApplied(t.Context(), "job-1", readUser(t, s, "job-1", "u3"), 1); err != nil {
				return err
			}
			completed, err := s.MarkApplied(t.Context(), "job-1", readUser(t, s, "job-1", "u4"), 1)
			if err == nil && !completed {
				err = errors.New("the last settle did not complete the job")
			}
			return err
		}},
	}
	for _, step := range steps {
		shortenTTLs(t, s, "job-1", 30*time.Second)
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		requireJobTTLs(t, s, "job-1", 50*time.Minute)
	}

	t.Run("Cancel", func(t *testing.T) {
		startJob(t, s, "job-2", results.Web, users)
		shortenTTLs(t, s, "job-2", 30*time.Second)
		if _, err := s.Cancel(t.Context(), "job-2"); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		requireJobTTLs(t, s, "job-2", 50*time.Minute)
	})
}

// Once a job's hash is gone (expired or deleted), writes report ErrNotFound and create no
// key, because a key created by a write to a missing job would have no TTL.
func TestWritesToMissingJob(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	startJob(t, s, "job-1", results.Web, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})
	u1 := readUser(t, s, "job-1", "u1")

	// The job's hash expires first, as it does when it was written before the users.
	if err := rdb.Del(t.Context(), jobKey("job-1", "meta")).Err(); err != nil {
		t.Fatalf("DEL: %v", err)
	}

	writes := []struct {
		name string
		run  func() error
	}{
		{name: "MarkApplied", run: func() error { _, err := s.MarkApplied(t.Context(), "job-1", u1, 1); return err }},
		{name: "MarkFailed", run: func() error { _, err := s.MarkFailed(t.Context(), "job-1", u1, "x", 1); return err }},
		{name: "ReplaceSecret", run: func() error { _, err := s.ReplaceSecret(t.Context(), "job-1", u1, "y"); return err }},
		{name: "WriteAhead", run: func() error {
			_, err := s.WriteAhead(t.Context(), "job-1", map[string]string{"u2": "pw2"})
			return err
		}},
		{name: "SetCursor", run: func() error { return s.SetCursor(t.Context(), "job-1", 2) }},
		{name: "SetReason", run: func() error { return s.SetReason(t.Context(), "job-1", "waiting") }},
		{name: "SetAudit", run: func() error { return s.SetAudit(t.Context(), "job-1", map[string]string{"by": "x"}) }},
		{name: "Cancel", run: func() error { _, err := s.Cancel(t.Context(), "job-1"); return err }},
		{name: "LoadUsers", run: func() error { _, err := s.LoadUsers(t.Context(), "job-1", []string{"u1"}); return err }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			if err := w.run(); !errors.Is(err, results.ErrNotFound) {
				t.Errorf("error = %v, want ErrNotFound", err)
			}
			if n, err := rdb.Exists(t.Context(), jobKey("job-1", "meta")).Result(); err != nil || n != 0 {
				t.Errorf("the write recreated the job hash (EXISTS = %d, %v)", n, err)
			}
			checkTTLs(t, rdb, w.name, time.Hour)
		})
	}
	if got := readUser(t, s, "job-1", "u2"); got.Secret != "" || got.State != results.UserPending {
		t.Errorf("u2 = %+v, want pending without a secret", got)
	}
}

// Redis Cluster runs a multi-key script only when all its keys hash to one slot: every key
// of a job carries the job ID as its hash tag.
func TestJobKeysShareHashTag(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	for _, id := range []string{"job-1", "nightly.2025-03-14:sp_1"} {
		startJob(t, s, id, results.SIP, []string{"u1", "u2"})
		writeAhead(t, s, id, map[string]string{"u1": "pw1", "u2": "pw2"})
		applyUser(t, s, id, "u1")
		failUser(t, s, id, "u2", "rejected")
	}

	byTag := map[string][]string{}
	for _, key := range allKeys(t, rdb) {
		if key == results.DefaultKeyPrefix+"jobs" {
			continue // the index, written only by single-key commands
		}
		tag := hashTag(key)
		byTag[tag] = append(byTag[tag], strings.TrimPrefix(key, results.DefaultKeyPrefix+"{"+tag+"}"))
	}
	want := map[string][]string{
		"job-1":                   {":meta", ":order", ":users"},
		"nightly.2025-03-14:sp_1": {":meta", ":order", ":users"},
	}
	if diff := cmp.Diff(want, byTag); diff != "" {
		t.Errorf("keys by hash tag (-want +got):\n%s", diff)
	}

	if _, _, err := s.CreateJob(t.Context(), results.Job{ID: "a}{b", Type: results.SIP}); err == nil {
		t.Errorf("CreateJob accepted a job ID with braces, which would change the hash tag")
	}
}

func TestEncryptedAtRest(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	s, rdb := newStore(t, results.WithSealer(results.NewKeyring(key)))
	const secret = "Sup3r-S3cret-Value"
	startJob(t, s, "job-1", results.SIP, []string{"u1", "u2"})
	writeAhead(t, s, "job-1", map[string]string{"u1": secret, "u2": secret + "2"})
	applyUser(t, s, "job-1", "u1")

	if got := readUser(t, s, "job-1", "u1").Secret; got != secret {
		t.Errorf("secret read back = %q, want %q", got, secret)
	}

	raw, err := rdb.HGetAll(t.Context(), jobKey("job-1", "users")).Result()
	if err != nil {
		t.Fatalf("HGETALL: %v", err)
	}
	for user, value := range raw {
		if strings.Contains(value, secret) {
			t.Errorf("stored value of %s contains the plaintext secret: %s", user, value)
		}
		if !strings.Contains(value, "aes:"+key.ID()+":") {
			t.Errorf("stored value of %s is not sealed with the current key: %s", user, value)
		}
	}

	t.Run("store without a key", func(t *testing.T) {
		plain := results.NewStore(rdb)
		_, err := plain.User(t.Context(), "job-1", "u1")
		if !errors.Is(err, results.ErrNoKey) {
			t.Errorf("User without a key: error %v, want ErrNoKey", err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains the secret", err)
		}
	})

	t.Run("store with another key", func(t *testing.T) {
		other := results.NewStore(rdb, results.WithSealer(results.NewKeyring(randomKey(t))))
		_, err := other.User(t.Context(), "job-1", "u1")
		var mismatch *results.KeyMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("User with another key: error %v, want *KeyMismatchError", err)
		}
		if mismatch.KeyID != key.ID() {
			t.Errorf("KeyMismatchError.KeyID = %q, want %q", mismatch.KeyID, key.ID())
		}
	})

	t.Run("store after rotation", func(t *testing.T) {
		rotated := results.NewStore(rdb, results.WithSealer(results.NewKeyring(randomKey(t), key)))
		if got := readUser(t, rotated, "job-1", "u1").Secret; got != secret {
			t.Errorf("secret read after rotation = %q, want %q", got, secret)
		}
	})

	t.Run("value moved to another user", func(t *testing.T) {
		if err := rdb.HSet(t.Context(), jobKey("job-1", "users"), "u2", raw["u1"]).Err(); err != nil {
			t.Fatalf("HSET: %v", err)
		}
		_, err := s.User(t.Context(), "job-1", "u2")
		if err == nil {
			t.Fatalf("a value sealed for u1 opened as u2's")
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains the secret", err)
		}
	})
}

func TestPlaintextStoreCannotReadEncryptedExport(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t, results.WithSealer(results.NewKeyring(randomKey(t))))
	startJob(t, s, "job-1", results.Web, []string{"u1"})
	writeAhead(t, s, "job-1", map[string]string{"u1": "pw1"})

	plain := results.NewStore(rdb)
	var out strings.Builder
	if err := plain.WriteJSON(t.Context(), "job-1", &out); !errors.Is(err, results.ErrNoKey) {
		t.Errorf("WriteJSON without the key: error %v, want ErrNoKey", err)
	}
	if strings.Contains(out.String(), "pw1") {
		t.Errorf("WriteJSON without the key wrote %q", out.String())
	}
}
