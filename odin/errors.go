package odin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Size limits for reading response bodies.
const (
	// maxErrorBodyBytes caps how much of a non-2xx body is read for the error message.
	maxErrorBodyBytes = 64 << 10
	// maxDrainBytes caps how much of the rest of a non-2xx body is discarded so that the
	// connection can be reused. After a longer body the transport closes the connection.
	maxDrainBytes = 1 << 20
	// maxBodyBytes caps a 2xx body. GET /users returns a whole group in one array, so
	// this must hold a group of a few hundred thousand users.
	maxBodyBytes = 256 << 20
	// maxExcerptRunes caps the excerpt of a body that is not Odin's JSON error shape.
	maxExcerptRunes = 200
	// maxMessageRunes caps a message built from Odin's JSON error fields.
	maxMessageRunes = 1000
)

// ErrPasswordChangeRequired is the cause of the *LoginError returned when the login gets
// 402 Payment Required. Odin sends 402 when the admin's own password has expired, and the
// API rejects it until someone changes it, for example in the Odin web UI.
var ErrPasswordChangeRequired = errors.New("the Odin admin password must be changed before the API accepts it")

// APIError is a non-2xx response from Odin, other than a failed login (see LoginError).
// Its fields never quote the request body or query string. The password or passcode the
// request carried, the admin password and the token are removed from Message even when
// Odin echoes them (see redact for short values).
type APIError struct {
	Method     string // HTTP method, such as "PUT"
	Path       string // endpoint path below the base URL, such as "/users/passwords"; no query
	StatusCode int
	// Message is Odin's `error` text followed by its `details` when the body has Odin's
	// JSON error shape. Otherwise it is a plain-text excerpt of at most 200 characters of
	// the body, with HTML tags removed, or "" for an empty body.
	Message string
	// RetryAfter is the delay from the Retry-After header (seconds or an HTTP date) of a
	// 429 or 503 response; 0 when the header is absent, invalid or in the past.
	RetryAfter time.Duration
}

// Error returns text such as
// `Odin PUT /users/passwords: 400 Bad Request: [Error 4410] Service is not assigned to this subscriber`.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Odin %s %s: %d", e.Method, e.Path, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" " + text)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// RateLimitError is a 429 Too Many Requests response. errors.As finds both the
// *RateLimitError and the *APIError inside it.
type RateLimitError struct{ *APIError }

// Unwrap returns the *APIError so that errors.As and RetryAfter find it.
func (e *RateLimitError) Unwrap() error { return e.APIError }

// LoginError is a rejected login: POST /auth/token returned a 4xx status other than 408
// and 429, such as 401 for bad admin credentials or 402 when the admin password must be
// changed. Retrying does not help until an operator fixes the credentials, so a job
// should pause instead of failing each user.
type LoginError struct {
	StatusCode int
	Message    string // Odin's message, cleaned as in APIError.Message
	// Err is ErrPasswordChangeRequired for 402 and the *APIError of the response otherwise.
	Err error

	response *APIError
}

// Error returns text such as `Odin login failed: 401 Unauthorized: Invalid credentials`.
func (e *LoginError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Odin login failed: %d", e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" " + text)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if errors.Is(e.Err, ErrPasswordChangeRequired) {
		b.WriteString(": " + ErrPasswordChangeRequired.Error())
	}
	if e.WrongURL() {
		b.WriteString(": " + wrongURLHint)
	}
	return b.String()
}

// wrongURLHint explains a login that found no login endpoint.
const wrongURLHint = "there is no login endpoint at this base URL; check that it is Odin's API root, like https://odin.example.com/api/v2"

// WrongURL reports whether the login failed because the base URL has no login endpoint
// (404 or 405), as when the URL lacks its /api/v2 part, rather than because Odin
// rejected the credentials.
func (e *LoginError) WrongURL() bool {
	return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusMethodNotAllowed
}

// Unwrap returns Err and the *APIError of the login response, so that both
// errors.Is(err, ErrPasswordChangeRequired) and errors.As(err, **APIError) work.
func (e *LoginError) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.response != nil && e.response != e.Err {
		errs = append(errs, e.response)
	}
	return errs
}

// CountError reports a generator that returned a different number of values than
// requested. It is transient: a new request usually returns the right number.
type CountError struct {
	Endpoint  string // such as "GET /password/generate"
	Requested int
	Got       int
}

func (e *CountError) Error() string {
	return fmt.Sprintf("Odin %s: requested %d values, got %d", e.Endpoint, e.Requested, e.Got)
}

// requestError is a request that got no complete response: a connection failure, a reset,
// a truncated body or the client's per-request timeout. Its text names the method and
// path only, never the URL, because url.Error includes the query string.
type requestError struct {
	method, path string
	err          error
	// callerDone is set when the caller's context ended, so err is its context error.
	callerDone bool
}

func (e *requestError) Error() string {
	return fmt.Sprintf("Odin %s %s: %v", e.method, e.path, e.err)
}

func (e *requestError) Unwrap() error { return e.err }

// timeoutError is the client's own per-request timeout. It replaces
// context.DeadlineExceeded so that callers can tell it from the end of their own context.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string   { return fmt.Sprintf("no response within %s", e.after) }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// decodeError is a 2xx response whose body is not the expected JSON. Its text never
// quotes the body, because success bodies carry generated secrets and encoding/json
// quotes numbers it cannot store.
type decodeError struct {
	method, path string
	reason       string
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("Odin %s %s: unexpected response: %s", e.method, e.path, e.reason)
}

// newDecodeError describes a JSON decoding failure without quoting any value.
func newDecodeError(method, path string, err error) *decodeError {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	reason := "invalid JSON"
	switch {
	case errors.As(err, &syntaxErr):
		reason = fmt.Sprintf("invalid JSON at byte offset %d", syntaxErr.Offset)
	case errors.As(err, &typeErr) && typeErr.Field != "":
		reason = fmt.Sprintf("field %q has the wrong JSON type", typeErr.Field)
	case errors.As(err, &typeErr):
		reason = "the body has the wrong JSON type"
	}
	return &decodeError{method: method, path: path, reason: reason}
}

// newAPIError turns a non-2xx response into an *APIError, or a *RateLimitError for 429.
// Every non-2xx response goes through it. The body must already be read under
// maxErrorBodyBytes; it may be empty, HTML or anything else. Each value in secrets is
// removed from the message.
func newAPIError(method, path string, status int, header http.Header, body []byte, now time.Time, secrets []string) error {
	apiErr := &APIError{
		Method:     method,
		Path:       path,
		StatusCode: status,
		Message:    errorMessage(body, withJSONForms(secrets)),
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		apiErr.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
	}
	if status == http.StatusTooManyRequests {
		return &RateLimitError{APIError: apiErr}
	}
	return apiErr
}

// errorMessage extracts Odin's message from an error body: `error` (or `message`) plus
// `details` from the usual JSON shape {"error": "...", "status": N, "details": ...}, else
// a plain-text excerpt of the body. Each secret is replaced with "[redacted]" before the
// text is cut to length, so a cut cannot leave part of a secret behind, and again after
// white space is collapsed.
func errorMessage(body []byte, secrets []string) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	clean := func(s string, max int) string {
		return truncateRunes(redact(collapseSpace(redact(s, secrets)), secrets), max)
	}
	if body[0] == '{' {
		var fields map[string]json.RawMessage
		if json.Unmarshal(body, &fields) == nil {
			if msg := jsonErrorMessage(fields); msg != "" {
				return clean(msg, maxMessageRunes)
			}
		}
	}
	if body[0] == '"' {
		var s string
		if json.Unmarshal(body, &s) == nil {
			return clean(s, maxExcerptRunes)
		}
	}
	return clean(stripTags(redact(string(body), secrets)), maxExcerptRunes)
}

// withJSONForms returns secrets and, for each secret that JSON writes differently (with
// quotes, backslashes, or <, > and & escaped), its escaped form too, since a raw JSON
// body may echo a secret in that form.
func withJSONForms(secrets []string) []string {
	all := secrets
	for _, s := range secrets {
		if s == "" {
			continue
		}
		b, err := json.Marshal(s)
		if err != nil {
			continue
		}
		if escaped := string(b[1 : len(b)-1]); escaped != s {
			all = append(all, escaped)
		}
	}
	return all
}

// jsonErrorMessage joins the message and details fields of a JSON error object.
func jsonErrorMessage(fields map[string]json.RawMessage) string {
	var msg string
	for _, key := range []string{"error", "message", "errorMessage", "summary"} {
		if msg = jsonText(fields[key]); msg != "" {
			break
		}
	}
	details := jsonText(fields["details"])
	switch {
	case msg == "":
		return details
	case details == "" || strings.Contains(msg, details):
		return msg
	default:
		return msg + ": " + details
	}
}

// jsonText renders a JSON value as message text: a string as is, an object with a
// message field as that message, a list as its items joined by "; ", and anything else
// as compact JSON. null and absent values give "".
func jsonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '{':
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) == nil {
			if msg := jsonText(obj["message"]); msg != "" {
				return msg
			}
		}
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			texts := make([]string, 0, len(items))
			for _, item := range items {
				if text := jsonText(item); text != "" {
					texts = append(texts, text)
				}
			}
			return strings.Join(texts, "; ")
		}
	}
	var compact bytes.Buffer
	if json.Compact(&compact, raw) == nil {
		return compact.String()
	}
	return string(raw)
}

// stripTags removes HTML tags and the content of script and style elements, so a proxy's
// error page reads as its text.
func stripTags(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		start := strings.IndexByte(s, '<')
		if start < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:start])
		b.WriteByte(' ')
		s = s[start:]
		end := strings.IndexByte(s, '>')
		if end < 0 {
			break
		}
		tag := strings.ToLower(s[:end+1])
		s = s[end+1:]
		for _, element := range []string{"script", "style"} {
			if strings.HasPrefix(tag, "<"+element) {
				if close := strings.Index(strings.ToLower(s), "</"+element); close >= 0 {
					s = s[close:]
				}
			}
		}
	}
	return b.String()
}

// collapseSpace replaces each run of white space and control characters with one space.
func collapseSpace(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
}

// truncateRunes cuts s to at most max runes, marking a cut with "...".
func truncateRunes(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	return strings.TrimSpace(string(runes[:max-3])) + "..."
}

// redact replaces each secret in s with "[redacted]". A secret of 8 or more characters is
// replaced wherever it occurs. A shorter one, such as a passcode, is replaced only where
// no letter or digit touches it, so that "[Error 4410]" stays readable when the passcode
// is "44".
func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret == "" || !strings.Contains(s, secret) {
			continue
		}
		if len(secret) >= 8 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
			continue
		}
		s = redactDelimited(s, secret)
	}
	return s
}

func redactDelimited(s, secret string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, secret)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[i+len(secret):])
		b.WriteString(s[:i])
		if isAlphanumeric(before) || isAlphanumeric(after) {
			b.WriteString(secret)
		} else {
			b.WriteString("[redacted]")
		}
		s = s[i+len(secret):]
	}
}

func isAlphanumeric(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// parseRetryAfter reads a Retry-After value as delay seconds or an HTTP date. It returns
// 0 for an absent or invalid value and for a date that is not in the future.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if seconds, err := strconv.ParseInt(value, 10, 64); err == nil {
		const maxSeconds = int64(365 * 24 * time.Hour / time.Second)
		if seconds <= 0 {
			return 0
		}
		return time.Duration(min(seconds, maxSeconds)) * time.Second
	}
	date, err := http.ParseTime(value)
	if err != nil {
		return 0
	}
	if delay := date.Sub(now); delay > 0 {
		return delay
	}
	return 0
}

// isCertificateError reports a TLS certificate that failed verification: a configuration
// problem that retrying cannot fix.
func isCertificateError(err error) bool {
	var verifyErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	return errors.As(err, &verifyErr) || errors.As(err, &unknownAuthority) ||
		errors.As(err, &hostnameErr) || errors.As(err, &invalidErr)
}
