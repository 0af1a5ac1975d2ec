-- +goose Up
-- A refresh claims its connection for a lease before it calls the provider, so that one refresh
-- of a connection runs at a time across servers without a lock held over the provider's call:
-- refresh_claim names the refresh holding it, refresh_claimed_until ends its lease.
ALTER TABLE connections ADD COLUMN refresh_claim TEXT;
ALTER TABLE connections ADD COLUMN refresh_claimed_until TIMESTAMPTZ;

-- +goose Down
ALTER TABLE connections DROP COLUMN refresh_claimed_until;
ALTER TABLE connections DROP COLUMN refresh_claim;
