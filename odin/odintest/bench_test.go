package odintest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/odinreset/odinreset/odin/odintest"
)

func TestLargeGroup(t *testing.T) {
	t.Parallel()
	const users = 100_000
	srv := startServer(t, odintest.Config{Users: users})
	token := login(t, srv)

	resp := call(t, http.MethodGet, srv.URL, "/users"+query("serviceProviderId", "sp1", "groupId", "grp1"), token, nil)
	var list []userSummary
	resp.decode(t, &list)
	if len(list) != users || list[users-1].UserID != "user100000@example.com" {
		t.Fatalf("listed %d users ending in %q, want %d ending in user100000@example.com", len(list), list[len(list)-1].UserID, users)
	}

	put := map[string]string{"userId": "user099999@example.com", "newPassword": goodWebPassword}
	if resp := call(t, http.MethodPut, srv.URL, "/users/passwords", token, put); resp.status != http.StatusNotFound {
		t.Errorf("zero-padded ID past 9999: status = %d, want 404", resp.status)
	}
	put["userId"] = "user99999@example.com"
	if resp := call(t, http.MethodPut, srv.URL, "/users/passwords", token, put); resp.status != http.StatusOK {
		t.Errorf("user99999: status = %d, want 200 (body %s)", resp.status, resp.body)
	}
}

func benchmarkSimulator(b *testing.B, cfg odintest.Config) (*odintest.Simulator, string) {
	b.Helper()
	sim, err := odintest.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": "odin-sim-password"})
	req := httptest.NewRequest(http.MethodPost, "/api/v2/auth/token", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, req)
	var s struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.Token == "" {
		b.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	return sim, s.Token
}

// BenchmarkServeHTTPPut measures the handler alone: token check, validation and store.
func BenchmarkServeHTTPPut(b *testing.B) {
	const users = 100_000
	sim, token := benchmarkSimulator(b, odintest.Config{Users: users})
	var next atomic.Int64

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)%users + 1
			body := `{"userId":"user` + pad4(n) + `@example.com","newPassword":"` + goodWebPassword + `"}`
			req := httptest.NewRequest(http.MethodPut, "/api/v2/users/passwords", bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// BenchmarkServerRoundTrip measures a PUT over loopback HTTP with keep-alive.
func BenchmarkServerRoundTrip(b *testing.B) {
	srv, err := odintest.NewServer(odintest.Config{Users: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": "odin-sim-password"})
	resp, err := http.Post(srv.URL+"/auth/token", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	var s struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	token := s.Token

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)%1000 + 1
			body := `{"userId":"user` + pad4(n) + `@example.com","newPasscode":"12345678"}`
			req, _ := http.NewRequest(http.MethodPut, srv.URL+"/users/portal-passcode", bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func pad4(n int64) string {
	s := strconv.FormatInt(n, 10)
	for len(s) < 4 {
		s = "0" + s
	}
	return s
}
