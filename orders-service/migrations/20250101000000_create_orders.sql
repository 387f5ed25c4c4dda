-- Orders of every user. Portable between SQLite and PostgreSQL: TEXT and BIGINT only.
CREATE TABLE orders (
    -- A UUIDv7 in its lowercase hyphenated form.
    id           TEXT   PRIMARY KEY,
    -- The `sub` of the token that created the order.
    owner        TEXT   NOT NULL,
    item         TEXT   NOT NULL,
    quantity     BIGINT NOT NULL,
    -- 'placed' or 'cancelled'.
    status       TEXT   NOT NULL,
    -- Unix seconds.
    created_at   BIGINT NOT NULL,
    -- Unix seconds; NULL while the order is not cancelled.
    cancelled_at BIGINT NULL
);

-- Keyset pagination, newest first: a user's own orders, and everyone's for admins.
CREATE INDEX orders_owner_created ON orders (owner, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
