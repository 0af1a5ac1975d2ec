-- +goose Up
-- Where and how an OAuth integration renews its connections' tokens.
ALTER TABLE integrations ADD COLUMN token_url TEXT;
ALTER TABLE integrations ADD COLUMN token_auth TEXT;
ALTER TABLE integrations ADD COLUMN scopes TEXT;

-- credentials_expires_at is from now on when the credentials must be renewed: their expiry, or the
-- import time of a refresh token whose expiry is unknown, so that it is refreshed once soon.
-- The refresh_* columns are the refresh history since the last import or successful refresh.
ALTER TABLE connections ADD COLUMN refresh_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN refresh_failed_at DATETIME;
ALTER TABLE connections ADD COLUMN refresh_error TEXT;
ALTER TABLE connections ADD COLUMN refresh_log_id TEXT;
ALTER TABLE connections ADD COLUMN refresh_unavailable_at DATETIME;
CREATE INDEX connections_refresh_due ON connections (credentials_expires_at)
    WHERE credentials_expires_at IS NOT NULL;

-- +goose Down
DROP INDEX connections_refresh_due;
ALTER TABLE connections DROP COLUMN refresh_unavailable_at;
ALTER TABLE connections DROP COLUMN refresh_log_id;
ALTER TABLE connections DROP COLUMN refresh_error;
ALTER TABLE connections DROP COLUMN refresh_failed_at;
ALTER TABLE connections DROP COLUMN refresh_failures;
ALTER TABLE integrations DROP COLUMN scopes;
ALTER TABLE integrations DROP COLUMN token_auth;
ALTER TABLE integrations DROP COLUMN token_url;
