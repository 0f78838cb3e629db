package tasks

import (
	"context"
	"errors"
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
// group's list from Odin and looks up each listed user the group's list does not have.
//
// When Odin rejects the listing (an unknown group, no permission to list), every user is
// looked up instead. A user fails only when Odin's reply places it in another group.
// Where the lookup gets no usable reply (a rejection, or a body that cannot be read),
// the user is reset unchecked, as before the check existed: a user Odin does not know
// then fails at the setter with Odin's reason. An Odin look-alike without these
// endpoints, such as a test's fake, thus keeps working.

// groupMembers returns the IDs of the users Odin lists in the job's group. It uses again
// a list this worker read for the same group less than memberCacheTTL ago. A low-priority
// fan-out stops after each chunk while default-priority jobs have work, and its next
// attempt must not list a group of 100,000 users again. A rejected listing is
// tried listingTries times, a second apart and then two, before groupMembers returns the
// rejection: a proxy may return 404 for a moment.
func (h *Handlers) groupMembers(ctx context.Context, p BulkResetPayload) (map[string]struct{}, error) {
	group := groupKey(p.ServiceProviderID, p.GroupID)
	if members, ok := h.groupLists.get(group, h.now()); ok {
		return members, nil
	}

	var listed []string
	var err error
	for try := 1; ; try++ {
		listed, err = h.Odin.GroupUserIDs(ctx, p.ServiceProviderID, p.GroupID)
		if err == nil || !odin.IsPermanent(err) || try == listingTries {
			break
		}
		if err := sleep(ctx, time.Duration(try)*time.Second); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}

	members := make(map[string]struct{}, len(listed))
	for _, id := range listed {
		members[id] = struct{}{}
	}
	h.groupLists.put(group, members, h.now())
	return members, nil
}

// listingTries is how many times groupMembers sends a listing that Odin rejects.
const listingTries = 3

// groupKey identifies a group in the memberCache. Neither ID contains a NUL byte.
func groupKey(serviceProviderID, groupID string) string {
	return serviceProviderID + "\x00" + groupID
}

// lookUpEveryUser records that Odin's listing of the job's group failed, so this fan-out
// attempt looks up each user: in the log, and in the job's audit fields, which
// "enqueue status" shows. It returns the empty member list that makes failOutsiders do
// so.
func (h *Handlers) lookUpEveryUser(ctx context.Context, p BulkResetPayload, err error) map[string]struct{} {
	zerolog.Ctx(ctx).Error().Err(err).Msg("cannot list the group's users; looking up each user to check its group")
	note := "Odin rejected the listing of the group (" + odinReason(err) + "), so each user is looked up"
	if err := h.Store.SetAudit(ctx, p.JobID, map[string]string{"group_check": note}); err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("could not record how the group is checked")
	}
	return map[string]struct{}{}
}

// memberCacheTTL is how long a worker takes a group's list from its cache after it
// fetched it. A fan-out attempt that got the list uses it until the attempt ends. A user
// who joins the group meanwhile is still found, by the lookup of users missing from the
// list.
const memberCacheTTL = 10 * time.Minute

// memberCacheGroups is how many groups' lists a worker keeps, a few megabytes each for
// 100,000 users.
const memberCacheGroups = 4

// memberCache holds the lists of the groups of the last few fan-outs, by groupKey. The
// zero value is empty and ready, and it is safe for concurrent use.
type memberCache struct {
	mu      sync.Mutex
	entries map[string]memberList
}

type memberList struct {
	members map[string]struct{}
	readAt  time.Time
}

func (c *memberCache) get(group string, now time.Time) (map[string]struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	list, ok := c.entries[group]
	if !ok || now.Sub(list.readAt) >= memberCacheTTL || now.Before(list.readAt) {
		return nil, false
	}
	return list.members, true
}

// put stores a group's list, dropping expired lists and then the oldest beyond
// memberCacheGroups.
func (c *memberCache) put(group string, members map[string]struct{}, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]memberList)
	}
	c.entries[group] = memberList{members: members, readAt: now}
	for id, list := range c.entries {
		if now.Sub(list.readAt) >= memberCacheTTL {
			delete(c.entries, id)
		}
	}
	for len(c.entries) > memberCacheGroups {
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
// recs that Odin places in another group. A user missing from members is looked up
// (GET /users?userId=), because it may have joined the group after the listing. recs is
// updated in place. A user that already has a value is left alone: an earlier fan-out
// attempt checked it, or could not. It returns errJobCancelled when the job was
// cancelled meanwhile.
func (h *Handlers) failOutsiders(ctx context.Context, p BulkResetPayload, queue string, recs []results.UserRecord, members map[string]struct{}) error {
	failed, completed := 0, false
	for i, rec := range recs {
		if rec.State != results.UserPending || rec.Secret != "" {
			continue
		}
		if _, ok := members[rec.UserID]; ok {
			continue
		}
		// Lookups take an Odin request each: a cancel must stop them, and must find the
		// record as it left it.
		if state, err := h.Store.JobState(ctx, p.JobID); err != nil {
			return err
		} else if state == results.JobCancelled {
			return errJobCancelled
		}
		reason, err := h.outsiderReason(ctx, p, rec.UserID)
		if err != nil {
			return h.odinFailure(ctx, p.JobID, err)
		}
		if reason == "" {
			continue
		}

		zerolog.Ctx(ctx).Warn().Str("user_id", rec.UserID).Str("reason", reason).Msg("user of another group; recorded as failed, nothing sent to Odin")
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

// outsiderReason looks up a user the group's list does not have. It returns why the user
// cannot be reset in this job when Odin places it in another group, and "" otherwise,
// including when Odin's reply is not usable (see the top of this file). It returns an
// error the fan-out must wait for or retry: a fleet pause, a failed login, a transient
// fault before the fan-out's rejectionAttempts-th attempt.
func (h *Handlers) outsiderReason(ctx context.Context, p BulkResetPayload, userID string) (string, error) {
	log := zerolog.Ctx(ctx)
	detail, err := h.Odin.UserDetail(ctx, userID)
	switch {
	case err == nil:
	case odin.IsAuthFailure(err) || mustWait(err):
		return "", err
	case odin.IsPermanent(err) || odin.IsMalformed(err):
		log.Debug().Err(err).Str("user_id", userID).Msg("no group in Odin's reply to the user lookup; the setter decides")
		return "", nil
	case odin.IsTransient(err) && finalRejection(ctx):
		log.Warn().Err(err).Str("user_id", userID).Msg("the user lookup keeps failing; resetting the user without the group check")
		return "", nil
	default:
		return "", err
	}

	if !strings.EqualFold(detail.UserID, userID) || detail.ServiceProviderID == "" || detail.GroupID == "" {
		log.Warn().Str("user_id", userID).Msg("Odin's details of the user name no group or another user; resetting it without the group check")
		return "", nil
	}
	if strings.EqualFold(detail.ServiceProviderID, p.ServiceProviderID) && strings.EqualFold(detail.GroupID, p.GroupID) {
		return "", nil
	}
	outcome := "not reset"
	if p.DryRun {
		outcome = "a real run would not reset it"
	}
	return fmt.Sprintf("user of group %q of service provider %q, not of the job's group %q of %q: %s; submit it in a job for its own group",
		detail.GroupID, detail.ServiceProviderID, p.GroupID, p.ServiceProviderID, outcome), nil
}

// mustWait reports whether err is Odin's request that the fleet wait: a 429, or a
// Retry-After.
func mustWait(err error) bool {
	var rateLimited *odin.RateLimitError
	if errors.As(err, &rateLimited) {
		return true
	}
	_, ok := odin.RetryAfter(err)
	return ok
}
