-- +goose Up
-- The list's search: an FTS5 table with the trigram tokenizer, one row per connection (rowid =
-- connections.id) holding the three searched values, which it indexes case-insensitively
-- (Unicode case folding, accents kept). It stores no copy of them (content=''); rows are deleted
-- by rowid. A phrase query matches a substring of one column; substrings shorter than 3
-- characters have no trigram, so those searches fall back to LIKE over the connections.
CREATE VIRTUAL TABLE connections_search USING fts5(
    connection_id, display_name, email,
    tokenize = 'trigram', content = '', contentless_delete = 1);

-- The list's tags filter: one row per tag of each connection. The environment and created_at
-- are copied from the connection (neither changes after insert) so that the index walks the
-- connections of one tag already in the list's order and a page stops at its end.
CREATE TABLE connection_tags (
    connection_pk  INTEGER NOT NULL,
    environment_id INTEGER NOT NULL,
    key            TEXT NOT NULL,
    value          TEXT NOT NULL,
    created_at     DATETIME NOT NULL,
    PRIMARY KEY (connection_pk, key)
) WITHOUT ROWID;
CREATE INDEX connection_tags_env_key_value ON connection_tags (environment_id, key, value, created_at DESC, connection_pk DESC);

INSERT INTO connections_search (rowid, connection_id, display_name, email)
SELECT id, connection_id, json_extract(end_user, '$.display_name'), json_extract(end_user, '$.email') FROM connections;
INSERT INTO connection_tags (connection_pk, environment_id, key, value, created_at)
SELECT c.id, c.environment_id, t.key, t.value, c.created_at FROM connections c, json_each(c.tags) t;

-- Triggers keep both in step with connections, whatever statement writes it (import, PATCH,
-- delete). An import that updates a connection sets tags and end_user even when it keeps them,
-- hence the WHEN clauses.
-- +goose StatementBegin
CREATE TRIGGER connections_list_insert AFTER INSERT ON connections BEGIN
    INSERT INTO connections_search (rowid, connection_id, display_name, email)
    VALUES (new.id, new.connection_id, json_extract(new.end_user, '$.display_name'), json_extract(new.end_user, '$.email'));
    INSERT INTO connection_tags (connection_pk, environment_id, key, value, created_at)
    SELECT new.id, new.environment_id, key, value, new.created_at FROM json_each(new.tags);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER connections_search_update AFTER UPDATE OF connection_id, end_user ON connections
WHEN old.connection_id IS NOT new.connection_id OR old.end_user IS NOT new.end_user BEGIN
    DELETE FROM connections_search WHERE rowid = old.id;
    INSERT INTO connections_search (rowid, connection_id, display_name, email)
    VALUES (new.id, new.connection_id, json_extract(new.end_user, '$.display_name'), json_extract(new.end_user, '$.email'));
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER connection_tags_update AFTER UPDATE OF tags, environment_id, created_at ON connections
WHEN old.tags IS NOT new.tags OR old.environment_id IS NOT new.environment_id OR old.created_at IS NOT new.created_at BEGIN
    DELETE FROM connection_tags WHERE connection_pk = old.id;
    INSERT INTO connection_tags (connection_pk, environment_id, key, value, created_at)
    SELECT new.id, new.environment_id, key, value, new.created_at FROM json_each(new.tags);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER connections_list_delete AFTER DELETE ON connections BEGIN
    DELETE FROM connections_search WHERE rowid = old.id;
    DELETE FROM connection_tags WHERE connection_pk = old.id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER connections_list_delete;
DROP TRIGGER connection_tags_update;
DROP TRIGGER connections_search_update;
DROP TRIGGER connections_list_insert;
DROP TABLE connection_tags;
DROP TABLE connections_search;
