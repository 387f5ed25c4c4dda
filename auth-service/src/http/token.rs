//! `POST /oauth/token` (RFC 6749): grants `password`, `refresh_token` and `client_credentials`.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::HeaderMap;
use http::header::USER_AGENT;
use http::request::Parts;
use serde::Serialize;

use super::error::{TokenError, no_store};
use super::form::{self, ClientCredentials, CredentialsError, Form, FormError};
use crate::app::AppState;
use crate::clients::{self, Client};
use crate::passwords::SecretString;
use crate::refresh_tokens::{self, RotateError};
use crate::scope::ScopeSet;
use crate::sessions::{self, EndReason, NewSession};
use crate::throttle::Attempt;
use crate::tokens::Grant;
use crate::users::{self, Login};
use crate::{db, tokens};

/// Largest accepted token request body. Real requests are a few hundred bytes.
pub const TOKEN_BODY_LIMIT: usize = 16 * 1024;

/// Longest `User-Agent` recorded with a session.
const MAX_USER_AGENT: usize = 256;

/// The same answer for an unknown user, a wrong password and a disabled account.
const BAD_CREDENTIALS: &str = "invalid username or password";
/// The same answer for an unknown, expired, reused or revoked refresh token.
const BAD_REFRESH_TOKEN: &str = "the refresh token is invalid, expired or already used";

pub fn router() -> Router<AppState> {
    Router::new().route(super::well_known::TOKEN_PATH, post(token))
}

/// The grants this issuer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    Password,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(grant_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == grant_type)
    }
}

/// RFC 6749 §5.1.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    fn new(access: tokens::AccessToken, refresh_token: Option<String>) -> Self {
        Self {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in,
            scope: access.claims.scope,
            refresh_token,
        }
    }
}

/// Where a login comes from, recorded with its session.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl ClientMeta {
    /// The `User-Agent` (truncated) and the client's address as the throttle sees it (see
    /// `platform::client_addr`). Informational: shown in the session list.
    fn from_parts(parts: &Parts, client_ip: Option<IpAddr>) -> Self {
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

#[tracing::instrument(name = "oauth.token", skip_all, fields(grant_type = tracing::field::Empty))]
async fn token(State(state): State<AppState>, request: Request) -> Response {
    match handle(&state, request).await {
        Ok((grant, body)) => {
            metrics::counter!("auth_tokens_issued_total", "grant" => grant.as_str()).increment(1);
            let mut response = Json(body).into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Reads a form-encoded request (the token, revocation and introspection endpoints).
pub(super) async fn read_form(request: Request) -> Result<(Parts, Form), TokenError> {
    let (parts, body) = request.into_parts();
    if !form::is_form_content_type(&parts.headers) {
        return Err(TokenError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let body = read_body(body).await?;
    let form = Form::parse(&body).map_err(|e| {
        TokenError::InvalidRequest(match e {
            FormError::InvalidUtf8 => "the request body is not valid UTF-8",
            FormError::InvalidEncoding => "a parameter is not valid percent-encoded UTF-8",
            FormError::Duplicate => "a parameter is repeated",
        })
    })?;
    Ok((parts, form))
}

async fn handle(
    state: &AppState,
    request: Request,
) -> Result<(GrantType, TokenResponse), TokenError> {
    let (parts, form) = read_form(request).await?;
    let grant = form
        .get("grant_type")
        .ok_or(TokenError::InvalidRequest("grant_type is required"))?;
    let grant = GrantType::parse(grant).ok_or(TokenError::UnsupportedGrantType)?;
    tracing::Span::current().record("grant_type", grant.as_str());
    let credentials = client_credentials(&parts.headers, &form)?;
    let response = match grant {
        GrantType::Password => {
            let client_ip = state.trusted_proxies.client_ip_of(&parts);
            password_grant(
                state,
                &form,
                &credentials,
                ClientMeta::from_parts(&parts, client_ip),
                client_ip,
            )
            .await?
        }
        GrantType::RefreshToken => refresh_grant(state, &form, &credentials).await?,
        GrantType::ClientCredentials => {
            client_credentials_grant(state, &form, &credentials).await?
        }
    };
    Ok((grant, response))
}

async fn read_body(body: Body) -> Result<Bytes, TokenError> {
    axum::body::to_bytes(body, TOKEN_BODY_LIMIT)
        .await
        .map_err(|e| {
            let mut source = e.source();
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return TokenError::BodyTooLarge;
                }
                source = err.source();
            }
            TokenError::InvalidRequest("the request body could not be read")
        })
}

pub(super) fn client_credentials(
    headers: &HeaderMap,
    form: &Form,
) -> Result<ClientCredentials, TokenError> {
    form::client_credentials(headers, form).map_err(|e| match e {
        CredentialsError::MalformedBasic => TokenError::InvalidClient {
            description: "malformed HTTP Basic client credentials",
            basic: true,
        },
        CredentialsError::UnsupportedScheme => TokenError::InvalidClient {
            description: "clients authenticate with HTTP Basic or client_secret_post",
            basic: true,
        },
        CredentialsError::Conflict(description) => TokenError::InvalidRequest(description),
    })
}

/// The authenticated client, `None` when the request carries no client credentials.
pub(super) async fn authenticate_client(
    state: &AppState,
    credentials: &ClientCredentials,
) -> Result<Option<Client>, TokenError> {
    let (id, secret) = match credentials {
        ClientCredentials::None => return Ok(None),
        // Every registered client is confidential: an id alone proves nothing.
        ClientCredentials::IdOnly(_) => {
            return Err(TokenError::InvalidClient {
                description: "client authentication failed",
                basic: false,
            });
        }
        ClientCredentials::Basic { id, secret } | ClientCredentials::Post { id, secret } => {
            (id, secret)
        }
    };
    clients::authenticate(&state.clients, &state.passwords, id, secret)
        .await
        .map_err(TokenError::internal)?
        .map(Some)
        .ok_or(TokenError::InvalidClient {
            description: "client authentication failed",
            basic: credentials.used_basic(),
        })
}

fn requested_scope(form: &Form) -> Result<Option<ScopeSet>, TokenError> {
    form.get("scope")
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|_| TokenError::InvalidScope("the scope parameter is malformed"))
}

async fn password_grant(
    state: &AppState,
    form: &Form,
    credentials: &ClientCredentials,
    meta: ClientMeta,
    client_ip: Option<IpAddr>,
) -> Result<TokenResponse, TokenError> {
    let username = form
        .get("username")
        .ok_or(TokenError::InvalidRequest("username is required"))?;
    let password = SecretString::new(
        form.get("password")
            .ok_or(TokenError::InvalidRequest("password is required"))?,
    );
    let requested = requested_scope(form)?;
    let client = authenticate_client(state, credentials).await?;

    // Before the password is looked at: a throttled attempt checks nothing (the right password
    // is refused too) and is answered alike for every username, existing or not.
    let attempt = state
        .login_throttle
        .begin(username, client_ip, Instant::now())
        .map_err(|refused| TokenError::LoginThrottled {
            retry_after: refused.retry_after,
        })?;
    // An error here drops `attempt`: counted neither as a failure nor as a success.
    let user = match users::authenticate(&state.pool, &state.passwords, username, &password)
        .await
        .map_err(TokenError::internal)?
    {
        Login::Valid(user) => {
            state.login_throttle.succeeded(username, attempt);
            user
        }
        Login::Disabled(user) => {
            tracing::info!(user_id = %user.id, "login of a disabled user refused");
            login_failed(state, attempt, username).await;
            return Err(TokenError::InvalidGrant(BAD_CREDENTIALS));
        }
        Login::Invalid => {
            login_failed(state, attempt, username).await;
            return Err(TokenError::InvalidGrant(BAD_CREDENTIALS));
        }
    };

    // No `scope`: everything the user has, now and at every refresh (stored as NULL).
    let (scope, session_scope) = match requested {
        Some(requested) if requested.is_subset(&user.scopes) => {
            (requested.clone(), Some(requested))
        }
        Some(_) => {
            return Err(TokenError::InvalidScope(
                "the requested scope exceeds the scopes of the user",
            ));
        }
        None => (user.scopes.clone(), None),
    };

    let now = db::now();
    let client_id = client.map(|c| c.id);
    let session = sessions::new_session(
        NewSession {
            user_id: user.id.clone(),
            client_id: client_id.clone(),
            scope: session_scope,
            user_agent: meta.user_agent,
            ip: meta.ip,
            lifetime_secs: state.session_ttl_secs,
        },
        now,
    );
    let refresh_token = start_session(state, &session, now).await?;
    let access = state
        .tokens
        .issue(
            Grant {
                subject: user.id,
                scope,
                roles: user.roles,
                sid: Some(session.id),
                client_id,
            },
            now,
        )
        .map_err(TokenError::internal)?;
    Ok(TokenResponse::new(access, Some(refresh_token)))
}

/// Records a failed password check with the throttle. A lock it starts is an audit event: the
/// account is named by its user id like in every other log line (never by the username, which
/// may be a mistyped password), and only if such a user exists; the address is the client's.
async fn login_failed(state: &AppState, attempt: Attempt, username: &str) {
    let locked = attempt.failed(Instant::now());
    if let Some(failures) = locked.account {
        // Looked up for unknown usernames too, so a lock takes as long either way.
        let user_id = users::find_by_username(&state.pool, username)
            .await
            .ok()
            .flatten()
            .map(|user| user.id);
        tracing::warn!(
            audit = "login_locked",
            scope = "account",
            user_id = user_id.as_deref(),
            failures,
            locked_for = ?locked.duration,
            "password logins of an account locked after repeated failures"
        );
    }
    if let Some((client_ip, failures)) = locked.address {
        tracing::warn!(
            audit = "login_locked",
            scope = "address",
            %client_ip,
            failures,
            locked_for = ?locked.duration,
            "password logins from a client address locked after repeated failures"
        );
    }
}

/// Records the session of a login (family row and first refresh token, then the store), applies
/// the per-user session cap, and returns the refresh token.
async fn start_session(
    state: &AppState,
    session: &sessions::Session,
    now: i64,
) -> Result<String, TokenError> {
    let refresh_token = sessions::create_family(&state.pool, session, now)
        .await
        .map_err(TokenError::internal)?;
    state
        .sessions
        .create(session)
        .await
        .map_err(TokenError::internal)?;
    // Disabling a user marks it disabled, then ends its sessions. A login whose password check
    // ran before the mark may have created its session after the sessions were ended: looking
    // again now closes that window.
    let user = users::find_by_id(&state.pool, &session.user_id)
        .await
        .map_err(TokenError::internal)?;
    if user.is_none_or(|user| user.is_disabled()) {
        state
            .sessions
            .end(&session.id, EndReason::UserDisabled)
            .await
            .map_err(TokenError::internal)?;
        return Err(TokenError::InvalidGrant(BAD_CREDENTIALS));
    }
    if let Err(error) = sessions::enforce_cap(
        state.sessions.as_ref(),
        &session.user_id,
        state.max_sessions_per_user,
        &session.id,
    )
    .await
    {
        // The login stands; the cap is enforced again at the user's next login.
        tracing::warn!(%error, "cannot apply the per-user session cap");
    }
    Ok(refresh_token)
}

async fn refresh_grant(
    state: &AppState,
    form: &Form,
    credentials: &ClientCredentials,
) -> Result<TokenResponse, TokenError> {
    let presented = form
        .get("refresh_token")
        .ok_or(TokenError::InvalidRequest("refresh_token is required"))?;
    let requested = requested_scope(form)?;
    let client = authenticate_client(state, credentials).await?;

    let now = db::now();
    let rotation = match refresh_tokens::begin_rotation(&state.pool, presented, now).await {
        Ok(rotation) => rotation,
        Err(RotateError::Invalid(why)) => {
            tracing::info!(why, "refresh token refused");
            return Err(TokenError::InvalidGrant(BAD_REFRESH_TOKEN));
        }
        Err(RotateError::Reused { session_id }) => {
            metrics::counter!("auth_refresh_reuse_total").increment(1);
            let ended = state
                .sessions
                .end(&session_id, EndReason::RefreshReuse)
                .await
                .map_err(TokenError::internal)?;
            tracing::warn!(
                sid = %session_id,
                ended,
                "an already-rotated refresh token was presented: its session is ended"
            );
            return Err(TokenError::InvalidGrant(BAD_REFRESH_TOKEN));
        }
        Err(RotateError::Lookup(e)) => return Err(TokenError::internal(e)),
    };
    // A token issued to an authenticated client is only refreshed by that client (RFC 6749 §6).
    // Refused before the commit, so the token stays usable by its client.
    if rotation.session.client_id.as_deref() != client.as_ref().map(|c| c.id.as_str()) {
        return Err(TokenError::InvalidGrant(
            "the refresh token was issued to another client",
        ));
    }
    // Never wider than the login granted, nor than what the user has now.
    let current = &rotation.user.scopes;
    let allowed = rotation
        .session
        .scope
        .as_ref()
        .map_or_else(|| current.clone(), |granted| granted.intersection(current));
    let scope = match requested {
        Some(requested) if requested.is_subset(&allowed) => requested,
        Some(_) => {
            return Err(TokenError::InvalidScope(
                "the requested scope exceeds the scope of the session",
            ));
        }
        None => allowed,
    };
    let sid = rotation.session.id.clone();
    let grant = Grant {
        subject: rotation.user.id.clone(),
        scope,
        roles: rotation.user.roles.clone(),
        sid: Some(sid.clone()),
        client_id: rotation.session.client_id.clone(),
    };
    // The store is the authority on the session (with Redis, the SQL row does not know of its
    // end); the SQL store's answer is the row `begin_rotation` read in its transaction. Asked
    // before the commit, so that of two concurrent uses of one token the winner still gets its
    // tokens before the loser's reuse ends the session.
    if !state.sessions.sql_rows_are_authoritative() {
        let active = state
            .sessions
            .is_active(&sid)
            .await
            .map_err(TokenError::internal)?;
        if !active {
            tracing::info!("refresh token of an ended session refused");
            return Err(TokenError::InvalidGrant(BAD_REFRESH_TOKEN));
        }
    }
    // Signed after the commit: the rotation holds a write transaction (on SQLite, the
    // database's write lock) that every other refresh waits for.
    let refresh_token = rotation.commit().await.map_err(TokenError::internal)?;
    let access = state
        .tokens
        .issue(grant, now)
        .map_err(TokenError::internal)?;
    // The rotation is committed: the client must get its new token even if this fails.
    if let Err(error) = state.sessions.touch(&sid, now).await {
        tracing::warn!(%error, "cannot record the session's last refresh");
    }
    Ok(TokenResponse::new(access, Some(refresh_token)))
}

async fn client_credentials_grant(
    state: &AppState,
    form: &Form,
    credentials: &ClientCredentials,
) -> Result<TokenResponse, TokenError> {
    let requested = requested_scope(form)?;
    if matches!(credentials, ClientCredentials::None) {
        return Err(TokenError::InvalidClient {
            description: "client authentication is required",
            basic: false,
        });
    }
    let client =
        authenticate_client(state, credentials)
            .await?
            .ok_or(TokenError::InvalidClient {
                description: "client authentication is required",
                basic: false,
            })?;
    let scope = match requested {
        Some(requested) if requested.is_subset(&client.scopes) => requested,
        Some(_) => {
            return Err(TokenError::InvalidScope(
                "the requested scope exceeds the scopes of the client",
            ));
        }
        None => client.scopes.clone(),
    };
    let access = state
        .tokens
        .issue(
            Grant {
                subject: client.id.clone(),
                scope,
                roles: client.roles,
                sid: None,
                client_id: Some(client.id),
            },
            db::now(),
        )
        .map_err(TokenError::internal)?;
    Ok(TokenResponse::new(access, None))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;

    use super::*;

    #[tokio::test]
    async fn an_oversized_body_is_too_large_not_unreadable() {
        let body = Body::from(vec![b'x'; TOKEN_BODY_LIMIT + 1]);
        assert!(matches!(
            read_body(body).await,
            Err(TokenError::BodyTooLarge)
        ));
        let body = Body::from(vec![b'x'; TOKEN_BODY_LIMIT]);
        assert_eq!(read_body(body).await.expect("fits").len(), TOKEN_BODY_LIMIT);
    }

    #[test]
    fn grant_types_round_trip() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(GrantType::parse("authorization_code"), None);
        assert_eq!(GrantType::parse("PASSWORD"), None);
    }

    #[test]
    fn client_meta_records_the_resolved_client_and_a_truncated_user_agent() {
        let request = http::Request::builder()
            .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
            .header(USER_AGENT, "x".repeat(1000))
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))))
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        // Nobody trusted: the peer, whatever the header says.
        let client = platform::client_addr::TrustedProxies::default().client_ip_of(&parts);
        let meta = ClientMeta::from_parts(&parts, client);
        assert_eq!(meta.ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(meta.user_agent.map(|ua| ua.len()), Some(MAX_USER_AGENT));
        // The loopback proxy trusted: the entry it wrote, the last one.
        let trusted = platform::client_addr::TrustedProxies::parse("127.0.0.1").unwrap();
        let meta = ClientMeta::from_parts(&parts, trusted.client_ip_of(&parts));
        assert_eq!(meta.ip.as_deref(), Some("10.0.0.1"));
    }
}
