//! The background task of every replica: runs the schedule every `AUTH_KEY_RELOAD_INTERVAL`
//! and at once when a verifier's report may let a waiting key sign, and reloads the set at once
//! on a `KeyRevoked` or `KeyAdded` event of the revocation feed (so that every replica serves a
//! new key in its JWKS before `hybrid` verifiers, told by the same event, fetch it).

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use super::manager::KeyManager;
use crate::sessions::revocation::{Event, Target, stopped};

impl KeyManager {
    /// Starts the background task in `tasks`: the schedule every `AUTH_KEY_RELOAD_INTERVAL` and
    /// when poked by a report, and a reload at once on a `KeyRevoked` or `KeyAdded` event,
    /// until `stop` turns true.
    pub fn spawn(&self, tasks: &mut JoinSet<()>, stop: watch::Receiver<bool>) {
        let events = self.revocations().subscribe();
        tasks.spawn(run(self.clone(), events, stop));
    }
}

/// Runs until `stop` turns true. `events` is the revocation feed's live stream.
async fn run(
    manager: KeyManager,
    mut events: broadcast::Receiver<Arc<Event>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(manager.timing().reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut feed_open = true;
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = tick.tick() => {
                if let Err(error) = manager.tick(manager.now()).await {
                    tracing::warn!(%error, "signing key schedule failed; retrying at the next interval");
                }
            }
            () = manager.poked() => {
                if let Err(error) = manager.tick(manager.now()).await {
                    tracing::warn!(%error, "signing key schedule failed after a verifier's report; retrying at the next interval");
                }
            }
            event = events.recv(), if feed_open => {
                let reload = match event {
                    Ok(event) => matches!(
                        event.target,
                        Target::KeyRevoked { .. } | Target::KeyAdded { .. }
                    ),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => {
                        feed_open = false;
                        false
                    }
                };
                if reload && let Err(error) = manager.reload().await {
                    tracing::warn!(%error, "cannot reload the signing keys after a key event");
                }
            }
        }
    }
}
