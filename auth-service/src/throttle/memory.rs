//! The counters of one replica, in memory: the throttle's own store without `REDIS_URL`, and its
//! fallback while Redis does not answer.
//!
//! Each scope is a `moka` cache of at most [`MAX_TRACKED`] counters with a time-to-idle of
//! `max(lock_duration, max_delay)`, so spraying names or addresses cannot grow it without bound.
//! An eviction only ever forgets failures (the cost of the bound, paid under a flood of distinct
//! keys).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::{Action, Key, Policy};

/// Most keys tracked per scope and replica (a few tens of MB at worst for both scopes).
pub const MAX_TRACKED: u64 = 50_000;

/// The failures of one key.
#[derive(Debug, Default)]
pub(super) struct Counter {
    pub(super) failures: u32,
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
    pub(super) fn begin(
        &mut self,
        policy: &Policy,
        now: Instant,
    ) -> Result<(), (Action, Duration)> {
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
    pub(super) fn fail(&mut self, policy: &Policy, now: Instant) -> bool {
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

    /// An attempt that ended without a verdict (or a success, for a scope a success does not
    /// clear).
    pub(super) fn release(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }
}

/// A counter shared by the cache and the attempts that reserved it.
pub(super) type Shared = Arc<Mutex<Counter>>;

pub(super) fn lock(counter: &Shared) -> MutexGuard<'_, Counter> {
    // A panic while holding the guard leaves plain integers behind: still usable.
    counter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The counters of one scope.
#[derive(Debug)]
pub(super) struct Counters {
    cache: Cache<Key, Shared>,
}

impl Counters {
    pub(super) fn new(policy: &Policy) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(policy.idle())
                .build(),
        }
    }

    /// Reserves an attempt on `key`'s counter, or says why not; with the failures on record.
    pub(super) fn begin(
        &self,
        key: Key,
        policy: &Policy,
        now: Instant,
    ) -> Result<(Shared, u32), (Action, Duration)> {
        let counter = self.cache.get_with(key, Shared::default);
        let failures = {
            let mut guard = lock(&counter);
            guard.begin(policy, now)?;
            guard.failures
        };
        Ok((counter, failures))
    }

    /// Forgets `key`'s counter (a success).
    pub(super) fn clear(&self, key: &Key) {
        self.cache.invalidate(key);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

/// Pairs of a subject and an address, remembered for a while (the client-authentication
/// throttle's recognised addresses).
#[derive(Debug)]
pub(super) struct Marks {
    cache: Cache<Key, ()>,
}

impl Marks {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub(super) fn contains(&self, key: &Key) -> bool {
        self.cache.contains_key(key)
    }

    pub(super) fn insert(&self, key: Key) {
        self.cache.insert(key, ());
    }
}

/// The addresses the full Argon2 queue refused lately, and how often each came back before the
/// `Retry-After` it was given had run out.
#[derive(Debug)]
pub(super) struct Sheds {
    cache: Cache<Key, Arc<Mutex<Shed>>>,
}

#[derive(Debug)]
pub(super) struct Shed {
    /// Until when the last refusal asked the caller to wait.
    wait_until: Instant,
    /// Attempts made before that.
    early: u32,
}

impl Sheds {
    /// A record is forgotten `memory` after it was made.
    pub(super) fn new(memory: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(memory)
                .build(),
        }
    }

    /// `key` was refused at `now` and told to wait `retry_after`.
    pub(super) fn note(&self, key: Key, now: Instant, retry_after: Duration) {
        let record = self.cache.get_with(key, || {
            Arc::new(Mutex::new(Shed {
                wait_until: now,
                early: 0,
            }))
        });
        let mut record = record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        record.wait_until = record.wait_until.max(now + retry_after);
    }

    /// An attempt of `key` at `now`: counted if it comes before its wait is over; the number of
    /// such early attempts so far.
    pub(super) fn early(&self, key: &Key, now: Instant) -> u32 {
        let Some(record) = self.cache.get(key) else {
            return 0;
        };
        let mut record = record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now < record.wait_until {
            record.early = record.early.saturating_add(1);
        }
        record.early
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
}
