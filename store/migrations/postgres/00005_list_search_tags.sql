-- +goose Up
-- The list's search (a case-insensitive substring of the connection id or of the end user's
-- display name or email) is served by trigram indexes, one column per searched expression, so
-- that the ILIKE of each is a bitmap scan and the three are ORed. pg_trgm is a trusted extension
-- (PostgreSQL 13+): a user who may create objects in the database may create it. A pattern with
-- no trigram (under 3 letters or digits in a row) cannot use the index; the planner then walks
-- the environment's ordered index instead. Tags already have their GIN index (migration 3).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX connections_search ON connections USING GIN (
    connection_id gin_trgm_ops,
    (end_user->>'display_name') gin_trgm_ops,
    (end_user->>'email') gin_trgm_ops);

-- +goose Down
-- pg_trgm stays: it may have been there before, and other objects may use it.
DROP INDEX connections_search;
