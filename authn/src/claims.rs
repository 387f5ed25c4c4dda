//! The claims of an access token (RFC 9068 profile plus `roles` and `sid`).

use serde::{Deserialize, Serialize};

/// The JWT claims set of every access token the issuer signs.
///
/// Deserialization is strict where it matters for security: the time claims are integers
/// (a string, `null`, a float or a boolean is a type error, not a missing claim), and `iss` is
/// a single string. Unknown claims are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// Space-separated scopes (RFC 8693 §4.2 / RFC 9068 §2.2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The session this token belongs to; present on user tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The OAuth client the token was issued to; present on service tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The `aud` claim: one audience or several (RFC 7519 §4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is exactly one of the values.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Self {
        Audience::One(audience.to_owned())
    }
}

impl AccessClaims {
    /// The scopes of the `scope` claim, in order.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Result<AccessClaims, serde_json::Error> {
        serde_json::from_str(json)
    }

    const VALID: &str = r#"{"iss":"i","sub":"s","aud":"a","exp":10,"iat":1,"jti":"j"}"#;

    #[test]
    fn minimal_claims_parse() {
        let c = claims(VALID).unwrap();
        assert_eq!(c.aud, Audience::One("a".into()));
        assert_eq!(c.scopes().count(), 0);
        assert!(c.roles.is_empty());
    }

    #[test]
    fn time_claims_must_be_integers() {
        for exp in [r#""10""#, "null", "10.5", "1e400", "true", "[]"] {
            let json = VALID.replace(r#""exp":10"#, &format!(r#""exp":{exp}"#));
            assert!(claims(&json).is_err(), "exp = {exp} must be refused");
        }
        let no_exp = VALID.replace(r#""exp":10,"#, "");
        assert!(claims(&no_exp).is_err());
    }

    #[test]
    fn issuer_must_be_a_string() {
        let json = VALID.replace(r#""iss":"i""#, r#""iss":["i"]"#);
        assert!(claims(&json).is_err());
    }

    #[test]
    fn audience_one_or_many() {
        let many = claims(&VALID.replace(r#""aud":"a""#, r#""aud":["x","a"]"#)).unwrap();
        assert!(many.aud.contains("a"));
        assert!(!many.aud.contains("b"));
        let empty = claims(&VALID.replace(r#""aud":"a""#, r#""aud":[]"#)).unwrap();
        assert!(!empty.aud.contains("a"));
    }

    #[test]
    fn scopes_split_on_whitespace() {
        let c = claims(&VALID.replace(r#""jti":"j""#, r#""jti":"j","scope":"a  b c""#)).unwrap();
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
