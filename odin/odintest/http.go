package odintest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// apiPrefix is the path of Odin's API root on the server.
const apiPrefix = "/api/v2"

// maxBodyBytes caps request bodies; Odin's setters take a few hundred bytes.
const maxBodyBytes = 1 << 20

// reply is a handler's response before it is written, so a fault can replace it after
// the request took effect.
type reply struct {
	status int
	body   any             // encoded as JSON
	count  func(st *Stats) // updates the counters once the reply is sent
}

// apiError is the JSON error body Odin sends.
type apiError struct {
	Error   string `json:"error"`
	Status  int    `json:"status"`
	Details any    `json:"details"`
}

func errorReply(status int, message string) reply {
	return reply{status: status, body: apiError{Error: message, Status: status}}
}

func errorReplyDetails(status int, message string, details any) reply {
	return reply{status: status, body: apiError{Error: message, Status: status, Details: details}}
}

// route is one API endpoint.
type route struct {
	handle func(s *Simulator, r *http.Request) reply
	public bool // served without a bearer token
	auth   bool // login or refresh: faults skip it unless Faults.IncludeAuth
}

var routes = map[string]route{
	"POST /auth/token":             {handle: (*Simulator).login, public: true, auth: true},
	"PUT /auth/token":              {handle: (*Simulator).refresh, public: true, auth: true},
	"GET /password/generate":       {handle: (*Simulator).generateWebPasswords},
	"GET /passcode/generate":       {handle: (*Simulator).generatePasscodes},
	"GET /sip-password/generate":   {handle: (*Simulator).generateSIPPasswords},
	"GET /users/authentication":    {handle: (*Simulator).getAuthentication},
	"PUT /users/authentication":    {handle: (*Simulator).putAuthentication},
	"PUT /users/passwords":         {handle: (*Simulator).putWebPassword},
	"GET /users/portal-passcode":   {handle: (*Simulator).getPortalPasscode},
	"PUT /users/portal-passcode":   {handle: (*Simulator).putPortalPasscode},
	"GET /users":                   {handle: (*Simulator).getUsers},
	"POST /groups/devices/rebuild": {handle: (*Simulator).rebuildDevice},
	"POST /groups/devices/reset":   {handle: (*Simulator).resetDevice},
}

// knownPaths maps each API path to its methods, for 405 responses.
var knownPaths = func() map[string][]string {
	paths := make(map[string][]string)
	for key := range routes {
		method, path, _ := strings.Cut(key, " ")
		paths[path] = append(paths[path], method)
	}
	return paths
}()

// ServeHTTP serves the Odin API under /api/v2 and the inspection endpoints under /_sim/.
// When a request draws the reset fault and the ResponseWriter cannot be hijacked,
// ServeHTTP panics with http.ErrAbortHandler. A net/http server recovers from that
// panic and drops the connection or stream.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := r.URL.Path; {
	case strings.HasPrefix(path, apiPrefix+"/"):
		s.serveAPI(w, r, strings.TrimPrefix(path, apiPrefix))
	case path == "/_sim" || strings.HasPrefix(path, "/_sim/"):
		s.serveInspection(w, r)
	default:
		writeJSON(w, http.StatusNotFound, apiError{Error: "Not found: " + path, Status: http.StatusNotFound})
	}
}

// serveAPI runs one API request through admission, latency, faults, authentication and
// its handler, in that order.
func (s *Simulator) serveAPI(w http.ResponseWriter, r *http.Request, path string) {
	endpoint := r.Method + " " + path
	wait, admitted := s.admission.admit(endpoint, s.now())

	// Reading the body now lets net/http watch the connection, so the request context
	// ends when the client goes away during a delay or a hang.
	if r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			s.admission.record(endpoint, 0, nil)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}

	if err := s.sleepLatency(r.Context()); err != nil {
		s.admission.record(endpoint, 0, nil)
		return
	}
	if !admitted {
		s.writeTooManyRequests(w, endpoint, wait)
		return
	}

	rt, found := routes[endpoint]
	fault, applyFirst := s.drawFault(found && rt.auth)
	if fault != faultNone && !applyFirst {
		s.injectFault(w, r, endpoint, fault)
		return
	}

	rep := s.handleAPI(r, endpoint, path, rt, found)
	if fault != faultNone {
		s.injectFault(w, r, endpoint, fault)
		return
	}
	writeJSON(w, rep.status, rep.body)
	s.admission.record(endpoint, rep.status, rep.count)
}

func (s *Simulator) handleAPI(r *http.Request, endpoint, path string, rt route, found bool) reply {
	if !found {
		if methods := knownPaths[path]; methods != nil {
			return errorReply(http.StatusMethodNotAllowed, "Method not allowed: "+endpoint)
		}
		return errorReply(http.StatusNotFound, "Not found: "+path)
	}
	if !rt.public {
		if rep, ok := s.authenticate(r); !ok {
			return rep
		}
	}
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		if rep, ok := checkContentType(r, endpoint); !ok {
			return rep
		}
	}
	return rt.handle(s, r)
}

// authenticate checks the bearer token. It returns false and a 401 reply when the token
// is missing, malformed, forged, expired or revoked by ExpireTokens.
func (s *Simulator) authenticate(r *http.Request) (reply, bool) {
	s.controlMu.Lock()
	generation := s.tokenGeneration
	s.controlMu.Unlock()

	if _, err := s.signer.verify(r.Header.Get("Authorization"), s.now(), generation); err != nil {
		return errorReply(http.StatusUnauthorized, err.Error()), false
	}
	return reply{}, true
}

// checkContentType requires a JSON content type on requests with a body. PUT /auth/token
// has no body, so it may omit the header.
func checkContentType(r *http.Request, endpoint string) (reply, bool) {
	contentType := r.Header.Get("Content-Type")
	if contentType == "" && endpoint == "PUT /auth/token" {
		return reply{}, true
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "application/json" {
		return errorReply(http.StatusUnsupportedMediaType, "Content-Type must be application/json"), false
	}
	return reply{}, true
}

func (s *Simulator) sleepLatency(ctx context.Context) error {
	s.controlMu.Lock()
	delay := s.latency
	if s.jitter > 0 {
		delay += rand.N(s.jitter)
	}
	s.controlMu.Unlock()
	return sleep(ctx, delay)
}

// sleep waits for d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Simulator) writeTooManyRequests(w http.ResponseWriter, endpoint string, wait time.Duration) {
	s.controlMu.Lock()
	httpDate := s.retryAfterHTTPDate
	s.controlMu.Unlock()

	if httpDate {
		// An HTTP date has whole seconds, so round up to keep the wait long enough.
		at := s.now().Add(wait)
		if rounded := at.Truncate(time.Second); rounded.Before(at) {
			at = rounded.Add(time.Second)
		}
		w.Header().Set("Retry-After", at.UTC().Format(http.TimeFormat))
	} else {
		seconds := max(1, int64(math.Ceil(wait.Seconds())))
		w.Header().Set("Retry-After", strconv.FormatInt(seconds, 10))
	}
	writeJSON(w, http.StatusTooManyRequests, apiError{
		Error:  "Too many requests, retry later",
		Status: http.StatusTooManyRequests,
	})
	s.admission.record(endpoint, http.StatusTooManyRequests, nil)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(apiError{Error: "encoding the response failed", Status: status})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// decodeBody decodes the JSON request body into v. It returns false and a 400 reply
// naming the problem when the body is not a JSON object of the expected field types.
func decodeBody(r *http.Request, v any) (reply, bool) {
	if r.Body == nil {
		return errorReply(http.StatusBadRequest, "Request body is empty, want a JSON object"), false
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return errorReply(http.StatusBadRequest, "Reading the request body failed"), false
	}
	if len(data) > maxBodyBytes {
		return errorReply(http.StatusRequestEntityTooLarge, "Request body is larger than 1 MiB"), false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errorReply(http.StatusBadRequest, "Request body is empty, want a JSON object"), false
	}

	if err := json.Unmarshal(data, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return errorReply(http.StatusBadRequest,
				fmt.Sprintf("Invalid request body: %s must be a %s", typeErr.Field, typeErr.Type)), false
		}
		return errorReply(http.StatusBadRequest, "Invalid request body: not a JSON object"), false
	}
	return reply{}, true
}
