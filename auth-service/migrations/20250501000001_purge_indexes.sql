-- The purge (src/sessions/purge.rs) deletes expired families oldest first, one small batch at a
-- time: these indexes make each batch a range scan instead of a scan of the whole table.
-- (On a large PostgreSQL table, create them beforehand with CREATE INDEX CONCURRENTLY under
-- these names: this migration then finds them and builds nothing; docs/OPERATIONS.md.)
CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);
