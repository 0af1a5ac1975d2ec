-- +goose Up
ALTER TABLE connections ADD COLUMN webhook_url_override TEXT;

-- +goose Down
ALTER TABLE connections DROP COLUMN webhook_url_override;
