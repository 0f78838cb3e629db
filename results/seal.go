package results

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sealer turns a secret into the string stored in the record and back. Implementations
// must be safe for concurrent use.
type Sealer interface {
	// Seal returns the stored form of secret for the user of the job.
	Seal(jobID, userID, secret string) (string, error)
	// Open returns the secret from its stored form.
	Open(jobID, userID, sealed string) (string, error)
}

// Stored forms: "plain:<secret>" or "aes:<key ID>:<base64url(nonce || ciphertext)>".
const (
	plainPrefix = "plain:"
	aesPrefix   = "aes:"
)

// KeySize is the size of a results key in bytes (AES-256).
const KeySize = 32

// ErrNoKey is returned when an encrypted value is read without any results key.
var ErrNoKey = errors.New("the record is encrypted and no results key is configured: set RESULTS_KEY or RESULTS_KEY_FILE to the key the worker uses")

// ErrPlaintextRefused is returned by a Keyring asked to open a plaintext value, because a
// worker with a key expects every value to be encrypted.
var ErrPlaintextRefused = errors.New("invalid record: it contains a plaintext secret but a results key is configured")

// KeyMismatchError is returned when no configured key has the ID a value was sealed with.
type KeyMismatchError struct {
	KeyID      string
	Configured []string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("the record was encrypted with results key %s but the configured keys are %s: set RESULTS_KEY (or RESULTS_KEY_PREVIOUS) to the key the worker used",
		e.KeyID, strings.Join(e.Configured, ", "))
}

// Plaintext stores secrets as they are. Use it only where the operator chose to
// (--insecure-plaintext-results); it can read nothing that a Keyring sealed.
type Plaintext struct{}

// Seal implements Sealer.
func (Plaintext) Seal(_, _, secret string) (string, error) { return plainPrefix + secret, nil }

// Open implements Sealer.
func (Plaintext) Open(_, _, sealed string) (string, error) {
	if s, ok := strings.CutPrefix(sealed, plainPrefix); ok {
		return s, nil
	}
	if strings.HasPrefix(sealed, aesPrefix) {
		return "", ErrNoKey
	}
	return "", errors.New("unrecognised stored secret format")
}

// Key is one AES-256 results key.
type Key struct {
	id   string
	aead cipher.AEAD
}

// ID returns the key's public identifier: the first 8 hex digits of the SHA-256 of the key.
// It is stored with every value the key seals, so a keyring finds the key to open it with.
func (k Key) ID() string { return k.id }

// ParseKey decodes a base64 (standard or URL alphabet, padded or not) 32-byte key.
// The error never contains the key material.
func ParseKey(encoded string) (Key, error) {
	encoded = strings.TrimSpace(encoded)
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(encoded); err == nil {
			break
		}
	}
	if err != nil {
		return Key{}, errors.New("invalid results key: not base64; generate one with `openssl rand -base64 32`")
	}
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("invalid results key: %d bytes after base64 decoding, need %d; generate one with `openssl rand -base64 32`", len(raw), KeySize)
	}
	return newKey(raw)
}

// NewRandomKey returns a fresh key, for demos and tests.
func NewRandomKey() (Key, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, fmt.Errorf("generate results key: %w", err)
	}
	return newKey(raw)
}

func newKey(raw []byte) (Key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return Key{}, fmt.Errorf("invalid results key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return Key{}, fmt.Errorf("invalid results key: %w", err)
	}
	sum := sha256.Sum256(raw)
	return Key{id: hex.EncodeToString(sum[:4]), aead: aead}, nil
}

// Keyring seals with its current key and opens with any of its keys, so a key can be
// rotated: the new key becomes current and the old one stays as previous until the
// records it sealed have expired.
type Keyring struct {
	current Key
	byID    map[string]Key
}

// NewKeyring returns a Keyring that seals with current.
func NewKeyring(current Key, previous ...Key) *Keyring {
	kr := &Keyring{current: current, byID: map[string]Key{current.id: current}}
	for _, k := range previous {
		if _, dup := kr.byID[k.id]; !dup {
			kr.byID[k.id] = k
		}
	}
	return kr
}

// Seal implements Sealer with AES-256-GCM, a random 96-bit nonce and the job and user IDs
// as associated data, so a value moved to another user or job fails to open.
func (kr *Keyring) Seal(jobID, userID, secret string) (string, error) {
	aead := kr.current.aead
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(secret)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secret: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(secret), associatedData(jobID, userID))
	return aesPrefix + kr.current.id + ":" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open implements Sealer.
func (kr *Keyring) Open(jobID, userID, sealed string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, aesPrefix)
	if !ok {
		if strings.HasPrefix(sealed, plainPrefix) {
			return "", ErrPlaintextRefused
		}
		return "", errors.New("unrecognised stored secret format")
	}
	keyID, body, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("malformed encrypted secret")
	}
	key, ok := kr.byID[keyID]
	if !ok {
		return "", &KeyMismatchError{KeyID: keyID, Configured: kr.ids()}
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < key.aead.NonceSize()+key.aead.Overhead() {
		return "", errors.New("malformed encrypted secret")
	}
	n := key.aead.NonceSize()
	plain, err := key.aead.Open(nil, raw[:n], raw[n:], associatedData(jobID, userID))
	if err != nil {
		return "", fmt.Errorf("encrypted secret of user %q in job %q failed authentication: it was altered or belongs to another user", userID, jobID)
	}
	return string(plain), nil
}

// CurrentID returns the ID of the key that seals new values: the first 8 hex digits of
// the key's SHA-256, which identifies the key without revealing it.
func (kr *Keyring) CurrentID() string { return kr.current.id }

func (kr *Keyring) ids() []string {
	ids := []string{kr.current.id}
	for id := range kr.byID {
		if id != kr.current.id {
			ids = append(ids, id)
		}
	}
	return ids
}

// associatedData binds a ciphertext to its job and user. The NUL separator cannot occur in
// a job ID, so ("a", "b\x00c") and ("a\x00b", "c") differ.
func associatedData(jobID, userID string) []byte {
	return []byte("odinreset/v1\x00" + jobID + "\x00" + userID)
}
