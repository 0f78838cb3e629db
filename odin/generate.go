package odin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

const (
	pathPasswordGenerate    = "/password/generate"
	pathPasscodeGenerate    = "/passcode/generate"
	pathSIPPasswordGenerate = "/sip-password/generate"
)

// GeneratePasswords returns n new web (portal login) passwords that follow the group's
// password rules, from one GET /password/generate request with limit=n. It returns exactly
// n values or an error; a *CountError when Odin returned a different number.
func (c *Client) GeneratePasswords(ctx context.Context, serviceProviderID, groupID string, n int) ([]string, error) {
	return c.generateBatch(ctx, pathPasswordGenerate, serviceProviderID, groupID, n)
}

// GeneratePasscodes returns n new voice portal (voicemail) passcodes that follow the
// group's passcode rules, from one GET /passcode/generate request with limit=n. Passcodes
// are digit strings whose leading zeros are kept, also when Odin sends JSON numbers. It
// returns exactly n values or an error; a *CountError when Odin returned a different
// number.
func (c *Client) GeneratePasscodes(ctx context.Context, serviceProviderID, groupID string, n int) ([]string, error) {
	return c.generateBatch(ctx, pathPasscodeGenerate, serviceProviderID, groupID, n)
}

// GenerateSIPPasswords returns n new SIP authentication passwords from
// GET /sip-password/generate, passing serviceProviderID and groupID when they are not
// empty. When a request fails after others returned values, it returns those values with
// the error: one value per request makes a long batch fail often on an unreliable Odin,
// and the caller can keep what it got.
//
// NOTE: whether this generator accepts limit is not documented. For n > 1 the first call
// requests limit=n. When the response is not a list of exactly n values, or Odin rejects the
// request with 400 or 422, the client remembers that limit is unsupported, keeps any
// values it got and requests the rest one value per request, several at once, now and in
// every later call.
func (c *Client) GenerateSIPPasswords(ctx context.Context, serviceProviderID, groupID string, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("odin: GenerateSIPPasswords: n must be at least 1, got %d", n)
	}

	values := make([]string, 0, n)
	// rejectedLimit means that Odin rejected the request with limit. The flag is stored
	// only once a single call works, so that a rejection for another reason changes
	// nothing.
	rejectedLimit := false
	if n > 1 && !c.sipLimitUnsupported.Load() {
		batch, err := c.fetchGenerated(ctx, pathSIPPasswordGenerate, serviceProviderID, groupID, n)
		switch {
		case err == nil && len(batch) == n:
			c.sipLimitSupported.Store(true)
			return batch, nil
		case err == nil:
			c.sipLimitUnsupported.Store(true)
			values = append(values, batch[:min(len(batch), n)]...)
		case isBadRequest(err):
			rejectedLimit = true
		default:
			return nil, err
		}
	}

	if len(values) == n {
		return values, nil
	}

	// One value per request, with up to sipGenerateParallelism requests in flight. One
	// after the other, a chunk of 200 values takes 90 s when Odin responds in 450 ms.
	var (
		mu      sync.Mutex
		claimed = len(values)
		failure error
		wg      sync.WaitGroup
	)
	for range min(sipGenerateParallelism, n-len(values)) {
		wg.Go(func() {
			for {
				mu.Lock()
				if failure != nil || claimed == n {
					mu.Unlock()
					return
				}
				claimed++
				mu.Unlock()

				batch, err := c.fetchGenerated(ctx, pathSIPPasswordGenerate, serviceProviderID, groupID, 0)
				if err == nil && len(batch) != 1 {
					err = &CountError{Endpoint: http.MethodGet + " " + pathSIPPasswordGenerate, Requested: 1, Got: len(batch)}
				}
				mu.Lock()
				switch {
				case err != nil && failure == nil:
					failure = err
				case err == nil:
					values = append(values, batch[0])
					if rejectedLimit {
						c.sipLimitUnsupported.Store(true)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return values, failure
}

// SIPGeneratorBatches reports whether Odin's SIP generator returns a batch of values per
// request, and whether GenerateSIPPasswords has found out yet, so that a caller can ask
// for fewer values at once while it may get one per request.
func (c *Client) SIPGeneratorBatches() (batches, known bool) {
	switch {
	case c.sipLimitUnsupported.Load():
		return false, true
	case c.sipLimitSupported.Load():
		return true, true
	}
	return false, false
}

// sipGenerateParallelism is how many requests GenerateSIPPasswords has in flight when
// Odin's SIP generator returns one value per request. They all wait for the client's
// limiter, so the rate limit still holds.
const sipGenerateParallelism = 8

// generateBatch requests n values with limit=n and checks the count.
func (c *Client) generateBatch(ctx context.Context, path, serviceProviderID, groupID string, n int) ([]string, error) {
	switch {
	case n < 1:
		return nil, fmt.Errorf("odin: GET %s: n must be at least 1, got %d", path, n)
	case serviceProviderID == "":
		return nil, fmt.Errorf("odin: GET %s: the service provider ID is empty", path)
	case groupID == "":
		return nil, fmt.Errorf("odin: GET %s: the group ID is empty", path)
	}

	values, err := c.fetchGenerated(ctx, path, serviceProviderID, groupID, n)
	if err != nil {
		return nil, err
	}
	if len(values) != n {
		return nil, &CountError{Endpoint: http.MethodGet + " " + path, Requested: n, Got: len(values)}
	}
	return values, nil
}

// fetchGenerated sends one generator request, with limit when limit > 0, and returns the
// values in any of the accepted shapes, without checking their number.
func (c *Client) fetchGenerated(ctx context.Context, path, serviceProviderID, groupID string, limit int) ([]string, error) {
	query := url.Values{}
	if serviceProviderID != "" {
		query.Set("serviceProviderId", serviceProviderID)
	}
	if groupID != "" {
		query.Set("groupId", groupID)
	}
	if limit > 0 {
		query.Set("limit", strconv.Itoa(limit))
	}

	var body json.RawMessage
	r := &request{method: http.MethodGet, path: path, query: query}
	if err := c.call(ctx, r, &body); err != nil {
		return nil, err
	}
	return generatedValues(r, body)
}

// generatedValues reads {"passwords": [...]}, {"passcodes": [...]}, {"password": "..."}
// or {"passcode": "..."}, preferring a list, and also a bare list. Errors never quote a
// value.
func generatedValues(r *request, body json.RawMessage) ([]string, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		return generatedList(r, "the body", body)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, newDecodeError(r.method, r.path, err)
	}

	for _, key := range []string{"passwords", "passcodes"} {
		if raw, ok := fields[key]; ok && !isJSONNull(raw) {
			return generatedList(r, strconv.Quote(key), raw)
		}
	}

	for _, key := range []string{"password", "passcode"} {
		raw, ok := fields[key]
		if !ok || isJSONNull(raw) {
			continue
		}
		value, err := generatedValue(raw)
		if err != nil {
			return nil, &decodeError{method: r.method, path: r.path, reason: fmt.Sprintf("%q: %v", key, err)}
		}
		return []string{value}, nil
	}

	return nil, &decodeError{method: r.method, path: r.path,
		reason: `none of the fields "passwords", "passcodes", "password" or "passcode" is present`}
}

// generatedValue returns a JSON string as is and a JSON integer as its literal digits, so
// that no digit is lost to float conversion. JSON numbers cannot have leading zeros, so
// leading zeros of a passcode sent as a number are already gone when it arrives.
func generatedValue(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var value string
		if err := json.Unmarshal(raw, &value); err != nil {
			return "", errors.New("invalid JSON string")
		}
		if value == "" {
			return "", errors.New("the value is empty")
		}
		return value, nil
	}
	if len(raw) > 0 && isDigits(raw) {
		return string(raw), nil
	}
	return "", errors.New("the value is neither a string nor a non-negative integer")
}

// generatedList reads a JSON list of generated values; name describes it in errors.
func generatedList(r *request, name string, raw json.RawMessage) ([]string, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, &decodeError{method: r.method, path: r.path, reason: name + " is not a list"}
	}
	values := make([]string, 0, len(items))
	for i, item := range items {
		value, err := generatedValue(item)
		if err != nil {
			return nil, &decodeError{method: r.method, path: r.path, reason: fmt.Sprintf("item %d of %s: %v", i, name, err)}
		}
		values = append(values, value)
	}
	return values, nil
}

func isDigits(b []byte) bool {
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return true
}

func isJSONNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// isBadRequest reports a 400 or 422 response, the status a server usually returns for a
// parameter it does not accept.
func isBadRequest(err error) bool {
	var apiErr *APIError
	if IsAuthFailure(err) || !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.StatusCode == http.StatusBadRequest || apiErr.StatusCode == http.StatusUnprocessableEntity
}
