package tasks

import (
	"testing"
	"time"
)

func TestMemberCache(t *testing.T) {
	var c memberCache
	t0 := time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)
	list := func(ids ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, id := range ids {
			m[id] = struct{}{}
		}
		return m
	}

	if _, ok := c.get("job-a", t0); ok {
		t.Fatal("the zero cache returned a list")
	}
	c.put("job-a", list("u1"), t0)
	if got, ok := c.get("job-a", t0.Add(memberCacheTTL-time.Second)); !ok || len(got) != 1 {
		t.Errorf("get before the TTL = %v, %v; want the list", got, ok)
	}
	if _, ok := c.get("job-a", t0.Add(memberCacheTTL)); ok {
		t.Error("get at the TTL returned the list, want none")
	}
	if _, ok := c.get("job-a", t0.Add(-time.Second)); ok {
		t.Error("get with a clock behind the read returned the list, want none")
	}

	c.put("job-b", list("u2"), t0.Add(time.Second))
	c.put("job-c", list("u3"), t0.Add(2*time.Second))
	if _, ok := c.get("job-a", t0.Add(3*time.Second)); ok {
		t.Errorf("the oldest list stayed with %d lists cached, want at most %d", memberCacheJobs+1, memberCacheJobs)
	}
	for _, job := range []string{"job-b", "job-c"} {
		if _, ok := c.get(job, t0.Add(3*time.Second)); !ok {
			t.Errorf("%s: list dropped, want it kept", job)
		}
	}
}
