-- When an administrator last changed a user's roles or scopes (Unix seconds; NULL: never).
-- Tokens of the user issued at or before it carry stale claims: `stateful` verifiers learn it
-- from `CheckSession`, `hybrid` ones from the `user_changed` revocation event.
ALTER TABLE users ADD COLUMN claims_changed_at BIGINT;
