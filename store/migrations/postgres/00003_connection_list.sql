-- +goose Up
-- One index per filter of GET /connections, each led by the environment and the filter's value
-- and ending in the list's order, so that a page reads only its own rows, already sorted.
CREATE INDEX connections_env_created ON connections (environment_id, created_at DESC, id DESC);
CREATE INDEX connections_env_connection_id ON connections (environment_id, connection_id, created_at DESC, id DESC);
CREATE INDEX connections_env_pck_created ON connections (environment_id, provider_config_key, created_at DESC, id DESC);
CREATE INDEX connections_env_end_user_id ON connections (environment_id, (end_user->>'id'), created_at DESC, id DESC);
CREATE INDEX connections_env_end_user_org ON connections (environment_id, (end_user->'organization'->>'id'), created_at DESC, id DESC);
CREATE INDEX connections_tags ON connections USING GIN (tags jsonb_path_ops);

-- +goose Down
DROP INDEX connections_tags;
DROP INDEX connections_env_end_user_org;
DROP INDEX connections_env_end_user_id;
DROP INDEX connections_env_pck_created;
DROP INDEX connections_env_connection_id;
DROP INDEX connections_env_created;
