package odin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// rawJSON returns a handler that responds with 200 and body.
func rawJSON(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}
}

func TestGenerators(t *testing.T) {
	type generator func(c *Client, ctx context.Context, sp, group string, n int) ([]string, error)
	passwords := (*Client).GeneratePasswords
	passcodes := (*Client).GeneratePasscodes
	tests := []struct {
		name     string
		endpoint string
		generate generator
		n        int
		body     string
		want     []string
	}{
		{name: "passwords list", endpoint: "GET /password/generate", generate: passwords, n: 3,
			body: `{"passwords": ["8H]}3y_a:Q{x", "a\"b\\c", "ü€-pw"]}`, want: []string{"8H]}3y_a:Q{x", `a"b\c`, "ü€-pw"}},
		{name: "password singular for one", endpoint: "GET /password/generate", generate: passwords, n: 1,
			body: `{"password": "8!01T_8Hk{R6"}`, want: []string{"8!01T_8Hk{R6"}},
		{name: "passwords list of one", endpoint: "GET /password/generate", generate: passwords, n: 1,
			body: `{"passwords": ["only"]}`, want: []string{"only"}},
		{name: "passcodes with leading zeros", endpoint: "GET /passcode/generate", generate: passcodes, n: 3,
			body: `{"passcodes": ["0123", "004567", "68204751"]}`, want: []string{"0123", "004567", "68204751"}},
		{name: "passcodes as numbers", endpoint: "GET /passcode/generate", generate: passcodes, n: 3,
			body: `{"passcodes": [123456, "000111", 98765432109876543210]}`, want: []string{"123456", "000111", "98765432109876543210"}},
		{name: "passcode singular", endpoint: "GET /passcode/generate", generate: passcodes, n: 1,
			body: `{"passcode": "0042"}`, want: []string{"0042"}},
		{name: "passcode singular number", endpoint: "GET /passcode/generate", generate: passcodes, n: 1,
			body: `{"passcode": 4711}`, want: []string{"4711"}},
		{name: "bare list", endpoint: "GET /passcode/generate", generate: passcodes, n: 2,
			body: `["0001", "0002"]`, want: []string{"0001", "0002"}},
		{name: "list preferred over singular", endpoint: "GET /password/generate", generate: passwords, n: 2,
			body: `{"password": "x", "passwords": ["a1", "b2"]}`, want: []string{"a1", "b2"}},
		{name: "null list falls back to singular", endpoint: "GET /password/generate", generate: passwords, n: 1,
			body: `{"passwords": null, "password": "solo"}`, want: []string{"solo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle(tt.endpoint, rawJSON(tt.body))
			c := f.newClient()

			got, err := tt.generate(c, context.Background(), "sp 1", "grp+1", tt.n)
			if err != nil {
				t.Fatalf("generate: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("values mismatch (-want +got):\n%s", diff)
			}

			requests := f.recorded(tt.endpoint)
			if len(requests) != 1 {
				t.Fatalf("sent %d requests, want 1", len(requests))
			}
			wantQuery := map[string][]string{"serviceProviderId": {"sp 1"}, "groupId": {"grp+1"}, "limit": {strconv.Itoa(tt.n)}}
			if diff := cmp.Diff(wantQuery, map[string][]string(requests[0].Query)); diff != "" {
				t.Errorf("query mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGeneratorCountMismatch(t *testing.T) {
	tests := []struct {
		name string
		body string
		n    int
		got  int
	}{
		{name: "fewer", body: `{"passwords": ["a", "b", "c"]}`, n: 5, got: 3},
		{name: "more", body: `{"passwords": ["a", "b", "c"]}`, n: 2, got: 3},
		{name: "singular for many", body: `{"password": "a"}`, n: 4, got: 1},
		{name: "empty list", body: `{"passwords": []}`, n: 1, got: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /password/generate", rawJSON(tt.body))
			c := f.newClient()

			values, err := c.GeneratePasswords(context.Background(), "sp1", "grp1", tt.n)

			var countErr *CountError
			if !errors.As(err, &countErr) {
				t.Fatalf("error = %v, want a *CountError", err)
			}
			want := CountError{Endpoint: "GET /password/generate", Requested: tt.n, Got: tt.got}
			if diff := cmp.Diff(want, *countErr); diff != "" {
				t.Errorf("CountError mismatch (-want +got):\n%s", diff)
			}
			if values != nil {
				t.Errorf("returned %d values with the error, want none", len(values))
			}
			if !IsTransient(err) {
				t.Error("IsTransient = false, want true for a count mismatch")
			}
		})
	}
}

func TestGeneratorInvalidBodies(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantReason string
	}{
		{name: "no known field", body: `{"values": ["a"]}`, wantReason: "none of the fields"},
		{name: "empty string", body: `{"passcodes": ["1234", ""]}`, wantReason: "item 1"},
		{name: "negative number", body: `{"passcodes": [-1234]}`, wantReason: "neither a string nor a non-negative integer"},
		{name: "float", body: `{"passcode": 12.5}`, wantReason: "neither a string"},
		{name: "object item", body: `{"passcodes": [{"value": "1234"}]}`, wantReason: "item 0"},
		{name: "list not a list", body: `{"passcodes": "123456"}`, wantReason: "is not a list"},
		{name: "not JSON", body: `passcode=123456`, wantReason: "invalid JSON"},
		{name: "leading zero number", body: `{"passcode": 0123456}`, wantReason: "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /passcode/generate", rawJSON(tt.body))
			c := f.newClient()

			_, err := c.GeneratePasscodes(context.Background(), "sp1", "grp1", 1)

			if err == nil || !strings.Contains(err.Error(), tt.wantReason) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantReason)
			}
			for _, secret := range []string{"123456", "1234"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes a generated value", err)
				}
			}
		})
	}
}

// sipGenerator serves GET /sip-password/generate: it returns a list of limit values when
// acceptLimit is set and one value otherwise, numbering values so tests see each one.
type sipGenerator struct {
	acceptLimit bool
	rejectLimit bool // respond with 400 when limit is present
	served      atomic.Int64
}

func (g *sipGenerator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := r.URL.Query().Get("limit")
	if g.rejectLimit && limit != "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Unknown parameter: limit", "status": 400})
		return
	}
	if g.acceptLimit && limit != "" {
		n, _ := strconv.Atoi(limit)
		values := make([]string, n)
		for i := range values {
			values[i] = fmt.Sprintf("sip-%d", g.served.Add(1))
		}
		writeJSON(w, http.StatusOK, map[string]any{"passwords": values})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"password": fmt.Sprintf("sip-%d", g.served.Add(1))})
}

func TestGenerateSIPPasswords(t *testing.T) {
	tests := []struct {
		name      string
		generator *sipGenerator
		n         int
		// wantFirst and wantSecond list the limit query value ("" for none) of each
		// request of the first and the second call.
		wantFirst  []string
		wantSecond []string
	}{
		{
			name:       "limit accepted",
			generator:  &sipGenerator{acceptLimit: true},
			n:          3,
			wantFirst:  []string{"3"},
			wantSecond: []string{"3"},
		},
		{
			name:       "limit ignored, fallback remembered",
			generator:  &sipGenerator{},
			n:          3,
			wantFirst:  []string{"3", "", ""},
			wantSecond: []string{"", "", ""},
		},
		{
			name:       "limit rejected, fallback remembered",
			generator:  &sipGenerator{rejectLimit: true},
			n:          2,
			wantFirst:  []string{"2", "", ""},
			wantSecond: []string{"", ""},
		},
		{
			name:       "single value never sends limit",
			generator:  &sipGenerator{acceptLimit: true},
			n:          1,
			wantFirst:  []string{""},
			wantSecond: []string{""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /sip-password/generate", tt.generator.ServeHTTP)
			c := f.newClient()
			ctx := context.Background()

			first, err := c.GenerateSIPPasswords(ctx, "sp1", "grp1", tt.n)
			if err != nil {
				t.Fatalf("first GenerateSIPPasswords: %v", err)
			}
			firstRequests := len(f.recorded("GET /sip-password/generate"))
			second, err := c.GenerateSIPPasswords(ctx, "sp1", "grp1", tt.n)
			if err != nil {
				t.Fatalf("second GenerateSIPPasswords: %v", err)
			}

			var want []string
			for i := range 2 * tt.n {
				want = append(want, fmt.Sprintf("sip-%d", i+1))
			}
			// Single-value requests run in parallel, so the values come in any order.
			got := append(first, second...)
			sortValues := cmpopts.SortSlices(func(a, b string) bool { return a < b })
			if diff := cmp.Diff(want, got, sortValues); diff != "" {
				t.Errorf("values mismatch (-want +got):\n%s", diff)
			}

			var limits []string
			for _, r := range f.recorded("GET /sip-password/generate") {
				limits = append(limits, r.Query.Get("limit"))
				if r.Query.Get("serviceProviderId") != "sp1" || r.Query.Get("groupId") != "grp1" {
					t.Errorf("query %q lacks the service provider or group", r.RawQuery)
				}
			}
			if diff := cmp.Diff(tt.wantFirst, limits[:firstRequests]); diff != "" {
				t.Errorf("limits of the first call mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSecond, limits[firstRequests:]); diff != "" {
				t.Errorf("limits of the second call mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerateSIPPasswordsPartialList(t *testing.T) {
	f := newFakeOdin(t)
	var calls atomic.Int64
	f.handle("GET /sip-password/generate", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			writeJSON(w, http.StatusOK, map[string]any{"passwords": []string{"p1", "p2"}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"password": fmt.Sprintf("p%d", calls.Load()+1)})
	})
	c := f.newClient()

	got, err := c.GenerateSIPPasswords(context.Background(), "", "", 4)
	if err != nil {
		t.Fatalf("GenerateSIPPasswords: %v", err)
	}

	if diff := cmp.Diff([]string{"p1", "p2", "p3", "p4"}, got); diff != "" {
		t.Errorf("values mismatch (-want +got):\n%s", diff)
	}
	if !c.sipLimitUnsupported.Load() {
		t.Error("a short list did not mark limit as unsupported")
	}
	for _, r := range f.recorded("GET /sip-password/generate") {
		if r.Query.Has("serviceProviderId") || r.Query.Has("groupId") {
			t.Errorf("query %q sends an empty service provider or group", r.RawQuery)
		}
	}
}

func TestGenerateSIPPasswordsErrors(t *testing.T) {
	tests := []struct {
		name            string
		handler         http.HandlerFunc
		n               int
		wantUnsupported bool
		check           func(t *testing.T, err error)
	}{
		{
			name:    "server error on the batch is returned",
			handler: respondJSON(http.StatusBadGateway, map[string]any{"error": "down"}),
			n:       3,
			check: func(t *testing.T, err error) {
				if !IsTransient(err) {
					t.Errorf("error = %v, want a transient error", err)
				}
			},
		},
		{
			name:    "400 on both batch and single leaves limit untouched",
			handler: respondJSON(http.StatusBadRequest, map[string]any{"error": "[Error 4008] Service provider not found"}),
			n:       3,
			check: func(t *testing.T, err error) {
				if !IsPermanent(err) {
					t.Errorf("error = %v, want a permanent error", err)
				}
			},
		},
		{
			name:    "single call returning a list",
			handler: rawJSON(`{"passwords": ["a", "b"]}`),
			n:       1,
			check: func(t *testing.T, err error) {
				var countErr *CountError
				if !errors.As(err, &countErr) || countErr.Requested != 1 || countErr.Got != 2 {
					t.Errorf("error = %v, want a *CountError 1 requested, 2 got", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOdin(t)
			f.handle("GET /sip-password/generate", tt.handler)
			c := f.newClient()

			values, err := c.GenerateSIPPasswords(context.Background(), "sp1", "grp1", tt.n)

			if err == nil {
				t.Fatalf("GenerateSIPPasswords = %v, nil; want an error", values)
			}
			tt.check(t, err)
			if got := c.sipLimitUnsupported.Load(); got != tt.wantUnsupported {
				t.Errorf("limit unsupported = %v, want %v", got, tt.wantUnsupported)
			}
		})
	}
}
