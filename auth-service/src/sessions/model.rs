//! What a session is: [`Session`], what a login records ([`NewSession`]), and why a session
//! ends ([`EndReason`]).

use std::fmt;
use std::net::IpAddr;

use http::header::USER_AGENT;
use http::request::Parts;
use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::scope::ScopeSet;

/// A login session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The `sid` claim.
    pub id: String,
    pub user_id: String,
    /// The client that authenticated the login, if any; refreshes must come from it too.
    pub client_id: Option<String>,
    /// The scope granted at login; `None` means all of the user's scopes, whatever they are at
    /// the time of each refresh.
    pub scope: Option<ScopeSet>,
    pub created_at: i64,
    /// The same instant in Unix milliseconds: orders sessions begun within one second.
    pub created_at_ms: i64,
    /// The login, or the last refresh.
    pub last_seen_at: i64,
    /// The absolute end of the session, and of every refresh token of its family.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Session {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What a login records.
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    pub user_id: String,
    pub client_id: Option<String>,
    pub scope: Option<ScopeSet>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Seconds from now until the session (and its refresh tokens) end.
    pub lifetime_secs: i64,
}

/// Why a session ended: the `reason` of its `SessionsEnded` event, the label of
/// `auth_sessions_ended_total`, and the `ended_reason` stored with the SQL row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `POST /v1/logout`.
    Logout,
    /// `POST /v1/logout-all`.
    LogoutAll,
    /// `DELETE /v1/sessions/{sid}`.
    Deleted,
    /// `POST /oauth/revoke`.
    Revoked,
    /// An already-rotated refresh token of the session was presented.
    RefreshReuse,
    /// The user went over `AUTH_MAX_SESSIONS_PER_USER`; the oldest sessions end.
    SessionCap,
    /// The user was disabled.
    UserDisabled,
    /// The authorization code that started the session was presented again.
    CodeReplay,
}

impl EndReason {
    pub const ALL: [EndReason; 8] = [
        EndReason::Logout,
        EndReason::LogoutAll,
        EndReason::Deleted,
        EndReason::Revoked,
        EndReason::RefreshReuse,
        EndReason::SessionCap,
        EndReason::UserDisabled,
        EndReason::CodeReplay,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::LogoutAll => "logout_all",
            EndReason::Deleted => "deleted",
            EndReason::Revoked => "revoked",
            EndReason::RefreshReuse => "refresh_reuse",
            EndReason::SessionCap => "session_cap",
            EndReason::UserDisabled => "user_disabled",
            EndReason::CodeReplay => "code_replay",
        }
    }

    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The session a login at `now` is about to record, with a fresh random id.
pub fn new_session(new: NewSession, now: i64) -> Session {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Session {
        id: crypto::random_id(),
        user_id: new.user_id,
        client_id: new.client_id,
        scope: new.scope,
        created_at: now,
        // Within `now`'s second, so both orders agree.
        created_at_ms: now_ms.clamp(now.saturating_mul(1000), now.saturating_mul(1000) + 999),
        last_seen_at: now,
        expires_at: now.saturating_add(new.lifetime_secs),
        revoked_at: None,
        user_agent: new.user_agent,
        ip: new.ip,
    }
}

/// Longest `User-Agent` recorded with a session.
const MAX_USER_AGENT: usize = 256;

/// Where a login comes from, recorded with its session (shown in the session list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl ClientMeta {
    /// The `User-Agent` (truncated) of a request and the client's address as the throttle sees
    /// it (see `platform::client_addr`). Informational: shown in the session list.
    pub fn of(parts: &Parts, client_ip: Option<IpAddr>) -> Self {
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
        Self {
            user_agent,
            ip: client_ip.map(|ip| ip.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn client_meta_records_the_resolved_client_and_a_truncated_user_agent() {
        use std::net::SocketAddr;

        use axum::extract::ConnectInfo;

        let request = http::Request::builder()
            .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
            .header(USER_AGENT, "x".repeat(1000))
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))))
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        // Nobody trusted: the peer, whatever the header says.
        let client = platform::client_addr::TrustedProxies::default().client_ip_of(&parts);
        let meta = ClientMeta::of(&parts, client);
        assert_eq!(meta.ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(meta.user_agent.map(|ua| ua.len()), Some(MAX_USER_AGENT));
        // The loopback proxy trusted: the entry it wrote, the last one.
        let trusted = platform::client_addr::TrustedProxies::parse("127.0.0.1").unwrap();
        let meta = ClientMeta::of(&parts, trusted.client_ip_of(&parts));
        assert_eq!(meta.ip.as_deref(), Some("10.0.0.1"));
    }
}
