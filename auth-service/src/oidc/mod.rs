//! The OpenID Provider side of the authorization code flow, apart from HTTP: PKCE
//! ([`pkce`]), authorization codes ([`codes`]), the issuer's browser sessions ([`browser`]) and
//! ID tokens ([`id_token`]). `GET|POST /oauth/authorize` (`crate::http::authorize`) and the
//! `authorization_code` grant ([`crate::grants::authorization_code`]) use them.

pub mod browser;
pub mod codes;
pub mod id_token;
pub mod pkce;

/// The `openid` scope: asks for an ID token. Every client that registered it may ask for it,
/// whatever the user's own scopes (it grants no access, only the ID token).
pub const OPENID: &str = "openid";
