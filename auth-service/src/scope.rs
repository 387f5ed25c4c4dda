//! Scopes (RFC 6749 §3.3) and roles: parsing, validation and the subset rules of grants.

use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens, kept sorted so that stored and issued `scope` strings are canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

/// A scope string that is not a space-separated list of RFC 6749 scope tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope: scope tokens are printable ASCII without spaces, quotes or backslashes")]
pub struct InvalidScope;

/// A role list that is not a space- or comma-separated list of role names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid roles: role names are 1-64 characters of [A-Za-z0-9._:-]")]
pub struct InvalidRoles;

impl ScopeSet {
    /// Parses a space-separated scope list. Runs of spaces are tolerated; an empty string is the
    /// empty set.
    pub fn parse(scope: &str) -> Result<Self, InvalidScope> {
        scope
            .split(' ')
            .filter(|token| !token.is_empty())
            .map(|token| {
                if is_scope_token(token) {
                    Ok(token.to_owned())
                } else {
                    Err(InvalidScope)
                }
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, of: &ScopeSet) -> bool {
        self.0.is_subset(&of.0)
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes of `self` that `keep` accepts.
    pub fn filter(&self, keep: impl Fn(&str) -> bool) -> ScopeSet {
        Self(self.0.iter().filter(|s| keep(s)).cloned().collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// `None` for the empty set: a token then carries no `scope` claim at all.
    pub fn to_claim(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.to_string())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
            first = false;
        }
        Ok(())
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Parses a role list separated by spaces and/or commas (`admin,user` or `admin user`) into
/// sorted, de-duplicated role names.
pub fn parse_roles(roles: &str) -> Result<Vec<String>, InvalidRoles> {
    let set = roles
        .split([' ', ','])
        .filter(|role| !role.is_empty())
        .map(|role| {
            let valid = role.len() <= 64
                && role
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
            if valid {
                Ok(role.to_owned())
            } else {
                Err(InvalidRoles)
            }
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(set.into_iter().collect())
}

/// The most roles a user or client may hold: every one goes into each of its access tokens.
pub const MAX_ROLES: usize = 64;
/// The most scopes a user or client may hold (a token carries those granted, at most all).
pub const MAX_SCOPES: usize = 64;
/// The most bytes the roles and scopes may take together in a token's payload (see
/// [`grant_bytes`]). With it, the largest access token (RS256, the largest signature) stays
/// under [`MAX_ACCESS_TOKEN_BYTES`]: base64url makes 2,048 bytes of claims 2,731, the rest of
/// a token takes about 850 (docs/MODES.md, "Token size").
pub const MAX_GRANT_BYTES: usize = 2048;
/// The longest access token the issuer signs. Browsers keep a cookie only when its name and
/// value fit in 4,096 bytes, and the gateway carries the access token in the
/// `__Host-access_token` cookie: a larger token would be dropped without a word, and the user
/// would seem logged out. It also stays well inside the 8 KB header line of common proxies.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 4000;

/// Roles and scopes beyond the bounds a token may carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantsTooLarge {
    #[error("too many roles: {0}, at most {MAX_ROLES} (every role goes into each access token)")]
    Roles(usize),
    #[error("too many scopes: {0}, at most {MAX_SCOPES} (scopes go into each access token)")]
    Scopes(usize),
    #[error(
        "roles and scopes too long: {0} bytes in each access token, at most {MAX_GRANT_BYTES} \
         (keeps a token under {MAX_ACCESS_TOKEN_BYTES} bytes, the size of a browser cookie)"
    )]
    Bytes(usize),
}

/// The bytes `roles` and `scopes` take in a token's payload: each role name with its quotes and
/// comma (`"admin",`), each scope token with its separating space.
pub fn grant_bytes(roles: &[String], scopes: &ScopeSet) -> usize {
    roles.iter().map(|r| r.len() + 3).sum::<usize>()
        + scopes.iter().map(|s| s.len() + 1).sum::<usize>()
}

/// Checks roles and scopes against [`MAX_ROLES`], [`MAX_SCOPES`] and [`MAX_GRANT_BYTES`]:
/// what a user or client may be given, so that none of its tokens grows past
/// [`MAX_ACCESS_TOKEN_BYTES`].
pub fn check_grants(roles: &[String], scopes: &ScopeSet) -> Result<(), GrantsTooLarge> {
    if roles.len() > MAX_ROLES {
        return Err(GrantsTooLarge::Roles(roles.len()));
    }
    let scope_count = scopes.iter().count();
    if scope_count > MAX_SCOPES {
        return Err(GrantsTooLarge::Scopes(scope_count));
    }
    let bytes = grant_bytes(roles, scopes);
    if bytes > MAX_GRANT_BYTES {
        return Err(GrantsTooLarge::Bytes(bytes));
    }
    Ok(())
}

/// The stored form of a role list.
pub fn roles_to_string(roles: &[String]) -> String {
    roles.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).expect("valid scope")
    }

    fn roles(n: usize, len: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0len$}")).collect()
    }

    #[test]
    fn grants_are_bounded_by_count_and_by_bytes() {
        assert_eq!(check_grants(&roles(MAX_ROLES, 4), &set("a b")), Ok(()));
        assert_eq!(
            check_grants(&roles(MAX_ROLES + 1, 4), &ScopeSet::default()),
            Err(GrantsTooLarge::Roles(MAX_ROLES + 1))
        );
        let scopes = ScopeSet::parse(&roles(MAX_SCOPES + 1, 3).join(" ")).unwrap();
        assert_eq!(
            check_grants(&[], &scopes),
            Err(GrantsTooLarge::Scopes(MAX_SCOPES + 1))
        );
        // 32 roles of 61 characters: 64 bytes each in the token, 2,048 in all.
        assert_eq!(grant_bytes(&roles(32, 61), &ScopeSet::default()), 2048);
        assert_eq!(check_grants(&roles(32, 61), &ScopeSet::default()), Ok(()));
        assert_eq!(
            check_grants(&roles(32, 61), &set("x")),
            Err(GrantsTooLarge::Bytes(2050))
        );
        let message = GrantsTooLarge::Roles(65).to_string();
        assert!(message.contains("at most 64"), "{message}");
    }

    #[test]
    fn parses_and_canonicalises() {
        assert_eq!(
            set("orders:write  orders:read orders:write").to_string(),
            "orders:read orders:write"
        );
        assert!(set("").is_empty());
        assert_eq!(set("").to_claim(), None);
        assert_eq!(set("b a").to_claim().as_deref(), Some("a b"));
    }

    #[test]
    fn rejects_characters_outside_scope_token() {
        for bad in ["a\"b", "a\\b", "a\tb", "é", "a\nb", "x\u{7f}"] {
            assert_eq!(ScopeSet::parse(bad), Err(InvalidScope), "{bad:?}");
        }
    }

    #[test]
    fn subset_rules() {
        let granted = set("orders:read orders:write");
        assert!(set("orders:read").is_subset(&granted));
        assert!(set("").is_subset(&granted));
        assert!(granted.is_subset(&granted));
        assert!(!set("orders:read admin").is_subset(&granted));
        assert_eq!(
            granted.intersection(&set("orders:read x")).to_string(),
            "orders:read"
        );
    }

    #[test]
    fn roles_accept_commas_and_spaces() {
        assert_eq!(
            parse_roles("user,admin user").expect("valid"),
            vec!["admin".to_owned(), "user".to_owned()]
        );
        assert_eq!(parse_roles(" , ").expect("valid"), Vec::<String>::new());
        assert_eq!(parse_roles("ad min;"), Err(InvalidRoles));
        assert_eq!(roles_to_string(&parse_roles("a,b").expect("valid")), "a b");
    }
}
