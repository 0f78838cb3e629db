package results_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/odinreset/odinreset/results"
)

// TestCheckSealing runs workers with various results keys, one after another, on one
// Redis. The first records its key, and the same key and a rotation pass. A worker whose
// values the fleet could not read, or that could not read the fleet's, is rejected with
// a message that names both keys and the fix.
func TestCheckSealing(t *testing.T) {
	oldKey, newKey, wrongKey := randomKey(t), randomKey(t), randomKey(t)
	type step struct {
		name   string
		sealer results.Sealer
		want   []string // substrings of the error; none means it passes
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "same key", steps: []step{
			{name: "first", sealer: results.NewKeyring(oldKey)},
			{name: "second", sealer: results.NewKeyring(oldKey)},
		}},
		{name: "wrong key", steps: []step{
			{name: "first", sealer: results.NewKeyring(oldKey)},
			{name: "wrong", sealer: results.NewKeyring(wrongKey), want: []string{
				"results key " + wrongKey.ID(), "use key " + oldKey.ID(), "same RESULTS_KEY", "RESULTS_KEY_PREVIOUS", "delete the Redis key odinreset:sealing"}},
			// The refused worker recorded nothing: the fleet's key still passes.
			{name: "fleet again", sealer: results.NewKeyring(oldKey)},
		}},
		{name: "rotation", steps: []step{
			{name: "old", sealer: results.NewKeyring(oldKey)},
			{name: "new with old as previous", sealer: results.NewKeyring(newKey, oldKey)},
			{name: "old with new as previous", sealer: results.NewKeyring(oldKey, newKey)},
			{name: "new", sealer: results.NewKeyring(newKey, oldKey)},
			{name: "new only", sealer: results.NewKeyring(newKey)},
			{name: "old only, after the rotation", sealer: results.NewKeyring(oldKey), want: []string{"use key " + newKey.ID()}},
		}},
		{name: "plaintext worker in an encrypting fleet", steps: []step{
			{name: "keyed", sealer: results.NewKeyring(oldKey)},
			{name: "plaintext", sealer: results.Plaintext{}, want: []string{"encrypt new values with results key " + oldKey.ID(), "no RESULTS_KEY"}},
		}},
		{name: "encrypting worker in a plaintext fleet", steps: []step{
			{name: "plaintext", sealer: results.Plaintext{}},
			{name: "keyed", sealer: results.NewKeyring(oldKey), want: []string{"unencrypted", "cannot read theirs", "same setting"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rdb := newStore(t)
			for _, st := range tt.steps {
				err := results.NewStore(rdb, results.WithSealer(st.sealer)).CheckSealing(t.Context())
				if len(st.want) == 0 {
					if err != nil {
						t.Fatalf("%s: CheckSealing = %v, want nil", st.name, err)
					}
					continue
				}
				var mismatch *results.SealingMismatchError
				if !errors.As(err, &mismatch) {
					t.Fatalf("%s: CheckSealing = %v, want a *SealingMismatchError", st.name, err)
				}
				for _, w := range st.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q does not contain %q", st.name, err, w)
					}
				}
			}
		})
	}
}
