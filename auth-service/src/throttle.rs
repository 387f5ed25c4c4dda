//! Login throttling (class 22 of the threat list): repeated failed password logins first slow
//! down, then lock, per account and per client address.
//!
//! Each scope keeps one `Counter` per key: the account is the *normalised username* (trimmed,
//! lower-cased, then hashed with a per-process random key), whether or not such a user exists,
//! so that an unknown user is throttled exactly like a known one and the throttle reveals
//! nothing about existence; the address is the client's IP (IPv6 grouped by /64, since one
//! subscriber usually holds a whole /64).
//!
//! A counter holds the failures seen until now. Once it has `throttle_after` of them, every
//! further attempt must wait a delay after the previous attempt, doubling with each failure from
//! `base_delay` up to `max_delay`; an attempt that comes too early is refused *without checking
//! the password*. At `lock_after` failures the key is locked for `lock_duration`: every attempt
//! is refused, the right password included. When the lock ends the counter starts again from
//! zero; failures are also forgotten `lock_duration` after the last one (the classic "reset the
//! lockout counter after" rule). A successful login clears the account's counter, never the
//! address's (an attacker must not reset its address by logging into an account of its own
//! between guesses). Refused attempts are not failures: they check nothing.
//!
//! Attempts are *reserved* before the password check and counted as pending, so a burst of
//! concurrent guesses cannot all pass the check before the first failure is recorded.
//!
//! Memory is bounded: each scope is a `moka` cache of at most [`MAX_TRACKED`] keys with a
//! time-to-idle of `max(lock_duration, max_delay)`, so spraying usernames or addresses cannot
//! grow it without bound. An eviction only ever forgets failures (the cost of the bound, paid
//! under a flood of distinct keys). The state is in memory, per replica: with N replicas behind
//! a balancer an attacker gets up to N times the budget. A shared counter (Redis `INCR` with
//! `EXPIRE`) would remove that factor at the cost of a Redis round trip per login.

use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::LoginThrottleConfig;

/// Most keys tracked per scope and replica (a few tens of MB at worst for both scopes).
pub const MAX_TRACKED: u64 = 50_000;

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

/// What is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Account,
    Address,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
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

/// An attempt refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    pub action: Action,
    /// When the next attempt may be made.
    pub retry_after: Duration,
}

/// The failures of one key.
#[derive(Debug, Default)]
struct Counter {
    failures: u32,
    /// Attempts allowed whose outcome is not known yet.
    pending: u32,
    last_attempt: Option<Instant>,
    last_failure: Option<Instant>,
    locked_until: Option<Instant>,
}

impl Counter {
    /// Forgets an ended lock, or failures older than the lock duration.
    fn expire(&mut self, policy: &Policy, now: Instant) {
        let forget = match (self.locked_until, self.last_failure) {
            (Some(until), _) => now >= until,
            (None, Some(last)) => now.saturating_duration_since(last) >= policy.lock_duration,
            (None, None) => false,
        };
        if forget {
            self.failures = 0;
            self.last_failure = None;
            self.locked_until = None;
        }
    }

    /// Reserves an attempt, or says why not and for how long.
    fn begin(&mut self, policy: &Policy, now: Instant) -> Result<(), (Action, Duration)> {
        self.expire(policy, now);
        if let Some(until) = self.locked_until {
            return Err((Action::Locked, until - now));
        }
        let attempts = self.failures.saturating_add(self.pending);
        // Pending attempts may be the ones that lock: wait for their outcome.
        if policy.lock_after != 0 && attempts >= policy.lock_after {
            return Err((Action::Delayed, policy.base_delay));
        }
        if let (Some(delay), Some(last)) = (policy.delay_after(attempts), self.last_attempt) {
            let ready = last + delay;
            if now < ready {
                return Err((Action::Delayed, ready - now));
            }
        }
        self.pending += 1;
        self.last_attempt = Some(now);
        Ok(())
    }

    /// Records a failed attempt; true when it starts a lock.
    fn fail(&mut self, policy: &Policy, now: Instant) -> bool {
        self.pending = self.pending.saturating_sub(1);
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(now);
        if policy.lock_after != 0
            && self.failures >= policy.lock_after
            && self.locked_until.is_none()
        {
            self.locked_until = Some(now + policy.lock_duration);
            return true;
        }
        false
    }

    /// An attempt that ended without a verdict on the password (or a success at an address).
    fn release(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }
}

type Shared = Arc<Mutex<Counter>>;

fn lock(counter: &Shared) -> MutexGuard<'_, Counter> {
    // A panic while holding the guard leaves plain integers behind: still usable.
    counter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The counters of one scope.
struct Counters<K> {
    policy: Policy,
    cache: Cache<K, Shared>,
}

impl<K: Hash + Eq + Send + Sync + 'static> Counters<K> {
    fn new(policy: Policy) -> Self {
        let idle = policy
            .lock_duration
            .max(policy.max_delay)
            .max(Duration::from_secs(1));
        Self {
            policy,
            cache: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(idle)
                .build(),
        }
    }

    fn begin(&self, key: K, now: Instant) -> Result<Shared, (Action, Duration)> {
        let counter = self.cache.get_with(key, Shared::default);
        lock(&counter).begin(&self.policy, now)?;
        Ok(counter)
    }
}

/// The login throttle of one replica: both scopes. Cheap to share behind an `Arc`.
pub struct LoginThrottle {
    accounts: Counters<u64>,
    addresses: Counters<IpAddr>,
    /// Keys the username hash per process, so nobody can aim two usernames at one counter.
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("account", &self.accounts.policy)
            .field("address", &self.addresses.policy)
            .finish_non_exhaustive()
    }
}

impl LoginThrottle {
    pub fn new(account: Policy, address: Policy) -> Self {
        Self {
            accounts: Counters::new(account),
            addresses: Counters::new(address),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The throttle configured by `config` (`AUTH_LOGIN_*`).
    pub fn from_config(config: &LoginThrottleConfig) -> Self {
        let policy = |throttle_after, lock_after| Policy {
            throttle_after,
            lock_after,
            base_delay: config.base_delay,
            max_delay: config.max_delay,
            lock_duration: config.lock_duration,
        };
        Self::new(
            policy(config.throttle_after, config.lock_after),
            policy(config.address_throttle_after, config.address_lock_after),
        )
    }

    fn account_key(&self, username: &str) -> u64 {
        self.hasher.hash_one(normalise_username(username))
    }

    /// Reserves a password check of `username` from `address` (`None`: unknown, the address
    /// scope is skipped), or refuses it. Refusals are counted in `auth_login_throttled_total`.
    pub fn begin(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Refused> {
        let refused = |scope: Scope, (action, retry_after): (Action, Duration)| {
            metrics::counter!(
                "auth_login_throttled_total",
                "scope" => scope.as_str(),
                "action" => action.as_str()
            )
            .increment(1);
            Refused {
                scope,
                action,
                retry_after,
            }
        };
        let mut attempt = Attempt {
            account: None,
            address: None,
        };
        if let Some(ip) = address.filter(|_| !self.addresses.policy.is_off()) {
            let key = address_key(ip);
            let counter = self
                .addresses
                .begin(key, now)
                .map_err(|why| refused(Scope::Address, why))?;
            attempt.address = Some((counter, self.addresses.policy, ip));
        }
        if !self.accounts.policy.is_off() {
            // A refusal here drops `attempt`, which releases the address reservation.
            let counter = self
                .accounts
                .begin(self.account_key(username), now)
                .map_err(|why| refused(Scope::Account, why))?;
            attempt.account = Some((counter, self.accounts.policy));
        }
        Ok(attempt)
    }

    /// A successful login of `username`: its account counter starts again from nothing.
    pub fn succeeded(&self, username: &str, attempt: Attempt) {
        drop(attempt);
        if !self.accounts.policy.is_off() {
            self.accounts.cache.invalidate(&self.account_key(username));
        }
    }
}

/// A reserved password check. Resolve it with [`Attempt::failed`] or
/// [`LoginThrottle::succeeded`]; dropped unresolved (an internal error), it counts as neither.
#[must_use = "an attempt must be resolved as failed or succeeded"]
pub struct Attempt {
    account: Option<(Shared, Policy)>,
    address: Option<(Shared, Policy, IpAddr)>,
}

/// The locks a failure started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locked {
    /// The account is locked from now on, after this many failures.
    pub account: Option<u32>,
    /// The address (`IpAddr`) is locked from now on, after this many failures.
    pub address: Option<(IpAddr, u32)>,
    /// How long the locks last.
    pub duration: Duration,
}

impl Attempt {
    /// Records a failed password check; returns the locks it started, counted in
    /// `auth_login_lockouts_total`.
    pub fn failed(mut self, now: Instant) -> Locked {
        let mut locked = Locked::default();
        if let Some((counter, policy)) = self.account.take() {
            let mut counter = lock(&counter);
            if counter.fail(&policy, now) {
                locked.account = Some(counter.failures);
                locked.duration = policy.lock_duration;
            }
        }
        if let Some((counter, policy, ip)) = self.address.take() {
            let mut counter = lock(&counter);
            if counter.fail(&policy, now) {
                locked.address = Some((ip, counter.failures));
                locked.duration = policy.lock_duration;
            }
        }
        if locked.account.is_some() {
            metrics::counter!("auth_login_lockouts_total", "scope" => Scope::Account.as_str())
                .increment(1);
        }
        if locked.address.is_some() {
            metrics::counter!("auth_login_lockouts_total", "scope" => Scope::Address.as_str())
                .increment(1);
        }
        locked
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("account", &self.account.is_some())
            .field("address", &self.address.as_ref().map(|(_, _, ip)| ip))
            .finish()
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some((counter, _)) = self.account.take() {
            lock(&counter).release();
        }
        if let Some((counter, _, _)) = self.address.take() {
            lock(&counter).release();
        }
    }
}

/// Describes the throttle's metrics (called once at start-up).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "auth_login_throttled_total",
        "Password logins refused unchecked by the login throttle, by scope (account, address) and action (delayed, locked)"
    );
    metrics::describe_counter!(
        "auth_login_lockouts_total",
        "Login locks started after repeated failed logins, by scope (account, address)"
    );
}

/// The account key: case and surrounding blanks do not make another account, so they cannot
/// buy an attacker more guesses.
fn normalise_username(username: &str) -> String {
    username.trim().to_lowercase()
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

    const MS: Duration = Duration::from_millis(1);

    fn policy(throttle_after: u32, lock_after: u32) -> Policy {
        Policy {
            throttle_after,
            lock_after,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            lock_duration: Duration::from_secs(900),
        }
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

    #[test]
    fn attempts_past_the_threshold_wait_for_the_growing_delay() {
        let p = policy(2, 0);
        let t0 = Instant::now();
        let mut c = Counter::default();
        for i in 0..2 {
            let now = t0 + i * MS;
            assert_eq!(c.begin(&p, now), Ok(()));
            assert!(!c.fail(&p, now));
        }
        // Two failures: the next attempt waits 1 s after the previous one.
        let last = t0 + MS;
        assert_eq!(
            c.begin(&p, last + 400 * MS),
            Err((Action::Delayed, 600 * MS))
        );
        assert_eq!(c.begin(&p, last + Duration::from_secs(1)), Ok(()));
        c.fail(&p, last + Duration::from_secs(1));
        // Three: 2 s.
        let last = last + Duration::from_secs(1);
        assert_eq!(
            c.begin(&p, last + Duration::from_millis(1999)),
            Err((Action::Delayed, MS))
        );
        assert_eq!(c.begin(&p, last + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn a_lock_refuses_everything_until_it_ends_then_counting_restarts() {
        let p = Policy {
            lock_duration: Duration::from_secs(60),
            ..policy(0, 3)
        };
        let t0 = Instant::now();
        let mut c = Counter::default();
        for i in 0..3 {
            assert_eq!(c.begin(&p, t0), Ok(()));
            assert_eq!(c.fail(&p, t0), i == 2, "the third failure locks");
        }
        assert_eq!(
            c.begin(&p, t0 + Duration::from_secs(59)),
            Err((Action::Locked, Duration::from_secs(1)))
        );
        let after = t0 + Duration::from_secs(60);
        assert_eq!(c.begin(&p, after), Ok(()));
        assert!(!c.fail(&p, after), "a fresh count: one failure");
        assert_eq!(c.failures, 1);
    }

    #[test]
    fn pending_attempts_count_so_a_burst_cannot_outrun_the_lock() {
        let p = policy(0, 3);
        let now = Instant::now();
        let mut c = Counter::default();
        for _ in 0..3 {
            assert_eq!(c.begin(&p, now), Ok(()));
        }
        assert_eq!(c.begin(&p, now), Err((Action::Delayed, p.base_delay)));
        c.release();
        assert_eq!(c.begin(&p, now), Ok(()), "a released slot is free again");
    }

    #[test]
    fn failures_are_forgotten_a_lock_duration_after_the_last_one() {
        let p = Policy {
            lock_duration: Duration::from_secs(60),
            ..policy(2, 5)
        };
        let t0 = Instant::now();
        let mut c = Counter::default();
        for _ in 0..2 {
            c.begin(&p, t0).expect("allowed");
            c.fail(&p, t0);
        }
        assert!(c.begin(&p, t0 + Duration::from_secs(59)).is_ok());
        c.release();
        let later = t0 + Duration::from_secs(120);
        assert!(c.begin(&p, later).is_ok());
        assert_eq!(c.failures, 0);
    }

    #[test]
    fn case_and_blanks_do_not_make_another_account() {
        let throttle = LoginThrottle::new(policy(0, 2), policy(0, 0));
        let now = Instant::now();
        for name in ["Alice", " alice "] {
            let attempt = throttle.begin(name, None, now).expect("allowed");
            attempt.failed(now);
        }
        let refused = throttle.begin("ALICE", None, now).expect_err("locked");
        assert_eq!(
            (refused.scope, refused.action),
            (Scope::Account, Action::Locked)
        );
        assert!(throttle.begin("bob", None, now).is_ok());
    }

    #[test]
    fn a_success_clears_the_account_but_not_the_address() {
        let throttle = LoginThrottle::new(policy(0, 3), policy(0, 3));
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            throttle.begin("alice", Some(ip), now).unwrap().failed(now);
        }
        let attempt = throttle.begin("alice", Some(ip), now).unwrap();
        throttle.succeeded("alice", attempt);
        // The account starts again; the address has two failures, and a third locks it.
        let locked = throttle.begin("alice", Some(ip), now).unwrap().failed(now);
        assert_eq!(locked.account, None);
        assert_eq!(locked.address, Some((ip, 3)));
        let refused = throttle
            .begin("carol", Some(ip), now)
            .expect_err("address locked");
        assert_eq!(
            (refused.scope, refused.action),
            (Scope::Address, Action::Locked)
        );
    }

    #[test]
    fn a_refusal_of_the_account_releases_the_address_reservation() {
        let throttle = LoginThrottle::new(policy(0, 1), policy(0, 2));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let now = Instant::now();
        throttle.begin("alice", Some(ip), now).unwrap().failed(now);
        for _ in 0..5 {
            let refused = throttle.begin("alice", Some(ip), now).expect_err("locked");
            assert_eq!(refused.scope, Scope::Account);
        }
        // One failure and no leaked pending reservation at the address: one more is allowed.
        assert!(throttle.begin("bob", Some(ip), now).is_ok());
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

    #[test]
    fn a_scope_with_both_limits_at_zero_is_off() {
        let throttle = LoginThrottle::new(policy(0, 0), policy(0, 0));
        let now = Instant::now();
        for _ in 0..100 {
            throttle
                .begin("alice", Some("192.0.2.1".parse().unwrap()), now)
                .unwrap()
                .failed(now);
        }
        assert_eq!(throttle.accounts.cache.entry_count(), 0);
    }
}
