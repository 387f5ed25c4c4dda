//! What a verifier does after signature and claims to learn whether a token still stands. This
//! is where the three modes differ:
//!
//! - `stateless`: nothing; a token is good until it expires.
//! - `stateful`: asks a [`SessionLookup`] on every request ([`crate::session`]).
//! - `hybrid`: consults an in-memory revocation set fed by the issuer's revocation stream
//!   ([`crate::revocation::RevocationFeed`], feature `tonic`), with no I/O per request.

use std::sync::Arc;
use std::time::Duration;

use crate::claims::AccessClaims;
use crate::error::AuthError;
#[cfg(feature = "tonic")]
use crate::revocation::RevocationFeed;
use crate::session::{SessionLookup, StatefulCheck};

/// What a verifier checks beyond signature and claims.
#[derive(Debug, Clone, Default)]
pub enum SessionCheck {
    /// Nothing: revocation only by expiry.
    #[default]
    Stateless,
    /// A lookup per request.
    Stateful(StatefulCheck),
    /// The in-memory revocation set; falls back to its stateful check (or fails closed) when the
    /// feed is stale. Fed over gRPC, hence only with the `tonic` feature.
    #[cfg(feature = "tonic")]
    Hybrid(RevocationFeed),
}

impl SessionCheck {
    pub fn stateful(lookup: Arc<dyn SessionLookup>, cache_ttl: Duration) -> Self {
        SessionCheck::Stateful(StatefulCheck::new(lookup, cache_ttl))
    }

    /// The mode's name, for metrics and logs.
    pub fn mode(&self) -> &'static str {
        match self {
            SessionCheck::Stateless => "stateless",
            SessionCheck::Stateful(_) => "stateful",
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(_) => "hybrid",
        }
    }

    pub(crate) async fn check(&self, kid: &str, claims: &AccessClaims) -> Result<(), AuthError> {
        #[cfg(not(feature = "tonic"))]
        let _ = kid;
        match self {
            SessionCheck::Stateless => Ok(()),
            SessionCheck::Stateful(check) => check.check(claims).await,
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(feed) => feed.check(kid, claims).await,
        }
    }

    /// Whether the check can currently decide (hybrid: the feed is fresh, or a fallback exists).
    pub(crate) fn is_ready(&self) -> bool {
        match self {
            SessionCheck::Stateless | SessionCheck::Stateful(_) => true,
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(feed) => feed.is_ready(),
        }
    }
}
