package tasks

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/odin"
	"github.com/odinreset/odinreset/results"
)

// Odin's setters take only a user ID, so a job would reset any user it lists, whatever
// its group: a typo in a provisioning export could hand one customer's new password to
// the operator of another. The fan-out of a job with a user list therefore reads the
// group's list from Odin once and checks every user before it generates a value.

// groupMembers returns the IDs of the users Odin lists in the job's group. A list this
// worker read for the job less than memberCacheTTL ago is used again: a low-priority
// fan-out stops after each chunk while default-priority jobs have work, and its next
// attempt must not list a group of 100,000 users again.
func (h *Handlers) groupMembers(ctx context.Context, p BulkResetPayload) (map[string]struct{}, error) {
	if members, ok := h.groupLists.get(p.JobID, h.now()); ok {
		return members, nil
	}
	listed, err := h.Odin.GroupUserIDs(ctx, p.ServiceProviderID, p.GroupID)
	if err != nil {
		return nil, err
	}
	members := make(map[string]struct{}, len(listed))
	for _, id := range listed {
		members[id] = struct{}{}
	}
	h.groupLists.put(p.JobID, members, h.now())
	return members, nil
}

// memberCacheTTL is how long a worker uses a group list it read. A user who joins the
// group meanwhile is still found, by the lookup of users missing from the list.
const memberCacheTTL = 10 * time.Minute

// memberCacheJobs is how many jobs' group lists a worker keeps, a few megabytes each for
// 100,000 users.
const memberCacheJobs = 2

// memberCache holds the group lists of the last few fan-outs by job ID. The zero value is
// empty and ready, and it is safe for concurrent use.
type memberCache struct {
	mu      sync.Mutex
	entries map[string]memberList
}

type memberList struct {
	members map[string]struct{}
	readAt  time.Time
}

func (c *memberCache) get(jobID string, now time.Time) (map[string]struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	list, ok := c.entries[jobID]
	if !ok || now.Sub(list.readAt) >= memberCacheTTL || now.Before(list.readAt) {
		return nil, false
	}
	return list.members, true
}

// put stores a job's list, dropping expired lists and then the oldest beyond
// memberCacheJobs.
func (c *memberCache) put(jobID string, members map[string]struct{}, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]memberList)
	}
	c.entries[jobID] = memberList{members: members, readAt: now}
	for id, list := range c.entries {
		if now.Sub(list.readAt) >= memberCacheTTL {
			delete(c.entries, id)
		}
	}
	for len(c.entries) > memberCacheJobs {
		oldest := ""
		for id, list := range c.entries {
			if oldest == "" || list.readAt.Before(c.entries[oldest].readAt) {
				oldest = id
			}
		}
		delete(c.entries, oldest)
	}
}

// groupListingFailure handles a failed listing of the job's group. A rejection (unknown
// group, no permission) is retried for rejectionAttempts fan-out attempts, then cancels
// the job with the reason, so a script does not take it for an empty success. Other
// errors wait or retry as any Odin failure does.
func (h *Handlers) groupListingFailure(ctx context.Context, p BulkResetPayload, queue string, err error) error {
	log := zerolog.Ctx(ctx)
	if !odin.IsPermanent(err) || odin.IsAuthFailure(err) {
		return h.odinFailure(ctx, p.JobID, err)
	}
	if !finalRejection(ctx) {
		log.Warn().Err(err).Msg("Odin rejected the group listing; retrying before cancelling the job")
		return h.odinFailure(ctx, p.JobID, err)
	}

	log.Error().Err(err).Msg("cannot list the group's users; cancelling the job")
	reason := "cannot list the group's users: " + odinReason(err) + "; check the service provider and group IDs"
	if _, err := h.Store.Abort(ctx, p.JobID, reason); err != nil {
		return err
	}
	return h.enqueueComplete(ctx, p.JobID, queue)
}

// failOutsiders records as failed, before any value is generated for them, the users of
// recs that do not belong to the job's group. A user missing from members is looked up
// (GET /users?userId=), because it may have joined the group after the listing. recs is
// updated in place. Users that already have a value passed the check in an earlier
// fan-out attempt.
func (h *Handlers) failOutsiders(ctx context.Context, p BulkResetPayload, queue string, recs []results.UserRecord, members map[string]struct{}) error {
	failed, completed := 0, false
	for i, rec := range recs {
		if rec.State != results.UserPending || rec.Secret != "" {
			continue
		}
		if _, ok := members[rec.UserID]; ok {
			continue
		}
		reason, err := h.outsiderReason(ctx, p, rec.UserID)
		if err != nil {
			return h.odinFailure(ctx, p.JobID, err)
		}
		if reason == "" {
			continue
		}

		zerolog.Ctx(ctx).Warn().Str("user_id", rec.UserID).Str("reason", reason).Msg("user not in the job's group; recorded as failed, nothing sent to Odin")
		recorded, done, err := h.failUnsent(ctx, p, rec, reason)
		if err != nil {
			return err
		}
		if recorded {
			completed = completed || done
			recs[i].State = results.UserFailed
			failed++
		}
	}

	if failed == 0 {
		return nil
	}
	return h.followFanOutFailures(ctx, p, queue, completed)
}

// outsiderReason looks up a user the group's list does not have, and returns why it
// cannot be reset in this job, or "" when Odin places it in the job's group. An error is
// a failed lookup to retry.
func (h *Handlers) outsiderReason(ctx context.Context, p BulkResetPayload, userID string) (string, error) {
	detail, err := h.Odin.UserDetail(ctx, userID)
	switch {
	case err != nil && odin.IsPermanent(err) && !odin.IsAuthFailure(err):
		// An unknown user: Odin's reason, as the setter would have given it.
		return odinReason(err), nil
	case err != nil:
		return "", err
	case detail.ServiceProviderID == "" || detail.GroupID == "":
		return fmt.Sprintf("not in the list of group %q, and Odin's details of the user name no group: not reset", p.GroupID), nil
	case strings.EqualFold(detail.ServiceProviderID, p.ServiceProviderID) && strings.EqualFold(detail.GroupID, p.GroupID):
		return "", nil
	}
	return fmt.Sprintf("user of group %q of service provider %q, not of the job's group %q of %q: not reset; submit it in a job for its own group",
		detail.GroupID, detail.ServiceProviderID, p.GroupID, p.ServiceProviderID), nil
}
