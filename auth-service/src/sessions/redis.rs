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
//! - `auth:stats:*`: sorted sets behind the session counts ([`super::stats`]), each member
//!   scored by the end of its session (`expires_at`), so the active ones are those scored above
//!   now: `auth:stats:sessions` (every session id), `auth:stats:users` (every user id, scored by
//!   the latest end of its sessions), `auth:stats:client:{client_id}` (`auth:stats:client:` for
//!   none; the clients listed in the set `auth:stats:clients`), `auth:stats:day:{day}` (days
//!   since the epoch, UTC: the sessions begun that day; each key expires 8 days after its day).
//!   The scripts that create and end sessions maintain them in the same atomic step; a
//!   snapshot first removes the members whose session has expired. Sessions written by an
//!   earlier release are indexed by the first snapshot (`auth:stats:indexed` records that it
//!   ran); those an earlier replica writes during a rolling upgrade, after that, are counted
//!   only once they are ended or refreshed by a new one, or not at all until they expire.
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
use super::stats::{DAYS, DaySessions, SessionStats, day_name, first_day};
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
stats_index(cjson.decode(ARGV[1]))
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
  stats_unindex(session, ARGV[1] .. session.user_id)
end
return record
";

/// `KEYS[1]` user set; `ARGV[1]` session key prefix, `ARGV[2]` user id. Returns the ids of the
/// sessions deleted.
const END_ALL: &str = r"
local ended = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local record = redis.call('GET', ARGV[1] .. sid)
  if record and redis.call('DEL', ARGV[1] .. sid) == 1 then
    ended[#ended + 1] = sid
    local ok, session = pcall(cjson.decode, record)
    if ok and type(session) == 'table' and type(session.id) == 'string' then
      stats_unindex(session, nil)
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', 'auth:stats:users', ARGV[2])
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
    snapshot: Script,
    backfill: Script,
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
            create: Script::new(&format!("{REDIS_INDEX_SESSION}{CREATE}")),
            end: Script::new(&format!("{REDIS_UNINDEX_SESSION}{END}")),
            end_all: Script::new(&format!("{REDIS_UNINDEX_SESSION}{END_ALL}")),
            snapshot: Script::new(REDIS_SNAPSHOT),
            backfill: Script::new(&format!("{REDIS_INDEX_SESSION}{REDIS_BACKFILL}")),
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
            invocation.arg(redis_session_key("")).arg(user_id);
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

    fn stats(&self, now: i64) -> BoxFuture<'_, Result<SessionStats, StoreError>> {
        Box::pin(async move {
            self.backfill_index().await?;
            let mut conn = self.conn();
            let mut invocation = self.snapshot.prepare_invoke();
            invocation.arg(now).arg(first_day(now));
            let reply: Vec<redis::Value> = timed(invocation.invoke_async(&mut conn)).await?;
            parse_redis_snapshot(now, &reply)
        })
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

/// Session keys indexed per call of the backfill script.
const BACKFILL_BATCH: usize = 500;

impl RedisStore {
    /// Adds the sessions written before the stats index existed (by an earlier release) to it,
    /// once: `SCAN`s the session keys in batches, each indexed by one script that skips the
    /// sessions ended meanwhile, then sets [`STATS_INDEXED_KEY`]. Idempotent, so replicas
    /// that start together may both run it.
    async fn backfill_index(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let indexed: bool = timed(conn.exists(STATS_INDEXED_KEY)).await?;
        if indexed {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut cursor: u64 = 0;
        let mut sessions = 0usize;
        loop {
            let (next, keys): (u64, Vec<String>) = timed(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(redis_session_key("*"))
                    .arg("COUNT")
                    .arg(BACKFILL_BATCH)
                    .query_async(&mut conn),
            )
            .await?;
            if !keys.is_empty() {
                sessions += keys.len();
                let mut invocation = self.backfill.prepare_invoke();
                for key in &keys {
                    invocation.arg(key);
                }
                timed(invocation.invoke_async::<i64>(&mut conn)).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        timed(conn.set::<_, _, ()>(STATS_INDEXED_KEY, 1)).await?;
        tracing::info!(
            sessions,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
            "indexed the existing Redis sessions for the session counts"
        );
        Ok(())
    }
}

/// Set once the sessions of an earlier release have been added to the index
/// ([`RedisStore::backfill_index`]).
const STATS_INDEXED_KEY: &str = "auth:stats:indexed";

/// Lua: indexes a session from its decoded record `session` (`sid`, `user_id`, `client_id`,
/// `created_at`, `expires_at`). Shared by the create script and the backfill.
const REDIS_INDEX_SESSION: &str = r"
local function stats_index(session)
  local sid = session.id
  local ends = tonumber(session.expires_at)
  local client = ''
  if type(session.client_id) == 'string' then client = session.client_id end
  local day = math.floor(tonumber(session.created_at) / 86400)
  redis.call('ZADD', 'auth:stats:sessions', ends, sid)
  local latest = redis.call('ZSCORE', 'auth:stats:users', session.user_id)
  if not latest or tonumber(latest) < ends then
    redis.call('ZADD', 'auth:stats:users', ends, session.user_id)
  end
  redis.call('SADD', 'auth:stats:clients', client)
  redis.call('ZADD', 'auth:stats:client:' .. client, ends, sid)
  local day_key = 'auth:stats:day:' .. string.format('%d', day)
  redis.call('ZADD', day_key, ends, sid)
  redis.call('EXPIREAT', day_key, (day + 8) * 86400)
end
";

/// Lua: removes an ended session (its decoded record `session`) from the index; the user's
/// score becomes the latest end of its other sessions (`user_set`: the key of the user's set of
/// session ids, already without `sid`), or the user leaves the index.
const REDIS_UNINDEX_SESSION: &str = r"
local function stats_unindex(session, user_set)
  local sid = session.id
  local client = ''
  if type(session.client_id) == 'string' then client = session.client_id end
  local day = math.floor(tonumber(session.created_at) / 86400)
  redis.call('ZREM', 'auth:stats:sessions', sid)
  redis.call('ZREM', 'auth:stats:client:' .. client, sid)
  redis.call('ZREM', 'auth:stats:day:' .. string.format('%d', day), sid)
  if user_set then
    local latest = nil
    for _, other in ipairs(redis.call('SMEMBERS', user_set)) do
      local ends = redis.call('ZSCORE', 'auth:stats:sessions', other)
      if ends and (not latest or tonumber(ends) > latest) then latest = tonumber(ends) end
    end
    if latest then
      redis.call('ZADD', 'auth:stats:users', latest, session.user_id)
    else
      redis.call('ZREM', 'auth:stats:users', session.user_id)
    end
  end
end
";

/// `ARGV[1]` now (Unix seconds), `ARGV[2]` the first day of the window. Removes what has
/// expired, then returns `{sessions, users, {client, count}..., {day, count}...}` flattened as
/// `sessions, users, n_clients, client1, count1, ..., day1, count1, ...`.
const REDIS_SNAPSHOT: &str = r"
local now = tonumber(ARGV[1])
local first = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', 'auth:stats:sessions', '-inf', now)
redis.call('ZREMRANGEBYSCORE', 'auth:stats:users', '-inf', now)
local out = {redis.call('ZCARD', 'auth:stats:sessions'), redis.call('ZCARD', 'auth:stats:users')}
local clients = redis.call('SMEMBERS', 'auth:stats:clients')
local counted = {}
for _, client in ipairs(clients) do
  local key = 'auth:stats:client:' .. client
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local n = redis.call('ZCARD', key)
  if n == 0 then
    redis.call('SREM', 'auth:stats:clients', client)
  else
    counted[#counted + 1] = client
    counted[#counted + 1] = n
  end
end
out[#out + 1] = #counted / 2
for _, v in ipairs(counted) do out[#out + 1] = v end
for day = first, first + 6 do
  local key = 'auth:stats:day:' .. string.format('%d', day)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  out[#out + 1] = day
  out[#out + 1] = redis.call('ZCARD', key)
end
return out
";

/// `ARGV`: session keys. Indexes those that still exist (the backfill, a batch at a time).
const REDIS_BACKFILL: &str = r"
for _, key in ipairs(ARGV) do
  local record = redis.call('GET', key)
  if record then
    local ok, session = pcall(cjson.decode, record)
    if ok and type(session) == 'table' and type(session.user_id) == 'string'
      and type(session.id) == 'string' then
      stats_index(session)
    end
  end
end
return 1
";

/// Parses the reply of [`REDIS_SNAPSHOT`].
fn parse_redis_snapshot(now: i64, reply: &[redis::Value]) -> Result<SessionStats, StoreError> {
    let corrupt = || StoreError::Corrupt("unexpected reply to the stats script".to_owned());
    let int = |v: &redis::Value| -> Result<i64, StoreError> {
        redis::from_redis_value_ref::<i64>(v).map_err(|_| corrupt())
    };
    let count = |v: &redis::Value| int(v).map(|n| u64::try_from(n).unwrap_or(0));
    let sessions = count(reply.first().ok_or_else(corrupt)?)?;
    let users = count(reply.get(1).ok_or_else(corrupt)?)?;
    let clients =
        usize::try_from(int(reply.get(2).ok_or_else(corrupt)?)?).map_err(|_| corrupt())?;
    let mut rest = reply.get(3..).ok_or_else(corrupt)?.chunks_exact(2);
    let mut by_client = Vec::with_capacity(clients);
    for pair in rest.by_ref().take(clients) {
        let client: String = redis::from_redis_value_ref(&pair[0]).map_err(|_| corrupt())?;
        by_client.push((client, count(&pair[1])?));
    }
    let mut by_day = Vec::new();
    for pair in rest {
        by_day.push((int(&pair[0])?, count(&pair[1])?));
    }
    let in_window: u64 = by_day.iter().map(|(_, n)| n).sum();
    // The client sets and the day sets count the same sessions, grouped two ways: the
    // sessions begun before the window are the rest.
    let mut groups: Vec<(Option<String>, Option<i64>, u64)> = Vec::new();
    for (client, n) in by_client {
        groups.push(((!client.is_empty()).then_some(client), None, n));
    }
    let mut stats = SessionStats::from_groups(now, users, groups);
    let first = first_day(now);
    stats.by_day = (first..first + DAYS)
        .map(|day| DaySessions {
            day: day_name(day),
            started: by_day
                .iter()
                .find(|(d, _)| *d == day)
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    stats.active_sessions = sessions;
    stats.started_earlier = sessions.saturating_sub(in_window);
    Ok(stats)
}
