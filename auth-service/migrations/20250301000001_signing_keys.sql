-- Signing keys shared by every replica (AUTH_KEY_STORE=database). `private_key` is the PKCS#8
-- DER of the key encrypted with AES-256-GCM under AUTH_KEY_ENCRYPTION_KEY, the kid as associated
-- data, stored as `v1:` + base64url(nonce || ciphertext || tag); it is erased ('') when the key
-- is revoked. States: next (published, not signing), active (signing, exactly one), retired
-- (published until its tokens expire), revoked (withdrawn). Retired and revoked rows are deleted
-- once every token they signed has expired.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    private_key  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retired_at   BIGINT,
    revoked_at   BIGINT
);

-- Every change of the key set (any store) runs in a transaction that first updates this row:
-- its row lock (PostgreSQL) or the write lock it takes (SQLite) lets one replica change the
-- set at a time, and `version` tells the other replicas that they must reload.
CREATE TABLE signing_key_lock (
    id      BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);

INSERT INTO signing_key_lock (id, version) VALUES (1, 0);
