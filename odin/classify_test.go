package odin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func apiErr(status int, message string) *APIError {
	return &APIError{Method: "PUT", Path: "/users/passwords", StatusCode: status, Message: message}
}

func TestClassification(t *testing.T) {
	type classes struct {
		Transient, Permanent, Rule, Auth bool
	}
	transient := classes{Transient: true}
	permanent := classes{Permanent: true}
	rule := classes{Permanent: true, Rule: true}
	auth := classes{Auth: true}
	none := classes{}

	tests := []struct {
		name string
		err  error
		want classes
	}{
		{name: "nil", err: nil, want: none},

		// Transient answers.
		{name: "500", err: apiErr(500, "Internal Server Error"), want: transient},
		{name: "502 HTML", err: apiErr(502, "502 Bad Gateway nginx"), want: transient},
		{name: "503", err: apiErr(503, ""), want: transient},
		{name: "504", err: apiErr(504, ""), want: transient},
		{name: "408", err: apiErr(408, ""), want: transient},
		{name: "429", err: &RateLimitError{apiErr(429, "Too many requests")}, want: transient},
		{name: "wrapped 429", err: fmt.Errorf("resetting u1: %w", &RateLimitError{apiErr(429, "")}), want: transient},
		{name: "count mismatch", err: &CountError{Endpoint: "GET /password/generate", Requested: 5, Got: 3}, want: transient},

		// Transport failures.
		{name: "client timeout", err: &requestError{method: "GET", path: "/users", err: &timeoutError{after: time.Second}}, want: transient},
		{name: "connection reset", err: &requestError{method: "GET", path: "/users", err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}, want: transient},
		{name: "connection refused", err: &requestError{method: "GET", path: "/users", err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, want: transient},
		{name: "unexpected EOF", err: &requestError{method: "GET", path: "/users", err: io.ErrUnexpectedEOF}, want: transient},
		{name: "DNS failure", err: &requestError{method: "GET", path: "/users", err: &net.DNSError{Err: "no such host", Name: "odin.example.com", IsNotFound: true}}, want: transient},
		{name: "bare ECONNRESET", err: fmt.Errorf("read: %w", syscall.ECONNRESET), want: transient},
		{name: "bare unexpected EOF", err: fmt.Errorf("reading body: %w", io.ErrUnexpectedEOF), want: transient},
		{name: "certificate error", err: &requestError{method: "GET", path: "/users", err: x509.UnknownAuthorityError{}}, want: none},

		// The caller's context.
		{name: "caller cancelled", err: &requestError{method: "GET", path: "/users", err: context.Canceled, callerDone: true}, want: none},
		{name: "caller deadline", err: &requestError{method: "GET", path: "/users", err: context.DeadlineExceeded, callerDone: true}, want: none},
		{name: "bare context.Canceled", err: context.Canceled, want: none},
		{name: "bare context.DeadlineExceeded", err: fmt.Errorf("waiting: %w", context.DeadlineExceeded), want: none},

		// Permanent answers.
		{name: "404 user not found", err: apiErr(404, "[Error 4008] User not found: u1@example.com"), want: permanent},
		{name: "400 service not assigned", err: apiErr(400, "[Error 4410] Service is not assigned to this subscriber: Authentication"), want: permanent},
		{name: "400 voice messaging not assigned", err: apiErr(400, "[Error 4410] Service is not assigned to this subscriber: Voice Messaging User"), want: permanent},
		{name: "400 passcode service missing", err: apiErr(400, "Passcode cannot be set: service not assigned"), want: permanent},
		{name: "400 user of the passcode not found", err: apiErr(400, "Passcode update failed: user not found"), want: permanent},
		{name: "400 unrelated", err: apiErr(400, "limit must not exceed 1000"), want: permanent},
		{name: "400 empty message", err: apiErr(400, ""), want: permanent},
		{name: "401 after re-login", err: apiErr(401, "Invalid or expired token"), want: permanent},
		{name: "403 password word", err: apiErr(403, "Not authorised to change the password of this user"), want: permanent},
		{name: "409", err: apiErr(409, "Conflict"), want: permanent},

		// Rule rejections.
		{name: "history", err: apiErr(400, "[Error 4003] Password has been used before"), want: rule},
		{name: "history rules", err: apiErr(400, "New password must not match any of the last 5 passwords (password history)"), want: rule},
		{name: "length", err: apiErr(400, "[Error 4201] Password length must be at least 12 characters"), want: rule},
		{name: "user id", err: apiErr(400, "The password must not contain the user ID"), want: rule},
		{name: "authentication name", err: apiErr(400, "SIP password must not contain the authentication name"), want: rule},
		{name: "repeated digits", err: apiErr(400, "[Error 4xxx] Passcode contains more than 3 repeated digits"), want: rule},
		{name: "sequence", err: apiErr(400, "Passcode cannot contain ascending or descending sequences"), want: rule},
		{name: "user number", err: apiErr(400, "The passcode cannot be the user number or its reverse"), want: rule},
		{name: "old passcode", err: apiErr(400, "New passcode must be different from the old passcode"), want: rule},
		{name: "422 rules", err: apiErr(422, "password does not meet the password rules"), want: rule},
		{name: "invalid password", err: apiErr(400, "[Error 4962] Invalid password"), want: rule},
		{name: "wrapped rule", err: fmt.Errorf("reset u1: %w", apiErr(400, "Passcode too short")), want: rule},
		{name: "404 with password words", err: apiErr(404, "Password rules not found"), want: permanent},

		// Login failures.
		{name: "login 401", err: &LoginError{StatusCode: 401, Message: "Invalid credentials", Err: apiErr(401, "Invalid credentials")}, want: auth},
		{name: "login 402", err: &LoginError{StatusCode: 402, Err: ErrPasswordChangeRequired, response: apiErr(402, "")}, want: auth},
		{name: "wrapped login", err: fmt.Errorf("job paused: %w", &LoginError{StatusCode: 403}), want: auth},

		// Others.
		{name: "decode error", err: &decodeError{method: "GET", path: "/users", reason: "invalid JSON"}, want: none},
		{name: "plain error", err: errors.New("something else"), want: none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classes{
				Transient: IsTransient(tt.err),
				Permanent: IsPermanent(tt.err),
				Rule:      IsRuleRejection(tt.err),
				Auth:      IsAuthFailure(tt.err),
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("classes of %v mismatch (-want +got):\n%s", tt.err, diff)
			}
		})
	}
}

func TestRetryAfterFindsAPIError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{name: "rate limit", err: &RateLimitError{&APIError{StatusCode: 429, RetryAfter: 4 * time.Second}}, want: 4 * time.Second, wantOK: true},
		{name: "wrapped 503", err: fmt.Errorf("user u1: %w", &APIError{StatusCode: 503, RetryAfter: time.Minute}), want: time.Minute, wantOK: true},
		{name: "login 429 inside a join", err: errors.Join(errors.New("x"), &RateLimitError{&APIError{StatusCode: 429, RetryAfter: time.Second}}), want: time.Second, wantOK: true},
		{name: "no header", err: &RateLimitError{&APIError{StatusCode: 429}}},
		{name: "other error", err: io.EOF},
		{name: "nil", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RetryAfter(tt.err)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("RetryAfter = %v, %v, want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestErrorsAsFindsNestedTypes(t *testing.T) {
	rateErr := &RateLimitError{&APIError{Method: "GET", Path: "/users", StatusCode: 429}}
	var apiErr *APIError
	if !errors.As(rateErr, &apiErr) || apiErr != rateErr.APIError {
		t.Error("errors.As(*RateLimitError, **APIError) did not find the embedded *APIError")
	}

	response := &APIError{Method: "POST", Path: "/auth/token", StatusCode: 402}
	loginErr := error(&LoginError{StatusCode: 402, Err: ErrPasswordChangeRequired, response: response})
	if !errors.Is(loginErr, ErrPasswordChangeRequired) {
		t.Error("errors.Is(loginErr, ErrPasswordChangeRequired) = false")
	}
	apiErr = nil
	if !errors.As(loginErr, &apiErr) || apiErr != response {
		t.Error("errors.As(*LoginError, **APIError) did not find the login response")
	}
}
