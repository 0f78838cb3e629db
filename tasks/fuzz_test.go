package tasks

// Fuzz tests of payload decoding and validation. CI runs only their seed corpus, as unit
// tests; to fuzz, run one target at a time from the module root, for example:
//
//	go test ./tasks -run '^$' -fuzz '^FuzzBulkResetPayload$' -fuzztime 5m
//	go test ./tasks -run '^$' -fuzz '^FuzzUserResetPayload$' -fuzztime 5m
//	go test ./tasks -run '^$' -fuzz '^FuzzNormalizeUsers$' -fuzztime 5m
//
// New failures are saved under tasks/testdata/fuzz/ and then run as seeds too.

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/odinreset/odinreset/results"
)

// BadPayload is a raw task payload that the worker must archive at once, with an error
// that names the bad value and the fix. The table is exported for payload_test.go, which
// enqueues each payload on a running worker; the fuzz tests use the payloads as seeds.
type BadPayload struct {
	Name string
	// Type is the task type the payload is enqueued as.
	Type    string
	Payload []byte
	// Want are substrings of the archived task's last error.
	Want []string
}

// bulkPayload returns a valid reset:bulk payload changed by edit, as JSON.
func bulkPayload(edit func(m map[string]any)) []byte {
	m := map[string]any{
		"jobId": "bad-input", "type": "web", "serviceProviderId": "sp1", "groupId": "grp1",
		"users": []string{"user0001@example.com"},
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// userPayload returns a valid reset:user payload changed by edit, as JSON.
func userPayload(edit func(m map[string]any)) []byte {
	m := map[string]any{
		"jobId": "no-such-job", "userId": "user0001@example.com", "type": "web",
		"serviceProviderId": "sp1", "groupId": "grp1",
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func set(key string, value any) func(map[string]any) {
	return func(m map[string]any) { m[key] = value }
}

func unset(key string) func(map[string]any) {
	return func(m map[string]any) { delete(m, key) }
}

// tenMB is a 10 MiB identifier: the errors must quote a short prefix of it.
var tenMB = strings.Repeat("a", 10<<20)

// BadPayloads is the table of bad raw payloads.
var BadPayloads = []BadPayload{
	{Name: "malformed JSON", Type: TypeBulkReset, Payload: []byte(`{"jobId": "x",`),
		Want: []string{"invalid payload", "unexpected end of JSON input", "enqueue"}},
	{Name: "empty payload", Type: TypeBulkReset, Payload: nil,
		Want: []string{"empty payload", "enqueue"}},
	{Name: "JSON array", Type: TypeBulkReset, Payload: []byte(`["user0001@example.com"]`),
		Want: []string{"invalid payload", "cannot unmarshal array", "enqueue"}},
	{Name: "JSON string", Type: TypeBulkReset, Payload: []byte(`"reset everyone"`),
		Want: []string{"invalid payload", "cannot unmarshal string"}},
	{Name: "JSON null", Type: TypeBulkReset, Payload: []byte(`null`),
		Want: []string{`invalid job ID ""`, "invalid credential type", "missing service provider ID"}},
	{Name: "unknown field", Type: TypeBulkReset, Payload: bulkPayload(set("colour", "red")),
		Want: []string{`unknown field "colour"`, "enqueue"}},
	{Name: "users not a list", Type: TypeBulkReset, Payload: bulkPayload(set("users", "user0001@example.com")),
		Want: []string{"users", "cannot unmarshal string"}},
	{Name: "TTL as a string", Type: TypeBulkReset, Payload: bulkPayload(set("resultTtlSeconds", "3600")),
		Want: []string{"resultTtlSeconds", "cannot unmarshal string"}},
	{Name: "data after the object", Type: TypeBulkReset, Payload: append(bulkPayload(set("jobId", "a")), bulkPayload(set("jobId", "b"))...),
		Want: []string{"data after the JSON object"}},
	{Name: "unknown credential type", Type: TypeBulkReset, Payload: bulkPayload(set("type", "email")),
		Want: []string{`invalid credential type "email"`, "use one of sip, voicemail (or vm), web"}},
	{Name: "empty user ID", Type: TypeBulkReset, Payload: bulkPayload(set("users", []string{""})),
		Want: []string{"user 1 of 1", "empty user ID", "remove the blank entry"}},
	{Name: "whitespace user ID", Type: TypeBulkReset, Payload: bulkPayload(set("users", []string{"user0001@example.com", " \t "})),
		Want: []string{"user 2 of 2", "empty user ID", "remove the blank entry"}},
	{Name: "missing service provider", Type: TypeBulkReset, Payload: bulkPayload(unset("serviceProviderId")),
		Want: []string{"missing service provider ID", "--service-provider"}},
	{Name: "missing group", Type: TypeBulkReset, Payload: bulkPayload(set("groupId", "  ")),
		Want: []string{"missing group ID", "--group"}},
	{Name: "service provider too long", Type: TypeBulkReset, Payload: bulkPayload(set("serviceProviderId", strings.Repeat("s", 81))),
		Want: []string{"service provider ID", "longer than 80 characters", "--service-provider"}},
	{Name: "job ID with braces", Type: TypeBulkReset, Payload: bulkPayload(set("jobId", "job{1}")),
		Want: []string{`invalid job ID "job{1}"`, "letters, digits"}},
	{Name: "job ID with slash", Type: TypeBulkReset, Payload: bulkPayload(set("jobId", "nightly/2024")),
		Want: []string{`invalid job ID "nightly/2024"`, "letters, digits"}},
	{Name: "empty job ID", Type: TypeBulkReset, Payload: bulkPayload(set("jobId", "")),
		Want: []string{`invalid job ID ""`, "letters, digits"}},
	{Name: "10 MB job ID", Type: TypeBulkReset, Payload: bulkPayload(set("jobId", tenMB)),
		Want: []string{`invalid job ID "aaaaaaaa`, "(10485760 bytes)", "letters, digits"}},
	{Name: "TTL of ten years", Type: TypeBulkReset, Payload: bulkPayload(set("resultTtlSeconds", 10*365*24*3600)),
		Want: []string{"invalid result TTL 315360000s", "use a value from 1m0s to 2160h0m0s"}},
	{Name: "negative TTL", Type: TypeBulkReset, Payload: bulkPayload(set("resultTtlSeconds", -5)),
		Want: []string{"invalid result TTL -5s", "use a value from"}},
	{Name: "TTL of one second", Type: TypeBulkReset, Payload: bulkPayload(set("resultTtlSeconds", 1)),
		Want: []string{"invalid result TTL 1s", "use a value from"}},
	// 2^55 s + 1 h overflows time.Duration to exactly one hour.
	{Name: "TTL overflowing to one hour", Type: TypeBulkReset, Payload: bulkPayload(set("resultTtlSeconds", int64(1)<<55+3600)),
		Want: []string{"invalid result TTL 36028797018967568s", "use a value from"}},
	{Name: "10 MB user ID", Type: TypeBulkReset, Payload: bulkPayload(set("users", []string{tenMB})),
		Want: []string{`user ID "aaaaaaaa`, "is 10485760 characters, BroadWorks allows at most 161"}},
	{Name: "invalid UTF-8", Type: TypeBulkReset, Payload: []byte("{\"jobId\":\"utf8\",\"type\":\"web\",\"serviceProviderId\":\"sp1\",\"groupId\":\"grp1\",\"users\":[\"caf\xe9@example.com\"]}"),
		Want: []string{"not valid UTF-8", "byte offset 85", "encode the payload as UTF-8"}},
	{Name: "escaped lone surrogate", Type: TypeBulkReset, Payload: []byte(`{"jobId":"surrogate","type":"web","serviceProviderId":"sp1","groupId":"grp1","users":["bad\ud800@example.com"]}`),
		Want: []string{"user 1 of 1", "U+FFFD", "UTF-8"}},
	{Name: "control character", Type: TypeBulkReset, Payload: bulkPayload(set("users", []string{"user0001@example.com\nuser0002@example.com"})),
		Want: []string{"contains a control character", "remove it"}},
	{Name: "users and all users", Type: TypeBulkReset, Payload: bulkPayload(set("allUsers", true)),
		Want: []string{"give users, or all users, not both"}},
	{Name: "no users", Type: TypeBulkReset, Payload: bulkPayload(unset("users")),
		Want: []string{"no users to reset", "give at least one user ID"}},
	{Name: "resume with users", Type: TypeBulkReset, Payload: bulkPayload(set("resume", true)),
		Want: []string{"a resumed job takes its users from the record", "give no users"}},
	{Name: "unknown priority", Type: TypeBulkReset, Payload: bulkPayload(set("priority", "urgent")),
		Want: []string{`invalid priority "urgent"`, "use high, default or low"}},
	{Name: "callback not HTTP", Type: TypeBulkReset, Payload: bulkPayload(set("callbackUrl", "ftp://files.example.com/done")),
		Want: []string{`invalid callback URL "ftp://files.example.com/done"`, "http:// or https://"}},
	{Name: "device step on web job", Type: TypeBulkReset, Payload: bulkPayload(set("devices", "rebuild")),
		Want: []string{`device step "rebuild" applies to SIP jobs only`, "drop --rebuild-devices/--reset-devices"}},
	{Name: "unknown device step", Type: TypeBulkReset, Payload: bulkPayload(set("devices", "explode")),
		Want: []string{`invalid device step "explode"`, "use rebuild or reset"}},

	{Name: "user task malformed JSON", Type: TypeUserReset, Payload: []byte(`{"jobId":`),
		Want: []string{"invalid payload", "unexpected end of JSON input"}},
	{Name: "user task unknown field", Type: TypeUserReset, Payload: userPayload(set("newPassword", "hunter2-not-here")),
		Want: []string{`unknown field "newPassword"`}},
	{Name: "user task unknown type", Type: TypeUserReset, Payload: userPayload(set("type", "fax")),
		Want: []string{`invalid credential type "fax"`, "use one of"}},
	{Name: "user task empty user ID", Type: TypeUserReset, Payload: userPayload(set("userId", "")),
		Want: []string{"empty user ID"}},
	{Name: "user task 10 MB user ID", Type: TypeUserReset, Payload: userPayload(set("userId", tenMB)),
		Want: []string{`user ID "aaaaaaaa`, "BroadWorks allows at most 161"}},
	{Name: "user task job ID with slash", Type: TypeUserReset, Payload: userPayload(set("jobId", "a/b")),
		Want: []string{`invalid job ID "a/b"`}},
	{Name: "user task unknown job", Type: TypeUserReset, Payload: userPayload(func(map[string]any) {}),
		Want: []string{"no record of job no-such-job", "nothing was sent to Odin"}},
	{Name: "completion of unknown job", Type: TypeComplete, Payload: []byte(`{"jobId":"no-such-job"}`),
		Want: []string{"job no-such-job", "not found"}},
	{Name: "completion with bad job ID", Type: TypeComplete, Payload: []byte(`{"jobId":"a{b}"}`),
		Want: []string{`invalid job ID "a{b}"`}},
	{Name: "unknown task type", Type: "reset:everything", Payload: bulkPayload(func(map[string]any) {}),
		Want: []string{`task type "reset:everything"`, "delete the task"}},
}

// maxProblemBytes bounds one problem in a validation error, so that a huge input cannot
// make a huge task error or log line. A problem quotes at most 64 bytes of a value.
const maxProblemBytes = 512

func FuzzBulkResetPayload(f *testing.F) {
	for _, bad := range BadPayloads {
		if bad.Type == TypeBulkReset && len(bad.Payload) < 1<<16 {
			f.Add(bad.Payload)
		}
	}
	f.Add(bulkPayload(func(map[string]any) {}))
	f.Add(bulkPayload(set("users", []string{" b@example.com", "a@example.com", "b@example.com "})))
	f.Add(bulkPayload(func(m map[string]any) { delete(m, "users"); m["allUsers"] = true; m["type"] = " VM " }))
	f.Add(bulkPayload(func(m map[string]any) { m["type"] = "sip"; m["devices"] = "reset"; m["priority"] = "HIGH" }))
	f.Add(bulkPayload(func(m map[string]any) { m["resultTtlSeconds"] = 60; m["callbackUrl"] = "https://hooks.example.com/x" }))

	f.Fuzz(func(t *testing.T, data []byte) {
		var p BulkResetPayload
		if err := decodeStrict(data, &p); err != nil {
			checkMessage(t, err.Error(), 1024)
			return
		}
		out, duplicates, err := p.Normalize()
		if err != nil {
			verr, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("Normalize error is %T, want *ValidationError", err)
			}
			for _, problem := range verr.Problems {
				checkMessage(t, problem, maxProblemBytes)
			}
			return
		}

		checkNormalized(t, out)
		again, dups, err := out.Normalize()
		if err != nil || len(dups) != 0 || !reflect.DeepEqual(again, out) {
			t.Fatalf("Normalize is not idempotent: error %v, duplicates %q, %+v became %+v", err, dups, out, again)
		}
		if len(out.Users)+len(duplicates) != len(p.Users) {
			t.Errorf("%d users and %d duplicates from %d inputs", len(out.Users), len(duplicates), len(p.Users))
		}

		task, err := NewBulkResetTask(out)
		if err != nil {
			t.Fatalf("NewBulkResetTask rejects a normalized payload: %v", err)
		}
		var decoded BulkResetPayload
		if err := decodeStrict(task.Payload(), &decoded); err != nil || !reflect.DeepEqual(decoded, out) {
			t.Fatalf("the task's payload does not decode to the normalized payload: error %v\n got %+v\nwant %+v", err, decoded, out)
		}
	})
}

// checkNormalized checks what every payload that Normalize accepts must satisfy.
func checkNormalized(t *testing.T, p BulkResetPayload) {
	t.Helper()
	if err := results.ValidateJobID(p.JobID); err != nil {
		t.Errorf("accepted job ID: %v", err)
	}
	if _, err := results.ParseCredentialType(string(p.Type)); err != nil || string(p.Type) != strings.ToLower(string(p.Type)) {
		t.Errorf("accepted type %q is not canonical", p.Type)
	}
	if _, err := QueueFor(p.Priority); err != nil || p.Priority == "" {
		t.Errorf("accepted priority %q", p.Priority)
	}
	if p.ResultTTLSeconds != 0 {
		if p.ResultTTLSeconds < int64(results.MinTTL/time.Second) || p.ResultTTLSeconds > int64(results.MaxTTL/time.Second) {
			t.Errorf("accepted result TTL %ds outside %s to %s", p.ResultTTLSeconds, results.MinTTL, results.MaxTTL)
		}
	}
	for _, id := range []string{p.ServiceProviderID, p.GroupID} {
		if id == "" || id != strings.TrimSpace(id) || !utf8.ValidString(id) || utf8.RuneCountInString(id) > MaxIDLength {
			t.Errorf("accepted ID %q", id)
		}
	}
	if !p.AllUsers && !p.Resume && len(p.Users) == 0 {
		t.Error("accepted a job without users")
	}
	checkUsers(t, p.Users)
}

func FuzzUserResetPayload(f *testing.F) {
	for _, bad := range BadPayloads {
		if bad.Type == TypeUserReset && len(bad.Payload) < 1<<16 {
			f.Add(bad.Payload)
		}
	}
	f.Add(userPayload(func(map[string]any) {}))
	f.Add(userPayload(set("type", "VoiceMail")))

	f.Fuzz(func(t *testing.T, data []byte) {
		var p UserResetPayload
		if err := decodeStrict(data, &p); err != nil {
			checkMessage(t, err.Error(), 1024)
			return
		}
		if err := p.validate(); err != nil {
			for _, problem := range err.(*ValidationError).Problems {
				checkMessage(t, problem, maxProblemBytes)
			}
			return
		}
		task, err := NewUserResetTask(p, QueueDefault)
		if err != nil {
			t.Fatalf("NewUserResetTask rejects a valid payload: %v", err)
		}
		var decoded UserResetPayload
		if err := decodeStrict(task.Payload(), &decoded); err != nil || decoded != p {
			t.Fatalf("the task's payload does not decode to its input: error %v, got %+v, want %+v", err, decoded, p)
		}
		checkUsers(t, []string{p.UserID})
	})
}

func FuzzNormalizeUsers(f *testing.F) {
	for _, bad := range BadPayloads {
		var p struct {
			Users []string `json:"users"`
		}
		if len(bad.Payload) < 1<<16 && json.Unmarshal(bad.Payload, &p) == nil && len(p.Users) > 0 {
			f.Add(strings.Join(p.Users, "\n"))
		}
	}
	f.Add("a@example.com\n a@example.com\nb@example.com\n\n")
	f.Add("Zoë Ünïcode@example.com\nwith space@example.com\n\x7f")
	f.Add(strings.Repeat("x", MaxUserIDLength) + "\n" + strings.Repeat("é", MaxUserIDLength+1))

	f.Fuzz(func(t *testing.T, list string) {
		in := strings.Split(list, "\n")
		users, duplicates, problems := NormalizeUsers(in)

		if len(problems) > 21 {
			t.Errorf("%d problems, want at most 20 and a closing line", len(problems))
		}
		for _, problem := range problems {
			checkMessage(t, problem, maxProblemBytes)
		}
		checkUsers(t, users)

		// users keeps the order of the input, trimmed, without the invalid IDs.
		next := 0
		for _, raw := range in {
			if next < len(users) && strings.TrimSpace(raw) == users[next] {
				next++
			}
		}
		if next != len(users) {
			t.Errorf("users %q are not a subsequence of the trimmed input", users)
		}
		if len(problems) == 0 && len(users)+len(duplicates) != len(in) {
			t.Errorf("%d users and %d duplicates from %d valid inputs", len(users), len(duplicates), len(in))
		}

		again, dups, probs := NormalizeUsers(users)
		if !reflect.DeepEqual(again, users) || len(dups) != 0 || len(probs) != 0 {
			t.Errorf("NormalizeUsers is not idempotent: %q became %q (duplicates %q, problems %q)", users, again, dups, probs)
		}
	})
}

// checkUsers checks the user IDs that validation accepted.
func checkUsers(t *testing.T, users []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, u := range users {
		switch {
		case u == "" || u != strings.TrimSpace(u):
			t.Errorf("accepted user ID %q is empty or untrimmed", u)
		case !utf8.ValidString(u) || strings.ContainsRune(u, utf8.RuneError):
			t.Errorf("accepted user ID %q is not valid UTF-8", u)
		case utf8.RuneCountInString(u) > MaxUserIDLength:
			t.Errorf("accepted user ID of %d characters", utf8.RuneCountInString(u))
		case strings.ContainsFunc(u, isControl):
			t.Errorf("accepted user ID %q with a control character", u)
		case seen[u]:
			t.Errorf("user ID %q accepted twice", u)
		}
		seen[u] = true
	}
}

// checkMessage fails the test when an error message is longer than limit bytes or not
// valid UTF-8, which would make it unreadable in logs and asynqmon.
func checkMessage(t *testing.T, msg string, limit int) {
	t.Helper()
	if len(msg) > limit {
		t.Errorf("message of %d bytes, want at most %d: %s", len(msg), limit, fmt.Sprintf("%.200q...", msg))
	}
	if !utf8.ValidString(msg) {
		t.Errorf("message is not valid UTF-8: %q", msg)
	}
}
