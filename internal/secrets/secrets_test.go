package secrets_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/internal/secrets"
	"github.com/odinreset/odinreset/results"
)

// env returns a Getenv over a map.
func env(vars map[string]string) secrets.Getenv {
	return func(name string) string { return vars[name] }
}

func newKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, results.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFromEnvOrFile(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name      string
		vars      map[string]string
		wantValue string
		wantOK    bool
		wantErr   string
	}{
		{name: "neither set", vars: nil},
		{name: "variable", vars: map[string]string{"PW": "s3cret"}, wantValue: "s3cret", wantOK: true},
		{name: "variable keeps spaces", vars: map[string]string{"PW": " s3cret "}, wantValue: " s3cret ", wantOK: true},
		{name: "file", vars: map[string]string{"PW_FILE": writeFile(t, "s3cret")}, wantValue: "s3cret", wantOK: true},
		{name: "file trailing newline", vars: map[string]string{"PW_FILE": writeFile(t, "s3cret\n")}, wantValue: "s3cret", wantOK: true},
		{name: "file CRLF", vars: map[string]string{"PW_FILE": writeFile(t, "s3cret\r\n")}, wantValue: "s3cret", wantOK: true},
		{name: "file only one newline removed", vars: map[string]string{"PW_FILE": writeFile(t, "s3cret\n\n")}, wantValue: "s3cret\n", wantOK: true},
		{name: "both set", vars: map[string]string{"PW": "a", "PW_FILE": writeFile(t, "b")}, wantErr: "both PW and PW_FILE are set: set only one"},
		{name: "missing file", vars: map[string]string{"PW_FILE": missing}, wantErr: "read PW_FILE " + missing},
		{name: "empty file", vars: map[string]string{"PW_FILE": writeFile(t, "\n")}, wantErr: "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			value, ok, err := secrets.FromEnvOrFile(env(tt.vars), "PW")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if value != "" || ok {
					t.Errorf("on error got value %q, ok %v; want empty and false", value, ok)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if value != tt.wantValue || ok != tt.wantOK {
				t.Errorf("got (%q, %v), want (%q, %v)", value, ok, tt.wantValue, tt.wantOK)
			}
		})
	}
}

func TestSealerWithoutKey(t *testing.T) {
	t.Parallel()
	t.Run("rejected by default", func(t *testing.T) {
		t.Parallel()
		sealer, err := secrets.Sealer(env(nil), false)
		if err == nil {
			t.Fatalf("got sealer %T, want an error without RESULTS_KEY", sealer)
		}
		for _, want := range []string{"RESULTS_KEY", "RESULTS_KEY_FILE", "openssl rand -base64 32", "--insecure-plaintext-results"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})
	t.Run("plaintext when allowed", func(t *testing.T) {
		t.Parallel()
		sealer, err := secrets.Sealer(env(nil), true)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sealer.(results.Plaintext); !ok {
			t.Errorf("sealer = %T, want results.Plaintext", sealer)
		}
	})
	t.Run("key wins over plaintext", func(t *testing.T) {
		t.Parallel()
		sealer, err := secrets.Sealer(env(map[string]string{"RESULTS_KEY": newKey(t)}), true)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sealer.(*results.Keyring); !ok {
			t.Errorf("sealer = %T, want *results.Keyring", sealer)
		}
	})
}

func TestSealerSealsWithKey(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	for _, tt := range []struct {
		name string
		vars map[string]string
	}{
		{name: "RESULTS_KEY", vars: map[string]string{"RESULTS_KEY": key}},
		{name: "RESULTS_KEY_FILE", vars: map[string]string{"RESULTS_KEY_FILE": writeFile(t, key+"\n")}},
		{name: "URL alphabet without padding", vars: map[string]string{"RESULTS_KEY": strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(key), "=")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sealer, err := secrets.Sealer(env(tt.vars), false)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := sealer.Seal("job-1", "alice@example.com", "N3w-pa55word")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(sealed, "N3w-pa55word") || !strings.HasPrefix(sealed, "aes:") {
				t.Errorf("sealed form %q is not an aes: ciphertext", sealed)
			}
			opened, err := sealer.Open("job-1", "alice@example.com", sealed)
			if err != nil || opened != "N3w-pa55word" {
				t.Errorf("Open = %q, %v; want the secret back", opened, err)
			}
			if _, err := sealer.Open("job-1", "bob@example.com", sealed); err == nil {
				t.Error("a value sealed for alice opened for bob; the user ID must be bound as associated data")
			}
			if _, err := sealer.Open("job-2", "alice@example.com", sealed); err == nil {
				t.Error("a value sealed in job-1 opened in job-2; the job ID must be bound as associated data")
			}
		})
	}
}

func TestSealerRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKeyValue, otherKey := newKey(t), newKey(t), newKey(t)
	oldSealer, err := secrets.Sealer(env(map[string]string{"RESULTS_KEY": oldKey}), false)
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, err := oldSealer.Seal("job", "user", "old-value")
	if err != nil {
		t.Fatal(err)
	}

	rotated, err := secrets.Sealer(env(map[string]string{
		"RESULTS_KEY":          newKeyValue,
		"RESULTS_KEY_PREVIOUS": otherKey + "," + oldKey,
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open("job", "user", sealedOld); err != nil || got != "old-value" {
		t.Errorf("rotated sealer opens a value of the previous key: %q, %v; want old-value", got, err)
	}
	sealedNew, err := rotated.Seal("job", "user", "new-value")
	if err != nil {
		t.Fatal(err)
	}
	if prefix := func(s string) string { return strings.Join(strings.SplitN(s, ":", 3)[:2], ":") }; prefix(sealedNew) == prefix(sealedOld) {
		t.Errorf("new values are sealed with the previous key's ID %s, want the current key", prefix(sealedOld))
	}

	_, err = oldSealer.Open("job", "user", sealedNew)
	var mismatch *results.KeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Errorf("old sealer opening a new value: error %v, want *results.KeyMismatchError", err)
	}
}

func TestSealerInvalidKeys(t *testing.T) {
	t.Parallel()
	good := newKey(t)
	short := base64.StdEncoding.EncodeToString([]byte("only-sixteen-byt"))
	tests := []struct {
		name    string
		vars    map[string]string
		wantErr []string
		secret  string // must not appear in the error
	}{
		{
			name:    "not base64",
			vars:    map[string]string{"RESULTS_KEY": "correct horse battery staple!"},
			wantErr: []string{"RESULTS_KEY", "not base64", "openssl rand -base64 32"},
			secret:  "correct horse battery staple!",
		},
		{
			name:    "wrong length",
			vars:    map[string]string{"RESULTS_KEY": short},
			wantErr: []string{"RESULTS_KEY", "16 bytes", "need 32"},
			secret:  short,
		},
		{
			name:    "second previous key invalid",
			vars:    map[string]string{"RESULTS_KEY": good, "RESULTS_KEY_PREVIOUS": newKey(t) + ",c2hvcnQ="},
			wantErr: []string{"RESULTS_KEY_PREVIOUS key 2"},
			secret:  "c2hvcnQ=",
		},
		{
			name:    "both key and key file",
			vars:    map[string]string{"RESULTS_KEY": good, "RESULTS_KEY_FILE": writeFile(t, good)},
			wantErr: []string{"both RESULTS_KEY and RESULTS_KEY_FILE are set"},
			secret:  good,
		},
		{
			name:    "unreadable key file",
			vars:    map[string]string{"RESULTS_KEY_FILE": filepath.Join(t.TempDir(), "nope")},
			wantErr: []string{"read RESULTS_KEY_FILE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sealer, err := secrets.Sealer(env(tt.vars), true)
			if err == nil {
				t.Fatalf("got sealer %T, want an error", sealer)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("error %q contains the key material", err)
			}
		})
	}
}

func TestSealerPreviousKeysSkipBlanks(t *testing.T) {
	t.Parallel()
	oldKey := newKey(t)
	oldSealer, err := secrets.Sealer(env(map[string]string{"RESULTS_KEY": oldKey}), false)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := oldSealer.Seal("j", "u", "v")
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := secrets.Sealer(env(map[string]string{
		"RESULTS_KEY":               newKey(t),
		"RESULTS_KEY_PREVIOUS_FILE": writeFile(t, " , "+oldKey+" ,\n"),
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.Open("j", "u", sealed)
	if diff := cmp.Diff("v", got); diff != "" || err != nil {
		t.Errorf("open with a previous key from RESULTS_KEY_PREVIOUS_FILE: err %v, value (-want +got):\n%s", err, diff)
	}
}
