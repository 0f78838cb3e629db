package odin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Client calls the Odin API as one admin. It logs in on first use, refreshes its token
// before expiry and logs in again when Odin rejects the token. A Client is safe for
// concurrent use; create one per Odin and share it.
type Client struct {
	base     *url.URL
	baseURL  string
	username string
	password string

	httpClient *http.Client
	timeout    time.Duration
	userAgent  string
	limiter    Limiter
	now        func() time.Time
	observer   func(Call)

	auth authState
	// sipLimitUnsupported is set once GET /sip-password/generate has shown that it
	// ignores or rejects limit; later calls then request one value at a time.
	sipLimitUnsupported atomic.Bool
	// sipLimitSupported is set once GET /sip-password/generate returned a batch.
	sipLimitSupported atomic.Bool
}

// NewClient returns a client for the Odin API at baseURL, such as
// "https://odin.example.com/api/v2", logging in as username. baseURL must be an absolute
// http or https URL without user info, query or fragment. NewClient sends nothing; the
// first call (or Login) logs in.
func NewClient(baseURL, username, password string, opts ...Option) (*Client, error) {
	base, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if username == "" {
		return nil, errors.New("odin: the username is empty")
	}
	if password == "" {
		return nil, errors.New("odin: the password is empty")
	}

	o := options{timeout: DefaultTimeout, userAgent: DefaultUserAgent, now: time.Now}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.httpClient == nil {
		o.httpClient = defaultHTTPClient()
	}

	c := &Client{
		base:       base,
		baseURL:    base.String(),
		username:   username,
		password:   password,
		httpClient: o.httpClient,
		timeout:    o.timeout,
		userAgent:  o.userAgent,
		limiter:    o.limiter,
		now:        o.now,
		observer:   o.observer,
	}
	c.auth.slot = make(chan struct{}, 1)
	return c, nil
}

// parseBaseURL validates and normalises the base URL. Its errors never quote the URL,
// which might contain a password.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("odin: invalid base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New(`odin: invalid base URL: the scheme must be "http" or "https", as in https://odin.example.com/api/v2`)
	case u.Host == "":
		return nil, errors.New("odin: invalid base URL: the host is missing, as in https://odin.example.com/api/v2")
	case u.User != nil:
		return nil, errors.New("odin: invalid base URL: it must not contain user info; pass the username and password separately")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("odin: invalid base URL: it must not contain a query or fragment")
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// BaseURL returns the normalised base URL, without user info and trailing slash, safe to
// log.
func (c *Client) BaseURL() string { return c.baseURL }

// request is one API call before it is sent.
type request struct {
	method string
	path   string // below the base URL, such as "/users/passwords"
	query  url.Values
	body   any // encoded as JSON; nil sends no body
	// secrets are values the request carries (passwords, passcodes) that must not appear
	// in an error even when Odin echoes them.
	secrets []string
}

func (r *request) endpoint() string { return r.method + " " + r.path }

// response is a complete HTTP response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) ok() bool { return r.status >= 200 && r.status < 300 }

// call sends an authenticated request and decodes a 2xx JSON body into out (when out is
// not nil). On 401 or 403 it logs in again, once for all callers that saw the same token
// rejected, and resends the request once.
func (c *Client) call(ctx context.Context, r *request, out any) error {
	body, err := encodeBody(r)
	if err != nil {
		return err
	}

	token, seen, err := c.token(ctx)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, r, body, token, true)
	if err != nil {
		return err
	}

	if resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden {
		if err := c.renew(ctx, seen, renewByLogin); err != nil {
			return err
		}
		if token, _, err = c.token(ctx); err != nil {
			return err
		}
		if resp, err = c.send(ctx, r, body, token, true); err != nil {
			return err
		}
	}

	if !resp.ok() {
		return c.responseError(r, resp, token)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return newDecodeError(r.method, r.path, err)
	}
	return nil
}

func encodeBody(r *request) ([]byte, error) {
	if r.body == nil {
		return nil, nil
	}
	body, err := json.Marshal(r.body)
	if err != nil {
		return nil, fmt.Errorf("odin: encoding the %s request body: %w", r.endpoint(), err)
	}
	return body, nil
}

// BeforeSendFunc decides, after the limiter's wait for a request and just before the
// request goes out, whether it still should. waited is how long the wait took. A non-nil
// error stops the request; the client returns it wrapped and sends nothing.
type BeforeSendFunc func(ctx context.Context, waited time.Duration) error

type beforeSendKey struct{}

// BeforeSend returns a context under which every API request of the client (not the
// login or token refresh) calls check after its limiter wait. A caller that may wait a
// long time for a slot uses it to look again at what changed meanwhile, such as a job
// cancelled while its tasks waited.
func BeforeSend(ctx context.Context, check BeforeSendFunc) context.Context {
	return context.WithValue(ctx, beforeSendKey{}, check)
}

// responseError maps a non-2xx response to an error. It removes the request's secrets,
// the admin password and the token sent with the request (token may be "") from the
// message.
func (c *Client) responseError(r *request, resp *response, token string) error {
	secrets := append([]string{c.password, token}, r.secrets...)
	return newAPIError(r.method, r.path, resp.status, resp.header, resp.body, c.now(), secrets)
}

// send waits for the limiter, then sends one HTTP request with the per-request timeout
// and reads the whole response. token may be empty (login). With checked, the check that
// BeforeSend put in ctx runs between the wait and the request. Login and token refresh
// pass false, because they serve every caller. send reports the exchange to the observer.
// A non-2xx status is not an error here.
func (c *Client) send(ctx context.Context, r *request, body []byte, token string, checked bool) (*response, error) {
	var waited time.Duration
	if c.limiter != nil {
		start := time.Now()
		if err := c.limiter.Wait(ctx); err != nil {
			return nil, fmt.Errorf("Odin %s: waiting for the rate limiter: %w", r.endpoint(), err)
		}
		waited = time.Since(start)
	}
	if check, ok := ctx.Value(beforeSendKey{}).(BeforeSendFunc); ok && checked {
		if err := check(ctx, waited); err != nil {
			return nil, fmt.Errorf("Odin %s: not sent: %w", r.endpoint(), err)
		}
	}

	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newHTTPRequest(reqCtx, r, body, token)
	if err != nil {
		return nil, err
	}

	start := time.Now()
	httpResp, err := c.httpClient.Do(req)
	if err != nil {
		err = c.transportError(ctx, reqCtx, r, err)
		c.observe(Call{Endpoint: r.endpoint(), Duration: time.Since(start), Err: err})
		return nil, err
	}
	resp := &response{status: httpResp.StatusCode, header: httpResp.Header}
	resp.body, err = readBody(httpResp)
	if err != nil {
		err = c.transportError(ctx, reqCtx, r, err)
	}
	c.observe(Call{Endpoint: r.endpoint(), Status: resp.status, Duration: time.Since(start), Err: err})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (c *Client) newHTTPRequest(ctx context.Context, r *request, body []byte, token string) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + r.path
	if c.base.RawPath != "" {
		u.RawPath = c.base.RawPath + r.path
	}
	u.RawQuery = r.query.Encode()

	var bodyReader io.Reader
	if body != nil {
		bodyReader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), bodyReader)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // its text would contain the URL with the query
		}
		return nil, fmt.Errorf("odin: building the %s request: %w", r.endpoint(), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// readBody reads a response body under the size caps and closes it. A non-2xx body is
// read up to maxErrorBodyBytes and its read errors are ignored, because the status alone
// is enough to report it.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrainBytes)
		return body, nil
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBodyBytes {
		return nil, fmt.Errorf("response body larger than %d MiB", maxBodyBytes>>20)
	}
	return body, nil
}

// transportError wraps a failed exchange with the method and path only, dropping the
// *url.Error around it because its text contains the full URL with the query. It
// separates the client's own timeout from the end of the caller's context.
func (c *Client) transportError(parent, reqCtx context.Context, r *request, err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	reqErr := &requestError{method: r.method, path: r.path, err: err}
	switch {
	case parent.Err() != nil:
		reqErr.err = parent.Err()
		reqErr.callerDone = true
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
		reqErr.err = &timeoutError{after: c.timeout}
	}
	return reqErr
}

func (c *Client) observe(call Call) {
	if c.observer != nil {
		c.observer(call)
	}
}
