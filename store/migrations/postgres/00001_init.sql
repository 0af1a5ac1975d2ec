-- +goose Up
CREATE TABLE environments (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id             BIGSERIAL PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL UNIQUE,
    scopes         TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ
);

CREATE TABLE integrations (
    id             BIGSERIAL PRIMARY KEY,
    environment_id BIGINT NOT NULL REFERENCES environments (id),
    unique_key     TEXT NOT NULL,
    provider       TEXT NOT NULL,
    auth_mode      TEXT NOT NULL,
    client_id      TEXT,
    client_secret  TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (environment_id, unique_key)
);

CREATE TABLE connections (
    id                     BIGSERIAL PRIMARY KEY,
    environment_id         BIGINT NOT NULL REFERENCES environments (id),
    integration_id         BIGINT NOT NULL REFERENCES integrations (id),
    provider_config_key    TEXT NOT NULL,
    connection_id          TEXT NOT NULL,
    credentials            TEXT NOT NULL,
    credentials_expires_at TIMESTAMPTZ,
    connection_config      JSONB NOT NULL,
    metadata               JSONB NOT NULL,
    tags                   JSONB NOT NULL,
    end_user               JSONB,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL,
    last_fetched_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (environment_id, provider_config_key, connection_id)
);

-- +goose Down
DROP TABLE connections;
DROP TABLE integrations;
DROP TABLE api_keys;
DROP TABLE environments;
