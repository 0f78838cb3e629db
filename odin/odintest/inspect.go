package odintest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// inspectionIndex is the response body of GET /_sim/, the address the startup line of
// cmd/odin-sim prints.
const inspectionIndex = `Odin simulator: inspection endpoints (no token needed)

GET  /_sim/credentials    user ID -> kind -> {value, setCount, history}
GET  /_sim/stats          request counts, max per second, 429s, logins
GET  /_sim/devices        devices with rebuild and reset counts, and events
GET  /_sim/users          user IDs in group order
GET  /_sim/faults         current injected faults
PUT  /_sim/faults         replace the faults (JSON, durations like "2s")
PUT  /_sim/rate-limit     {"requestsPerSecond": N}, 0 for unlimited
PUT  /_sim/admin          {"username", "password", "passwordChangeRequired"}: the login
POST /_sim/expire-tokens  invalidate every issued token
POST /_sim/reset-stats    zero the counters

The Odin API itself is under /api/v2.
`

// serveInspection serves the endpoints under /_sim/, which need no token and are not
// counted in Stats:
//
//	GET  /_sim/credentials   user ID -> kind -> {value, setCount, history}
//	GET  /_sim/stats         Stats
//	GET  /_sim/devices       {devices: [...], events: [...]}
//	GET  /_sim/users         user IDs in group order
//	GET  /_sim/faults        current Faults
//	PUT  /_sim/faults        replace Faults (JSON, durations as Go strings like "2s")
//	PUT  /_sim/rate-limit    {"requestsPerSecond": N}, 0 for unlimited
//	PUT  /_sim/admin         replace the admin login (see putAdmin)
//	POST /_sim/expire-tokens invalidate every issued token
//	POST /_sim/reset-stats   zero the counters
func (s *Simulator) serveInspection(w http.ResponseWriter, r *http.Request) {
	endpoint := r.Method + " " + r.URL.Path
	switch endpoint {
	case "GET /_sim", "GET /_sim/":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, inspectionIndex)
	case "GET /_sim/credentials":
		writeJSON(w, http.StatusOK, s.Credentials())
	case "GET /_sim/stats":
		writeJSON(w, http.StatusOK, s.Stats())
	case "GET /_sim/devices":
		writeJSON(w, http.StatusOK, s.deviceReport())
	case "GET /_sim/users":
		writeJSON(w, http.StatusOK, s.Users())
	case "GET /_sim/faults":
		s.controlMu.Lock()
		f := s.faults
		s.controlMu.Unlock()
		writeJSON(w, http.StatusOK, faultsToJSON(f))
	case "PUT /_sim/faults":
		s.putFaults(w, r)
	case "PUT /_sim/rate-limit":
		s.putRateLimit(w, r)
	case "PUT /_sim/admin":
		s.putAdmin(w, r)
	case "POST /_sim/expire-tokens":
		s.ExpireTokens()
		w.WriteHeader(http.StatusNoContent)
	case "POST /_sim/reset-stats":
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, apiError{Error: "Not found: " + endpoint, Status: http.StatusNotFound})
	}
}

// DeviceReport is the body of GET /_sim/devices.
type DeviceReport struct {
	Devices []DeviceState `json:"devices"`
	Events  []DeviceEvent `json:"events"`
}

// DeviceState is a device with its rebuild and reset counts.
type DeviceState struct {
	Device
	Rebuilt int `json:"rebuilt"`
	Reset   int `json:"reset"`
}

func (s *Simulator) deviceReport() DeviceReport {
	s.mu.Lock()
	defer s.mu.Unlock()

	report := DeviceReport{Devices: []DeviceState{}, Events: append([]DeviceEvent{}, s.deviceEvents...)}
	for _, devices := range []map[string]*device{s.groupDevices, s.spDevices} {
		for _, d := range devices {
			report.Devices = append(report.Devices, DeviceState{Device: d.describe(), Rebuilt: d.rebuilt, Reset: d.reset})
		}
	}
	sort.Slice(report.Devices, func(i, j int) bool {
		a, b := report.Devices[i], report.Devices[j]
		if a.Level != b.Level {
			return a.Level < b.Level
		}
		return a.Name < b.Name
	})
	return report
}

// faultsJSON is Faults with durations as strings such as "30s".
type faultsJSON struct {
	Error500         float64 `json:"error500"`
	Error502HTML     float64 `json:"error502HTML"`
	Reset            float64 `json:"reset"`
	Hang             float64 `json:"hang"`
	HangDuration     string  `json:"hangDuration,omitempty"`
	IncludeAuth      bool    `json:"includeAuth"`
	ApplyBeforeFault float64 `json:"applyBeforeFault"`
	Seed             int64   `json:"seed"`
}

func faultsToJSON(f Faults) faultsJSON {
	return faultsJSON{
		Error500:         f.Error500,
		Error502HTML:     f.Error502HTML,
		Reset:            f.Reset,
		Hang:             f.Hang,
		HangDuration:     f.HangDuration.String(),
		IncludeAuth:      f.IncludeAuth,
		ApplyBeforeFault: f.ApplyBeforeFault,
		Seed:             f.Seed,
	}
}

func (fj faultsJSON) faults() (Faults, error) {
	f := Faults{
		Error500:         fj.Error500,
		Error502HTML:     fj.Error502HTML,
		Reset:            fj.Reset,
		Hang:             fj.Hang,
		IncludeAuth:      fj.IncludeAuth,
		ApplyBeforeFault: fj.ApplyBeforeFault,
		Seed:             fj.Seed,
	}
	if fj.HangDuration != "" {
		d, err := time.ParseDuration(fj.HangDuration)
		if err != nil {
			return Faults{}, fmt.Errorf("hangDuration %q is not a duration such as \"30s\"", fj.HangDuration)
		}
		f.HangDuration = d
	}
	f = f.withDefaults()
	return f, f.validate()
}

func (s *Simulator) putFaults(w http.ResponseWriter, r *http.Request) {
	var fj faultsJSON
	if rep, ok := decodeSimBody(r, &fj); !ok {
		writeJSON(w, rep.status, rep.body)
		return
	}
	f, err := fj.faults()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Status: http.StatusBadRequest})
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, faultsToJSON(f))
}

// putAdmin replaces the admin login that POST /auth/token accepts, as an operator who
// changes the admin's password on Odin does: tokens already issued stay valid until
// they expire. The body is {"username", "password", "passwordChangeRequired"}; a field
// left out keeps its value.
func (s *Simulator) putAdmin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username               *string `json:"username"`
		Password               *string `json:"password"`
		PasswordChangeRequired *bool   `json:"passwordChangeRequired"`
	}
	if rep, ok := decodeSimBody(r, &req); !ok {
		writeJSON(w, rep.status, rep.body)
		return
	}
	if (req.Username != nil && *req.Username == "") || (req.Password != nil && *req.Password == "") {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "username and password must not be empty", Status: http.StatusBadRequest})
		return
	}
	username, password := s.Login()
	if req.Username != nil {
		username = *req.Username
	}
	if req.Password != nil {
		password = *req.Password
	}
	s.SetCredentials(username, password)
	if req.PasswordChangeRequired != nil {
		s.SetLoginPasswordChangeRequired(*req.PasswordChangeRequired)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) putRateLimit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RequestsPerSecond *float64 `json:"requestsPerSecond"`
	}
	if rep, ok := decodeSimBody(r, &req); !ok {
		writeJSON(w, rep.status, rep.body)
		return
	}
	if req.RequestsPerSecond == nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "Missing required field: requestsPerSecond", Status: http.StatusBadRequest})
		return
	}
	if err := validateRateLimit(*req.RequestsPerSecond); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error(), Status: http.StatusBadRequest})
		return
	}
	s.SetRateLimit(*req.RequestsPerSecond)
	writeJSON(w, http.StatusOK, map[string]float64{"requestsPerSecond": *req.RequestsPerSecond})
}

// decodeSimBody decodes the body of a PUT to /_sim/ like decodeBody, and also rejects
// a field v does not have, naming the fields it has: a misspelt fault must not leave a
// test running without it.
func decodeSimBody(r *http.Request, v any) (reply, bool) {
	if r.Body == nil {
		return decodeBody(r, v)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return errorReply(http.StatusBadRequest, "Reading the request body failed"), false
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	if rep, ok := decodeBody(r, v); !ok {
		return rep, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return errorReply(http.StatusBadRequest, "Invalid request body: not a JSON object"), false
	}
	known := jsonFields(v)
	for name := range fields {
		if !slices.Contains(known, name) {
			return errorReply(http.StatusBadRequest, fmt.Sprintf("Unknown field %q: the fields are %s", name, strings.Join(known, ", "))), false
		}
	}
	return reply{}, true
}

// jsonFields returns the JSON names of the fields of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v).Elem()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
