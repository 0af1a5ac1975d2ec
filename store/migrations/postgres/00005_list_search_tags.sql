-- +goose Up
-- The list's search (a case-insensitive substring of the connection id or of the end user's
-- display name or email) is served by trigram indexes, one column per searched expression, so
-- that the ILIKE of each is a bitmap scan and the three are ORed. pg_trgm is a trusted extension
-- (PostgreSQL 13+): a user who may create objects in the database may create it. A pattern with
-- no trigram (under 3 letters or digits in a row) cannot use the index; the planner then walks
-- the environment's ordered index instead. GIN queues new entries in a pending list that every
-- scan reads in full (4 MB by default); a short one keeps searches quick beside imports.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX connections_search ON connections USING GIN (
    connection_id gin_trgm_ops,
    (end_user->>'display_name') gin_trgm_ops,
    (end_user->>'email') gin_trgm_ops)
    WITH (gin_pending_list_limit = 512);

-- The list's tags filter: one row per tag of each connection, as on SQLite. The GIN index of
-- migration 3 let the planner choose between it and the environment's ordered index by an
-- estimate that sampled tag values throw off by a hundredfold, and a rare tag then read every
-- connection of the environment. This index walks the connections of one tag already in the
-- list's order, so a page reads only its own rows whatever the tag. The environment and
-- created_at are copied from the connection (neither changes after insert).
CREATE TABLE connection_tags (
    connection_pk  BIGINT NOT NULL,
    environment_id BIGINT NOT NULL,
    key            TEXT NOT NULL,
    value          TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (connection_pk, key)
);
CREATE INDEX connection_tags_env_key_value ON connection_tags (environment_id, key, value, created_at DESC, connection_pk DESC);
INSERT INTO connection_tags (connection_pk, environment_id, key, value, created_at)
SELECT c.id, c.environment_id, t.key, t.value, c.created_at FROM connections c, jsonb_each_text(c.tags) t;
DROP INDEX connections_tags;

-- A trigger keeps the table in step with connections, whatever statement writes it (import,
-- PATCH, delete). An import that updates a connection sets tags even when it keeps them, hence
-- the WHEN clause.
-- +goose StatementBegin
CREATE FUNCTION connection_tags_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM connection_tags WHERE connection_pk = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO connection_tags (connection_pk, environment_id, key, value, created_at)
        SELECT NEW.id, NEW.environment_id, t.key, t.value, NEW.created_at FROM jsonb_each_text(NEW.tags) t;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER connection_tags_insert AFTER INSERT ON connections
    FOR EACH ROW EXECUTE FUNCTION connection_tags_sync();
CREATE TRIGGER connection_tags_update AFTER UPDATE OF tags, environment_id, created_at ON connections
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags OR OLD.environment_id IS DISTINCT FROM NEW.environment_id
        OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION connection_tags_sync();
CREATE TRIGGER connection_tags_delete AFTER DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION connection_tags_sync();

-- +goose Down
-- pg_trgm stays: it may have been there before, and other objects may use it.
DROP TRIGGER connection_tags_delete ON connections;
DROP TRIGGER connection_tags_update ON connections;
DROP TRIGGER connection_tags_insert ON connections;
DROP FUNCTION connection_tags_sync();
DROP TABLE connection_tags;
CREATE INDEX connections_tags ON connections USING GIN (tags jsonb_path_ops);
DROP INDEX connections_search;
