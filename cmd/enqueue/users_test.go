package main

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/odinreset/odinreset/tasks"
)

// userListCases are the parser's table, and FuzzParseUsers starts from their inputs.
var userListCases = []struct {
	name    string
	input   string
	want    []string
	wantErr string // fragment of the error, empty for success
}{
	{name: "one per line", input: "a@x\nb@x\n", want: []string{"a@x", "b@x"}},
	{name: "no final newline", input: "a@x\nb@x", want: []string{"a@x", "b@x"}},
	{name: "CRLF", input: "a@x\r\nb@x\r\n", want: []string{"a@x", "b@x"}},
	{name: "byte order mark", input: "\uFEFFa@x\nb@x\n", want: []string{"a@x", "b@x"}},
	{name: "blank lines and comments", input: "# header\n\n  \na@x\n  # indented comment\nb@x\n", want: []string{"a@x", "b@x"}},
	{name: "surrounding spaces", input: "  a@x \t\n", want: []string{"a@x"}},
	{name: "duplicates kept for Normalize", input: "a@x\na@x\n", want: []string{"a@x", "a@x"}},
	{name: "empty input", input: "", want: nil},
	{name: "only comments", input: "# a\n# b\n", want: nil},
	{name: "161 characters", input: strings.Repeat("é", 161) + "\n", want: []string{strings.Repeat("é", 161)}},
	{name: "162 characters", input: "a@x\n" + strings.Repeat("u", 162) + "\n", wantErr: "line 2: \"" + strings.Repeat("u", 64) + "...\" is 162 characters"},
	{name: "10 MB line", input: strings.Repeat("x", 10<<20), wantErr: "line 1: line is longer than 4096 bytes"},
	{name: "invalid UTF-8", input: "a@x\nb\xff@x\n", wantErr: "line 2: not valid UTF-8: save the list as UTF-8"},
	{name: "UTF-16", input: "\xff\xfea\x00@\x00x\x00\n\x00", wantErr: "UTF-16 encoded: save it as UTF-8"},
	{name: "inline comment", input: "a@x # new hire\n", wantErr: "line 1: \"a@x # new hire\" contains a space or tab"},
	{name: "comma-separated", input: "a@x, b@x\n", wantErr: "contains a space or tab: put one user ID per line"},
	{name: "CSV", input: "a@x,Alice\n", wantErr: "looks like CSV: put only the user ID on each line"},
	{name: "control character", input: "a\x07@x\n", wantErr: "line 1: \"a\\a@x\" contains a control character"},
	{name: "old Mac line endings", input: strings.Repeat("user@example.com\r", 300), wantErr: "old Mac CR line endings"},
	{name: "zero-width space", input: "a\u200b@x\n", wantErr: `line 1: "a\u200b@x" contains the invisible character U+200B`},
	{name: "quoted", input: "\"a@x\"\n", wantErr: `line 1: "a@x" is in quotes: remove them`},
	{name: "short file with old Mac line endings", input: "a@x\rb@x\r", wantErr: `line 1: "a@x\rb@x" holds a carriage return inside the line, as a file with old Mac CR line endings does`},
}

func TestParseUsers(t *testing.T) {
	for _, tc := range userListCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUsers(strings.NewReader(tc.input), "users.txt")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				var listErr *userListError
				if !errors.As(err, &listErr) {
					t.Errorf("error is %T, want *userListError", err)
				}
				if !strings.HasPrefix(err.Error(), "users.txt") {
					t.Errorf("error %q does not name the file", err)
				}
				if len(err.Error()) > 400 {
					t.Errorf("error is %d bytes, want a short message", len(err.Error()))
				}
				return
			}
			if err != nil {
				t.Fatalf("parseUsers: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseUsersLimit(t *testing.T) {
	input := strings.Repeat("u@x\n", tasks.MaxUsers+1)
	_, err := parseUsers(strings.NewReader(input), "big.txt")
	if err == nil || !strings.Contains(err.Error(), "split the list into several jobs") {
		t.Fatalf("error = %v, want the maximum-users error", err)
	}
	if !strings.Contains(err.Error(), "line 500001") {
		t.Errorf("error %q does not name line 500001", err)
	}
}

func TestDescribeDuplicates(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{name: "one", in: []string{"a"}, want: "a"},
		{name: "ten", in: strings.Split("a b c d e f g h i j", " "), want: "a, b, c, d, e, f, g, h, i, j"},
		{name: "twelve", in: strings.Split("a b c d e f g h i j k l", " "), want: "a, b, c, d, e, f, g, h, i, j and 2 more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeDuplicates(tc.in); got != tc.want {
				t.Errorf("describeDuplicates = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseUsers checks that the parser never panics and that every user ID it accepts
// passes the payload's own validation, so a file the parser accepts is never rejected
// later for its user IDs.
func FuzzParseUsers(f *testing.F) {
	for _, tc := range userListCases {
		if len(tc.input) < 1<<16 {
			f.Add(tc.input)
		}
	}
	f.Fuzz(func(t *testing.T, input string) {
		users, err := parseUsers(strings.NewReader(input), "fuzz")
		if err != nil {
			var listErr *userListError
			if !errors.As(err, &listErr) {
				t.Fatalf("error is %T (%v), want *userListError", err, err)
			}
			if !utf8.ValidString(err.Error()) && utf8.ValidString(input) {
				t.Fatalf("error message is not valid UTF-8: %q", err)
			}
			return
		}
		if lines := strings.Count(input, "\n") + 1; len(users) > lines {
			t.Fatalf("%d users from %d lines", len(users), lines)
		}
		for _, u := range users {
			if u == "" || strings.HasPrefix(u, "#") || strings.ContainsFunc(u, unicode.IsSpace) {
				t.Fatalf("accepted user ID %q", u)
			}
		}
		_, _, problems := tasks.NormalizeUsers(users)
		if len(problems) > 0 {
			t.Fatalf("parser accepted IDs that Normalize rejects: %v", problems)
		}
	})
}
