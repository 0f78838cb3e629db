package results_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/results"
)

const testSecret = "8H]}3y-Secret!"

func randomKey(t *testing.T) results.Key {
	t.Helper()
	k, err := results.NewRandomKey()
	if err != nil {
		t.Fatalf("NewRandomKey: %v", err)
	}
	return k
}

func TestKeyringRoundTrip(t *testing.T) {
	kr := results.NewKeyring(randomKey(t))

	tests := []struct {
		name   string
		secret string
	}{
		{name: "password", secret: testSecret},
		{name: "digits", secret: "0042731"},
		{name: "unicode", secret: "pässwörd€"},
		{name: "one byte", secret: "x"},
		{name: "long", secret: strings.Repeat("a1!", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := kr.Seal("job-1", "user1@example.com", tt.secret)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			// A short secret can occur in the base64 text by chance.
			if len(tt.secret) >= 6 && strings.Contains(sealed, tt.secret) {
				t.Errorf("sealed value %q contains the secret", sealed)
			}
			got, err := kr.Open("job-1", "user1@example.com", sealed)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got != tt.secret {
				t.Errorf("Open = %q, want %q", got, tt.secret)
			}
		})
	}
}

func TestKeyringSealFormat(t *testing.T) {
	key := randomKey(t)
	kr := results.NewKeyring(key)

	a, err := kr.Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	b, err := kr.Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	prefix := "aes:" + key.ID() + ":"
	if !strings.HasPrefix(a, prefix) {
		t.Errorf("sealed value %q does not start with %q", a, prefix)
	}
	if a == b {
		t.Errorf("two seals of one secret are equal (%q): the nonce is not random", a)
	}
}

func TestKeyringAssociatedData(t *testing.T) {
	kr := results.NewKeyring(randomKey(t))
	sealed, err := kr.Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	tests := []struct {
		name   string
		jobID  string
		userID string
	}{
		{name: "other user", jobID: "job-1", userID: "u2"},
		{name: "other job", jobID: "job-2", userID: "u1"},
		{name: "both swapped", jobID: "u1", userID: "job-1"},
		{name: "separator moved", jobID: "job-1\x00u", userID: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kr.Open(tt.jobID, tt.userID, sealed)
			if err == nil {
				t.Fatalf("Open(%q, %q) = %q and no error, want an authentication error", tt.jobID, tt.userID, got)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestKeyringRejectsAlteredValues(t *testing.T) {
	key := randomKey(t)
	kr := results.NewKeyring(key)
	sealed, err := kr.Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	body := strings.TrimPrefix(sealed, "aes:"+key.ID()+":")
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		t.Fatalf("sealed body is not base64url: %v", err)
	}
	flipped := bytes.Clone(raw)
	flipped[len(flipped)-1] ^= 1

	tests := []struct {
		name   string
		sealed string
	}{
		{name: "flipped bit", sealed: "aes:" + key.ID() + ":" + base64.RawURLEncoding.EncodeToString(flipped)},
		{name: "truncated", sealed: "aes:" + key.ID() + ":" + base64.RawURLEncoding.EncodeToString(raw[:20])},
		{name: "empty body", sealed: "aes:" + key.ID() + ":"},
		{name: "not base64", sealed: "aes:" + key.ID() + ":***"},
		{name: "no key ID", sealed: "aes:" + body},
		{name: "unknown prefix", sealed: "rot13:" + body},
		{name: "empty", sealed: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kr.Open("job-1", "u1", tt.sealed)
			if err == nil {
				t.Fatalf("Open(%q) = %q and no error, want an error", tt.sealed, got)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestKeyringRotation(t *testing.T) {
	oldKey := randomKey(t)
	newKey := randomKey(t)
	sealedWithOld, err := results.NewKeyring(oldKey).Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}

	t.Run("previous key opens", func(t *testing.T) {
		kr := results.NewKeyring(newKey, oldKey)
		got, err := kr.Open("job-1", "u1", sealedWithOld)
		if err != nil {
			t.Fatalf("Open with the old key as previous: %v", err)
		}
		if got != testSecret {
			t.Errorf("Open = %q, want %q", got, testSecret)
		}
	})

	t.Run("current key seals", func(t *testing.T) {
		kr := results.NewKeyring(newKey, oldKey)
		sealed, err := kr.Seal("job-1", "u1", testSecret)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if want := "aes:" + newKey.ID() + ":"; !strings.HasPrefix(sealed, want) {
			t.Errorf("sealed value %q does not start with %q", sealed, want)
		}
		if _, err := results.NewKeyring(oldKey).Open("job-1", "u1", sealed); err == nil {
			t.Errorf("the old key alone opened a value sealed with the new key")
		}
	})

	t.Run("missing previous key", func(t *testing.T) {
		kr := results.NewKeyring(newKey)
		got, err := kr.Open("job-1", "u1", sealedWithOld)
		if err == nil {
			t.Fatalf("Open = %q and no error, want *KeyMismatchError", got)
		}
		var mismatch *results.KeyMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("error %v (%T) is not a *KeyMismatchError", err, err)
		}
		if mismatch.KeyID != oldKey.ID() {
			t.Errorf("KeyMismatchError.KeyID = %q, want the old key's ID %q", mismatch.KeyID, oldKey.ID())
		}
		if diff := cmp.Diff([]string{newKey.ID()}, mismatch.Configured); diff != "" {
			t.Errorf("KeyMismatchError.Configured (-want +got):\n%s", diff)
		}
		if !strings.Contains(err.Error(), oldKey.ID()) {
			t.Errorf("error %q does not name the key ID %s", err, oldKey.ID())
		}
	})

	t.Run("duplicate previous key", func(t *testing.T) {
		kr := results.NewKeyring(newKey, newKey, oldKey, oldKey)
		if _, err := kr.Open("job-1", "u1", sealedWithOld); err != nil {
			t.Fatalf("Open: %v", err)
		}
		_, err := results.NewKeyring(newKey, newKey).Open("job-1", "u1", sealedWithOld)
		var mismatch *results.KeyMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("Open error %v, want *KeyMismatchError", err)
		}
		if diff := cmp.Diff([]string{newKey.ID()}, mismatch.Configured); diff != "" {
			t.Errorf("Configured lists a key twice (-want +got):\n%s", diff)
		}
	})
}

func TestKeyringRefusesPlaintext(t *testing.T) {
	sealed, err := results.Plaintext{}.Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Plaintext.Seal: %v", err)
	}
	_, err = results.NewKeyring(randomKey(t)).Open("job-1", "u1", sealed)
	if !errors.Is(err, results.ErrPlaintextRefused) {
		t.Errorf("Keyring.Open(plaintext value) error = %v, want ErrPlaintextRefused", err)
	}
}

func TestPlaintext(t *testing.T) {
	var p results.Plaintext

	sealed, err := p.Seal("job-1", "u1", testSecret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	got, err := p.Open("job-1", "u1", sealed)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if got != testSecret {
		t.Errorf("Open = %q, want %q", got, testSecret)
	}

	t.Run("cannot open encrypted values", func(t *testing.T) {
		aes, err := results.NewKeyring(randomKey(t)).Seal("job-1", "u1", testSecret)
		if err != nil {
			t.Fatalf("Keyring.Seal: %v", err)
		}
		got, err := p.Open("job-1", "u1", aes)
		if !errors.Is(err, results.ErrNoKey) {
			t.Errorf("Plaintext.Open(aes value) = %q, %v; want ErrNoKey", got, err)
		}
	})

	t.Run("unknown format", func(t *testing.T) {
		if got, err := p.Open("job-1", "u1", testSecret); err == nil {
			t.Errorf("Plaintext.Open(bare secret) = %q and no error, want an error", got)
		}
	})
}

func TestParseKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb, 0xff, 0x3e}, 11)[:results.KeySize] // '+', '/', '-' and '_' in base64
	sum := sha256.Sum256(raw)
	wantID := hex.EncodeToString(sum[:4])

	tests := []struct {
		name    string
		encoded string
	}{
		{name: "standard padded", encoded: base64.StdEncoding.EncodeToString(raw)},
		{name: "standard unpadded", encoded: base64.RawStdEncoding.EncodeToString(raw)},
		{name: "URL padded", encoded: base64.URLEncoding.EncodeToString(raw)},
		{name: "URL unpadded", encoded: base64.RawURLEncoding.EncodeToString(raw)},
		{name: "trailing newline from a key file", encoded: base64.StdEncoding.EncodeToString(raw) + "\n"},
		{name: "surrounding spaces", encoded: "  " + base64.StdEncoding.EncodeToString(raw) + " \t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := results.ParseKey(tt.encoded)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if got := key.ID(); got != wantID {
				t.Errorf("ID() = %q, want the first 8 hex digits of SHA-256 %q", got, wantID)
			}
		})
	}

	t.Run("same key opens across encodings", func(t *testing.T) {
		a, err := results.ParseKey(base64.StdEncoding.EncodeToString(raw))
		if err != nil {
			t.Fatalf("ParseKey: %v", err)
		}
		b, err := results.ParseKey(base64.RawURLEncoding.EncodeToString(raw))
		if err != nil {
			t.Fatalf("ParseKey: %v", err)
		}
		sealed, err := results.NewKeyring(a).Seal("job-1", "u1", testSecret)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		got, err := results.NewKeyring(b).Open("job-1", "u1", sealed)
		if err != nil || got != testSecret {
			t.Errorf("Open = %q, %v; want %q, nil", got, err, testSecret)
		}
	})
}

func TestParseKeyErrorsHideTheKey(t *testing.T) {
	short := bytes.Repeat([]byte{0x5a}, results.KeySize-1)
	long := bytes.Repeat([]byte{0x5a}, results.KeySize+1)

	tests := []struct {
		name    string
		encoded string
		// leaks are substrings that must not appear in the error: the input and the
		// key bytes in common notations.
		leaks []string
	}{
		{name: "empty", encoded: ""},
		{name: "not base64", encoded: "s3cr3t-k3y!with*stars", leaks: []string{"s3cr3t", "stars"}},
		{name: "31 bytes", encoded: base64.StdEncoding.EncodeToString(short),
			leaks: []string{base64.StdEncoding.EncodeToString(short), hex.EncodeToString(short), string(short)}},
		{name: "33 bytes", encoded: base64.StdEncoding.EncodeToString(long),
			leaks: []string{base64.StdEncoding.EncodeToString(long), hex.EncodeToString(long), string(long)}},
		{name: "hex instead of base64", encoded: strings.Repeat("ab", results.KeySize),
			leaks: []string{strings.Repeat("ab", results.KeySize)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := results.ParseKey(tt.encoded)
			if err == nil {
				t.Fatalf("ParseKey(%q) returned no error", tt.encoded)
			}
			for _, leak := range tt.leaks {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q contains key material %q", err, leak)
				}
			}
		})
	}
}
