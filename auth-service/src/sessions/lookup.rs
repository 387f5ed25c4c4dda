//! The store as a [`authn::session::SessionLookup`], so the issuer's own bearer checks are
//! `stateful` against the store itself (no gRPC round trip, no cache).

use authn::session::{BoxFuture, LookupError, SessionLookup};

use super::store::SharedStore;

/// Answers `authn`'s stateful session check from a [`super::SessionStore`].
#[derive(Debug, Clone)]
pub struct StoreLookup(pub SharedStore);

impl SessionLookup for StoreLookup {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move {
            self.0
                .is_active(sid)
                .await
                .map_err(|e| LookupError(e.to_string()))
        })
    }
}
