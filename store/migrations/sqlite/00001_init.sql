-- +goose Up
CREATE TABLE environments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_at DATETIME NOT NULL
);

CREATE TABLE api_keys (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id INTEGER NOT NULL REFERENCES environments (id),
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL UNIQUE,
    scopes         TEXT NOT NULL,
    created_at     DATETIME NOT NULL,
    revoked_at     DATETIME
);

CREATE TABLE integrations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id INTEGER NOT NULL REFERENCES environments (id),
    unique_key     TEXT NOT NULL,
    provider       TEXT NOT NULL,
    auth_mode      TEXT NOT NULL,
    client_id      TEXT,
    client_secret  TEXT,
    created_at     DATETIME NOT NULL,
    UNIQUE (environment_id, unique_key)
);

CREATE TABLE connections (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id         INTEGER NOT NULL REFERENCES environments (id),
    integration_id         INTEGER NOT NULL REFERENCES integrations (id),
    provider_config_key    TEXT NOT NULL,
    connection_id          TEXT NOT NULL,
    credentials            TEXT NOT NULL,
    credentials_expires_at DATETIME,
    connection_config      TEXT NOT NULL,
    metadata               TEXT NOT NULL,
    tags                   TEXT NOT NULL,
    end_user               TEXT,
    created_at             DATETIME NOT NULL,
    updated_at             DATETIME NOT NULL,
    last_fetched_at        DATETIME NOT NULL,
    UNIQUE (environment_id, provider_config_key, connection_id)
);

-- +goose Down
DROP TABLE connections;
DROP TABLE integrations;
DROP TABLE api_keys;
DROP TABLE environments;
