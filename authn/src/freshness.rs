//! How fresh the evidence that a token still stands must be, per route.
//!
//! A verifier's mode (`AUTH_MODE`) sets what every request checks after signature and claims.
//! Some routes need more than the rest (cancelling an order should not be possible with a token
//! whose session ended a minute ago, even where listing orders may be), some need less (a
//! public catalogue behind a `stateful` verifier need not cost a lookup). A [`Freshness`] says
//! what one request checks; a [`RoutePolicy`] (`AUTH_ROUTE_POLICY`) gives some routes their own,
//! and every other route keeps the mode's.
//!
//! | level | checks after signature and claims | the mode that checks it everywhere |
//! | --- | --- | --- |
//! | [`Freshness::Token`] | nothing | `stateless` |
//! | [`Freshness::Pushed`] | the revocation set the issuer pushes (no I/O; the feed's fallback, or 503, while it is stale) | `hybrid` |
//! | [`Freshness::Live`] | a session lookup at this request (and the revocation set too, where there is one) | `stateful` |
//!
//! A level is what the route gets, not a minimum: `GET /v1/orders=token` under `stateful` skips
//! the lookup there. `pushed` needs the revocation feed (a `hybrid` verifier), `live` a session
//! lookup (the mode's own, or one given with [`crate::Verifier::with_live_check`]); a policy
//! naming a level its verifier cannot check is refused when it is set
//! ([`crate::Verifier::with_route_policy`]), never at request time.
//!
//! Routes are written the way the framework names them, so that a request is matched against
//! the route that served it and never against its raw path: `METHOD /path/template` for HTTP (the
//! axum route template, `{id}` included), `/package.Service/Method` for gRPC.

use std::fmt;
use std::str::FromStr;

/// What one request checks beyond signature and claims. Ordered from the least to the most
/// fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Freshness {
    /// Signature and claims only: a token stands until it expires.
    Token,
    /// Also the revocation set the issuer pushes (`hybrid`): revocation within the push delay.
    Pushed,
    /// Also a session lookup now (`stateful`): a revoked session makes no further request.
    Live,
}

impl Freshness {
    pub const ALL: [Freshness; 3] = [Freshness::Token, Freshness::Pushed, Freshness::Live];

    /// The name in `AUTH_ROUTE_POLICY`, logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Freshness::Token => "token",
            Freshness::Pushed => "pushed",
            Freshness::Live => "live",
        }
    }
}

impl fmt::Display for Freshness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Freshness {
    type Err = ();

    /// `token`, `pushed` or `live`, in any case.
    fn from_str(name: &str) -> Result<Self, ()> {
        Freshness::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name))
            .ok_or(())
    }
}

/// One `ROUTE=LEVEL` entry of a [`RoutePolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// The HTTP method, upper case; `None` for a gRPC method (always a `POST`).
    method: Option<Box<str>>,
    /// The route template or the gRPC method path.
    path: Box<str>,
    level: Freshness,
    /// The entry as the operator wrote it, for error messages.
    entry: Box<str>,
}

impl RouteRule {
    /// The HTTP method of an HTTP route.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The route template (`/v1/orders/{id}/cancel`) or gRPC method path
    /// (`/orders.v1.OrderService/CancelOrder`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn level(&self) -> Freshness {
        self.level
    }

    /// The entry as it was written.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// Whether this rule is the route `route`, written as the service lists its routes
    /// (`POST /v1/orders/{id}/cancel`, `/orders.v1.OrderService/CancelOrder`).
    fn is(&self, route: &str) -> bool {
        match &self.method {
            None => route == &*self.path,
            Some(method) => route
                .split_once(' ')
                .is_some_and(|(m, p)| m == &**method && p == &*self.path),
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        *self.path == *path && self.method.as_deref().is_none_or(|m| m == method)
    }
}

impl fmt::Display for RouteRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(method) => write!(f, "{method} {}={}", self.path, self.level),
            None => write!(f, "{}={}", self.path, self.level),
        }
    }
}

/// The routes that do not follow the verifier's mode, and the level each needs
/// (`AUTH_ROUTE_POLICY`). Empty by default: every route follows the mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    rules: Vec<RouteRule>,
}

/// A route policy that cannot be applied. Each names the entry at fault, as it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutePolicyError {
    #[error(
        "AUTH_ROUTE_POLICY entry {entry:?}: expected ROUTE=LEVEL, ROUTE being \
         `METHOD /path/template` (HTTP) or `/package.Service/Method` (gRPC)"
    )]
    Syntax { entry: String },
    #[error(
        "AUTH_ROUTE_POLICY entry {entry:?}: unknown level {level:?} (expected token, pushed or live)"
    )]
    UnknownLevel { entry: String, level: String },
    #[error("AUTH_ROUTE_POLICY entry {entry:?}: the route is already listed")]
    Duplicate { entry: String },
    #[error(
        "AUTH_ROUTE_POLICY entry {entry:?}: this service has no such route; its routes: {known}"
    )]
    UnknownRoute { entry: String, known: String },
    #[error(
        "AUTH_ROUTE_POLICY entry {entry:?}: `live` needs a session lookup and this verifier has \
         none: set REDIS_URL, or AUTH_CLIENT_ID and AUTH_CLIENT_SECRET (a client with scope \
         sessions:check) to ask the issuer at AUTH_GRPC_URL"
    )]
    LiveWithoutLookup { entry: String },
    #[error(
        "AUTH_ROUTE_POLICY entry {entry:?}: `pushed` needs the issuer's revocation feed, which \
         runs with AUTH_MODE=hybrid only"
    )]
    PushedWithoutFeed { entry: String },
}

impl RoutePolicy {
    /// Parses `ROUTE=LEVEL[,ROUTE=LEVEL...]`: `POST /v1/orders/{id}/cancel=live,
    /// /orders.v1.OrderService/CancelOrder=live`. Whitespace around entries and empty entries
    /// (a trailing comma) are ignored; HTTP methods may be written in any case. Every other
    /// irregularity is an error naming its entry: no route or level, an unknown level, a route
    /// listed twice.
    pub fn parse(text: &str) -> Result<Self, RoutePolicyError> {
        let mut rules: Vec<RouteRule> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let rule = parse_entry(entry)?;
            if rules
                .iter()
                .any(|r| r.method == rule.method && r.path == rule.path)
            {
                return Err(RoutePolicyError::Duplicate {
                    entry: entry.to_owned(),
                });
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Whether every route follows the mode.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// The level of the route `path` served for `method` (the route template, or the gRPC
    /// method path), if a rule names it; `None`: the mode's. No allocation.
    pub fn level(&self, method: &str, path: &str) -> Option<Freshness> {
        self.rules
            .iter()
            .find(|rule| rule.matches(method, path))
            .map(|rule| rule.level)
    }

    /// Refuses a rule naming a route the service does not have. `routes` are written as the
    /// rules write them: `POST /v1/orders/{id}/cancel` (HTTP), or
    /// `/orders.v1.OrderService/CancelOrder` (gRPC).
    pub fn check_routes(&self, routes: &[&str]) -> Result<(), RoutePolicyError> {
        match self
            .rules
            .iter()
            .find(|rule| !routes.iter().any(|route| rule.is(route)))
        {
            None => Ok(()),
            Some(rule) => Err(RoutePolicyError::UnknownRoute {
                entry: rule.entry.to_string(),
                known: if routes.is_empty() {
                    "none that a policy can name".to_owned()
                } else {
                    routes.join(", ")
                },
            }),
        }
    }

    /// Refuses the first rule whose level `supports` says cannot be checked.
    pub(crate) fn check_levels(
        &self,
        supports: impl Fn(Freshness) -> bool,
    ) -> Result<(), RoutePolicyError> {
        let Some(rule) = self.rules.iter().find(|rule| !supports(rule.level)) else {
            return Ok(());
        };
        let entry = rule.entry.to_string();
        Err(match rule.level {
            Freshness::Pushed => RoutePolicyError::PushedWithoutFeed { entry },
            // `token` is always supported.
            Freshness::Live | Freshness::Token => RoutePolicyError::LiveWithoutLookup { entry },
        })
    }

    /// Whether a rule asks for `level`.
    pub fn asks_for(&self, level: Freshness) -> bool {
        self.rules.iter().any(|rule| rule.level == level)
    }
}

impl FromStr for RoutePolicy {
    type Err = RoutePolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for RoutePolicy {
    /// The canonical `AUTH_ROUTE_POLICY` value (what the service logs at start).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

fn parse_entry(entry: &str) -> Result<RouteRule, RoutePolicyError> {
    let syntax = || RoutePolicyError::Syntax {
        entry: entry.to_owned(),
    };
    let (route, level) = entry.rsplit_once('=').ok_or_else(syntax)?;
    let (route, level) = (route.trim(), level.trim());
    if route.is_empty() {
        return Err(syntax());
    }
    let level = level
        .parse::<Freshness>()
        .map_err(|()| RoutePolicyError::UnknownLevel {
            entry: entry.to_owned(),
            level: level.to_owned(),
        })?;
    let (method, path) = if route.starts_with('/') {
        (None, route)
    } else {
        let (method, path) = route.split_once(char::is_whitespace).ok_or_else(syntax)?;
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(syntax());
        }
        (
            Some(method.to_ascii_uppercase().into_boxed_str()),
            path.trim(),
        )
    };
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        return Err(syntax());
    }
    Ok(RouteRule {
        method,
        path: path.into(),
        level,
        entry: entry.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY_ROUTES: &[&str] = &[
        "POST /v1/orders",
        "GET /v1/orders",
        "GET /v1/orders/{id}",
        "POST /v1/orders/{id}/cancel",
    ];
    const GRPC_ROUTES: &[&str] = &[
        "/orders.v1.OrderService/ListOrders",
        "/orders.v1.OrderService/CancelOrder",
    ];

    #[test]
    fn a_policy_gives_the_named_routes_their_level_and_leaves_the_rest_to_the_mode() {
        let policy = RoutePolicy::parse(
            " POST /v1/orders/{id}/cancel=live, GET /v1/orders = token,\
             /orders.v1.OrderService/CancelOrder=pushed,",
        )
        .unwrap();
        assert_eq!(policy.rules().len(), 3);
        assert_eq!(
            policy.level("POST", "/v1/orders/{id}/cancel"),
            Some(Freshness::Live)
        );
        assert_eq!(policy.level("GET", "/v1/orders"), Some(Freshness::Token));
        assert_eq!(
            policy.level("POST", "/orders.v1.OrderService/CancelOrder"),
            Some(Freshness::Pushed)
        );
        // Another method of the same template, another template, a raw path: the mode's.
        assert_eq!(policy.level("POST", "/v1/orders"), None);
        assert_eq!(policy.level("GET", "/v1/orders/{id}"), None);
        assert_eq!(policy.level("POST", "/v1/orders/42/cancel"), None);
        assert_eq!(
            policy.to_string(),
            "POST /v1/orders/{id}/cancel=live,GET /v1/orders=token,\
             /orders.v1.OrderService/CancelOrder=pushed"
        );
    }

    #[test]
    fn methods_and_levels_are_read_in_any_case() {
        let policy = RoutePolicy::parse("post /v1/orders/{id}/cancel=LIVE").unwrap();
        assert_eq!(
            policy.level("POST", "/v1/orders/{id}/cancel"),
            Some(Freshness::Live)
        );
    }

    #[test]
    fn an_empty_policy_has_no_rules() {
        for text in ["", "  ", ",", " , "] {
            let policy = RoutePolicy::parse(text).unwrap();
            assert!(policy.is_empty(), "{text:?}");
            assert_eq!(policy.level("GET", "/v1/orders"), None);
            policy.check_routes(&[]).unwrap();
        }
    }

    #[test]
    fn malformed_entries_are_refused_by_name() {
        for entry in [
            "POST /v1/orders/{id}/cancel",
            "=live",
            "POST=live",
            "POST v1/orders=live",
            "P0ST /v1/orders=live",
            "/orders.v1.OrderService/Cancel Order=live",
        ] {
            let error = RoutePolicy::parse(&format!("GET /v1/orders=token,{entry}")).unwrap_err();
            assert_eq!(
                error,
                RoutePolicyError::Syntax {
                    entry: entry.into()
                }
            );
            assert!(error.to_string().contains(&format!("{entry:?}")), "{error}");
        }
    }

    #[test]
    fn an_unknown_level_is_refused_naming_the_entry_and_the_levels() {
        let error = RoutePolicy::parse("POST /v1/orders/{id}/cancel=fresh").unwrap_err();
        assert_eq!(
            error.to_string(),
            "AUTH_ROUTE_POLICY entry \"POST /v1/orders/{id}/cancel=fresh\": unknown level \
             \"fresh\" (expected token, pushed or live)"
        );
    }

    #[test]
    fn a_route_listed_twice_is_refused_even_with_the_same_level() {
        for text in [
            "GET /v1/orders=live,GET /v1/orders=token",
            "GET /v1/orders=live,get /v1/orders=live",
        ] {
            assert!(
                matches!(
                    RoutePolicy::parse(text),
                    Err(RoutePolicyError::Duplicate { .. })
                ),
                "{text}"
            );
        }
        // The same template under two methods is two routes.
        RoutePolicy::parse("GET /v1/orders=live,POST /v1/orders=token").unwrap();
    }

    #[test]
    fn only_routes_the_service_has_may_be_named() {
        let ok =
            RoutePolicy::parse("POST /v1/orders/{id}/cancel=live,GET /v1/orders=token").unwrap();
        ok.check_routes(GATEWAY_ROUTES).unwrap();

        for (entry, routes) in [
            // A raw path instead of the template.
            ("POST /v1/orders/42/cancel=live", GATEWAY_ROUTES),
            // The right template with a method it does not serve.
            ("GET /v1/orders/{id}/cancel=live", GATEWAY_ROUTES),
            // A gateway route without its method.
            ("/v1/orders=live", GATEWAY_ROUTES),
            // A gRPC method the service does not have, and one of another service.
            ("/orders.v1.OrderService/DeleteOrder=live", GRPC_ROUTES),
            ("/auth.v1.SessionService/CheckSession=live", GRPC_ROUTES),
            // An HTTP route at the gRPC service.
            ("POST /orders.v1.OrderService/CancelOrder=live", GRPC_ROUTES),
        ] {
            let error = RoutePolicy::parse(entry)
                .unwrap()
                .check_routes(routes)
                .unwrap_err();
            assert_eq!(
                error,
                RoutePolicyError::UnknownRoute {
                    entry: entry.into(),
                    known: routes.join(", ")
                }
            );
            assert!(
                error.to_string().contains("this service has no such route"),
                "{error}"
            );
        }
        let grpc = RoutePolicy::parse("/orders.v1.OrderService/CancelOrder=live").unwrap();
        grpc.check_routes(GRPC_ROUTES).unwrap();
        assert!(grpc.check_routes(GATEWAY_ROUTES).is_err());
    }

    #[test]
    fn levels_a_verifier_cannot_check_are_refused_by_entry() {
        let policy = RoutePolicy::parse(
            "GET /v1/orders=token,POST /v1/orders=pushed,POST /v1/orders/{id}/cancel=live",
        )
        .unwrap();
        assert!(policy.asks_for(Freshness::Live) && policy.asks_for(Freshness::Pushed));
        policy.check_levels(|_| true).unwrap();
        assert_eq!(
            policy.check_levels(|level| level != Freshness::Pushed),
            Err(RoutePolicyError::PushedWithoutFeed {
                entry: "POST /v1/orders=pushed".into()
            })
        );
        assert_eq!(
            policy.check_levels(|level| level != Freshness::Live),
            Err(RoutePolicyError::LiveWithoutLookup {
                entry: "POST /v1/orders/{id}/cancel=live".into()
            })
        );
    }

    #[test]
    fn levels_are_ordered_by_freshness() {
        assert!(Freshness::Token < Freshness::Pushed && Freshness::Pushed < Freshness::Live);
        for level in Freshness::ALL {
            assert_eq!(level.as_str().parse::<Freshness>(), Ok(level));
        }
    }
}
