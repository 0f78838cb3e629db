package results

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// plaintextSealing names, in the fleet's sealing record, workers that store values
// unencrypted.
const plaintextSealing = "plaintext"

// sealingOf returns the name of what s seals with (a key ID, or "plaintext") and every
// name whose values s can open.
func sealingOf(s Sealer) (current string, readable []string) {
	switch s := s.(type) {
	case *Keyring:
		return s.current.id, s.ids()
	case Plaintext:
		return plaintextSealing, []string{plaintextSealing}
	}
	return "", nil
}

// SealingMismatchError is returned by CheckSealing when this process could not read the
// values the other workers on the same Redis write, or they could not read its values.
type SealingMismatchError struct {
	// Fleet is the sealing of the other workers: a key ID or "plaintext".
	Fleet string
	// Own is the sealing of this process.
	Own string
	// RedisKey holds Fleet.
	RedisKey string
	// reader is set for a client that only reads values, such as enqueue.
	reader bool
}

func (e *SealingMismatchError) Error() string {
	var b strings.Builder
	if e.reader {
		if e.Own == plaintextSealing {
			fmt.Fprintf(&b, "the workers on this Redis encrypt new values with results key %s, and no results key is set here: set RESULTS_KEY or RESULTS_KEY_FILE to the workers' key", e.Fleet)
		} else {
			fmt.Fprintf(&b, "the workers on this Redis seal new values with %s, and the results key set here (%s) cannot open them: set RESULTS_KEY or RESULTS_KEY_FILE to the workers' key, or add theirs in RESULTS_KEY_PREVIOUS", describeSealing(e.Fleet), e.Own)
		}
		return b.String()
	}
	switch {
	case e.Own == plaintextSealing:
		fmt.Fprintf(&b, "the other workers on this Redis encrypt new values with results key %s, and this worker has no RESULTS_KEY: set RESULTS_KEY (or RESULTS_KEY_FILE) to the same key", e.Fleet)
	case e.Fleet == plaintextSealing:
		fmt.Fprintf(&b, "the other workers on this Redis store new values unencrypted (INSECURE_PLAINTEXT_RESULTS), and this worker encrypts them with results key %s and cannot read theirs: run every worker with the same setting", e.Own)
	default:
		fmt.Fprintf(&b, "this worker encrypts new values with results key %s (from RESULTS_KEY or RESULTS_KEY_FILE), but the other workers on this Redis use key %s, which this worker cannot read: give every worker the same RESULTS_KEY. To rotate keys, set the new key as RESULTS_KEY and the old one as RESULTS_KEY_PREVIOUS", e.Own, e.Fleet)
	}
	fmt.Fprintf(&b, ". If every worker moves to this worker's setting on purpose, delete the Redis key %s first", e.RedisKey)
	return b.String()
}

// VerifySealing reports, without recording anything, whether this store can open the
// values the workers on the same Redis seal: nil when it can or when no worker recorded
// its sealing yet, a *SealingMismatchError when it cannot. A client that reads results,
// such as enqueue, calls it before it submits a job whose results it will print.
func (s *Store) VerifySealing(ctx context.Context) error {
	own, readable := sealingOf(s.sealer)
	if own == "" {
		return nil
	}
	key := s.prefix + "sealing"
	fleet, err := s.rdb.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil
	case err != nil:
		return fmt.Errorf("read the fleet's results key from Redis: %w", err)
	case slices.Contains(readable, fleet):
		return nil
	}
	return &SealingMismatchError{Fleet: fleet, Own: own, RedisKey: key, reader: true}
}

func describeSealing(name string) string {
	if name == plaintextSealing {
		return "no key (INSECURE_PLAINTEXT_RESULTS)"
	}
	return "results key " + name
}

// CheckSealing compares what this store seals new values with against what the other
// workers on the same Redis seal with, and records it for the next worker. A worker with
// another results key would write values that the fleet's key cannot open, and could not
// read the values the fleet wrote ahead, so it must not start. A key rotation
// passes: a worker whose RESULTS_KEY_PREVIOUS holds the fleet's key records its new key.
// It returns a *SealingMismatchError on a mismatch.
func (s *Store) CheckSealing(ctx context.Context) error {
	own, readable := sealingOf(s.sealer)
	if own == "" {
		return nil // a custom Sealer: nothing to compare
	}
	key := s.prefix + "sealing"
	for range 3 {
		fleet, err := s.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			ok, err := s.rdb.SetNX(ctx, key, own, 0).Result()
			if err != nil {
				return fmt.Errorf("record the results key in Redis: %w", err)
			}
			if ok {
				return nil
			}
			continue // another worker recorded its key first: compare with it
		}
		if err != nil {
			return fmt.Errorf("read the fleet's results key from Redis: %w", err)
		}
		switch {
		case fleet == own:
			return nil
		case slices.Contains(readable, fleet):
			// A rotation: this worker reads the fleet's values and takes over with its new
			// key. Workers still on the old key write values every new worker can read.
			if err := s.rdb.Set(ctx, key, own, 0).Err(); err != nil {
				return fmt.Errorf("record the new results key in Redis: %w", err)
			}
			return nil
		default:
			return &SealingMismatchError{Fleet: fleet, Own: own, RedisKey: key}
		}
	}
	return errors.New("record the results key in Redis: it kept changing under concurrent workers")
}
