//! The Redis session store, for several issuer replicas (`REDIS_URL`).
//!
//! Layout (fixed: `stateful` verifiers with `REDIS_URL` read it directly):
//!
//! - `auth:session:{sid}` ([`authn::session::redis_session_key`]): the JSON of an active
//!   session, expiring with the session (`EXAT`), deleted when it ends. Its existence *is* the
//!   session being active; verifiers only test `EXISTS`.
//! - `auth:user-sessions:{user_id}`: the set of the user's session ids, for listing and
//!   logout-all; its TTL is extended to the longest session's end. It may hold ids of sessions
//!   that have expired since; listing removes them.
//! - `auth:user-changed:{user_id}` ([`authn::session::redis_user_changed_key`]): the Unix time
//!   of the last change of the user's roles or scopes, for one access-token lifetime and a
//!   margin; verifiers read it with the session's key and refuse tokens issued at or before it.
//!
//! Multi-key updates run as Lua scripts, so each is atomic. The scripts touch session keys they
//! derive from the set's members, which a Redis Cluster would refuse: this store expects one
//! Redis (with replicas and Sentinel if need be).
//!
//! Revocation events are written to SQL after the Redis change (the event names what the change
//! actually ended). If that write fails the operation reports an error although the session has
//! ended: `stateful` verifiers refuse its tokens at once, `hybrid` ones when they expire.

use std::path::Path;
use std::time::Duration;

use authn::session::{redis_session_key, redis_user_changed_key};
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script};
use serde::{Deserialize, Serialize};

use super::model::{EndReason, Session};
use super::revocation::{RevocationLog, Target};
use super::store::{SessionStore, StoreError, count_ended};
use crate::db;
use crate::scope::ScopeSet;

/// Longest time one store operation may take before it fails (closed).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The key of a user's set of session ids.
pub fn user_sessions_key(user_id: &str) -> String {
    format!("auth:user-sessions:{user_id}")
}

/// Connects to `url` (`rediss://`: over TLS, the server's certificate checked against
/// `ca_file` or the public roots, see [`authn::session::redis::client`]): a client (for
/// subscriptions) and a connection manager that reconnects on its own. Fails if Redis does not
/// answer now.
pub async fn connect(
    url: &str,
    ca_file: Option<&Path>,
) -> Result<(redis::Client, ConnectionManager), redis::RedisError> {
    let client = authn::session::redis::client(url, ca_file)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
    Ok((client, manager))
}

/// `KEYS[1]` session key, `KEYS[2]` user set; `ARGV[1]` JSON, `ARGV[2]` end (Unix seconds),
/// `ARGV[3]` sid, `ARGV[4]` remaining seconds.
const CREATE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2], 'NX')
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
";

/// `KEYS[1]` session key; `ARGV[1]` user-set key prefix, `ARGV[2]` sid. Returns the deleted
/// record, or nil.
const END: &str = r"
local record = redis.call('GET', KEYS[1])
if not record then return false end
redis.call('DEL', KEYS[1])
local ok, session = pcall(cjson.decode, record)
if ok and type(session) == 'table' and type(session.user_id) == 'string' then
  redis.call('SREM', ARGV[1] .. session.user_id, ARGV[2])
end
return record
";

/// `KEYS[1]` user set; `ARGV[1]` session key prefix. Returns the ids of the sessions deleted.
const END_ALL: &str = r"
local ended = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('DEL', ARGV[1] .. sid) == 1 then
    ended[#ended + 1] = sid
  end
end
redis.call('DEL', KEYS[1])
return ended
";

/// The JSON stored at `auth:session:{sid}`.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    user_id: String,
    client_id: Option<String>,
    scope: Option<String>,
    created_at: i64,
    #[serde(default)]
    created_at_ms: Option<i64>,
    last_seen_at: i64,
    expires_at: i64,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl Record {
    fn from_session(session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            user_id: session.user_id.clone(),
            client_id: session.client_id.clone(),
            scope: session.scope.as_ref().map(ToString::to_string),
            created_at: session.created_at,
            created_at_ms: Some(session.created_at_ms),
            last_seen_at: session.last_seen_at,
            expires_at: session.expires_at,
            user_agent: session.user_agent.clone(),
            ip: session.ip.clone(),
        }
    }

    fn parse(json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("session record: {e}")))
    }

    fn into_session(self) -> Result<Session, StoreError> {
        let scope = self
            .scope
            .as_deref()
            .map(ScopeSet::parse)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("session {}: {e}", self.id)))?;
        Ok(Session {
            id: self.id,
            user_id: self.user_id,
            client_id: self.client_id,
            scope,
            created_at: self.created_at,
            created_at_ms: self
                .created_at_ms
                .unwrap_or(self.created_at.saturating_mul(1000)),
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
            revoked_at: None,
            user_agent: self.user_agent,
            ip: self.ip,
        })
    }
}

/// Sessions in Redis, shared by every replica.
#[derive(Clone)]
pub struct RedisStore {
    redis: ConnectionManager,
    log: RevocationLog,
    create: Script,
    end: Script,
    end_all: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl RedisStore {
    pub fn new(redis: ConnectionManager, log: RevocationLog) -> Self {
        Self {
            redis,
            log,
            create: Script::new(CREATE),
            end: Script::new(END),
            end_all: Script::new(END_ALL),
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }
}

/// Runs a Redis operation with [`REDIS_TIMEOUT`].
async fn timed<T>(
    operation: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(REDIS_TIMEOUT, operation).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(REDIS_TIMEOUT)),
    }
}

impl SessionStore for RedisStore {
    fn create<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let remaining = session.expires_at.saturating_sub(db::now());
            if remaining <= 0 {
                return Ok(());
            }
            let json = serde_json::to_string(&Record::from_session(session))
                .expect("BUG: a session record serializes");
            let mut conn = self.conn();
            let mut invocation = self.create.key(redis_session_key(&session.id));
            invocation
                .key(user_sessions_key(&session.user_id))
                .arg(json)
                .arg(session.expires_at)
                .arg(&session.id)
                .arg(remaining);
            timed(invocation.invoke_async::<i64>(&mut conn)).await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let json: Option<String> = timed(conn.get(redis_session_key(sid))).await?;
            let Some(json) = json else {
                return Ok(None);
            };
            let session = Record::parse(&json)?.into_session()?;
            Ok(session.is_active(db::now()).then_some(session))
        })
    }

    fn touch<'a>(&'a self, sid: &'a str, now: i64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = redis_session_key(sid);
            let mut conn = self.conn();
            let json: Option<String> = timed(conn.get(&key)).await?;
            let Some(json) = json else {
                return Ok(());
            };
            let mut record = Record::parse(&json)?;
            record.last_seen_at = now;
            let json = serde_json::to_string(&record).expect("BUG: a session record serializes");
            // XX: a session ended since the GET stays ended; KEEPTTL: it still ends on time.
            let _: Option<String> = timed(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("XX")
                    .arg("KEEPTTL")
                    .query_async(&mut conn),
            )
            .await?;
            Ok(())
        })
    }

    fn end<'a>(
        &'a self,
        sid: &'a str,
        reason: EndReason,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let mut invocation = self.end.key(redis_session_key(sid));
            invocation.arg(user_sessions_key("")).arg(sid);
            let record: Option<String> = timed(invocation.invoke_async(&mut conn)).await?;
            let Some(record) = record else {
                return Ok(false);
            };
            count_ended(reason, 1);
            let user_id = match Record::parse(&record) {
                Ok(record) => record.user_id,
                Err(error) => {
                    tracing::error!(%error, "ended a session whose record is unreadable");
                    String::new()
                }
            };
            let target = Target::SessionsEnded {
                session_ids: vec![sid.to_owned()],
                user_id,
                reason,
            };
            self.log
                .append(&target, db::now())
                .await
                .map_err(StoreError::Event)?;
            Ok(true)
        })
    }

    fn end_all_for_user<'a>(
        &'a self,
        user_id: &'a str,
        reason: EndReason,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let mut invocation = self.end_all.key(user_sessions_key(user_id));
            invocation.arg(redis_session_key(""));
            let mut ended: Vec<String> = timed(invocation.invoke_async(&mut conn)).await?;
            if ended.is_empty() {
                return Ok(ended);
            }
            ended.sort_unstable();
            count_ended(reason, ended.len());
            let target = Target::SessionsEnded {
                session_ids: ended.clone(),
                user_id: user_id.to_owned(),
                reason,
            };
            self.log
                .append(&target, db::now())
                .await
                .map_err(StoreError::Event)?;
            Ok(ended)
        })
    }

    fn list_active_for_user<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Session>, StoreError>> {
        Box::pin(async move {
            let set = user_sessions_key(user_id);
            let mut conn = self.conn();
            let mut sids: Vec<String> = timed(conn.smembers(&set)).await?;
            if sids.is_empty() {
                return Ok(Vec::new());
            }
            sids.sort_unstable();
            let keys: Vec<String> = sids.iter().map(|sid| redis_session_key(sid)).collect();
            let records: Vec<Option<String>> =
                timed(redis::cmd("MGET").arg(&keys).query_async(&mut conn)).await?;
            let now = db::now();
            let mut sessions = Vec::with_capacity(sids.len());
            let mut gone = Vec::new();
            for (sid, record) in sids.into_iter().zip(records) {
                match record {
                    Some(json) => {
                        let session = Record::parse(&json)?.into_session()?;
                        if session.is_active(now) && session.user_id == user_id {
                            sessions.push(session);
                        }
                    }
                    None => gone.push(sid),
                }
            }
            if !gone.is_empty() {
                // Expired since they were added; best effort, the next listing retries.
                let removed: Result<i64, StoreError> = timed(conn.srem(&set, &gone)).await;
                if let Err(error) = removed {
                    tracing::debug!(%error, "cannot remove expired sessions from a user's set");
                }
            }
            sessions.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
            Ok(sessions)
        })
    }

    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn();
            timed(conn.exists(redis_session_key(sid))).await
        })
    }

    fn record_user_change<'a>(
        &'a self,
        user_id: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let ttl = self.log.retention_secs(&Target::UserChanged {
                user_id: user_id.to_owned(),
            });
            let mut conn = self.conn();
            let ttl = u64::try_from(ttl).unwrap_or(1).max(1);
            timed(conn.set_ex(redis_user_changed_key(user_id), at, ttl)).await
        })
    }

    fn user_changed_at<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn();
            timed(conn.get(redis_user_changed_key(user_id))).await
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let _: String = timed(redis::cmd("PING").query_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
