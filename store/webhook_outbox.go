package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Auth webhook events are written to the webhook_deliveries outbox in the transaction of the
// change that causes them: an acknowledged import, or a recorded refusal, always has its rows.
// One row per destination; the rows of one event share its delivery id.

// AuthEvent is the body of an auth webhook, its fields named as the reference names them.
type AuthEvent struct {
	From              string          `json:"from"`
	Type              string          `json:"type"`
	Operation         string          `json:"operation"`
	ConnectionID      string          `json:"connectionId"`
	AuthMode          string          `json:"authMode"`
	ProviderConfigKey string          `json:"providerConfigKey"`
	Provider          string          `json:"provider"`
	Environment       string          `json:"environment"`
	Success           bool            `json:"success"`
	EndUser           *AuthEventUser  `json:"endUser,omitempty"`
	Tags              map[string]any  `json:"tags"`
	Error             *AuthEventError `json:"error,omitempty"`
}

// AuthEventUser is the connection's end user, when it has one.
type AuthEventUser struct {
	EndUserID      string         `json:"endUserId"`
	EndUserEmail   *string        `json:"endUserEmail"`
	OrganizationID *string        `json:"organizationId"`
	Tags           map[string]any `json:"tags"`
}

// AuthEventError says why a refresh failed: the provider's error and error_description.
type AuthEventError struct {
	Type        string `json:"type"`
	Description string `json:"description"`
}

// Operations of auth events.
const (
	WebhookCreation = "creation"
	WebhookOverride = "override"
	WebhookRefresh  = "refresh"
)

// execQuerier is a transaction, as database/sql or GORM's connection pool hands it out.
type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// pendingEvent is one event to queue: the connection it is about and what happened.
type pendingEvent struct {
	environmentID int64
	integration   Integration
	connectionID  string
	connectionRow int64
	operation     string
	tags          string
	endUser       *string
	// override replaces the destinations for this event ("" : the connection's, or the settings').
	override string
	err      *AuthEventError
}

// eventSettings are what queuing needs of an environment's settings.
type eventSettings struct {
	name                      string
	primary, secondary        string
	onCreation, onRefreshFail bool
}

// queueEvents writes the outbox rows of events, in tx, for the environments whose webhooks are
// set and whose switches allow them.
func queueEvents(ctx context.Context, tx execQuerier, d Dialect, now time.Time, events []pendingEvent) error {
	if len(events) == 0 {
		return nil
	}
	envIDs := map[int64]bool{}
	var ids []any
	for _, e := range events {
		if !envIDs[e.environmentID] {
			envIDs[e.environmentID] = true
			ids = append(ids, e.environmentID)
		}
	}
	settings := make(map[int64]eventSettings, len(ids))
	rows, err := tx.QueryContext(ctx, numbered(d, `SELECT s.environment_id, e.name, s.primary_url, s.secondary_url,
    s.on_auth_creation, s.on_auth_refresh_error
FROM webhook_settings s JOIN environments e ON e.id = s.environment_id
WHERE s.environment_id IN (`+marks(len(ids))+`)`), ids...)
	if err != nil {
		return fmt.Errorf("webhook settings: %w", err)
	}
	for rows.Next() {
		var id int64
		var s eventSettings
		if err := rows.Scan(&id, &s.name, &s.primary, &s.secondary, &s.onCreation, &s.onRefreshFail); err != nil {
			rows.Close()
			return fmt.Errorf("webhook settings: %w", err)
		}
		settings[id] = s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("webhook settings: %w", err)
	}
	if len(settings) == 0 {
		return nil
	}
	var keep []pendingEvent
	var connRows []any
	for _, e := range events {
		s, ok := settings[e.environmentID]
		if !ok || (e.operation == WebhookCreation && !s.onCreation) || (e.operation == WebhookRefresh && !s.onRefreshFail) {
			continue
		}
		keep = append(keep, e)
		if e.override == "" {
			connRows = append(connRows, e.connectionRow)
		}
	}
	overrides, err := connectionOverrides(ctx, tx, d, connRows)
	if err != nil {
		return err
	}
	var values []string
	var args []any
	flush := func() error {
		if len(values) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, numbered(d, `INSERT INTO webhook_deliveries (delivery_id, environment_id, url, operation,
    provider_config_key, connection_id, body, next_attempt_at, queued_at, created_at) VALUES `+strings.Join(values, ", ")), args...)
		values, args = values[:0], args[:0]
		if err != nil {
			return fmt.Errorf("queue webhooks: %w", err)
		}
		return nil
	}
	for _, e := range keep {
		s := settings[e.environmentID]
		urls := []string{s.primary, s.secondary}
		if o := e.override; o != "" {
			urls = []string{o}
		} else if o := overrides[e.connectionRow]; o != "" {
			urls = []string{o}
		}
		body, err := eventBody(e, s.name)
		if err != nil {
			return err
		}
		id := uuid.NewString()
		for _, u := range urls {
			if u == "" {
				continue
			}
			values = append(values, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			args = append(args, id, e.environmentID, u, e.operation, e.integration.UniqueKey, e.connectionID, string(body), now, now, now)
			if len(values) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// connectionOverrides reads the webhook_url_override of the connection rows that have one.
func connectionOverrides(ctx context.Context, tx execQuerier, d Dialect, ids []any) (map[int64]string, error) {
	out := map[int64]string{}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		rows, err := tx.QueryContext(ctx, numbered(d, `SELECT id, webhook_url_override FROM connections
WHERE id IN (`+marks(len(chunk))+`) AND webhook_url_override IS NOT NULL AND webhook_url_override <> ''`), chunk...)
		if err != nil {
			return nil, fmt.Errorf("webhook overrides: %w", err)
		}
		for rows.Next() {
			var id int64
			var u string
			if err := rows.Scan(&id, &u); err != nil {
				rows.Close()
				return nil, fmt.Errorf("webhook overrides: %w", err)
			}
			out[id] = u
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("webhook overrides: %w", err)
		}
	}
	return out, nil
}

func marks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// eventBody is the JSON body of e.
func eventBody(e pendingEvent, environment string) ([]byte, error) {
	ev := AuthEvent{
		From: "credport", Type: "auth", Operation: e.operation, ConnectionID: e.connectionID,
		AuthMode: e.integration.AuthMode, ProviderConfigKey: e.integration.UniqueKey, Provider: e.integration.Provider,
		Environment: environment, Success: e.operation != WebhookRefresh, Tags: map[string]any{}, Error: e.err,
	}
	// Decoded and written again rather than copied, so that the body is written one way
	// whatever the database stored.
	if e.tags != "" {
		if err := json.Unmarshal([]byte(e.tags), &ev.Tags); err != nil {
			return nil, fmt.Errorf("webhook body: stored tags: %w", err)
		}
	}
	if e.endUser != nil && *e.endUser != "" {
		var stored struct {
			ID           string  `json:"id"`
			Email        *string `json:"email"`
			Organization *struct {
				ID string `json:"id"`
			} `json:"organization"`
			Tags map[string]any `json:"tags"`
		}
		if err := json.Unmarshal([]byte(*e.endUser), &stored); err != nil {
			return nil, fmt.Errorf("webhook body: stored end user: %w", err)
		}
		u := &AuthEventUser{EndUserID: stored.ID, EndUserEmail: stored.Email, Tags: stored.Tags}
		if stored.Organization != nil {
			u.OrganizationID = &stored.Organization.ID
		}
		if u.Tags == nil {
			u.Tags = map[string]any{}
		}
		ev.EndUser = u
	}
	// As JSON.stringify writes it, so that the legacy signature, which receivers check over
	// JSON.stringify(JSON.parse(body)), holds too.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, fmt.Errorf("webhook body: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
