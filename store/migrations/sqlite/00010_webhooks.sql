-- +goose Up
-- Auth webhooks: each environment's destinations, switches and sealed signing key, and the
-- outbox of events, one row per event and destination, written in the transaction of the change
-- that caused the event and delivered in the background.
CREATE TABLE webhook_settings (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id        BIGINT NOT NULL UNIQUE REFERENCES environments(id) ON DELETE CASCADE,
    primary_url           TEXT NOT NULL DEFAULT '',
    secondary_url         TEXT NOT NULL DEFAULT '',
    on_auth_creation      BOOLEAN NOT NULL DEFAULT TRUE,
    on_auth_refresh_error BOOLEAN NOT NULL DEFAULT TRUE,
    signing_key           TEXT NOT NULL,
    created_at            DATETIME NOT NULL,
    updated_at            DATETIME NOT NULL
);

-- status is pending, delivered or failed; queued_at starts the retry window (the event, or its
-- redelivery). A pending row is due at next_attempt_at; a sender
-- holds it until claimed_until, so that one replica at a time attempts it.
CREATE TABLE webhook_deliveries (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id         TEXT NOT NULL,
    environment_id      BIGINT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    url                 TEXT NOT NULL,
    operation           TEXT NOT NULL,
    provider_config_key TEXT NOT NULL,
    connection_id       TEXT NOT NULL,
    body                TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'pending',
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     DATETIME NOT NULL,
    claim               TEXT,
    claimed_until       DATETIME,
    last_status         INTEGER,
    last_error          TEXT,
    last_attempt_at     DATETIME,
    delivered_at        DATETIME,
    queued_at           DATETIME NOT NULL,
    created_at          DATETIME NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_env ON webhook_deliveries (environment_id, id);
CREATE INDEX webhook_deliveries_delivery ON webhook_deliveries (delivery_id);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_settings;
