//! The key lifecycle as pure functions over the list of keys: what a tick, a manual rotation
//! or a revocation changes at a given time. No I/O and no clock here, so every transition is
//! tested with plain numbers; [`super::KeyManager`] loads the list, applies one of these under
//! the database lock and stores the result.
//!
//! A due `next` key signs only once every connected verifier holds it ([`Coverage`], from the
//! verifiers' reports), or once it has waited [`KeyTiming::promotion_max_wait`] past its
//! activation time, whichever comes first ([`Outcome::forced`] says it went ahead without some).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::verifiers::Coverage;

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet: verifiers learn it before its first token.
    Next,
    /// Signing (exactly one) and published.
    Active,
    /// Published, not signing, until every token it signed has expired; then removed.
    Retired,
    /// Withdrawn at once: not published, and refused by `hybrid` verifiers through the
    /// revocation feed.
    Revoked,
}

impl KeyState {
    pub const ALL: [KeyState; 4] = [
        KeyState::Next,
        KeyState::Active,
        KeyState::Retired,
        KeyState::Revoked,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Revoked => "revoked",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    /// Whether keys in this state appear in the JWKS (and in the issuer's own verifier).
    pub const fn is_published(self) -> bool {
        !matches!(self, KeyState::Revoked)
    }
}

/// A signing key's metadata: everything but the private key. Times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub kid: String,
    pub state: KeyState,
    pub created_at: i64,
    /// When it starts (or started) signing.
    pub activates_at: i64,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Why a rotation happened: the label of `auth_key_rotations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationKind {
    /// The schedule published the next key (`AUTH_KEY_ROTATION_INTERVAL`).
    Scheduled,
    /// An operator asked for a rotation through the pre-publication window.
    Manual,
    /// An operator asked for a rotation at once.
    Immediate,
    /// The active key was revoked, so a replacement took over at once.
    Emergency,
}

impl RotationKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            RotationKind::Scheduled => "scheduled",
            RotationKind::Manual => "manual",
            RotationKind::Immediate => "immediate",
            RotationKind::Emergency => "emergency",
        }
    }
}

/// The timing rules of the lifecycle (docs/KEYS.md explains each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTiming {
    /// How long a key signs before the next takes over; `None`: manual rotation only.
    pub rotation_interval: Option<Duration>,
    /// How long a new key is published before it signs.
    pub prepublish: Duration,
    /// How long a retired (or revoked) key is kept after it stopped signing: the access-token
    /// lifetime, plus the replicas' reload interval (a replica may sign with a key that long
    /// after another retired it), plus [`RETENTION_MARGIN`] for verifier leeway and clock skew.
    pub retention: Duration,
    /// How often replicas re-read the key set and run the schedule.
    pub reload_interval: Duration,
    /// The `max-age` of the JWKS: at most half of what the pre-publication window leaves once a
    /// reload interval is taken off, so a verifier that fetched just before a key appeared sees
    /// it, with one refresh to spare, before it signs.
    pub jwks_max_age: Duration,
    /// How long a due `next` key waits for the connected verifiers that do not hold it yet
    /// before it signs anyway (`AUTH_KEY_PROMOTION_MAX_WAIT`); zero: it never waits.
    pub promotion_max_wait: Duration,
}

/// `AUTH_KEY_PROMOTION_MAX_WAIT` unless configured: longer than a verifier's default JWKS
/// refresh (5 min) plus a lost report or two, short enough that a verifier gone wrong delays a
/// scheduled rotation by minutes, not days.
pub const DEFAULT_PROMOTION_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Kept beyond `access-token TTL + reload interval` before a retired key is removed: the
/// verifiers' leeway on `exp` (30 s by default) and clock skew between hosts.
pub const RETENTION_MARGIN: Duration = Duration::from_secs(60);
/// Added to twice the JWKS max-age for the default pre-publication window.
pub const PREPUBLISH_MARGIN: Duration = Duration::from_secs(60);

/// A timing configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error(
        "AUTH_KEY_PREPUBLISH ({prepublish:?}) must be longer than AUTH_KEY_RELOAD_INTERVAL ({reload:?})"
    )]
    PrepublishTooShort {
        prepublish: Duration,
        reload: Duration,
    },
    #[error(
        "AUTH_KEY_ROTATION_INTERVAL ({interval:?}) must be longer than AUTH_KEY_PREPUBLISH ({prepublish:?})"
    )]
    IntervalTooShort {
        interval: Duration,
        prepublish: Duration,
    },
}

impl KeyTiming {
    /// The timing of `rotation_interval` (zero: off), `prepublish` (default: 2 x max-age + 1
    /// min), with the JWKS `max-age` capped by what the pre-publication window allows.
    pub fn new(
        rotation_interval: Duration,
        prepublish: Option<Duration>,
        reload_interval: Duration,
        configured_max_age: Duration,
        access_token_ttl: Duration,
    ) -> Result<Self, TimingError> {
        let prepublish = prepublish.unwrap_or(configured_max_age * 2 + PREPUBLISH_MARGIN);
        if prepublish <= reload_interval {
            return Err(TimingError::PrepublishTooShort {
                prepublish,
                reload: reload_interval,
            });
        }
        let rotation_interval = (!rotation_interval.is_zero()).then_some(rotation_interval);
        if let Some(interval) = rotation_interval
            && interval <= prepublish
        {
            return Err(TimingError::IntervalTooShort {
                interval,
                prepublish,
            });
        }
        let allowed = (prepublish - reload_interval) / 2;
        Ok(Self {
            rotation_interval,
            prepublish,
            retention: access_token_ttl + reload_interval + RETENTION_MARGIN,
            reload_interval,
            jwks_max_age: configured_max_age.min(allowed),
            promotion_max_wait: DEFAULT_PROMOTION_MAX_WAIT,
        })
    }

    /// This timing with `AUTH_KEY_PROMOTION_MAX_WAIT` = `max_wait`.
    #[must_use]
    pub fn with_promotion_max_wait(self, max_wait: Duration) -> Self {
        Self {
            promotion_max_wait: max_wait,
            ..self
        }
    }

    /// When a `next` key due at `activates_at` signs even if some verifiers lack it.
    pub fn promotion_deadline(&self, activates_at: i64) -> i64 {
        activates_at.saturating_add(secs(self.promotion_max_wait))
    }

    fn prepublish_secs(&self) -> i64 {
        secs(self.prepublish)
    }

    fn retention_secs(&self) -> i64 {
        secs(self.retention)
    }

    /// When a retired (or revoked) key leaves the key set.
    pub fn removal_at(&self, key: &KeyInfo) -> Option<i64> {
        let stopped = match key.state {
            KeyState::Retired => key.retired_at?,
            KeyState::Revoked => key.revoked_at?,
            KeyState::Next | KeyState::Active => return None,
        };
        Some(stopped.saturating_add(self.retention_secs()))
    }

    /// When the schedule publishes the key that follows `active`.
    pub fn next_due_at(&self, active: &KeyInfo) -> Option<i64> {
        let interval = secs(self.rotation_interval?);
        Some(
            active
                .activates_at
                .saturating_add(interval)
                .saturating_sub(self.prepublish_secs()),
        )
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 4)
}

/// What one step did, for the caller, the log and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// A key created by this step (it was given the fresh key).
    pub created: Option<String>,
    /// Keys that started signing.
    pub activated: Vec<String>,
    /// Keys that stopped signing.
    pub retired: Vec<String>,
    /// Keys removed from the set for good.
    pub removed: Vec<String>,
    /// A key revoked by this step (a `KeyRevoked` event goes with it).
    pub revoked: Option<String>,
    /// A pending key whose activation was brought forward.
    pub rescheduled: Option<String>,
    /// The rotation this step started, if any.
    pub rotation: Option<RotationKind>,
    /// A `next` key that started signing after waiting the maximum time, while connected
    /// verifiers still did not hold it.
    pub forced: Option<ForcedPromotion>,
}

/// A promotion that went ahead without every connected verifier holding the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForcedPromotion {
    pub kid: String,
    /// Connected verifiers that did not hold it.
    pub missing: usize,
    /// Seconds it waited past its activation time.
    pub waited_secs: i64,
}

impl Outcome {
    pub fn is_empty(&self) -> bool {
        *self == Outcome::default()
    }
}

/// Why a step cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The step creates a key: call again with a freshly generated one.
    #[error("a new key is needed")]
    NeedKey,
    #[error("no such key")]
    UnknownKey,
    #[error("the key set has no active key")]
    NoActiveKey,
}

fn active_index(keys: &[KeyInfo]) -> Option<usize> {
    keys.iter().position(|k| k.state == KeyState::Active)
}

/// The earliest pending key.
fn next_index(keys: &[KeyInfo]) -> Option<usize> {
    keys.iter()
        .enumerate()
        .filter(|(_, k)| k.state == KeyState::Next)
        .min_by_key(|(_, k)| (k.activates_at, k.created_at))
        .map(|(i, _)| i)
}

fn new_key(
    fresh: Option<&str>,
    state: KeyState,
    now: i64,
    activates_at: i64,
) -> Result<KeyInfo, PlanError> {
    Ok(KeyInfo {
        kid: fresh.ok_or(PlanError::NeedKey)?.to_owned(),
        state,
        created_at: now,
        activates_at,
        retired_at: None,
        revoked_at: None,
    })
}

/// Retires the active key (if any) at `now`.
fn retire_active(keys: &mut [KeyInfo], now: i64, outcome: &mut Outcome) {
    for key in keys.iter_mut().filter(|k| k.state == KeyState::Active) {
        key.state = KeyState::Retired;
        key.retired_at = Some(now);
        outcome.retired.push(key.kid.clone());
    }
}

/// Makes a key sign at once: the earliest pending key if there is one (it has been published
/// the longest), else `fresh`. The previous active key retires.
fn activate_now(
    keys: &mut Vec<KeyInfo>,
    now: i64,
    fresh: Option<&str>,
    outcome: &mut Outcome,
) -> Result<(), PlanError> {
    let promoted = match next_index(keys) {
        Some(i) => i,
        None => {
            keys.push(new_key(fresh, KeyState::Next, now, now)?);
            outcome.created = fresh.map(str::to_owned);
            keys.len() - 1
        }
    };
    retire_active(keys, now, outcome);
    let key = &mut keys[promoted];
    key.state = KeyState::Active;
    key.activates_at = now;
    outcome.activated.push(key.kid.clone());
    Ok(())
}

/// The pending key whose activation time has come at `now`, if any (signing or waiting for
/// verifiers).
pub fn due_next(keys: &[KeyInfo], now: i64) -> Option<&KeyInfo> {
    next_index(keys)
        .map(|i| &keys[i])
        .filter(|k| k.activates_at <= now)
}

/// The schedule at `now`: removes keys whose retention has passed, activates the pending key
/// once it is due and every verifier of `coverage` holds it (or it has waited
/// [`KeyTiming::promotion_max_wait`]), retiring the previous one, creates the first key of an
/// empty set, and publishes the next key once the active one is due for rotation. A promoted
/// key's `activates_at` becomes the time it started signing.
pub fn tick(
    keys: &mut Vec<KeyInfo>,
    now: i64,
    timing: &KeyTiming,
    coverage: &Coverage,
    fresh: Option<&str>,
) -> Result<Outcome, PlanError> {
    let mut outcome = Outcome::default();
    keys.retain(|key| {
        let expired = timing.removal_at(key).is_some_and(|at| at <= now);
        if expired {
            outcome.removed.push(key.kid.clone());
        }
        !expired
    });
    while let Some(i) = next_index(keys).filter(|&i| keys[i].activates_at <= now) {
        let key = &keys[i];
        let missing = coverage.missing(&key.kid);
        // Without an active key nothing signs: no verifier is worth that wait.
        let has_active = active_index(keys).is_some();
        if missing > 0 && has_active {
            if now < timing.promotion_deadline(key.activates_at) {
                break;
            }
            outcome.forced = Some(ForcedPromotion {
                kid: key.kid.clone(),
                missing,
                waited_secs: now.saturating_sub(key.activates_at),
            });
        }
        retire_active(keys, now, &mut outcome);
        let key = &mut keys[i];
        key.state = KeyState::Active;
        key.activates_at = now;
        outcome.activated.push(key.kid.clone());
    }
    let Some(active) = active_index(keys) else {
        // An empty set (first start), or one whose active key vanished from storage: sign at
        // once; there is nothing a verifier could have cached that this would break.
        activate_now(keys, now, fresh, &mut outcome)?;
        return Ok(outcome);
    };
    if next_index(keys).is_none()
        && let Some(due) = timing.next_due_at(&keys[active])
        && now >= due
    {
        let planned = keys[active]
            .activates_at
            .saturating_add(secs(timing.rotation_interval.unwrap_or_default()));
        let activates_at = planned.max(now.saturating_add(timing.prepublish_secs()));
        keys.push(new_key(fresh, KeyState::Next, now, activates_at)?);
        outcome.created = fresh.map(str::to_owned);
        outcome.rotation = Some(RotationKind::Scheduled);
    }
    Ok(outcome)
}

/// A manual rotation at `now`. `immediate`: a new key signs at once (the pending one if there
/// is one, since verifiers may know it already). Otherwise the next key signs once it has been
/// published for the pre-publication window: a pending key is brought forward to that point, or
/// a new one is published.
pub fn rotate(
    keys: &mut Vec<KeyInfo>,
    now: i64,
    timing: &KeyTiming,
    immediate: bool,
    fresh: Option<&str>,
) -> Result<Outcome, PlanError> {
    if active_index(keys).is_none() {
        return Err(PlanError::NoActiveKey);
    }
    let mut outcome = Outcome::default();
    if immediate {
        activate_now(keys, now, fresh, &mut outcome)?;
        outcome.rotation = Some(RotationKind::Immediate);
        return Ok(outcome);
    }
    match next_index(keys) {
        Some(i) => {
            let key = &mut keys[i];
            let earliest = key
                .created_at
                .saturating_add(timing.prepublish_secs())
                .max(now);
            if earliest < key.activates_at {
                key.activates_at = earliest;
                outcome.rescheduled = Some(key.kid.clone());
                outcome.rotation = Some(RotationKind::Manual);
            }
        }
        None => {
            let activates_at = now.saturating_add(timing.prepublish_secs());
            keys.push(new_key(fresh, KeyState::Next, now, activates_at)?);
            outcome.created = fresh.map(str::to_owned);
            outcome.rotation = Some(RotationKind::Manual);
        }
    }
    Ok(outcome)
}

/// Revokes `kid` at `now`. The active key is first replaced by an immediate rotation, so the
/// set never lacks a signing key. Revoking a revoked key changes nothing.
pub fn revoke(
    keys: &mut Vec<KeyInfo>,
    kid: &str,
    now: i64,
    fresh: Option<&str>,
) -> Result<Outcome, PlanError> {
    let Some(i) = keys.iter().position(|k| k.kid == kid) else {
        return Err(PlanError::UnknownKey);
    };
    let mut outcome = Outcome::default();
    match keys[i].state {
        KeyState::Revoked => return Ok(outcome),
        KeyState::Active => {
            activate_now(keys, now, fresh, &mut outcome)?;
            outcome.rotation = Some(RotationKind::Emergency);
            // The revoked key stopped signing now; it is revoked, not retired.
            outcome.retired.retain(|retired| retired != kid);
        }
        KeyState::Next | KeyState::Retired => {}
    }
    let key = keys
        .iter_mut()
        .find(|k| k.kid == kid)
        .ok_or(PlanError::UnknownKey)?;
    key.state = KeyState::Revoked;
    key.revoked_at = Some(now);
    outcome.revoked = Some(kid.to_owned());
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nobody() -> Coverage {
        Coverage::nobody()
    }

    const MIN: i64 = 60;
    const DAY: i64 = 24 * 3600;

    fn timing() -> KeyTiming {
        KeyTiming::new(
            Duration::from_secs(30 * DAY as u64),
            None,
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(300),
        )
        .unwrap()
    }

    fn states(keys: &[KeyInfo]) -> Vec<(&str, KeyState)> {
        keys.iter().map(|k| (k.kid.as_str(), k.state)).collect()
    }

    #[test]
    fn defaults_follow_the_jwks_max_age() {
        let t = timing();
        assert_eq!(t.prepublish, Duration::from_secs(11 * 60));
        assert_eq!(t.jwks_max_age, Duration::from_secs(300));
        assert_eq!(t.retention, Duration::from_secs(300 + 10 + 60));
        // A pre-publication window shorter than 2 x max-age caps the max-age.
        let short = KeyTiming::new(
            Duration::from_secs(DAY as u64),
            Some(Duration::from_secs(130)),
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(short.jwks_max_age, Duration::from_secs(60));
        assert!(matches!(
            KeyTiming::new(
                Duration::from_secs(600),
                None,
                Duration::from_secs(10),
                Duration::from_secs(300),
                Duration::from_secs(300),
            ),
            Err(TimingError::IntervalTooShort { .. })
        ));
        assert!(matches!(
            KeyTiming::new(
                Duration::ZERO,
                Some(Duration::from_secs(5)),
                Duration::from_secs(10),
                Duration::from_secs(300),
                Duration::from_secs(300),
            ),
            Err(TimingError::PrepublishTooShort { .. })
        ));
        let off = KeyTiming::new(
            Duration::ZERO,
            None,
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!(off.rotation_interval, None);
    }

    #[test]
    fn the_whole_lifecycle_at_the_right_times() {
        let t = timing();
        let t0 = 1_000_000;
        let mut keys = Vec::new();
        assert_eq!(
            tick(&mut keys, t0, &t, &nobody(), None),
            Err(PlanError::NeedKey)
        );
        let first = tick(&mut keys, t0, &t, &nobody(), Some("k1")).unwrap();
        assert_eq!(first.activated, ["k1"]);
        assert_eq!(first.rotation, None);
        assert_eq!(states(&keys), [("k1", KeyState::Active)]);

        let due = t0 + 30 * DAY - 11 * MIN;
        assert!(
            tick(&mut keys, due - 1, &t, &nobody(), None)
                .unwrap()
                .is_empty()
        );
        let created = tick(&mut keys, due, &t, &nobody(), Some("k2")).unwrap();
        assert_eq!(created.created.as_deref(), Some("k2"));
        assert_eq!(created.rotation, Some(RotationKind::Scheduled));
        assert_eq!(
            states(&keys),
            [("k1", KeyState::Active), ("k2", KeyState::Next)]
        );
        assert_eq!(keys[1].activates_at, t0 + 30 * DAY);
        // Another tick does not publish a second next key.
        assert!(
            tick(&mut keys, due + 1, &t, &nobody(), Some("k3"))
                .unwrap()
                .is_empty()
        );

        assert!(
            tick(&mut keys, t0 + 30 * DAY - 1, &t, &nobody(), None)
                .unwrap()
                .is_empty()
        );
        let activated = tick(&mut keys, t0 + 30 * DAY, &t, &nobody(), None).unwrap();
        assert_eq!(activated.activated, ["k2"]);
        assert_eq!(activated.retired, ["k1"]);
        assert_eq!(
            states(&keys),
            [("k1", KeyState::Retired), ("k2", KeyState::Active)]
        );
        assert_eq!(keys[0].retired_at, Some(t0 + 30 * DAY));

        let removal = t0 + 30 * DAY + 300 + 10 + 60;
        assert!(
            tick(&mut keys, removal - 1, &t, &nobody(), None)
                .unwrap()
                .is_empty()
        );
        let removed = tick(&mut keys, removal, &t, &nobody(), None).unwrap();
        assert_eq!(removed.removed, ["k1"]);
        assert_eq!(states(&keys), [("k2", KeyState::Active)]);
    }

    #[test]
    fn a_late_schedule_still_prepublishes_for_the_whole_window() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        // The replicas were all down when the next key was due.
        let late = 40 * DAY;
        tick(&mut keys, late, &t, &nobody(), Some("k2")).unwrap();
        assert_eq!(keys[1].activates_at, late + 11 * MIN);
    }

    #[test]
    fn manual_rotation_waits_for_the_window_unless_immediate() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        assert_eq!(
            rotate(&mut keys, 100, &t, false, None),
            Err(PlanError::NeedKey)
        );
        let manual = rotate(&mut keys, 100, &t, false, Some("k2")).unwrap();
        assert_eq!(manual.rotation, Some(RotationKind::Manual));
        assert_eq!(keys[1].activates_at, 100 + 11 * MIN);
        // Asking again changes nothing: the pending key activates as early as it may.
        assert!(
            rotate(&mut keys, 200, &t, false, Some("k3"))
                .unwrap()
                .is_empty()
        );

        let immediate = rotate(&mut keys, 300, &t, true, Some("k3")).unwrap();
        assert_eq!(immediate.activated, ["k2"], "the pending key is promoted");
        assert_eq!(immediate.created, None);
        assert_eq!(
            states(&keys),
            [("k1", KeyState::Retired), ("k2", KeyState::Active)]
        );
        let again = rotate(&mut keys, 400, &t, true, Some("k3")).unwrap();
        assert_eq!(again.created.as_deref(), Some("k3"));
        assert_eq!(again.activated, ["k3"]);
        assert_eq!(again.retired, ["k2"]);
    }

    #[test]
    fn a_manual_rotation_brings_a_scheduled_key_forward() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        // A pending key published long ago but set to sign much later.
        keys.push(KeyInfo {
            kid: "k2".into(),
            state: KeyState::Next,
            created_at: 1000,
            activates_at: 10 * DAY,
            retired_at: None,
            revoked_at: None,
        });
        // Its window has passed: it is due now, and the next tick activates it.
        let outcome = rotate(&mut keys, 2000, &t, false, None).unwrap();
        assert_eq!(outcome.rescheduled.as_deref(), Some("k2"));
        assert_eq!(keys[1].activates_at, 2000);
        assert_eq!(
            tick(&mut keys, 2000, &t, &nobody(), None)
                .unwrap()
                .activated,
            ["k2"]
        );
        // A key published a moment ago must still wait for its window.
        keys.push(KeyInfo {
            kid: "k3".into(),
            state: KeyState::Next,
            created_at: 2100,
            activates_at: 10 * DAY,
            retired_at: None,
            revoked_at: None,
        });
        rotate(&mut keys, 2200, &t, false, None).unwrap();
        assert_eq!(keys[2].activates_at, 2100 + 11 * MIN);
    }

    #[test]
    fn revoking_the_active_key_rotates_first() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        assert_eq!(revoke(&mut keys, "k1", 50, None), Err(PlanError::NeedKey));
        let outcome = revoke(&mut keys, "k1", 50, Some("k2")).unwrap();
        assert_eq!(outcome.revoked.as_deref(), Some("k1"));
        assert_eq!(outcome.activated, ["k2"]);
        assert!(outcome.retired.is_empty());
        assert_eq!(outcome.rotation, Some(RotationKind::Emergency));
        assert_eq!(
            states(&keys),
            [("k1", KeyState::Revoked), ("k2", KeyState::Active)]
        );
        assert_eq!(keys[0].revoked_at, Some(50));
        assert!(revoke(&mut keys, "k1", 60, None).unwrap().is_empty());
        assert_eq!(
            revoke(&mut keys, "nope", 60, None),
            Err(PlanError::UnknownKey)
        );
        // Revoked keys leave the set after the retention, like retired ones.
        let removed = tick(&mut keys, 50 + 370, &t, &nobody(), None).unwrap();
        assert_eq!(removed.removed, ["k1"]);
    }

    #[test]
    fn revoking_a_pending_key_lets_the_schedule_publish_another() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        rotate(&mut keys, 10, &t, false, Some("k2")).unwrap();
        let outcome = revoke(&mut keys, "k2", 20, None).unwrap();
        assert_eq!(outcome.rotation, None);
        assert_eq!(
            states(&keys),
            [("k1", KeyState::Active), ("k2", KeyState::Revoked)]
        );
    }

    /// Two verifiers connected: `a` holds `kids_a`, `b` holds `kids_b`.
    fn verifiers(kids_a: &[&str], kids_b: &[&str]) -> Coverage {
        use super::super::verifiers::Report;
        let report = |instance: &str, kids: &[&str]| Report {
            client_id: "orders".into(),
            instance: instance.into(),
            kids: kids.iter().map(|k| (*k).to_owned()).collect(),
            reported_at_ms: 0,
            expires_at_ms: i64::MAX,
        };
        Coverage::of(&[report("a", kids_a), report("b", kids_b)], 0)
    }

    #[test]
    fn a_due_key_waits_until_every_connected_verifier_holds_it() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        rotate(&mut keys, 100, &t, false, Some("k2")).unwrap();
        let due = 100 + 11 * MIN;
        let one_lacks_it = verifiers(&["k1", "k2"], &["k1"]);
        // Due, but b does not hold k2: nothing changes, so no transaction is taken either.
        assert!(
            tick(&mut keys, due, &t, &one_lacks_it, None)
                .unwrap()
                .is_empty()
        );
        assert!(
            tick(&mut keys, due + 5 * MIN, &t, &one_lacks_it, None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(due_next(&keys, due).map(|k| k.kid.as_str()), Some("k2"));
        assert_eq!(keys[0].state, KeyState::Active);
        // b reports k2: the next tick promotes it, dated from that moment.
        let promoted = tick(
            &mut keys,
            due + 5 * MIN + 1,
            &t,
            &verifiers(&["k1", "k2"], &["k2"]),
            None,
        )
        .unwrap();
        assert_eq!(promoted.activated, ["k2"]);
        assert_eq!(promoted.retired, ["k1"]);
        assert_eq!(promoted.forced, None);
        assert_eq!(keys[1].activates_at, due + 5 * MIN + 1);
        assert_eq!(keys[0].retired_at, Some(due + 5 * MIN + 1));
        assert_eq!(due_next(&keys, i64::MAX), None);
    }

    #[test]
    fn a_due_key_signs_after_the_maximum_wait_without_the_laggards() {
        let t = timing().with_promotion_max_wait(Duration::from_secs(15 * 60));
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        rotate(&mut keys, 100, &t, false, Some("k2")).unwrap();
        let due = 100 + 11 * MIN;
        let nobody_has_it = verifiers(&["k1"], &["k1"]);
        let deadline = due + 15 * MIN;
        assert_eq!(t.promotion_deadline(due), deadline);
        assert!(
            tick(&mut keys, deadline - 1, &t, &nobody_has_it, None)
                .unwrap()
                .is_empty()
        );
        let forced = tick(&mut keys, deadline, &t, &nobody_has_it, None).unwrap();
        assert_eq!(forced.activated, ["k2"]);
        assert_eq!(
            forced.forced,
            Some(ForcedPromotion {
                kid: "k2".into(),
                missing: 2,
                waited_secs: 15 * MIN
            })
        );
        // With no maximum wait, a due key never waits.
        let eager = timing().with_promotion_max_wait(Duration::ZERO);
        let mut keys = Vec::new();
        tick(&mut keys, 0, &eager, &nobody(), Some("k1")).unwrap();
        rotate(&mut keys, 100, &eager, false, Some("k2")).unwrap();
        let at_once = tick(&mut keys, due, &eager, &nobody_has_it, None).unwrap();
        assert_eq!(at_once.activated, ["k2"]);
        assert_eq!(at_once.forced.map(|f| f.missing), Some(2));
    }

    #[test]
    fn immediate_rotations_and_revocations_never_wait() {
        let t = timing();
        let mut keys = Vec::new();
        tick(&mut keys, 0, &t, &nobody(), Some("k1")).unwrap();
        rotate(&mut keys, 100, &t, false, Some("k2")).unwrap();
        // Verifiers lacking k2 do not hold back an immediate rotation (it does not consult
        // them); the caller reports how many lack it.
        let immediate = rotate(&mut keys, 200, &t, true, None).unwrap();
        assert_eq!(immediate.activated, ["k2"]);
        let emergency = revoke(&mut keys, "k2", 300, Some("k3")).unwrap();
        assert_eq!(emergency.activated, ["k3"]);
    }
}
