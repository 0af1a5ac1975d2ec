package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// WebhookDelivery is one outbox row: an event on its way to one destination.
type WebhookDelivery struct {
	ID                int64
	DeliveryID        string
	EnvironmentID     int64
	URL               string
	Operation         string
	ProviderConfigKey string
	ConnectionID      string
	Body              []byte
	Status            string
	Attempts          int
	LastStatus        *int
	LastError         string
	LastAttemptAt     *time.Time
	DeliveredAt       *time.Time
	QueuedAt          time.Time
	CreatedAt         time.Time
	// claim names the sender holding the row.
	claim string
}

// Delivery statuses.
const (
	WebhookPending   = "pending"
	WebhookDelivered = "delivered"
	WebhookFailed    = "failed"
)

const deliveryColumns = `id, delivery_id, environment_id, url, operation, provider_config_key, connection_id, body, status,
    attempts, last_status, last_error, last_attempt_at, delivered_at, queued_at, created_at`

func scanDelivery(rows *sql.Rows) (WebhookDelivery, error) {
	var d WebhookDelivery
	var body string
	var lastStatus sql.NullInt64
	var lastError sql.NullString
	var lastAttempt, delivered sql.NullTime
	if err := rows.Scan(&d.ID, &d.DeliveryID, &d.EnvironmentID, &d.URL, &d.Operation, &d.ProviderConfigKey, &d.ConnectionID,
		&body, &d.Status, &d.Attempts, &lastStatus, &lastError, &lastAttempt, &delivered, &d.QueuedAt, &d.CreatedAt); err != nil {
		return d, err
	}
	d.Body = []byte(body)
	if lastStatus.Valid {
		n := int(lastStatus.Int64)
		d.LastStatus = &n
	}
	d.LastError = lastError.String
	d.LastAttemptAt, d.DeliveredAt = utcTime(lastAttempt), utcTime(delivered)
	d.QueuedAt, d.CreatedAt = d.QueuedAt.UTC(), d.CreatedAt.UTC()
	return d, nil
}

// ClaimWebhooks takes up to limit due deliveries for lease: no other sender attempts them until
// the lease ends or the attempt is recorded. On PostgreSQL rows another replica is claiming are
// skipped, not waited for. The lease frees the rows of a sender that died holding them.
func (db *DB) ClaimWebhooks(ctx context.Context, lease time.Duration, limit int) ([]WebhookDelivery, error) {
	token, err := newClaimToken()
	if err != nil {
		return nil, err
	}
	now := db.now()
	skipLocked := ""
	if db.dialect == DialectPostgres {
		skipLocked = " FOR UPDATE SKIP LOCKED"
	}
	rows, err := db.gorm.WithContext(ctx).Raw(`UPDATE webhook_deliveries SET claim = ?, claimed_until = ?
WHERE id IN (SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
    ORDER BY next_attempt_at, id LIMIT ?`+skipLocked+`)
  AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < ?)
RETURNING `+deliveryColumns, token, now.Add(lease), now, now, limit, now).Rows()
	if err != nil {
		return nil, fmt.Errorf("claim webhooks: %w", dbError(err))
	}
	defer rows.Close()
	var out []WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("claim webhooks: %w", dbError(err))
		}
		d.claim = token
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim webhooks: %w", dbError(err))
	}
	return out, nil
}

// WebhookAttempt is what one attempt of a claimed delivery did.
type WebhookAttempt struct {
	// Status is the receiver's HTTP status, 0 when none answered; Error says what went wrong.
	Status int
	Error  string
	// Outcome is WebhookDelivered, WebhookFailed (given up), or WebhookPending to retry at Next.
	Outcome string
	Next    time.Time
}

// RecordWebhookAttempt writes an attempt of a claimed delivery and releases the claim. It writes
// nothing when the claim was lost (its lease ended and another sender took the row).
func (db *DB) RecordWebhookAttempt(ctx context.Context, d WebhookDelivery, a WebhookAttempt) error {
	now := db.now()
	var status *int
	if a.Status != 0 {
		status = &a.Status
	}
	var delivered *time.Time
	if a.Outcome == WebhookDelivered {
		delivered = &now
	}
	next := a.Next
	if next.IsZero() {
		next = now
	}
	err := db.gorm.WithContext(ctx).Exec(`UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status = ?,
    last_error = ?, last_attempt_at = ?, delivered_at = ?, next_attempt_at = ?, claim = NULL, claimed_until = NULL
WHERE id = ? AND claim = ?`, a.Outcome, status, a.Error, now, delivered, next, d.ID, d.claim).Error
	if err != nil {
		return fmt.Errorf("record webhook attempt: %w", dbError(err))
	}
	return nil
}

// ReleaseWebhook gives a claimed delivery back without counting an attempt.
func (db *DB) ReleaseWebhook(ctx context.Context, d WebhookDelivery) error {
	err := db.gorm.WithContext(ctx).Exec(`UPDATE webhook_deliveries SET claim = NULL, claimed_until = NULL
WHERE id = ? AND claim = ?`, d.ID, d.claim).Error
	if err != nil {
		return fmt.Errorf("release webhook: %w", dbError(err))
	}
	return nil
}

// ListWebhookDeliveries lists an environment's latest deliveries, newest first, of one status
// ("" : any).
func (db *DB) ListWebhookDeliveries(ctx context.Context, envID int64, status string, limit int) ([]WebhookDelivery, error) {
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE environment_id = ?`
	args := []any{envID}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, status)
	}
	rows, err := db.gorm.WithContext(ctx).Raw(q+` ORDER BY id DESC LIMIT ?`, append(args, limit)...).Rows()
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", dbError(err))
	}
	defer rows.Close()
	var out []WebhookDelivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("list webhook deliveries: %w", dbError(err))
		}
		out = append(out, d)
	}
	return out, dbError(rows.Err())
}

// RedeliverWebhook queues the event of delivery id again, to each of its destinations, with a
// new retry window. ErrNotFound when the environment has no such delivery.
func (db *DB) RedeliverWebhook(ctx context.Context, envID int64, deliveryID string) error {
	now := db.now()
	res := db.gorm.WithContext(ctx).Exec(`UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, queued_at = ?,
    claim = NULL, claimed_until = NULL WHERE environment_id = ? AND delivery_id = ?`, now, now, envID, deliveryID)
	if res.Error != nil {
		return fmt.Errorf("redeliver webhook: %w", dbError(res.Error))
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("redeliver webhook %q: %w", deliveryID, ErrNotFound)
	}
	return nil
}

// PruneWebhooks deletes the deliveries delivered before `before`.
func (db *DB) PruneWebhooks(ctx context.Context, before time.Time) (int64, error) {
	res := db.gorm.WithContext(ctx).Exec(`DELETE FROM webhook_deliveries WHERE status = 'delivered' AND delivered_at < ?`, before)
	if res.Error != nil {
		return 0, fmt.Errorf("prune webhooks: %w", dbError(res.Error))
	}
	return res.RowsAffected, nil
}

// WebhookBacklog counts the pending deliveries and tells when the oldest was queued (nil: none).
func (db *DB) WebhookBacklog(ctx context.Context) (int64, *time.Time, error) {
	var n int64
	if err := db.gorm.WithContext(ctx).Raw(`SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'`).Row().Scan(&n); err != nil {
		return 0, nil, fmt.Errorf("webhook backlog: %w", dbError(err))
	}
	if n == 0 {
		return 0, nil, nil
	}
	// Not min(): SQLite would hand an aggregate of a DATETIME back as text.
	var oldest sql.NullTime
	err := db.gorm.WithContext(ctx).Raw(`SELECT queued_at FROM webhook_deliveries WHERE status = 'pending'
ORDER BY queued_at LIMIT 1`).Row().Scan(&oldest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("webhook backlog: %w", dbError(err))
	}
	return n, utcTime(oldest), nil
}
