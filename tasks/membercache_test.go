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

	var newer []string
	for i := 1; i <= memberCacheGroups; i++ {
		group := groupKey("sp1", "grp"+string(rune('1'+i)))
		c.put(group, list("u"), t0.Add(time.Duration(i)*time.Second))
		newer = append(newer, group)
	}
	now := t0.Add(time.Minute)
	if _, ok := c.get("job-a", now); ok {
		t.Errorf("the oldest list stayed with %d lists cached, want at most %d", memberCacheGroups+1, memberCacheGroups)
	}
	for _, group := range newer {
		if _, ok := c.get(group, now); !ok {
			t.Errorf("%q: list dropped, want it kept", group)
		}
	}
}
