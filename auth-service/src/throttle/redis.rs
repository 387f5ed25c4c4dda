//! The counters in Redis (`REDIS_URL`), shared by every replica: N replicas behind a balancer
//! give an attacker one budget, not N.
//!
//! A counter is a hash `auth:throttle:{kind}:{scope}:{key}` (the key a SHA-256 digest, never a
//! username, client id or address in clear) holding what the in-memory counter holds: failures
//! `f`, pending attempts `p` (and `pt`, when they last changed), the last attempt `la`, the last
//! failure `lf` and the end of a lock `lu`, in milliseconds of Redis's own clock (`TIME`), so
//! replicas whose clocks differ still agree. Each operation is one Lua script, atomic in Redis,
//! doing exactly what `memory::Counter` does; the hash expires after the scope's idle
//! time like the in-memory entry. Pending attempts of a replica that died before resolving them
//! are forgotten after [`PENDING_TTL`].
//!
//! **Redis unreachable: counted in memory, not open, not closed.** When a Redis call fails or
//! takes longer than [`REDIS_DEADLINE`], the throttle counts in this replica's memory (a
//! warning in the log, `auth_throttle_fallback` = 1) and tries Redis again after
//! [`RETRY_REDIS_AFTER`]. Failing closed (refusing every login and every client authentication
//! Argon2 would check) would turn a Redis outage, or an attacker able to cause one, into an
//! outage of authentication, the verifiers' service-token renewals included, although neither
//! needs Redis for anything else. Failing open (no throttle) would hand the attacker unlimited
//! guesses and unlimited Argon2 runs for as long as Redis is away. Counting in memory keeps every
//! bound of the throttle per replica: the budget is N times larger for the duration, which is
//! what the throttle gave before it counted in Redis.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::ConnectionManager;

use super::{Action, Key, Kind, Policy, Scope};

/// Longest a throttle's Redis call may take before the throttle counts in memory instead.
pub const REDIS_DEADLINE: Duration = Duration::from_millis(500);
/// How long the throttle counts in memory after Redis failed, before it tries Redis again.
pub const RETRY_REDIS_AFTER: Duration = Duration::from_secs(5);
/// Pending attempts older than this are forgotten (a replica that died between reserving and
/// resolving an attempt must not hold a slot forever). Far longer than an attempt takes: the
/// Argon2 queue is bounded, and the request times out long before.
pub const PENDING_TTL: Duration = Duration::from_secs(60);

/// `KEYS[1]` the counter; `ARGV`: throttle after, lock after, base delay, max delay, lock
/// duration, idle time, pending TTL (milliseconds). Returns `{1, failures on record}` when the
/// attempt is reserved, else `{0, locked (1) or delayed (0), retry after (ms)}`.
const BEGIN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local throttle_after, lock_after = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local lock, idle, pending_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local h = redis.call('HMGET', KEYS[1], 'f', 'p', 'pt', 'la', 'lf', 'lu')
local f, p = tonumber(h[1]) or 0, tonumber(h[2]) or 0
local pt, la, lf, lu = tonumber(h[3]), tonumber(h[4]), tonumber(h[5]), tonumber(h[6])
if p > 0 and (not pt or now - pt >= pending_ttl) then p = 0 end
local forget = false
if lu then forget = now >= lu elseif lf then forget = now - lf >= lock end
if forget then
  f, lf, lu = 0, nil, nil
  redis.call('HDEL', KEYS[1], 'lf', 'lu')
  redis.call('HSET', KEYS[1], 'f', 0)
end
if lu then return {0, 1, lu - now} end
local attempts = f + p
if lock_after > 0 and attempts >= lock_after then return {0, 0, base} end
if throttle_after > 0 and attempts >= throttle_after and la then
  local delay = math.min(base * 2 ^ math.min(attempts - throttle_after, 31), max)
  if now < la + delay then return {0, 0, math.ceil(la + delay - now)} end
end
redis.call('HSET', KEYS[1], 'f', f, 'p', p + 1, 'pt', now, 'la', now)
redis.call('PEXPIRE', KEYS[1], idle)
return {1, f}
";

/// `KEYS[1]` the counter; `ARGV`: lock after, lock duration, idle time (milliseconds). Records
/// a failure; returns `{failures, 1 if it started a lock else 0}`.
const FAIL: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lock_after, lock, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'f', 'p', 'lu')
local f, p, lu = (tonumber(h[1]) or 0) + 1, math.max((tonumber(h[2]) or 0) - 1, 0), tonumber(h[3])
redis.call('HSET', KEYS[1], 'f', f, 'p', p, 'pt', now, 'lf', now)
local started = 0
if lock_after > 0 and f >= lock_after and not lu then
  redis.call('HSET', KEYS[1], 'lu', now + lock)
  started = 1
end
redis.call('PEXPIRE', KEYS[1], idle)
return {f, started}
";

/// `KEYS[1]` the counter. Gives a pending attempt back.
const RELEASE: &str = r"
local p = tonumber(redis.call('HGET', KEYS[1], 'p'))
if p and p > 0 then redis.call('HSET', KEYS[1], 'p', p - 1) end
return 1
";

/// The connection and scripts every throttle of the process shares, and whether Redis answers.
#[derive(Clone)]
pub struct RedisCounters {
    inner: Arc<Inner>,
}

struct Inner {
    manager: ConnectionManager,
    begin: Script,
    fail: Script,
    release: Script,
    /// Until when the throttles count in memory (Redis failed); `None` while Redis answers.
    down_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters").finish_non_exhaustive()
    }
}

/// Why a Redis call did not give an answer.
#[derive(Debug)]
pub(super) struct Unavailable;

impl RedisCounters {
    /// The throttles' connection to `url` (`rediss://` checked against `ca_file` or the public
    /// roots). Fails if Redis does not answer now, like the session store at start-up; later
    /// failures only make the throttles count in memory for a while.
    pub async fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, redis::RedisError> {
        let client = authn::session::redis::client(url, ca_file)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_DEADLINE))
            .set_response_timeout(Some(REDIS_DEADLINE))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                manager,
                begin: Script::new(BEGIN),
                fail: Script::new(FAIL),
                release: Script::new(RELEASE),
                down_until: Mutex::new(None),
            }),
        })
    }

    /// Whether to try Redis now (it answered last time, or the pause after a failure is over).
    pub(super) fn usable(&self) -> bool {
        let down_until = self
            .inner
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        down_until.is_none_or(|until| Instant::now() >= until)
    }

    /// Runs `call` with the deadline; a failure switches the throttles to memory for a while.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, Unavailable> {
        let error = match tokio::time::timeout(REDIS_DEADLINE, call).await {
            Ok(Ok(value)) => {
                self.answered();
                return Ok(value);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {REDIS_DEADLINE:?}"),
        };
        let mut down_until = self
            .inner
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if down_until.is_none() {
            tracing::warn!(
                %error,
                retry_in = ?RETRY_REDIS_AFTER,
                "Redis does not answer the throttles: failed logins and client authentications \
                 are counted in this replica's memory until it does (each replica has its own \
                 budget meanwhile)"
            );
            metrics::gauge!("auth_throttle_fallback").set(1.0);
        }
        *down_until = Some(Instant::now() + RETRY_REDIS_AFTER);
        Err(Unavailable)
    }

    fn answered(&self) {
        let mut down_until = self
            .inner
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if down_until.take().is_some() {
            tracing::info!("Redis answers the throttles again: failures are counted in Redis");
            metrics::gauge!("auth_throttle_fallback").set(0.0);
        }
    }

    /// Reserves an attempt on the counter `key` (answering the failures on record), or says why
    /// not.
    pub(super) async fn begin(
        &self,
        key: &str,
        policy: &Policy,
    ) -> Result<Result<u32, (Action, Duration)>, Unavailable> {
        let mut manager = self.inner.manager.clone();
        let mut invocation = self.inner.begin.key(key);
        invocation
            .arg(policy.throttle_after)
            .arg(policy.lock_after)
            .arg(millis(policy.base_delay))
            .arg(millis(policy.max_delay))
            .arg(millis(policy.lock_duration))
            .arg(millis(policy.idle()))
            .arg(millis(PENDING_TTL));
        let answer: Vec<u64> = self.call(invocation.invoke_async(&mut manager)).await?;
        Ok(match answer.as_slice() {
            [1, failures] => Ok(u32::try_from(*failures).unwrap_or(u32::MAX)),
            [0, locked, wait] => {
                let action = if *locked == 1 {
                    Action::Locked
                } else {
                    Action::Delayed
                };
                Err((action, Duration::from_millis(*wait)))
            }
            _ => {
                tracing::error!(?answer, "unexpected answer of the throttle's begin script");
                return Err(Unavailable);
            }
        })
    }

    /// Records a failure on `key`; the failures so far when it started a lock.
    pub(super) async fn fail(
        &self,
        key: &str,
        policy: &Policy,
    ) -> Result<Option<u32>, Unavailable> {
        let mut manager = self.inner.manager.clone();
        let mut invocation = self.inner.fail.key(key);
        invocation
            .arg(policy.lock_after)
            .arg(millis(policy.lock_duration))
            .arg(millis(policy.idle()));
        let answer: (u32, u8) = self.call(invocation.invoke_async(&mut manager)).await?;
        Ok((answer.1 == 1).then_some(answer.0))
    }

    /// Gives a pending attempt on `key` back.
    pub(super) async fn release(&self, key: &str) -> Result<(), Unavailable> {
        let mut manager = self.inner.manager.clone();
        let invocation = self.inner.release.key(key);
        let _: i64 = self.call(invocation.invoke_async(&mut manager)).await?;
        Ok(())
    }

    /// Deletes the counter `key` (a success).
    pub(super) async fn clear(&self, key: &str) -> Result<(), Unavailable> {
        let mut manager = self.inner.manager.clone();
        let _: i64 = self
            .call(redis::cmd("DEL").arg(key).query_async(&mut manager))
            .await?;
        Ok(())
    }

    /// Whether the mark `key` is set.
    pub(super) async fn marked(&self, key: &str) -> Result<bool, Unavailable> {
        let mut manager = self.inner.manager.clone();
        self.call(redis::cmd("EXISTS").arg(key).query_async(&mut manager))
            .await
    }

    /// Sets the mark `key` for `ttl`.
    pub(super) async fn mark(&self, key: &str, ttl: Duration) -> Result<(), Unavailable> {
        let mut manager = self.inner.manager.clone();
        let _: () = self
            .call(
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut manager),
            )
            .await?;
        Ok(())
    }
}

/// The Redis key of a counter (or mark) of `kind` and `scope`.
pub(super) fn redis_key(kind: Kind, scope: Scope, key: &Key) -> String {
    format!(
        "auth:throttle:{}:{}:{}",
        kind.as_str(),
        scope.as_str(),
        key.hex()
    )
}

/// The Redis key of the mark that a pair is recognised (its counter is [`redis_key`]).
pub(super) fn mark_key(kind: Kind, key: &Key) -> String {
    format!(
        "auth:throttle:{}:recognised-mark:{}",
        kind.as_str(),
        key.hex()
    )
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
