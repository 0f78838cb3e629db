package results

import (
	"fmt"
	"regexp"
	"unicode/utf8"
)

// DefaultKeyPrefix starts every key the store writes.
const DefaultKeyPrefix = "odinreset:"

// jobIDPattern keeps job IDs safe as Redis hash tags and asynq TaskIDs: no braces, no
// spaces, no slashes (a per-user TaskID is "<job>/<user>").
var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ValidateJobID returns an error naming the value when id cannot be a job ID. It quotes
// at most 256 bytes of id, so a huge ID does not make a huge error.
func ValidateJobID(id string) error {
	if !jobIDPattern.MatchString(id) {
		quoted := id
		if len(id) > 256 {
			cut := 256
			for cut > 0 && !utf8.RuneStart(id[cut]) {
				cut--
			}
			quoted = fmt.Sprintf("%s... (%d bytes)", id[:cut], len(id))
		}
		return fmt.Errorf("invalid job ID %q: use 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", quoted)
	}
	return nil
}

// keys builds every key of one job. All of them carry the hash tag {<job ID>}.
type keys struct {
	tag   string // prefix and hash tag that start every key of the job
	meta  string // hash: the Job fields and counters
	users string // hash: user ID -> encoded UserRecord
	order string // list: user IDs in submission order
	dev   string // hash: device name -> state of its follow-up step
	// sending is a hash: user ID -> "1" from the start of an attempt to set the user's
	// value until the user is settled. A pending user listed here may have had its value
	// sent to Odin; one not listed never had.
	sending string
}

func (s *Store) jobKeys(jobID string) keys {
	tag := s.prefix + "{" + jobID + "}"
	return keys{
		tag:     tag,
		meta:    tag + ":meta",
		users:   tag + ":users",
		order:   tag + ":order",
		dev:     tag + ":devices",
		sending: tag + ":sending",
	}
}

// all returns the job's keys in the order the Lua scripts expect them: meta first.
func (k keys) all() []string { return []string{k.meta, k.users, k.order, k.dev, k.sending} }

// loading returns the list that one LoadUsers call fills before it becomes the order list.
// Each call has its own token, so overlapping calls never write to the same list.
func (k keys) loading(token string) string {
	return k.tag + ":loading:" + token
}

// indexKey is the sorted set of job IDs by creation time, for listing jobs. It is a
// single key touched only by single-key commands, so it needs no hash tag.
func (s *Store) indexKey() string { return s.prefix + "jobs" }
