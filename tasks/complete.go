package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/odinreset/odinreset/results"
)

// Summary is the body of a completion callback and of the completion audit line. It
// never contains a secret.
type Summary struct {
	JobID             string `json:"jobId"`
	State             string `json:"state"`
	Type              string `json:"type"`
	ServiceProviderID string `json:"serviceProviderId"`
	GroupID           string `json:"groupId"`
	Total             int    `json:"total"`
	Applied           int    `json:"applied"`
	Failed            int    `json:"failed"`
	// Devices is the device step of a SIP job, "rebuild" or "reset". DeviceTotal and
	// DeviceDone count its phones found and finished. Jobs without a device step omit all
	// three.
	Devices     string    `json:"devices,omitempty"`
	DeviceTotal int       `json:"deviceTotal,omitempty"`
	DeviceDone  int       `json:"deviceDone,omitempty"`
	RequestedBy string    `json:"requestedBy,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	CompletedAt time.Time `json:"completedAt"`
}

// SummaryOf returns the summary of a job.
func SummaryOf(job results.Job) Summary {
	return Summary{
		JobID: job.ID, State: string(job.State), Type: string(job.Type),
		ServiceProviderID: job.ServiceProviderID, GroupID: job.GroupID,
		Total: job.Total, Applied: job.Applied, Failed: job.Failed,
		Devices: string(job.Devices), DeviceTotal: job.DeviceTotal, DeviceDone: job.DeviceDone,
		RequestedBy: job.RequestedBy, CreatedAt: job.CreatedAt, CompletedAt: job.CompletedAt,
	}
}

// HandleComplete runs once per finished job, completed or cancelled: it writes the
// audit line and, when the job asked for one, posts the summary to its callback URL. A
// failed callback is retried by asynq; the audit line and the metrics count the job once.
func (h *Handlers) HandleComplete(ctx context.Context, t *asynq.Task) error {
	var p CompletePayload
	if err := decodeStrict(t.Payload(), &p); err != nil {
		return permanent(err)
	}
	if err := results.ValidateJobID(p.JobID); err != nil {
		return permanent(err)
	}
	job, err := h.Store.Job(ctx, p.JobID)
	if errors.Is(err, results.ErrNotFound) {
		return permanent(fmt.Errorf("%w: the record expired or was deleted, so there is no completion to report", err))
	}
	if err != nil {
		// Redis is unreachable: retrying keeps the callback from being lost.
		return err
	}

	summary := SummaryOf(job)
	audit, err := h.Store.AuditFields(ctx, job.ID)
	if err != nil {
		return err
	}
	if audit["completion_logged_at"] != "" {
		// A retry of a callback that failed: the job was logged and counted already.
		return h.postCallbackIfAny(ctx, job, summary)
	}
	zerolog.Ctx(ctx).Info().
		Str("audit", "job_completed").Str("state", summary.State).Str("type", summary.Type).
		Str("service_provider", summary.ServiceProviderID).Str("group", summary.GroupID).
		Int("total", summary.Total).Int("applied", summary.Applied).Int("failed", summary.Failed).
		Str("devices", summary.Devices).Int("device_total", summary.DeviceTotal).Int("device_done", summary.DeviceDone).
		Str("requested_by", summary.RequestedBy).
		Dur("duration_ms", job.CompletedAt.Sub(job.CreatedAt)).
		Msg("job finished")
	if h.Observer != nil {
		h.Observer.JobFinished(job)
	}
	if err := h.Store.SetAudit(ctx, job.ID, map[string]string{"completion_logged_at": h.now().UTC().Format(time.RFC3339)}); err != nil {
		return err
	}

	return h.postCallbackIfAny(ctx, job, summary)
}

func (h *Handlers) postCallbackIfAny(ctx context.Context, job results.Job, summary Summary) error {
	if job.CallbackURL == "" {
		return nil
	}
	return h.postCallback(ctx, job.CallbackURL, summary)
}

func (h *Handlers) postCallback(ctx context.Context, url string, summary Summary) error {
	body, err := json.Marshal(summary)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanent(fmt.Errorf("build completion callback request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "odinreset-worker")

	client := h.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post completion callback: %w", redactURLError(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("completion callback failed: the receiver returned %s", resp.Status)
	}
	zerolog.Ctx(ctx).Info().Int("status", resp.StatusCode).Msg("completion callback delivered")
	return nil
}
