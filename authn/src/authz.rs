//! Typed authorization from verified claims: handlers ask `principal.require(Scope::OrdersWrite)?`
//! and `principal.can_access(&order.owner)`, never compare strings themselves.

use std::sync::Arc;

use crate::claims::AccessClaims;
use crate::error::AuthError;
use crate::scope::{Role, Scope};

/// The verified caller of a request: the claims of a token whose signature, issuer, audience,
/// type and times have all been checked. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal {
    claims: Arc<AccessClaims>,
}

impl Principal {
    /// Wraps claims that have been verified. Only the verifier (and tests) should call this.
    pub fn from_verified_claims(claims: AccessClaims) -> Self {
        Self {
            claims: Arc::new(claims),
        }
    }

    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The subject: a user id, or a client id for service tokens.
    pub fn sub(&self) -> &str {
        &self.claims.sub
    }

    pub fn sid(&self) -> Option<&str> {
        self.claims.sid.as_deref()
    }

    pub fn client_id(&self) -> Option<&str> {
        self.claims.client_id.as_deref()
    }

    pub fn jti(&self) -> &str {
        &self.claims.jti
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.claims.scopes()
    }

    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.claims.roles.iter().map(String::as_str)
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes().any(|s| s == scope.as_str())
    }

    /// `Ok` when the token carries `scope`, else [`AuthError::Forbidden`] (403).
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden { scope })
        }
    }

    pub fn is(&self, role: Role) -> bool {
        self.roles().any(|r| r == role.as_str())
    }

    /// Whether the caller is the owner of a resource owned by `owner_sub`.
    pub fn owns(&self, owner_sub: &str) -> bool {
        self.sub() == owner_sub
    }

    /// Whether the caller may act on a resource owned by `owner_sub`: its owner or an admin.
    pub fn can_access(&self, owner_sub: &str) -> bool {
        self.owns(owner_sub) || self.is(Role::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Audience;

    fn principal(sub: &str, scope: &str, roles: &[&str]) -> Principal {
        Principal::from_verified_claims(AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: Audience::One("a".into()),
            exp: 2,
            iat: 1,
            nbf: None,
            jti: "j".into(),
            scope: Some(scope.into()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            sid: None,
            client_id: None,
        })
    }

    #[test]
    fn require_checks_exact_scope_names() {
        let p = principal("u", "orders:read orders:writer", &[]);
        assert!(p.require(Scope::OrdersRead).is_ok());
        assert_eq!(
            p.require(Scope::OrdersWrite),
            Err(AuthError::Forbidden {
                scope: Scope::OrdersWrite
            })
        );
    }

    #[test]
    fn owners_and_admins_can_access() {
        let alice = principal("alice", "", &["user"]);
        let admin = principal("root", "", &["admin"]);
        let not_admin = principal("eve", "", &["administrator", "Admin"]);
        assert!(alice.can_access("alice"));
        assert!(!alice.can_access("bob"));
        assert!(admin.can_access("bob"));
        assert!(!admin.owns("bob"));
        assert!(!not_admin.can_access("bob"));
    }
}
