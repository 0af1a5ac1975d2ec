-- +goose Up
-- What the integrations API shows and changes: a display name (NULL: the catalog's), whether
-- provider webhooks are forwarded, a GitHub App's link and when the integration last changed
-- (NULL: never since it was created).
ALTER TABLE integrations ADD COLUMN display_name TEXT;
ALTER TABLE integrations ADD COLUMN forward_webhooks BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE integrations ADD COLUMN app_link TEXT;
ALTER TABLE integrations ADD COLUMN updated_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE integrations DROP COLUMN updated_at;
ALTER TABLE integrations DROP COLUMN app_link;
ALTER TABLE integrations DROP COLUMN forward_webhooks;
ALTER TABLE integrations DROP COLUMN display_name;
