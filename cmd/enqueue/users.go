package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/odinreset/odinreset/tasks"
)

// maxLineBytes bounds one line of a user list. A user ID has at most 161 characters of
// up to 4 bytes each (644 bytes), so a longer line is never one user ID: it is usually
// a file with other line endings or not a text file. The bound also keeps a 10 MB line
// from being read into memory whole.
const maxLineBytes = 4096

// userListError names the line of a user list that cannot be read and the fix.
type userListError struct {
	source  string // file name, or "standard input"
	line    int
	problem string
}

func (e *userListError) Error() string {
	if e.line == 0 {
		return fmt.Sprintf("%s: %s", e.source, e.problem)
	}
	return fmt.Sprintf("%s line %d: %s", e.source, e.line, e.problem)
}

// parseUsers reads a user list: one user ID per line, blank lines and lines starting
// with # skipped, surrounding spaces trimmed, CRLF line endings and a UTF-8 byte order
// mark accepted. It returns the IDs in file order with duplicates kept, because
// tasks.BulkResetPayload.Normalize removes and reports them. Every error is a
// *userListError naming the line and the fix, or a read error of r.
func parseUsers(r io.Reader, source string) ([]string, error) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	var users []string

	for lineNo := 1; ; lineNo++ {
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, &userListError{source, lineNo, fmt.Sprintf(
				"line is longer than %d bytes, and a user ID has at most %d characters: put one user ID per line (a file with old Mac CR line endings or a spreadsheet export reads as one long line)",
				maxLineBytes, tasks.MaxUserIDLength)}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read %s: %w", source, err)
		}
		atEOF := err != nil

		line := bytes.TrimSuffix(raw, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if lineNo == 1 {
			if bytes.HasPrefix(line, []byte{0xff, 0xfe}) || bytes.HasPrefix(line, []byte{0xfe, 0xff}) {
				return nil, &userListError{source, 0, "the list is UTF-16 encoded: save it as UTF-8"}
			}
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}

		user, problem := parseUserLine(line)
		if problem == "" && len(users) == 0 && isColumnHeader(user) {
			problem = fmt.Sprintf("%q looks like a column header, not a user ID: delete the line, or turn it into a comment by starting it with #", user)
		}
		if problem != "" {
			return nil, &userListError{source, lineNo, problem}
		}
		if user != "" {
			if len(users) == tasks.MaxUsers {
				return nil, &userListError{source, lineNo, fmt.Sprintf(
					"more than %d user IDs, the maximum for one job: split the list into several jobs", tasks.MaxUsers)}
			}
			users = append(users, user)
		}
		if atEOF {
			return users, nil
		}
	}
}

// hiddenCharacterProblem returns the problem of a user ID that looks right on screen but
// that Odin would not find: one with an invisible character, or in quotes. It returns ""
// for other IDs.
func hiddenCharacterProblem(s string) string {
	if i := strings.IndexFunc(s, isInvisible); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Sprintf("%q contains the invisible character %U, which a copy from a web page or a spreadsheet can bring in: remove it", shorten(s), r)
	}
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return fmt.Sprintf("%s is in quotes: remove them, a user ID never has quotes around it", shorten(s))
	}
	return ""
}

// isInvisible reports format characters such as the zero-width space (U+200B) and the
// byte order mark, which show as nothing on screen.
func isInvisible(r rune) bool { return unicode.Is(unicode.Cf, r) }

// parseUserLine returns the user ID on one line without its line ending, "" for a blank
// or comment line, or a problem that names the fix.
func parseUserLine(line []byte) (user, problem string) {
	if !utf8.Valid(line) {
		return "", "not valid UTF-8: save the list as UTF-8"
	}
	s := strings.TrimSpace(string(line))
	if s == "" || strings.HasPrefix(s, "#") {
		return "", ""
	}
	if n := utf8.RuneCountInString(s); n > tasks.MaxUserIDLength {
		return "", fmt.Sprintf("%q is %d characters, and a user ID has at most %d: put one user ID per line",
			shorten(s), n, tasks.MaxUserIDLength)
	}
	if strings.Contains(s, "\r") {
		return "", fmt.Sprintf("%q holds a carriage return inside the line, as a file with old Mac CR line endings does: save it with LF or CRLF line endings",
			shorten(s))
	}
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return "", fmt.Sprintf("%q contains a space or tab: put one user ID per line, and comments on lines of their own starting with #",
			shorten(s))
	}
	if strings.ContainsAny(s, ",;") {
		return "", fmt.Sprintf("%q contains a comma or semicolon, so the list looks like CSV: put only the user ID on each line",
			shorten(s))
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", fmt.Sprintf("%q contains a control character: remove it", shorten(s))
	}
	if problem := hiddenCharacterProblem(s); problem != "" {
		return "", problem
	}
	return s, ""
}

// isColumnHeader reports whether the first user ID of a list is the name of a column, as
// the first line of a spreadsheet export is. A BroadWorks user ID names its domain.
func isColumnHeader(s string) bool {
	switch strings.ToLower(s) {
	case "user", "users", "userid", "user_id", "user-id", "id", "username", "user_name", "email", "login":
		return true
	}
	return false
}

// shorten keeps a quoted value in a message short.
func shorten(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// describeDuplicates names the first ten duplicate user IDs and counts the rest.
func describeDuplicates(duplicates []string) string {
	const maxNamed = 10
	names := duplicates
	if len(names) > maxNamed {
		names = names[:maxNamed]
	}
	msg := strings.Join(names, ", ")
	if extra := len(duplicates) - len(names); extra > 0 {
		msg += fmt.Sprintf(" and %d more", extra)
	}
	return msg
}
