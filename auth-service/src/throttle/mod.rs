//! Throttling of failed credentials (class 22 of the threat list): repeated failures first slow
//! down, then lock, per subject and per client address. Two throttles use it:
//!
//! - the **login throttle** ([`Kind::Login`]): failed password logins, per account (the
//!   normalised username, whether or not such a user exists, so that an unknown user is
//!   throttled exactly like a known one and the throttle reveals nothing about existence) and per
//!   client address;
//! - the **client-authentication throttle** ([`Kind::ClientAuth`]): failed client
//!   authentications at the token, revocation and introspection endpoints, per client id
//!   (registered or not) and per client address. It protects the issuer's Argon2 capacity: every
//!   check of a client secret is an Argon2 run, for an unknown client too (the dummy hash), and
//!   a throttled request runs none.
//!
//! The address is the client's IP (IPv6 grouped by /64, since one subscriber usually holds a
//! whole /64).
//!
//! A counter holds the failures seen until now. Once it has `throttle_after` of them, every
//! further attempt must wait a delay after the previous attempt, doubling with each failure from
//! `base_delay` up to `max_delay`; an attempt that comes too early is refused *without checking
//! the credentials*. At `lock_after` failures the key is locked for `lock_duration`: every
//! attempt is refused, the right credentials included. When the lock ends the counter starts
//! again from zero; failures are also forgotten `lock_duration` after the last one (the classic
//! "reset the lockout counter after" rule). A success clears the subject's counter, never the
//! address's (an attacker must not reset its address by logging into an account of its own
//! between guesses). Refused attempts are not failures: they check nothing.
//!
//! Attempts are *reserved* before the check and counted as pending, so a burst of concurrent
//! guesses cannot all pass the check before the first failure is recorded.
//!
//! **Recognised addresses** (client authentication only). A client id is easy to guess (the
//! verifiers are called `gateway` and `orders`), so anyone could lock a real client out by
//! failing as it, and the verifiers would lose their service tokens. So an address from which a
//! client authenticated successfully is *recognised* for that client for [`RECOGNISED_FOR`]: an
//! attempt of that client from that address is counted on a counter of the pair (same limits as
//! the client id) instead of on the client id's and the address's counters. Failures elsewhere
//! never lock it out, and its own failures are still throttled; only a caller at the same
//! address presenting the same client id shares its counter, and that caller is
//! indistinguishable from the client (`AUTH_TRUSTED_PROXIES` must name the proxies, or every
//! proxied request is the proxy's address).
//!
//! Where the counters live: in memory per replica (`memory`), or with `REDIS_URL` in Redis,
//! shared by every replica ([`redis`], which also argues what happens when Redis does not
//! answer: counted in memory meanwhile). Counter keys are SHA-256 digests of the kind, the scope
//! and the normalised subject or address, never the names themselves.

mod memory;
pub mod redis;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

pub use self::memory::MAX_TRACKED;
pub use self::redis::RedisCounters;
use crate::config::{ClientAuthThrottleConfig, LoginThrottleConfig};

/// How long an address stays recognised for a client after its last successful
/// authentication from there.
pub const RECOGNISED_FOR: Duration = Duration::from_secs(24 * 3600);

/// An address refused by the full Argon2 queue that came back this many times before the
/// `Retry-After` it was given had run out (within [`SHED_MEMORY`], in this replica, whose queue
/// it is) is suspect like one with failures: a flood spread over many addresses, shed before any
/// of its attempts can fail, is told apart from callers that wait as asked, which never are.
pub const SHED_SUSPECT_AFTER: u32 = 3;
pub const SHED_MEMORY: Duration = Duration::from_secs(60);

/// The limits of one scope, and the timing both scopes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures after which each attempt must wait a growing delay; 0: never delayed.
    pub throttle_after: u32,
    /// Failures after which the key is locked; 0: never locked.
    pub lock_after: u32,
    /// The delay after the `throttle_after`-th failure; doubles with each further one.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// How long a lock lasts; also how long failures are remembered after the last one.
    pub lock_duration: Duration,
}

impl Policy {
    fn is_off(&self) -> bool {
        self.throttle_after == 0 && self.lock_after == 0
    }

    /// How long an untouched counter is kept: as long as it can still refuse anything.
    fn idle(&self) -> Duration {
        self.lock_duration
            .max(self.max_delay)
            .max(Duration::from_secs(1))
    }

    /// The wait required after the previous attempt once `attempts` attempts (failed or still
    /// pending) are on record: `None` below `throttle_after`, then `base_delay`, doubling, capped
    /// at `max_delay`.
    pub fn delay_after(&self, attempts: u32) -> Option<Duration> {
        if self.throttle_after == 0 || attempts < self.throttle_after {
            return None;
        }
        let doublings = attempts - self.throttle_after;
        // 2^31 already exceeds any sane cap: saturate instead of overflowing.
        let factor = 1_u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX);
        Some(
            self.base_delay
                .checked_mul(factor)
                .map_or(self.max_delay, |delay| delay.min(self.max_delay)),
        )
    }
}

/// Which throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Failed password logins.
    Login,
    /// Failed client authentications.
    ClientAuth,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::ClientAuth => "client_auth",
        }
    }

    /// The scope of the subject: the account of a login, the client id of a client.
    pub const fn subject(self) -> Scope {
        match self {
            Kind::Login => Scope::Account,
            Kind::ClientAuth => Scope::Client,
        }
    }

    fn count_refusal(self, scope: Scope, action: Action) {
        let (scope, action) = (scope.as_str(), action.as_str());
        match self {
            Kind::Login => metrics::counter!(
                "auth_login_throttled_total", "scope" => scope, "action" => action
            )
            .increment(1),
            Kind::ClientAuth => metrics::counter!(
                "auth_client_auth_throttled_total", "scope" => scope, "action" => action
            )
            .increment(1),
        }
    }

    fn count_lockout(self, scope: Scope) {
        match self {
            Kind::Login => {
                metrics::counter!("auth_login_lockouts_total", "scope" => scope.as_str())
                    .increment(1);
            }
            Kind::ClientAuth => {
                metrics::counter!("auth_client_auth_lockouts_total", "scope" => scope.as_str())
                    .increment(1);
            }
        }
    }
}

/// What is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A login's account (normalised username).
    Account,
    /// A client id.
    Client,
    /// A client address.
    Address,
    /// A client id at one of its recognised addresses.
    Recognised,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Client => "client",
            Scope::Address => "address",
            Scope::Recognised => "recognised",
        }
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Too early after the previous attempt.
    Delayed,
    /// Locked after too many failures.
    Locked,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Delayed => "delayed",
            Action::Locked => "locked",
        }
    }
}

/// An attempt refused before its credentials were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    pub action: Action,
    /// When the next attempt may be made.
    pub retry_after: Duration,
}

/// The identity of a counter: 128 bits of SHA-256 over the kind, the scope and the normalised
/// value, the same in every replica (Redis keys) and never the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key([u8; 16]);

impl Key {
    fn new(kind: Kind, scope: Scope, parts: &[&[u8]]) -> Self {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"auth-service throttle\0");
        context.update(kind.as_str().as_bytes());
        context.update(b"\0");
        context.update(scope.as_str().as_bytes());
        for part in parts {
            // Length-prefixed, so no two splits of the parts give the same input.
            context.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            context.update(part);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&context.finish().as_ref()[..16]);
        Self(key)
    }

    fn subject(kind: Kind, subject: &str) -> Self {
        Self::new(kind, kind.subject(), &[normalise(subject).as_bytes()])
    }

    fn address(kind: Kind, ip: IpAddr) -> Self {
        Self::new(
            kind,
            Scope::Address,
            &[address_key(ip).to_string().as_bytes()],
        )
    }

    fn recognised(kind: Kind, subject: &str, ip: IpAddr) -> Self {
        Self::new(
            kind,
            Scope::Recognised,
            &[
                normalise(subject).as_bytes(),
                address_key(ip).to_string().as_bytes(),
            ],
        )
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where the counters are kept.
#[derive(Debug)]
struct Store {
    kind: Kind,
    /// This replica's counters: the store without Redis, the fallback with it.
    subjects: memory::Counters,
    addresses: memory::Counters,
    /// Recognised pairs and their counters (client authentication only).
    marks: memory::Marks,
    pairs: memory::Counters,
    /// Refusals by the full Argon2 queue, per address (this replica's).
    sheds: memory::Sheds,
    redis: Option<RedisCounters>,
}

impl Store {
    fn memory(&self, scope: Scope) -> &memory::Counters {
        match scope {
            Scope::Account | Scope::Client => &self.subjects,
            Scope::Address => &self.addresses,
            Scope::Recognised => &self.pairs,
        }
    }

    /// Redis, unless it is absent or failed a moment ago.
    fn redis(&self) -> Option<&RedisCounters> {
        self.redis.as_ref().filter(|redis| redis.usable())
    }

    /// Reserves an attempt on a counter, with the failures on record there.
    async fn begin(
        &self,
        scope: Scope,
        key: Key,
        policy: Policy,
    ) -> Result<(Reservation, u32), (Action, Duration)> {
        if let Some(redis) = self.redis() {
            let name = redis::redis_key(self.kind, scope, &key);
            if let Ok(answer) = redis.begin(&name, &policy).await {
                let failures = answer?;
                let reservation = Reservation::Redis {
                    redis: redis.clone(),
                    key: name,
                    policy,
                };
                return Ok((reservation, failures));
            }
        }
        let (counter, failures) = self.memory(scope).begin(key, &policy, Instant::now())?;
        Ok((Reservation::Memory { counter, policy }, failures))
    }

    async fn clear(&self, scope: Scope, key: Key) {
        // Both: a failure counted in memory while Redis was away must not outlive a success.
        self.memory(scope).clear(&key);
        if let Some(redis) = self.redis() {
            let _ = redis.clear(&redis::redis_key(self.kind, scope, &key)).await;
        }
    }

    async fn is_marked(&self, key: Key) -> bool {
        if let Some(redis) = self.redis()
            && let Ok(marked) = redis.marked(&redis::mark_key(self.kind, &key)).await
        {
            return marked || self.marks.contains(&key);
        }
        self.marks.contains(&key)
    }

    async fn mark(&self, key: Key) {
        self.marks.insert(key);
        if let Some(redis) = self.redis() {
            let _ = redis
                .mark(&redis::mark_key(self.kind, &key), RECOGNISED_FOR)
                .await;
        }
    }
}

/// A reserved slot on one counter.
enum Reservation {
    Memory {
        counter: memory::Shared,
        policy: Policy,
    },
    Redis {
        redis: RedisCounters,
        key: String,
        policy: Policy,
    },
}

impl Reservation {
    /// Records a failure; the failures so far when it started a lock.
    async fn fail(self) -> Option<u32> {
        match self {
            Reservation::Memory { counter, policy } => {
                let mut counter = memory::lock(&counter);
                counter
                    .fail(&policy, Instant::now())
                    .then_some(counter.failures)
            }
            // Redis gone between the reservation and now: the failure is lost (one guess).
            Reservation::Redis { redis, key, policy } => {
                redis.fail(&key, &policy).await.ok().flatten()
            }
        }
    }

    fn policy(&self) -> Policy {
        match self {
            Reservation::Memory { policy, .. } | Reservation::Redis { policy, .. } => *policy,
        }
    }

    fn release(self) {
        match self {
            Reservation::Memory { counter, .. } => memory::lock(&counter).release(),
            Reservation::Redis { redis, key, .. } => {
                // From `Drop`: given back in the background (or by `PENDING_TTL`).
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = redis.release(&key).await;
                    });
                }
            }
        }
    }
}

/// One throttle: its subject and address scopes. Cheap to share behind an `Arc`.
pub struct Throttle {
    kind: Kind,
    subject: Policy,
    address: Policy,
    /// Whether successful subjects' addresses are recognised (client authentication).
    recognises: bool,
    store: Arc<Store>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .field("address", &self.address)
            .field("redis", &self.store.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// A throttle counting in this replica's memory.
    pub fn new(kind: Kind, subject: Policy, address: Policy) -> Self {
        Self {
            kind,
            subject,
            address,
            recognises: kind == Kind::ClientAuth,
            store: Arc::new(Store {
                kind,
                subjects: memory::Counters::new(&subject),
                addresses: memory::Counters::new(&address),
                marks: memory::Marks::new(RECOGNISED_FOR),
                pairs: memory::Counters::new(&subject),
                sheds: memory::Sheds::new(SHED_MEMORY),
                redis: None,
            }),
        }
    }

    /// The same throttle counting in Redis (shared by the replicas), in memory while Redis does
    /// not answer.
    #[must_use]
    pub fn with_redis(self, redis: RedisCounters) -> Self {
        let Self {
            kind,
            subject,
            address,
            recognises,
            store,
        } = self;
        let Store {
            subjects,
            addresses,
            marks,
            pairs,
            sheds,
            ..
        } = Arc::into_inner(store).expect("BUG: with_redis on a throttle already in use");
        Self {
            kind,
            subject,
            address,
            recognises,
            store: Arc::new(Store {
                kind,
                subjects,
                addresses,
                marks,
                pairs,
                sheds,
                redis: Some(redis),
            }),
        }
    }

    /// The login throttle configured by `config` (`AUTH_LOGIN_*`).
    pub fn login(config: &LoginThrottleConfig) -> Self {
        let policy = |throttle_after, lock_after| Policy {
            throttle_after,
            lock_after,
            base_delay: config.base_delay,
            max_delay: config.max_delay,
            lock_duration: config.lock_duration,
        };
        Self::new(
            Kind::Login,
            policy(config.throttle_after, config.lock_after),
            policy(config.address_throttle_after, config.address_lock_after),
        )
    }

    /// The client-authentication throttle configured by `config` (`AUTH_CLIENT_AUTH_*`).
    pub fn client_auth(config: &ClientAuthThrottleConfig) -> Self {
        let policy = |throttle_after, lock_after| Policy {
            throttle_after,
            lock_after,
            base_delay: config.base_delay,
            max_delay: config.max_delay,
            lock_duration: config.lock_duration,
        };
        Self::new(
            Kind::ClientAuth,
            policy(config.throttle_after, config.lock_after),
            policy(config.address_throttle_after, config.address_lock_after),
        )
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Reserves a check of `subject`'s credentials from `address` (`None`: unknown, the address
    /// scope is skipped), or refuses it. Refusals are counted in `auth_login_throttled_total` or
    /// `auth_client_auth_throttled_total`.
    pub async fn begin(&self, subject: &str, address: Option<IpAddr>) -> Result<Attempt, Refused> {
        let refused = |scope: Scope, (action, retry_after): (Action, Duration)| {
            self.kind.count_refusal(scope, action);
            Refused {
                scope,
                action,
                retry_after,
            }
        };
        let mut attempt = Attempt {
            kind: self.kind,
            subject: None,
            address: None,
            suspect: false,
        };
        if self.subject.is_off() && self.address.is_off() {
            return Ok(attempt);
        }
        attempt.suspect = address.is_some_and(|ip| {
            self.store
                .sheds
                .early(&Key::address(self.kind, ip), Instant::now())
                >= SHED_SUSPECT_AFTER
        });
        if self.recognises
            && let Some(ip) = address
            && self
                .store
                .is_marked(Key::recognised(self.kind, subject, ip))
                .await
        {
            let key = Key::recognised(self.kind, subject, ip);
            if !self.subject.is_off() {
                let (reservation, failures) = self
                    .store
                    .begin(Scope::Recognised, key, self.subject)
                    .await
                    .map_err(|why| refused(Scope::Recognised, why))?;
                attempt.subject = Some((reservation, Scope::Recognised));
                attempt.suspect |= failures > 0;
            }
            return Ok(attempt);
        }
        if let Some(ip) = address.filter(|_| !self.address.is_off()) {
            let (reservation, failures) = self
                .store
                .begin(Scope::Address, Key::address(self.kind, ip), self.address)
                .await
                .map_err(|why| refused(Scope::Address, why))?;
            attempt.address = Some((reservation, ip));
            attempt.suspect |= failures > 0;
        }
        if !self.subject.is_off() {
            // A refusal here drops `attempt`, which releases the address reservation.
            let scope = self.kind.subject();
            let (reservation, failures) = self
                .store
                .begin(scope, Key::subject(self.kind, subject), self.subject)
                .await
                .map_err(|why| refused(scope, why))?;
            attempt.subject = Some((reservation, scope));
            attempt.suspect |= failures > 0;
        }
        Ok(attempt)
    }

    /// An attempt from `address` that the full Argon2 queue refused (503), telling it to wait
    /// `retry_after`: after [`SHED_SUSPECT_AFTER`] attempts from there before such a wait was
    /// over, the address's attempts are suspect.
    pub fn shed(&self, address: Option<IpAddr>, retry_after: Duration) {
        if let Some(ip) = address {
            self.store
                .sheds
                .note(Key::address(self.kind, ip), Instant::now(), retry_after);
        }
    }

    /// A successful check of `subject`'s credentials from `address`: its counter starts again
    /// from nothing, and (client authentication) the address is recognised for it.
    pub async fn succeeded(&self, subject: &str, address: Option<IpAddr>, attempt: Attempt) {
        drop(attempt);
        if !self.subject.is_off() {
            self.store
                .clear(self.kind.subject(), Key::subject(self.kind, subject))
                .await;
        }
        if self.recognises
            && let Some(ip) = address
        {
            let key = Key::recognised(self.kind, subject, ip);
            self.store.clear(Scope::Recognised, key).await;
            self.store.mark(key).await;
        }
    }
}

/// A reserved credentials check. Resolve it with [`Attempt::failed`] or
/// [`Throttle::succeeded`]; dropped unresolved (an internal error), it counts as neither.
#[must_use = "an attempt must be resolved as failed or succeeded"]
pub struct Attempt {
    kind: Kind,
    /// The subject's counter (or the recognised pair's).
    subject: Option<(Reservation, Scope)>,
    address: Option<(Reservation, IpAddr)>,
    /// Whether its counters had failures on record when it was reserved.
    suspect: bool,
}

/// The locks a failure started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locked {
    /// The subject (or a recognised pair) is locked from now on, after this many failures.
    pub subject: Option<(Scope, u32)>,
    /// The address (`IpAddr`) is locked from now on, after this many failures.
    pub address: Option<(IpAddr, u32)>,
    /// How long the locks last.
    pub duration: Duration,
}

impl Attempt {
    /// Whether the counters of this attempt (address, subject, or recognised pair) had
    /// failures on record, or its address keeps coming back before its `Retry-After`: such an
    /// attempt does not wait for Argon2 ([`crate::passwords::Priority`]), so that a flood cannot
    /// fill the queue the others wait in.
    pub fn is_suspect(&self) -> bool {
        self.suspect
    }

    /// Records a failed check; returns the locks it started, counted in
    /// `auth_login_lockouts_total` or `auth_client_auth_lockouts_total`.
    pub async fn failed(mut self) -> Locked {
        let mut locked = Locked::default();
        if let Some((reservation, scope)) = self.subject.take() {
            let duration = reservation.policy().lock_duration;
            if let Some(failures) = reservation.fail().await {
                locked.subject = Some((scope, failures));
                locked.duration = duration;
                self.kind.count_lockout(scope);
            }
        }
        if let Some((reservation, ip)) = self.address.take() {
            let duration = reservation.policy().lock_duration;
            if let Some(failures) = reservation.fail().await {
                locked.address = Some((ip, failures));
                locked.duration = duration;
                self.kind.count_lockout(Scope::Address);
            }
        }
        locked
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("kind", &self.kind)
            .field("subject", &self.subject.as_ref().map(|(_, scope)| scope))
            .field("address", &self.address.as_ref().map(|(_, ip)| ip))
            .field("suspect", &self.suspect)
            .finish()
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some((reservation, _)) = self.subject.take() {
            reservation.release();
        }
        if let Some((reservation, _)) = self.address.take() {
            reservation.release();
        }
    }
}

/// Describes the throttles' metrics (called once at start-up).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "auth_login_throttled_total",
        "Password logins refused unchecked by the login throttle, by scope (account, address) and action (delayed, locked)"
    );
    metrics::describe_counter!(
        "auth_login_lockouts_total",
        "Login locks started after repeated failed logins, by scope (account, address)"
    );
    metrics::describe_counter!(
        "auth_client_auth_throttled_total",
        "Client authentications refused unchecked (no Argon2 run) by the client-authentication throttle, by scope (client, address, recognised) and action (delayed, locked)"
    );
    metrics::describe_counter!(
        "auth_client_auth_lockouts_total",
        "Client-authentication locks started after repeated failures, by scope (client, address, recognised)"
    );
    metrics::describe_gauge!(
        "auth_throttle_fallback",
        "1 while Redis does not answer the throttles and they count in this replica's memory"
    );
}

/// A username or client id as counted: case and surrounding blanks do not make another
/// subject, so they cannot buy an attacker more guesses.
fn normalise(subject: &str) -> String {
    subject.trim().to_lowercase()
}

/// The address key: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(throttle_after: u32, lock_after: u32) -> Policy {
        Policy {
            throttle_after,
            lock_after,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            lock_duration: Duration::from_secs(900),
        }
    }

    fn login(account: Policy, address: Policy) -> Throttle {
        Throttle::new(Kind::Login, account, address)
    }

    #[test]
    fn the_delay_doubles_from_the_threshold_and_is_capped() {
        let p = policy(5, 0);
        let secs = |n| p.delay_after(n).map(|d| d.as_secs());
        assert_eq!(secs(0), None);
        assert_eq!(secs(4), None);
        assert_eq!(secs(5), Some(1));
        assert_eq!(secs(6), Some(2));
        assert_eq!(secs(7), Some(4));
        assert_eq!(secs(9), Some(16));
        assert_eq!(secs(10), Some(30), "capped");
        assert_eq!(secs(40), Some(30), "no overflow past 2^31");
        assert_eq!(secs(u32::MAX), Some(30));
        assert_eq!(policy(0, 3).delay_after(100), None, "0 turns delays off");

        let huge = Policy {
            base_delay: Duration::MAX,
            ..p
        };
        assert_eq!(
            huge.delay_after(7),
            Some(huge.max_delay),
            "no Duration overflow"
        );
    }

    #[tokio::test]
    async fn case_and_blanks_do_not_make_another_account() {
        let throttle = login(policy(0, 2), policy(0, 0));
        for name in ["Alice", " alice "] {
            let attempt = throttle.begin(name, None).await.expect("allowed");
            attempt.failed().await;
        }
        let refused = throttle.begin("ALICE", None).await.expect_err("locked");
        assert_eq!(
            (refused.scope, refused.action),
            (Scope::Account, Action::Locked)
        );
        assert!(throttle.begin("bob", None).await.is_ok());
    }

    #[tokio::test]
    async fn a_success_clears_the_account_but_not_the_address() {
        let throttle = login(policy(0, 3), policy(0, 3));
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..2 {
            throttle
                .begin("alice", Some(ip))
                .await
                .unwrap()
                .failed()
                .await;
        }
        let attempt = throttle.begin("alice", Some(ip)).await.unwrap();
        throttle.succeeded("alice", Some(ip), attempt).await;
        // The account starts again; the address has two failures, and a third locks it.
        let locked = throttle
            .begin("alice", Some(ip))
            .await
            .unwrap()
            .failed()
            .await;
        assert_eq!(locked.subject, None);
        assert_eq!(locked.address, Some((ip, 3)));
        let refused = throttle
            .begin("carol", Some(ip))
            .await
            .expect_err("address locked");
        assert_eq!(
            (refused.scope, refused.action),
            (Scope::Address, Action::Locked)
        );
    }

    #[tokio::test]
    async fn an_attempt_is_suspect_once_its_address_or_subject_has_failed() {
        let throttle = login(policy(0, 10), policy(0, 10));
        let ip: IpAddr = "198.51.100.3".parse().unwrap();
        let first = throttle.begin("alice", Some(ip)).await.unwrap();
        assert!(!first.is_suspect(), "nothing on record");
        first.failed().await;
        let attempt = throttle.begin("bob", Some(ip)).await.unwrap();
        assert!(attempt.is_suspect(), "its address failed");
        drop(attempt);
        let attempt = throttle.begin("alice", None).await.unwrap();
        assert!(attempt.is_suspect(), "its account failed");
        drop(attempt);
        assert!(!throttle.begin("carol", None).await.unwrap().is_suspect());

        // An address refused by the full Argon2 queue that comes back before its Retry-After
        // is over, again and again, becomes suspect too; one that waits as asked never does.
        let busy: IpAddr = "198.51.100.4".parse().unwrap();
        throttle.shed(Some(busy), Duration::from_secs(60));
        for _ in 1..SHED_SUSPECT_AFTER {
            assert!(
                !throttle
                    .begin("dave", Some(busy))
                    .await
                    .unwrap()
                    .is_suspect()
            );
        }
        assert!(
            throttle
                .begin("dave", Some(busy))
                .await
                .unwrap()
                .is_suspect()
        );
        let patient: IpAddr = "198.51.100.5".parse().unwrap();
        for _ in 0..5 {
            throttle.shed(Some(patient), Duration::ZERO);
            assert!(
                !throttle
                    .begin("erin", Some(patient))
                    .await
                    .unwrap()
                    .is_suspect()
            );
        }
    }

    #[tokio::test]
    async fn a_refusal_of_the_account_releases_the_address_reservation() {
        let throttle = login(policy(0, 1), policy(0, 2));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        throttle
            .begin("alice", Some(ip))
            .await
            .unwrap()
            .failed()
            .await;
        for _ in 0..5 {
            let refused = throttle.begin("alice", Some(ip)).await.expect_err("locked");
            assert_eq!(refused.scope, Scope::Account);
        }
        // One failure and no leaked pending reservation at the address: one more is allowed.
        assert!(throttle.begin("bob", Some(ip)).await.is_ok());
    }

    #[tokio::test]
    async fn a_recognised_address_is_not_locked_out_by_failures_elsewhere() {
        let throttle = Throttle::new(Kind::ClientAuth, policy(0, 2), policy(0, 3));
        let home: IpAddr = "192.0.2.10".parse().unwrap();
        let attacker: IpAddr = "198.51.100.66".parse().unwrap();
        // The client succeeds once from home: its address is recognised for it.
        let attempt = throttle.begin("gateway", Some(home)).await.unwrap();
        throttle.succeeded("gateway", Some(home), attempt).await;
        // Someone else fails as `gateway` until the client id is locked.
        for _ in 0..2 {
            throttle
                .begin("gateway", Some(attacker))
                .await
                .unwrap()
                .failed()
                .await;
        }
        let refused = throttle
            .begin("gateway", Some(attacker))
            .await
            .expect_err("the client id is locked");
        assert_eq!(refused.scope, Scope::Client);
        assert_eq!(
            throttle
                .begin("gateway", Some("192.0.2.11".parse().unwrap()))
                .await
                .expect_err("from an address it never used")
                .scope,
            Scope::Client
        );
        // From home it is still checked, on the pair's own counter, which its own failures lock.
        let attempt = throttle
            .begin("gateway", Some(home))
            .await
            .expect("allowed");
        assert_eq!(
            attempt.failed().await,
            Locked::default(),
            "one failure of the pair: no lock yet"
        );
        let locked = throttle
            .begin("gateway", Some(home))
            .await
            .unwrap()
            .failed()
            .await;
        assert_eq!(locked.subject, Some((Scope::Recognised, 2)));
        assert_eq!(
            throttle
                .begin("gateway", Some(home))
                .await
                .expect_err("the pair is locked")
                .scope,
            Scope::Recognised
        );
        // Another client at the attacker's address is unaffected by the client id's lock.
        assert!(throttle.begin("orders", Some(attacker)).await.is_ok());
        // The login throttle recognises nobody.
        let login = login(policy(0, 1), policy(0, 0));
        let attempt = login.begin("alice", Some(home)).await.unwrap();
        login.succeeded("alice", Some(home), attempt).await;
        login
            .begin("alice", Some(attacker))
            .await
            .unwrap()
            .failed()
            .await;
        assert!(login.begin("alice", Some(home)).await.is_err());
    }

    #[test]
    fn keys_are_distinct_per_kind_scope_and_value_and_stable() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let keys = [
            Key::subject(Kind::Login, "alice"),
            Key::subject(Kind::ClientAuth, "alice"),
            Key::address(Kind::Login, ip),
            Key::address(Kind::ClientAuth, ip),
            Key::recognised(Kind::ClientAuth, "alice", ip),
            Key::subject(Kind::Login, "bob"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(Key::subject(Kind::Login, " Alice"), keys[0]);
        // The same in every process (Redis keys are shared by the replicas).
        assert_eq!(
            Key::subject(Kind::Login, "alice").hex(),
            Key::subject(Kind::Login, "alice").hex()
        );
        assert_eq!(keys[0].hex().len(), 32);
        assert!(!redis::redis_key(Kind::Login, Scope::Account, &keys[0]).contains("alice"));
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_bit_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn a_scope_with_both_limits_at_zero_is_off() {
        let throttle = login(policy(0, 0), policy(0, 0));
        for _ in 0..100 {
            throttle
                .begin("alice", Some("192.0.2.1".parse().unwrap()))
                .await
                .unwrap()
                .failed()
                .await;
        }
        assert_eq!(throttle.store.subjects.len(), 0);
    }
}
