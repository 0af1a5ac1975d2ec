-- +goose Up
ALTER TABLE integrations ADD COLUMN app_id TEXT;
ALTER TABLE integrations ADD COLUMN private_key TEXT;
ALTER TABLE integrations ADD COLUMN api_base_url TEXT;

-- +goose Down
ALTER TABLE integrations DROP COLUMN api_base_url;
ALTER TABLE integrations DROP COLUMN private_key;
ALTER TABLE integrations DROP COLUMN app_id;
