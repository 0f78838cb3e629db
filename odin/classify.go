package odin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// The predicates below sort an error returned by the Client into the classes a caller
// acts on. IsAuthFailure, IsTransient and IsPermanent are mutually exclusive;
// IsRuleRejection is a subset of IsPermanent. An error in none of them, such as the end of
// the caller's context, an invalid argument, an unexpected response body or a limiter
// error, is left to the caller's own policy.

// RetryAfter returns the Retry-After delay of the first *APIError in err's chain, and
// false when there is none or the response carried no usable Retry-After.
func RetryAfter(err error) (time.Duration, bool) {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
		return apiErr.RetryAfter, true
	}
	return 0, false
}

// IsAuthFailure reports whether err contains a *LoginError: Odin rejected the admin
// credentials (or demands a password change), so every further call fails the same way
// until an operator acts.
func IsAuthFailure(err error) bool {
	var loginErr *LoginError
	return errors.As(err, &loginErr)
}

// IsTransient reports whether retrying the same request later may succeed: connection
// failures and resets, truncated bodies, the client's per-request timeout, 408, 429, any
// 5xx, and a *CountError. It returns false when the caller's own context ended (cancelled
// or past its deadline), for TLS certificate errors and for login failures.
func IsTransient(err error) bool {
	if err == nil || IsAuthFailure(err) {
		return false
	}

	var countErr *CountError
	if errors.As(err, &countErr) {
		return true
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode == http.StatusRequestTimeout ||
			apiErr.StatusCode == http.StatusTooManyRequests ||
			apiErr.StatusCode >= 500
	}

	var reqErr *requestError
	if errors.As(err, &reqErr) {
		return !reqErr.callerDone && !isCertificateError(reqErr.err)
	}

	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// Errors that did not pass through the client's transport wrapping.
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IsPermanent reports whether Odin rejected the request with a 4xx status that a retry of
// the same request cannot change: 400, 404 (unknown user), 409, 422, and also a 401 or 403
// that persisted after a fresh login. It excludes 408 and 429 (transient) and login
// failures (IsAuthFailure), and is never true for the end of the caller's context. Rule
// rejections (IsRuleRejection) are permanent for the value sent, but a new value may pass.
func IsPermanent(err error) bool {
	if err == nil || IsAuthFailure(err) {
		return false
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	status := apiErr.StatusCode
	return status >= 400 && status < 500 &&
		status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// IsMalformed reports whether err is a 2xx response whose body is not the documented
// JSON.
func IsMalformed(err error) bool {
	var decodeErr *decodeError
	return errors.As(err, &decodeErr)
}

// IsRuleRejection reports whether err is a permanent rejection of the password or passcode
// value itself by the user's rules, which a freshly generated value may pass. Such rules
// cover history, length, character classes, repeated or sequential digits, and the user
// ID, user number or authentication name inside the value. It is false for "service not
// assigned", "user not found" and authorisation errors, where a new value cannot help.
//
// NOTE: Odin passes BroadWorks error texts through, and no source lists the texts of
// rule rejections, so this matches keywords of BroadWorks rule settings and of common
// BroadWorks messages. A rejection worded differently is treated as plain permanent.
func IsRuleRejection(err error) bool {
	if !IsPermanent(err) {
		return false
	}
	var apiErr *APIError
	errors.As(err, &apiErr)
	switch apiErr.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		return false
	}
	message := strings.ToLower(apiErr.Message)
	return credentialWord.MatchString(message) &&
		ruleWord.MatchString(message) &&
		!notRuleWord.MatchString(message)
}

var (
	// credentialWord finds the credential a message is about.
	credentialWord = regexp.MustCompile(`\b(passwords?|passcodes?|pin|pins|passwd)\b`)
	// ruleWord finds wording of the BroadWorks password and passcode rules.
	ruleWord = regexp.MustCompile(`rule|polic|histor|previous|\bold\b|used before|reuse|recent|` +
		`same as|length|too short|too long|at least|at most|minimum|maximum|\bmin\b|\bmax\b|` +
		`character|digit|numeric|alphanumeric|upper ?case|lower ?case|letter|special|` +
		`repeat|sequen|contiguous|consecutive|ascending|descending|reverse|` +
		`user ?id|user ?name|authentication name|user number|phone number|extension|` +
		`contain|must|cannot|can not|not allowed|not permitted|invalid|complex|weak|conform|` +
		`requirement|does not meet|doesn't meet`)
	// notRuleWord finds rejections that a new value cannot fix.
	notRuleWord = regexp.MustCompile(`not assigned|not found|does not exist|doesn't exist|` +
		`no such user|unknown user|not authori[sz]ed|permission|access denied|` +
		`license|licence|locked out|session`)
)
