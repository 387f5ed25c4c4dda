-- The counts of active sessions (src/sessions/stats.rs: `auth_sessions_active`,
-- `auth_users_active`, `GET /v1/admin/sessions/stats`) read only the active rows, by end, client,
-- start and user: this partial index holds exactly those columns of the rows not ended, so on
-- PostgreSQL the counts are index-only scans that never read the table, and ended rows (kept
-- until the purge) cost nothing. SQLite and PostgreSQL both support partial indexes.
-- (On a large PostgreSQL table, create it beforehand with CREATE INDEX CONCURRENTLY under this
-- name: this migration then finds it and builds nothing; docs/OPERATIONS.md.)
CREATE INDEX IF NOT EXISTS sessions_active_idx
    ON sessions (expires_at, client_id, created_at, user_id)
    WHERE revoked_at IS NULL;
