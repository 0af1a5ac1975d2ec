-- +goose Up
-- The ids of the keys that sealed the stored values (v1:<key id>:...), so that a start can tell
-- from a table of a few rows whether its key ring opens everything. Triggers add an id whatever
-- statement writes a sealed column; an id whose last value is gone is removed by the next check
-- that finds it missing from a key ring (store.CheckKeys). The triggers insert only ids not listed
-- yet: a conflict clause of their own would give way to the outer statement's (the import's upsert).
CREATE TABLE sealing_keys (
    key_id TEXT PRIMARY KEY
) WITHOUT ROWID;

INSERT OR IGNORE INTO sealing_keys (key_id)
SELECT substr(v, 4, instr(substr(v, 4), ':') - 1) FROM (
    SELECT credentials AS v FROM connections
    UNION SELECT client_secret FROM integrations
    UNION SELECT private_key FROM integrations)
WHERE substr(v, 1, 3) = 'v1:' AND instr(substr(v, 4), ':') > 1;

-- +goose StatementBegin
CREATE TRIGGER sealing_keys_connections_insert AFTER INSERT ON connections BEGIN
    INSERT INTO sealing_keys (key_id)
    SELECT k FROM (SELECT substr(new.credentials, 4, instr(substr(new.credentials, 4), ':') - 1) AS k
                   WHERE substr(new.credentials, 1, 3) = 'v1:' AND instr(substr(new.credentials, 4), ':') > 1)
    WHERE k NOT IN (SELECT key_id FROM sealing_keys);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER sealing_keys_connections_update AFTER UPDATE OF credentials ON connections BEGIN
    INSERT INTO sealing_keys (key_id)
    SELECT k FROM (SELECT substr(new.credentials, 4, instr(substr(new.credentials, 4), ':') - 1) AS k
                   WHERE substr(new.credentials, 1, 3) = 'v1:' AND instr(substr(new.credentials, 4), ':') > 1)
    WHERE k NOT IN (SELECT key_id FROM sealing_keys);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER sealing_keys_integrations_insert AFTER INSERT ON integrations BEGIN
    INSERT INTO sealing_keys (key_id)
    SELECT DISTINCT k FROM (SELECT substr(v, 4, instr(substr(v, 4), ':') - 1) AS k
                            FROM (SELECT new.client_secret AS v UNION ALL SELECT new.private_key)
                            WHERE substr(v, 1, 3) = 'v1:' AND instr(substr(v, 4), ':') > 1)
    WHERE k NOT IN (SELECT key_id FROM sealing_keys);
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER sealing_keys_integrations_update AFTER UPDATE OF client_secret, private_key ON integrations BEGIN
    INSERT INTO sealing_keys (key_id)
    SELECT DISTINCT k FROM (SELECT substr(v, 4, instr(substr(v, 4), ':') - 1) AS k
                            FROM (SELECT new.client_secret AS v UNION ALL SELECT new.private_key)
                            WHERE substr(v, 1, 3) = 'v1:' AND instr(substr(v, 4), ':') > 1)
    WHERE k NOT IN (SELECT key_id FROM sealing_keys);
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER sealing_keys_integrations_update;
DROP TRIGGER sealing_keys_integrations_insert;
DROP TRIGGER sealing_keys_connections_update;
DROP TRIGGER sealing_keys_connections_insert;
DROP TABLE sealing_keys;
