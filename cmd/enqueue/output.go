package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/odinreset/odinreset/results"
)

// checkFormat returns a problem unless format is json or csv.
func checkFormat(format string) string {
	switch format {
	case "json", "csv":
		return ""
	}
	return fmt.Sprintf("invalid --format %q: use json or csv", format)
}

// checkOutPath returns a problem when the results cannot be written to path: its
// directory is missing or not writable, or path is a directory. It creates and removes a
// temporary file to find out, before anything is submitted.
func checkOutPath(path string) string {
	dir := filepath.Dir(path)
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("cannot write --out %s: directory %s does not exist: create it or choose another path", path, dir)
	case err != nil:
		return fmt.Sprintf("cannot write --out %s: %v: choose another path", path, unwrapPathError(err))
	case !info.IsDir():
		return fmt.Sprintf("cannot write --out %s: %s is not a directory: choose another path", path, dir)
	}
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return fmt.Sprintf("cannot write --out %s: it is a directory: give a file name", path)
	}

	probe, err := os.CreateTemp(dir, ".enqueue-probe-*")
	if err != nil {
		return fmt.Sprintf("cannot write --out %s: %v: choose a writable directory", path, unwrapPathError(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return ""
}

// writeResults writes the job's rows as JSON or CSV, to standard output or to the file
// out. Either the whole output is written or none of it: standard output gets the rows
// only after all of them were read, and the file appears only complete.
func (a *app) writeResults(ctx context.Context, store *results.Store, jobID, format, out string) error {
	write := func(w io.Writer) error {
		if format == "csv" {
			return store.WriteCSV(ctx, jobID, w)
		}
		return store.WriteJSON(ctx, jobID, w)
	}

	if out == "" {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			return explainReadError(err)
		}
		if _, err := a.stdout.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("write standard output: %w", err)
		}
		return nil
	}
	return explainReadError(writeFileAtomic(out, write))
}

// explainReadError adds the fix to a results error whose message lacks one.
func explainReadError(err error) error {
	if errors.Is(err, results.ErrPlaintextRefused) {
		return fmt.Errorf("%w: the workers stored this job without a results key, so read it with RESULTS_KEY and RESULTS_KEY_FILE unset", err)
	}
	return err
}

// writeFileAtomic writes a file with mode 0600 through a temporary file in the same
// directory and a rename, so a reader never sees a partial file and a failure leaves an
// existing file as it was.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, unwrapPathError(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	// CreateTemp already uses 0600. Chmod makes the mode explicit in case that changes.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("set mode of %s: %w", tmp.Name(), err)
	}
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, unwrapLinkError(err))
	}
	return nil
}

func unwrapLinkError(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// redactURL keeps only the scheme and host of a URL, because webhook URLs often carry a
// token in the user information, the path or the query.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(not shown)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		out += "/..."
	}
	return out
}
