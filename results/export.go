package results

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Row is one user in the exported result. Applied users carry the new value in
// NewPassword (NewPasscode for voicemail); failed users carry Error. A user failed without
// a definitive response from Odin, or left pending by a cancelled job, carries Error saying
// so and the value written ahead for it, because that value may have reached Odin.
type Row struct {
	UserID      string `json:"userId"`
	NewPassword string `json:"newPassword,omitempty"`
	NewPasscode string `json:"newPasscode,omitempty"`
	Error       string `json:"error,omitempty"`
	// Device is the device step outcome of SIP jobs that asked for one.
	Device string `json:"device,omitempty"`
	// Check is "ok" for a user that passed the checks of a dry run.
	Check string `json:"check,omitempty"`
}

// RowFor converts a user record to its exported row for a job of the given type.
func RowFor(job Job, rec UserRecord) Row {
	row := Row{UserID: rec.UserID, Device: rec.Device}
	if job.DryRun {
		switch rec.State {
		case UserApplied:
			row.Check = "ok"
		case UserFailed:
			row.Error = rec.Reason
		default:
			row.Error = pendingReason(job)
		}
		return row
	}
	switch rec.State {
	case UserApplied:
		row.setSecret(job.Type, rec.Secret)
	case UserFailed:
		row.Error = rec.Reason
		if row.Error == "" {
			row.Error = "failed"
		}
		if rec.Unconfirmed && rec.Secret != "" {
			row.Error += "; the value shown was sent to Odin without confirmation and may be set"
			row.setSecret(job.Type, rec.Secret)
		}
	default:
		row.Error = pendingReason(job)
		// A finished job's pending user whose attempt began before the job stopped may
		// have been sent its value, so the value is shown with that warning. A user whose
		// attempt never began was never sent anything, and while the job runs no value
		// is shown: a consumer that reads newPassword must never get a value not set.
		if job.State.Finished() && rec.Secret != "" && rec.MaybeSent {
			row.Error = pendingReason(job) + "; the value shown was sent to Odin without confirmation and may be set"
			row.setSecret(job.Type, rec.Secret)
		}
	}
	return row
}

func (r *Row) setSecret(t CredentialType, secret string) {
	if t == Voicemail {
		r.NewPasscode = secret
	} else {
		r.NewPassword = secret
	}
}

func pendingReason(job Job) string {
	if job.State == JobCancelled {
		return "not reset: the job was cancelled"
	}
	return "not reset yet: the job is " + string(job.State)
}

// WriteJSON writes the job's users as a JSON array of Row, in submission order, streaming
// so that a 100,000-user job does not need the whole array in memory.
func (s *Store) WriteJSON(ctx context.Context, jobID string, w io.Writer) error {
	job, err := s.Job(ctx, jobID)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	first := true
	if _, err := bw.WriteString("["); err != nil {
		return err
	}
	err = s.ForEachUser(ctx, jobID, func(rec UserRecord) error {
		b, err := json.Marshal(RowFor(job, rec))
		if err != nil {
			return err
		}
		sep := ",\n  "
		if first {
			sep = "\n  "
			first = false
		}
		bw.WriteString(sep)
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	if !first {
		bw.WriteString("\n")
	}
	bw.WriteString("]\n")
	return bw.Flush()
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"userId", "type", "status", "value", "error", "attempts", "appliedAt", "device"}

// WriteCSV writes the job's users as CSV with CSVHeader, in submission order.
func (s *Store) WriteCSV(ctx context.Context, jobID string, w io.Writer) error {
	job, err := s.Job(ctx, jobID)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	err = s.ForEachUser(ctx, jobID, func(rec UserRecord) error {
		row := RowFor(job, rec)
		value := row.NewPassword + row.NewPasscode
		appliedAt := ""
		if !rec.AppliedAt.IsZero() {
			appliedAt = rec.AppliedAt.Format(time.RFC3339)
		}
		return cw.Write([]string{
			rec.UserID, string(job.Type), string(rec.State), value, csvSafe(row.Error),
			strconv.Itoa(rec.Attempts), appliedAt, csvSafe(rec.Device),
		})
	})
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	return nil
}

// csvSafe defuses spreadsheet formula injection in text that comes from Odin: a cell
// starting with =, +, -, @, tab or carriage return gets a leading single quote.
// Values are never altered, because provisioning systems import this file: a generated
// password may start with one of these characters, so open the file as text, not in a
// spreadsheet that evaluates formulas.
func csvSafe(v string) string {
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + v
	}
	return v
}
