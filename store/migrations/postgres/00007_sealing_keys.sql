-- +goose Up
-- The ids of the keys that sealed the stored values (v1:<key id>:...), so that a start can tell
-- from a table of a few rows whether its key ring opens everything. Triggers add an id whatever
-- statement writes a sealed column; an id whose last value is gone is removed by the next check
-- that finds it missing from a key ring (store.CheckKeys), which holds an exclusive
-- lock on the table meanwhile: a writer that found its id listed holds a share lock on it until it
-- commits, so an id is never removed under a value about to be committed.
CREATE TABLE sealing_keys (
    key_id TEXT PRIMARY KEY
);

-- +goose StatementBegin
CREATE FUNCTION sealing_key_id(sealed TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN sealed LIKE 'v1:_%:%' THEN split_part(sealed, ':', 2) END
$$;
-- +goose StatementEnd

INSERT INTO sealing_keys (key_id)
SELECT k FROM (
    SELECT sealing_key_id(credentials) AS k FROM connections
    UNION SELECT sealing_key_id(client_secret) FROM integrations
    UNION SELECT sealing_key_id(private_key) FROM integrations) ids
WHERE k IS NOT NULL;

-- +goose StatementBegin
CREATE FUNCTION sealing_keys_add(sealed TEXT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    kid TEXT := sealing_key_id(sealed);
BEGIN
    IF kid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sealing_keys WHERE key_id = kid) THEN
        INSERT INTO sealing_keys (key_id) VALUES (kid) ON CONFLICT DO NOTHING;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION sealing_keys_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'connections' THEN
        PERFORM sealing_keys_add(NEW.credentials);
    ELSE
        PERFORM sealing_keys_add(NEW.client_secret);
        PERFORM sealing_keys_add(NEW.private_key);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- An update that keeps the key id (an import over a connection sealed with the same key) runs no
-- function: its id is listed already.
CREATE TRIGGER sealing_keys_connections_insert AFTER INSERT ON connections
    FOR EACH ROW EXECUTE FUNCTION sealing_keys_note();
CREATE TRIGGER sealing_keys_connections_update AFTER UPDATE OF credentials ON connections
    FOR EACH ROW WHEN (sealing_key_id(NEW.credentials) IS DISTINCT FROM sealing_key_id(OLD.credentials))
    EXECUTE FUNCTION sealing_keys_note();
CREATE TRIGGER sealing_keys_integrations_insert AFTER INSERT ON integrations
    FOR EACH ROW EXECUTE FUNCTION sealing_keys_note();
CREATE TRIGGER sealing_keys_integrations_update AFTER UPDATE OF client_secret, private_key ON integrations
    FOR EACH ROW EXECUTE FUNCTION sealing_keys_note();

-- +goose Down
DROP TRIGGER sealing_keys_integrations_update ON integrations;
DROP TRIGGER sealing_keys_integrations_insert ON integrations;
DROP TRIGGER sealing_keys_connections_update ON connections;
DROP TRIGGER sealing_keys_connections_insert ON connections;
DROP FUNCTION sealing_keys_note();
DROP FUNCTION sealing_keys_add(TEXT);
DROP FUNCTION sealing_key_id(TEXT);
DROP TABLE sealing_keys;
