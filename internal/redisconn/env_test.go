package redisconn

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		override string
		want     Config
		wantErr  string
	}{
		{
			name: "url",
			env:  map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/2"},
			want: Config{URL: "redis://127.0.0.1:6379/2"},
		},
		{
			name: "password added to url",
			env:  map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_PASSWORD": "s3cret"},
			want: Config{URL: "redis://:s3cret@127.0.0.1:6379/0", Password: "s3cret"},
		},
		{
			name:    "password twice",
			env:     map[string]string{"REDIS_URL": "redis://:a@127.0.0.1:6379/0", "REDIS_PASSWORD": "b"},
			wantErr: "set only one",
		},
		{
			name:     "flag wins over sentinel",
			env:      map[string]string{"REDIS_SENTINEL_ADDRS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "m"},
			override: "redis://127.0.0.1:6380/0",
			want:     Config{URL: "redis://127.0.0.1:6380/0"},
		},
		{
			name: "sentinel with tls and db",
			env: map[string]string{
				"REDIS_SENTINEL_ADDRS": "127.0.0.1:26379, 127.0.0.1:26380", "REDIS_SENTINEL_MASTER": "m",
				"REDIS_SENTINEL_PASSWORD": "sp", "REDIS_DB": "3", "REDIS_TLS": "true",
			},
			want: Config{SentinelAddrs: []string{"127.0.0.1:26379", "127.0.0.1:26380"}, SentinelMaster: "m", SentinelPassword: "sp", DB: 3, TLS: true},
		},
		{
			name:    "two deployments",
			env:     map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_CLUSTER_ADDRS": "127.0.0.1:7000"},
			wantErr: "more than one Redis deployment",
		},
		{
			name:    "nothing",
			env:     map[string]string{},
			wantErr: "no Redis configured",
		},
		{
			name:    "bad tls",
			env:     map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_TLS": "maybe"},
			wantErr: `invalid REDIS_TLS "maybe"`,
		},
		{
			name:    "bad db",
			env:     map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_DB": "-1"},
			wantErr: `invalid REDIS_DB "-1"`,
		},
		{
			name:     "invalid url flag",
			env:      map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"},
			override: "http://:s3cret@127.0.0.1:6379",
			wantErr:  "invalid --redis-url",
		},
		{
			name: "db equal to the url's",
			env:  map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/2", "REDIS_DB": "2"},
			want: Config{URL: "redis://127.0.0.1:6379/2", DB: 2},
		},
		{
			name:    "db other than the url's",
			env:     map[string]string{"REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0", "REDIS_DB": "5"},
			wantErr: "REDIS_DB=5 conflicts with database 0 of the Redis URL",
		},
		{
			name:    "db on cluster",
			env:     map[string]string{"REDIS_CLUSTER_ADDRS": "127.0.0.1:7000", "REDIS_DB": "2"},
			wantErr: "only database 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromEnv(func(k string) string { return tt.env[k] }, tt.override)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q contains the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	got := Redact("redis://user:s3cret@127.0.0.1:6379/0")
	if want := "redis://user:xxxxx@127.0.0.1:6379/0"; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}
