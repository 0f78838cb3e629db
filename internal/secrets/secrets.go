// Package secrets reads the settings that must never be flags (flags show in `ps`): the
// Odin admin password and the results encryption keys, from an environment variable or
// a file named by VAR_FILE.
package secrets

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/odinreset/odinreset/results"
)

// Getenv is the environment lookup; os.Getenv in production, a map in tests.
type Getenv func(string) string

// FromEnvOrFile returns the value of name, or the content of the file named by
// name+"_FILE" with one trailing newline removed. Setting both is an error, and so is an
// unreadable file. ok is false when neither is set.
func FromEnvOrFile(getenv Getenv, name string) (value string, ok bool, err error) {
	direct := getenv(name)
	path := getenv(name + "_FILE")
	switch {
	case direct != "" && path != "":
		return "", false, fmt.Errorf("both %s and %s_FILE are set: set only one", name, name)
	case direct != "":
		return direct, true, nil
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return "", false, fmt.Errorf("read %s_FILE %s: %w", name, path, errors.Unwrap(err))
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", false, fmt.Errorf("%s_FILE %s is empty", name, path)
		}
		return v, true, nil
	}
	return "", false, nil
}

// Sealer returns the results sealer configured by RESULTS_KEY (or RESULTS_KEY_FILE) and
// RESULTS_KEY_PREVIOUS (or RESULTS_KEY_PREVIOUS_FILE, comma-separated keys for rotation).
// Without a key it returns results.Plaintext when allowPlaintext is set, and otherwise
// an error that explains how to make a key.
func Sealer(getenv Getenv, allowPlaintext bool) (results.Sealer, error) {
	current, ok, err := FromEnvOrFile(getenv, "RESULTS_KEY")
	if err != nil {
		return nil, err
	}
	if !ok {
		if allowPlaintext {
			return results.Plaintext{}, nil
		}
		return nil, errors.New("no results key: set RESULTS_KEY (or RESULTS_KEY_FILE) to a base64 32-byte key, made with `openssl rand -base64 32`, or pass --insecure-plaintext-results to store new passwords unencrypted")
	}
	key, err := results.ParseKey(current)
	if err != nil {
		return nil, fmt.Errorf("RESULTS_KEY: %w", err)
	}

	var previous []results.Key
	prev, _, err := FromEnvOrFile(getenv, "RESULTS_KEY_PREVIOUS")
	if err != nil {
		return nil, err
	}
	for i, part := range strings.Split(prev, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, err := results.ParseKey(part)
		if err != nil {
			return nil, fmt.Errorf("RESULTS_KEY_PREVIOUS key %d: %w", i+1, err)
		}
		previous = append(previous, k)
	}
	return results.NewKeyring(key, previous...), nil
}
