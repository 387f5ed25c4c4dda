//! Sessions, one aggregate: a session, the family of its refresh tokens, and the events that
//! announce its end. A session is one login, identified by the `sid` claim of the user's access
//! tokens and by the family of its refresh tokens.
//!
//! Two records make a session:
//!
//! - the **family row** in the SQL `sessions` table, written with the first refresh token in the
//!   login transaction ([`create_family`]): what a refresh needs (client, granted scope, absolute
//!   end) and what refresh tokens reference. It is always in SQL, whatever the store.
//! - the **session state** in a [`SessionStore`]: whether the session is still active, plus what
//!   `GET /v1/sessions` shows. [`SqlStore`] keeps it in the same `sessions` row (the embedded
//!   default); [`RedisStore`] keeps it in Redis (`REDIS_URL`, several replicas), where `stateful`
//!   verifiers can read it directly.
//!
//! The store is the only authority on whether a session is active: `CheckSession`, the issuer's
//! own bearer checks and the refresh grant all ask it. Ending a session through the store also
//! appends the matching revocation event ([`revocation`]) for `hybrid` verifiers.
//!
//! The modules, each using only those listed before it: `model` (what a session is and why it
//! ends), [`stats`] (what the counts of active sessions are), `family` (the family row),
//! [`refresh_tokens`] (the family's tokens and their rotation), [`revocation`] (the feed of
//! ends, and of disabled users and revoked keys), `store` (the [`SessionStore`] contract and the
//! session cap), [`sql`] and [`redis`] (the stores), `lookup` (the store as `authn`'s session
//! lookup), `gauges` (the counts as metrics), and [`purge`] (the deletion of expired families
//! and events: what is kept how long).

mod family;
mod gauges;
mod lookup;
mod model;
pub mod purge;
pub mod redis;
pub mod refresh_tokens;
pub mod revocation;
pub mod sql;
pub mod stats;
mod store;

pub use self::family::find;
pub use self::gauges::{StatsRefresher, describe_metrics as describe_stats_metrics};
pub use self::lookup::StoreLookup;
pub use self::model::{ClientMeta, EndReason, NewSession, Session, new_session};
pub use self::purge::Purger;
pub use self::redis::RedisStore;
pub use self::refresh_tokens::create_family;
pub use self::sql::SqlStore;
pub use self::stats::SessionStats;
pub use self::store::{SessionStore, SharedStore, StoreError, enforce_cap};
