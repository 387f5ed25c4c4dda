//! The store as a [`authn::session::SessionLookup`], so the issuer's own bearer checks are
//! `stateful` against the store itself (no gRPC round trip, no cache).

use authn::session::{BoxFuture, LookupError, SessionLookup, SessionStatus};

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

    /// The issuer's own bearer checks (the admin routes, `/userinfo`, the sessions API) refuse a
    /// token issued before its user's last change too: an administrator whose `admin` role was
    /// removed cannot go on administering with the token they hold.
    fn status<'a>(
        &'a self,
        sid: &'a str,
        sub: &'a str,
    ) -> BoxFuture<'a, Result<SessionStatus, LookupError>> {
        Box::pin(async move {
            let lookup = |e: super::StoreError| LookupError(e.to_string());
            if !self.0.is_active(sid).await.map_err(lookup)? {
                return Ok(SessionStatus::default());
            }
            Ok(SessionStatus {
                active: true,
                user_changed_at: self.0.user_changed_at(sub).await.map_err(lookup)?,
            })
        })
    }
}
