package odin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// minRefreshMargin is how long before expiry a token is refreshed at the latest,
	// unless that is more than half its lifetime.
	minRefreshMargin = time.Minute
	// refreshRetryDelay is how long the client keeps using a still-valid token after a
	// failed proactive refresh and login before it tries again.
	refreshRetryDelay = 10 * time.Second
)

// authState is the client's session. Renewals (login or refresh) run one at a time:
// slot is a one-token semaphore that callers take with their context, so a caller
// waiting for another's login can still give up.
type authState struct {
	slot chan struct{}

	mu      sync.Mutex
	session session
	// failures counts renewals that failed for a reason other than the renewing caller's
	// context; lastErr is the error of the latest one. Callers that waited while a
	// renewal failed return its error instead of sending another login.
	failures uint64
	lastErr  error
	// retryAt delays the next proactive refresh after a failed one.
	retryAt time.Time
}

type session struct {
	token      string
	generation uint64    // incremented for every new token
	expiresAt  time.Time // zero when the token carries no usable exp
	refreshAt  time.Time // zero when the token carries no usable exp
}

// authSnapshot is the session state a caller observed when it took its token.
type authSnapshot struct {
	generation uint64
	failures   uint64
}

type renewMode int

const (
	renewByLogin   renewMode = iota // POST /auth/token
	renewByRefresh                  // PUT /auth/token, falling back to POST /auth/token
)

// Login logs in with POST /auth/token and keeps the token. Calls log in by themselves when
// needed, so Login is only useful to check the credentials early. It returns a
// *LoginError when Odin rejects the credentials (errors.Is(err,
// ErrPasswordChangeRequired) for 402) and other errors as the API calls do.
func (c *Client) Login(ctx context.Context) error {
	c.auth.mu.Lock()
	seen := authSnapshot{generation: c.auth.session.generation, failures: c.auth.failures}
	c.auth.mu.Unlock()
	return c.renew(ctx, seen, renewByLogin)
}

// currentToken returns the token without renewing it, or "" before the first login.
func (c *Client) currentToken() string {
	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	return c.auth.session.token
}

// token returns a token to send, logging in when there is none or it has expired and
// refreshing it when little of its lifetime remains. If a refresh (and the login after
// it) fails while the token is still valid, token returns the old token and tries again
// after refreshRetryDelay.
func (c *Client) token(ctx context.Context) (string, authSnapshot, error) {
	now := c.now()
	c.auth.mu.Lock()
	s := c.auth.session
	seen := authSnapshot{generation: s.generation, failures: c.auth.failures}
	retryAt := c.auth.retryAt
	c.auth.mu.Unlock()

	switch {
	case s.token == "" || (!s.expiresAt.IsZero() && !now.Before(s.expiresAt)):
		if err := c.renew(ctx, seen, renewByLogin); err != nil {
			return "", seen, err
		}
	case !s.refreshAt.IsZero() && !now.Before(s.refreshAt) && !now.Before(retryAt):
		if err := c.renew(ctx, seen, renewByRefresh); err != nil {
			if ctx.Err() != nil {
				return "", seen, err
			}
			return s.token, seen, nil
		}
	default:
		return s.token, seen, nil
	}

	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	seen = authSnapshot{generation: c.auth.session.generation, failures: c.auth.failures}
	return c.auth.session.token, seen, nil
}

// renew replaces the token that the caller saw. When another caller has already replaced
// it, renew returns nil, and when a renewal failed while this caller waited, renew
// returns that failure. So any number of callers holding the same rejected token cause
// one login.
func (c *Client) renew(ctx context.Context, seen authSnapshot, mode renewMode) error {
	select {
	case c.auth.slot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("odin: waiting for another call to log in: %w", ctx.Err())
	}
	defer func() { <-c.auth.slot }()

	c.auth.mu.Lock()
	current := c.auth.session
	failures, lastErr := c.auth.failures, c.auth.lastErr
	c.auth.mu.Unlock()
	if current.generation != seen.generation {
		return nil
	}
	if failures != seen.failures {
		return lastErr
	}

	if mode == renewByRefresh && current.token != "" {
		err := c.refresh(ctx, current.token)
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	err := c.login(ctx)
	if err == nil || ctx.Err() != nil {
		return err
	}

	c.auth.mu.Lock()
	c.auth.failures++
	c.auth.lastErr = err
	if mode == renewByRefresh {
		c.auth.retryAt = c.now().Add(refreshRetryDelay)
	} else {
		// The token was rejected or has expired: drop it, so the next call logs in
		// first instead of sending one more request with a token Odin refuses.
		c.auth.session.token = ""
	}
	c.auth.mu.Unlock()
	return err
}

// login sends POST /auth/token and stores the new token.
func (c *Client) login(ctx context.Context) error {
	r := &request{
		method:  http.MethodPost,
		path:    "/auth/token",
		body:    map[string]string{"username": c.username, "password": c.password},
		secrets: []string{c.password},
	}
	body, err := encodeBody(r)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, r, body, "", false)
	if err != nil {
		return err
	}
	if !resp.ok() {
		return c.loginError(r, resp)
	}
	return c.storeSession(r, resp)
}

// loginError maps a failed login. A 4xx other than 408 and 429 means that Odin rejected
// the credentials (*LoginError). Any other status gives an ordinary *APIError, which is
// often transient.
func (c *Client) loginError(r *request, resp *response) error {
	err := c.responseError(r, resp, "")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || resp.status < 400 || resp.status >= 500 ||
		resp.status == http.StatusRequestTimeout || resp.status == http.StatusTooManyRequests {
		return err
	}
	loginErr := &LoginError{StatusCode: resp.status, Message: apiErr.Message, Err: apiErr, response: apiErr}
	if resp.status == http.StatusPaymentRequired {
		loginErr.Err = ErrPasswordChangeRequired
	}
	return loginErr
}

// refresh sends PUT /auth/token with the current token and stores the new one. Any
// failure makes the caller log in instead.
func (c *Client) refresh(ctx context.Context, token string) error {
	r := &request{method: http.MethodPut, path: "/auth/token"}
	resp, err := c.send(ctx, r, nil, token, false)
	if err != nil {
		return err
	}
	if !resp.ok() {
		return c.responseError(r, resp, token)
	}
	return c.storeSession(r, resp)
}

// storeSession reads the token from a session response and makes it current. It plans a
// refresh when a quarter of the lifetime remains, or one minute if that is longer, but no
// sooner than half the lifetime, so short-lived tokens are not refreshed on every call.
func (c *Client) storeSession(r *request, resp *response) error {
	var sessionBody struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.body, &sessionBody); err != nil {
		return newDecodeError(r.method, r.path, err)
	}
	if sessionBody.Token == "" {
		return &decodeError{method: r.method, path: r.path, reason: "the session has no token"}
	}

	now := c.now()
	next := session{token: sessionBody.Token}
	// A token whose exp has passed by this client's clock (clock skew) is used without
	// proactive refresh, so that the client does not log in before every call.
	if expiresAt, ok := tokenExpiry(sessionBody.Token); ok && expiresAt.After(now) {
		lifetime := expiresAt.Sub(now)
		margin := min(max(lifetime/4, minRefreshMargin), lifetime/2)
		next.expiresAt = expiresAt
		next.refreshAt = expiresAt.Add(-margin)
	}

	c.auth.mu.Lock()
	defer c.auth.mu.Unlock()
	next.generation = c.auth.session.generation + 1
	c.auth.session = next
	c.auth.retryAt = time.Time{}
	return nil
}

// tokenExpiry reads the exp claim of a JWT without checking its signature, which only
// Odin can do. It returns false for a token that is not a JWT or has no numeric exp.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 {
		return time.Time{}, false
	}
	seconds, fraction := math.Modf(exp)
	return time.Unix(int64(seconds), int64(fraction*1e9)), true
}

// String hides the credentials if a Client is ever formatted with %v.
func (c *Client) String() string {
	return fmt.Sprintf("odin.Client{%s}", c.baseURL)
}
