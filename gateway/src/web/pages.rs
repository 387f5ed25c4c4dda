//! The web app: one page (`GET /`) and the forms it posts, each answered with a redirect back
//! to it (POST, redirect, GET), so that reloading never re-submits.

use std::fmt::Write as _;
use std::net::SocketAddr;

use authn::bearer::BearerToken;
use authn::config::AuthMode;
use authn::http::Authenticated;
use authn::{AuthError, RejectReason, Scope};
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use platform::trace::TraceContext;
use proto::orders::v1 as pb;
use serde::Deserialize;

use super::flow::{self, CsrfForm, signed_out_redirect};
use super::html::{self, escape};
use super::issuer::{OnBehalf, SessionApi, SessionView};
use super::session::{self, Resolved, Signed};
use super::{Browser, WebError, WebState, html_response};
use crate::error::ApiError;
use crate::orders::OrderJson;

/// Longest path parameter (order or session id) passed on.
const MAX_ID_LEN: usize = 128;

/// The request context every web handler passes around.
#[derive(Clone, Copy)]
struct Visit<'a> {
    state: &'a WebState,
    browser: &'a Browser,
    headers: &'a HeaderMap,
    on_behalf: OnBehalf<'a>,
}

impl<'a> Visit<'a> {
    fn new(
        state: &'a WebState,
        peer: SocketAddr,
        headers: &'a HeaderMap,
        context: &'a TraceContext,
    ) -> Result<Self, WebError> {
        Ok(Self {
            browser: state.browser()?,
            on_behalf: OnBehalf {
                client_ip: state.proxy.client_ip(peer, headers),
                headers,
                context,
            },
            state,
            headers,
        })
    }

    /// The signed-in session behind a form, its CSRF token checked first.
    async fn signed_form(&self, csrf: &str) -> Result<Signed, WebError> {
        session::check_csrf(self.browser, self.headers, csrf)?;
        match session::resolve(self.state, self.browser, self.headers, &self.on_behalf).await? {
            Resolved::Signed(signed) => Ok(*signed),
            Resolved::Anonymous | Resolved::Ended => Err(WebError::SignedOut),
        }
    }

    fn sessions<'s>(&'s self, access_token: &'s str) -> SessionApi<'s> {
        SessionApi {
            proxy: &self.state.proxy,
            on_behalf: OnBehalf {
                client_ip: self.on_behalf.client_ip,
                headers: self.headers,
                context: self.on_behalf.context,
            },
            access_token,
        }
    }

    fn orders_request<T>(
        &self,
        access_token: &str,
        message: T,
    ) -> Result<tonic::Request<T>, WebError> {
        let mut request = tonic::Request::new(message);
        authn::grpc::with_bearer(&mut request, access_token)
            .map_err(|_| WebError::Internal("cannot attach the token".into()))?;
        platform::grpc::with_trace(&mut request, self.on_behalf.context);
        request.set_timeout(self.state.app.request_timeout);
        Ok(request)
    }

    /// The user's orders, or `None` without the right to see them.
    async fn list_orders(&self, auth: &Authenticated) -> Result<Option<Vec<OrderJson>>, WebError> {
        if !auth.principal.has_scope(Scope::OrdersRead) {
            return Ok(None);
        }
        let request = self.orders_request(auth.token.as_str(), pb::ListOrdersRequest::default())?;
        let page = self
            .state
            .app
            .orders
            .clone()
            .list_orders(request)
            .await
            .map_err(orders_error)?
            .into_inner();
        let orders = page
            .orders
            .into_iter()
            .map(OrderJson::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WebError::Upstream(e.to_string()))?;
        Ok(Some(orders))
    }

    /// Runs `call` with the session's access token and rights. When a service refuses the
    /// token as older than the user's last change ([`WebError::ClaimsChanged`]: it heard of the
    /// change before this gateway did), renews the session and runs `call` once more, so the
    /// person sees the new rights at this click instead of an error.
    async fn with_fresh_claims<T, F, Fut>(
        &self,
        signed: &mut Signed,
        call: F,
    ) -> Result<T, WebError>
    where
        F: Fn(Authenticated) -> Fut,
        Fut: Future<Output = Result<T, WebError>>,
    {
        match call(authenticated(signed)).await {
            Err(WebError::ClaimsChanged) => {
                tracing::info!("web: a service found the claims stale; renewing the session");
                session::renew(
                    self.state,
                    self.browser,
                    self.headers,
                    &self.on_behalf,
                    signed,
                )
                .await?;
                call(authenticated(signed)).await
            }
            outcome => outcome,
        }
    }
}

fn authenticated(signed: &Signed) -> Authenticated {
    Authenticated {
        principal: signed.principal.clone(),
        token: BearerToken::new(signed.token.clone()),
    }
}

/// An orders-service refusal, as the web app answers it.
fn orders_error(status: tonic::Status) -> WebError {
    match ApiError::from(status) {
        ApiError::Auth(AuthError::Unauthenticated(RejectReason::ClaimsChanged)) => {
            WebError::ClaimsChanged
        }
        ApiError::InvalidToken => WebError::SignedOut,
        ApiError::InvalidRequest(detail) => WebError::BadRequest(detail.into_owned()),
        ApiError::NotFound(_) | ApiError::Conflict(_) => {
            WebError::BadRequest("the order cannot be changed".into())
        }
        ApiError::Unavailable(detail) => WebError::Upstream(detail),
        error => WebError::Upstream(error.to_string()),
    }
}

/// `GET /`.
#[tracing::instrument(name = "web.home", skip_all)]
pub async fn home(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, WebError> {
    let query = uri.query().map(str::to_owned);
    if state.browser.is_none() {
        return Ok(html_response(
            StatusCode::OK,
            html::page(
                "Orders",
                "<h1>Orders</h1>\n<p>Browser sign-in is not configured on this gateway. \
                 The REST API is at <code>/v1/orders</code>.</p>",
            ),
        ));
    }
    let visit = Visit::new(&state, peer, &headers, &context)?;
    let signed = match session::resolve(&state, visit.browser, &headers, &visit.on_behalf).await? {
        Resolved::Anonymous if arrived_from_another_site(&headers, query.as_deref()) => {
            return Ok(reload_same_site());
        }
        Resolved::Anonymous => return Ok(signed_out_page()),
        Resolved::Ended => return Err(WebError::SignedOut),
        Resolved::Signed(signed) => *signed,
    };
    let mut signed = signed;
    let (orders, sessions, ended_elsewhere) = visit
        .with_fresh_claims(&mut signed, |auth| async move {
            let api = visit.sessions(auth.token.as_str());
            let (orders, sessions) = tokio::join!(visit.list_orders(&auth), api.list());
            let (sessions, ended_elsewhere) = match sessions {
                // Stateless: this device's session was ended elsewhere, but its access token
                // verifies until it expires, as every stateless verifier would accept it; the
                // page says so, and the next renewal (refused by the issuer) signs it out.
                Err(WebError::SignedOut) if visit.state.mode == AuthMode::Stateless => {
                    (Vec::new(), true)
                }
                other => (other?, false),
            };
            Ok((orders?, sessions, ended_elsewhere))
        })
        .await?;
    let mut body = home_body(&signed, state.mode, orders.as_deref(), &sessions);
    if ended_elsewhere {
        body.push_str(&format!(
            "\n<p class=\"notice\" role=\"status\">This session was ended from another device. \
             In stateless mode it keeps working until its access token expires, at {}; then \
             you sign in again.</p>",
            escape(&html::time(signed.principal.claims().exp))
        ));
    }
    Ok(signed.finish(html_response(StatusCode::OK, html::page("Orders", &body))))
}

/// The query of the one reload [`reload_same_site`] makes.
const RELOADED: &str = "reloaded=1";

/// Whether a navigation came from another site's link: the `SameSite=Strict` token cookies
/// were then left out, and the browser only looks signed out.
fn arrived_from_another_site(headers: &HeaderMap, query: Option<&str>) -> bool {
    let is = |name: &str, value: &str| headers.get(name).is_some_and(|v| v == value);
    is("sec-fetch-site", "cross-site")
        && is("sec-fetch-mode", "navigate")
        && query != Some(RELOADED)
}

/// A page that reloads itself at once: that navigation starts on this origin, so the browser
/// sends the `SameSite=Strict` cookies with it. A meta refresh, not a script (the CSP allows
/// none), and only once (the query marks it), whatever the browser then says.
fn reload_same_site() -> Response {
    html_response(
        StatusCode::OK,
        html::page(
            "Orders",
            &format!(
                "<meta http-equiv=\"refresh\" content=\"0; url=/?{RELOADED}\">\n                 <p><a href=\"/?{RELOADED}\">Continue</a></p>"
            ),
        ),
    )
}

fn signed_out_page() -> Response {
    html_response(
        StatusCode::OK,
        html::page(
            "Orders",
            "<h1>Orders</h1>\n<p>You are signed out.</p>\n\
             <p><a class=\"button\" href=\"/login\">Sign in</a></p>",
        ),
    )
}

fn csrf_field(signed: &Signed) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&signed.csrf)
    )
}

/// A form of one button posting to `action`.
fn button_form(signed: &Signed, action: &str, label: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\" class=\"{class}\">{}</button></form>",
        escape(action),
        csrf_field(signed),
        escape(label)
    )
}

/// What the verifier mode means for the sessions the user ends.
fn mode_notice(mode: AuthMode, signed: &Signed) -> String {
    let claims = signed.principal.claims();
    match mode {
        AuthMode::Stateless => {
            let lifetime = claims.exp.saturating_sub(claims.iat).max(0);
            let until = authn::unix_now().saturating_add(lifetime);
            format!(
                "Sign-in checks run in <strong>stateless</strong> mode: a device you log out \
                 stays signed in until its access token expires, at most {} minutes (by {}). \
                 It cannot renew it.",
                (lifetime + 59) / 60,
                escape(&html::time(until))
            )
        }
        AuthMode::Stateful => "Sign-in checks run in <strong>stateful</strong> mode: a device you \
                               log out is refused at its next request."
            .to_owned(),
        AuthMode::Hybrid => "Sign-in checks run in <strong>hybrid</strong> mode: a device you log \
                             out is refused within about a second."
            .to_owned(),
    }
}

fn home_body(
    signed: &Signed,
    mode: AuthMode,
    orders: Option<&[OrderJson]>,
    sessions: &[SessionView],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<header class=\"top\"><h1>Orders</h1>{}</header>",
        button_form(signed, "/logout", "Log out", "secondary")
    );

    out.push_str("<section aria-labelledby=\"orders-heading\">\n<h2 id=\"orders-heading\">Your orders</h2>\n");
    if signed.principal.has_scope(Scope::OrdersWrite) {
        let _ = writeln!(
            out,
            "<form method=\"post\" action=\"/orders\" class=\"create\">{}\
             <label for=\"item\">Item</label>\
             <input id=\"item\" name=\"item\" type=\"text\" required maxlength=\"200\" autocomplete=\"off\">\
             <label for=\"quantity\">Quantity</label>\
             <input id=\"quantity\" name=\"quantity\" type=\"number\" required min=\"1\" max=\"1000\" value=\"1\" inputmode=\"numeric\">\
             <button type=\"submit\">Place order</button></form>",
            csrf_field(signed)
        );
    }
    match orders {
        None => out.push_str("<p>You may not see orders.</p>\n"),
        Some([]) => out.push_str("<p>No orders yet.</p>\n"),
        Some(orders) => {
            out.push_str(
                "<table class=\"orders\">\n<thead><tr><th scope=\"col\">Item</th><th scope=\"col\">Quantity</th>\
                 <th scope=\"col\">Status</th><th scope=\"col\">Placed</th><th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th></tr></thead>\n<tbody>\n",
            );
            for order in orders {
                let action = if order.status == "placed"
                    && signed.principal.has_scope(Scope::OrdersWrite)
                {
                    format!(
                        "<form method=\"post\" action=\"/orders/{}/cancel\" class=\"inline\">{}\
                         <button type=\"submit\" class=\"secondary\" aria-label=\"Cancel the order of {}\">Cancel</button></form>",
                        escape(&order.id),
                        csrf_field(signed),
                        escape(&order.item)
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "<tr><td data-label=\"Item\">{}</td><td data-label=\"Quantity\">{}</td>\
                     <td data-label=\"Status\">{}</td><td data-label=\"Placed\">{}</td><td>{action}</td></tr>",
                    escape(&order.item),
                    order.quantity,
                    escape(order.status),
                    escape(&order.created_at.replace('T', " ").replace('Z', " UTC")),
                );
            }
            out.push_str("</tbody>\n</table>\n");
        }
    }
    out.push_str("</section>\n");

    out.push_str("<section aria-labelledby=\"sessions-heading\">\n<h2 id=\"sessions-heading\">Your sessions</h2>\n");
    let _ = writeln!(out, "<p class=\"notice\">{}</p>", mode_notice(mode, signed));
    out.push_str("<ul class=\"sessions\">\n");
    for session in sessions {
        let device = html::device_label(session.user_agent.as_deref());
        let this = if session.current {
            " <span class=\"badge\">This device</span>"
        } else {
            ""
        };
        let end = if session.current {
            String::new()
        } else {
            // Several identical buttons: each names its device for screen readers.
            format!(
                "<form method=\"post\" action=\"/sessions/{}/end\" class=\"inline\">{}\
                 <button type=\"submit\" class=\"secondary\" aria-label=\"End the session of {} started {}\">End this session</button></form>",
                escape(&session.id),
                csrf_field(signed),
                escape(&device),
                escape(&html::time(session.created_at)),
            )
        };
        let _ = writeln!(
            out,
            "<li><strong>{}</strong>{this}<br>\
             <span>Address {}</span> · <span>Started {}</span> · <span>Last used {}</span> {end}</li>",
            escape(&device),
            escape(session.ip.as_deref().unwrap_or("unknown")),
            escape(&html::time(session.created_at)),
            escape(&html::time(session.last_seen_at)),
        );
    }
    out.push_str("</ul>\n<div class=\"actions\">");
    if sessions.iter().any(|s| !s.current) {
        out.push_str(&button_form(
            signed,
            "/sessions/end-others",
            "Log out other devices",
            "secondary",
        ));
    }
    out.push_str(&button_form(
        signed,
        "/logout-everywhere",
        "Log out everywhere",
        "danger",
    ));
    out.push_str("</div>\n</section>");
    out
}

fn back_home(signed: Signed) -> Response {
    signed.finish(Redirect::to("/").into_response())
}

fn form<T>(form: Result<Form<T>, FormRejection>) -> Result<T, WebError> {
    form.map(|Form(form)| form)
        .map_err(|_| WebError::BadRequest("the form is not valid".into()))
}

#[derive(Debug, Deserialize)]
pub struct CreateOrderForm {
    csrf: String,
    item: String,
    quantity: String,
}

/// `POST /orders`.
#[tracing::instrument(name = "web.create_order", skip_all)]
pub async fn create_order(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    body: Result<Form<CreateOrderForm>, FormRejection>,
) -> Result<Response, WebError> {
    let visit = Visit::new(&state, peer, &headers, &context)?;
    let body = form(body).map_err(|_| WebError::Forbidden)?;
    let mut signed = visit.signed_form(&body.csrf).await?;
    let quantity: i32 = body
        .quantity
        .trim()
        .parse()
        .map_err(|_| WebError::BadRequest("quantity".into()))?;
    let message = pb::CreateOrderRequest {
        item: body.item.trim().to_owned(),
        quantity,
    };
    visit
        .with_fresh_claims(&mut signed, |auth| {
            let message = message.clone();
            async move {
                let request = visit.orders_request(auth.token.as_str(), message)?;
                let orders = &mut visit.state.app.orders.clone();
                orders.create_order(request).await.map_err(orders_error)
            }
        })
        .await?;
    Ok(back_home(signed))
}

/// `POST /orders/{id}/cancel`.
#[tracing::instrument(name = "web.cancel_order", skip_all)]
pub async fn cancel_order(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let visit = Visit::new(&state, peer, &headers, &context)?;
    let body = form(body).map_err(|_| WebError::Forbidden)?;
    let mut signed = visit.signed_form(&body.csrf).await?;
    if id.len() > MAX_ID_LEN {
        return Err(WebError::BadRequest("order id".into()));
    }
    visit
        .with_fresh_claims(&mut signed, |auth| {
            let message = pb::CancelOrderRequest { id: id.clone() };
            async move {
                let request = visit.orders_request(auth.token.as_str(), message)?;
                let orders = &mut visit.state.app.orders.clone();
                orders.cancel_order(request).await.map_err(orders_error)
            }
        })
        .await?;
    Ok(back_home(signed))
}

/// `POST /sessions/{sid}/end`.
#[tracing::instrument(name = "web.end_session", skip_all)]
pub async fn end_session(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    Path(sid): Path<String>,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let visit = Visit::new(&state, peer, &headers, &context)?;
    let body = form(body).map_err(|_| WebError::Forbidden)?;
    let mut signed = visit.signed_form(&body.csrf).await?;
    if sid.len() > MAX_ID_LEN {
        return Err(WebError::BadRequest("session id".into()));
    }
    let ends_this_one = signed.principal.sid() == Some(sid.as_str());
    let sid = sid.as_str();
    visit
        .with_fresh_claims(&mut signed, |auth| async move {
            visit.sessions(auth.token.as_str()).end(sid).await
        })
        .await?;
    if ends_this_one {
        return Ok(signed_out_redirect());
    }
    Ok(back_home(signed))
}

/// `POST /sessions/end-others`: the issuer has no "all but this one" call, so each other
/// session is ended by id.
#[tracing::instrument(name = "web.end_other_sessions", skip_all)]
pub async fn end_other_sessions(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let visit = Visit::new(&state, peer, &headers, &context)?;
    let body = form(body).map_err(|_| WebError::Forbidden)?;
    let mut signed = visit.signed_form(&body.csrf).await?;
    visit
        .with_fresh_claims(&mut signed, |auth| async move {
            let api = visit.sessions(auth.token.as_str());
            for session in api.list().await? {
                if !session.current {
                    api.end(&session.id).await?;
                }
            }
            Ok(())
        })
        .await?;
    Ok(back_home(signed))
}

/// `POST /logout-everywhere`: every session of the user ends, this one included.
#[tracing::instrument(name = "web.logout_everywhere", skip_all)]
pub async fn logout_everywhere(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    body: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let visit = Visit::new(&state, peer, &headers, &context)?;
    let body = form(body).map_err(|_| WebError::Forbidden)?;
    let mut signed = visit.signed_form(&body.csrf).await?;
    visit
        .with_fresh_claims(&mut signed, |auth| async move {
            visit.sessions(auth.token.as_str()).logout_all().await
        })
        .await?;
    Ok(flow::end_session(&state, visit.browser, &visit.on_behalf, &headers).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authn::Principal;
    use authn::claims::{AccessClaims, Audience};

    fn signed(scope: &str) -> Signed {
        let now = authn::unix_now();
        Signed {
            token: "a.b.c".into(),
            principal: Principal::from_verified_claims(AccessClaims {
                iss: "i".into(),
                sub: "alice".into(),
                aud: Audience::One("orders".into()),
                exp: now + 300,
                iat: now,
                nbf: None,
                jti: "j".into(),
                scope: Some(scope.into()),
                roles: vec!["user".into()],
                sid: Some("s1".into()),
                client_id: None,
            }),
            csrf: "csrf-token".into(),
            set_cookies: Vec::new(),
        }
    }

    fn order(item: &str, status: &'static str) -> OrderJson {
        OrderJson {
            id: "o1".into(),
            owner: "alice".into(),
            item: item.into(),
            quantity: 1,
            status,
            created_at: "2025-01-31T12:00:00Z".into(),
            cancelled_at: None,
        }
    }

    fn session(id: &str, current: bool, ip: &str) -> SessionView {
        SessionView {
            id: id.into(),
            created_at: 1_700_000_000,
            last_seen_at: 1_700_000_060,
            user_agent: Some("curl/8.4.0".into()),
            ip: Some(ip.into()),
            current,
        }
    }

    #[test]
    fn the_mode_notice_says_what_logging_a_device_out_does() {
        let signed = signed("orders:read");
        let stateless = mode_notice(AuthMode::Stateless, &signed);
        assert!(stateless.contains("stays signed in until its access token expires"));
        assert!(stateless.contains("at most 5 minutes"), "{stateless}");
        assert!(stateless.contains("UTC"));
        assert!(mode_notice(AuthMode::Stateful, &signed).contains("at its next request"));
        assert!(mode_notice(AuthMode::Hybrid, &signed).contains("within about a second"));
    }

    #[test]
    fn every_value_on_the_page_is_escaped_and_every_form_has_its_token() {
        let signed = signed("orders:read orders:write");
        let orders = [order("<img src=x onerror=alert(1)>", "placed")];
        let sessions = [
            session("s1", true, "127.0.0.1"),
            session("s2", false, "<b>10.0.0.1</b>"),
        ];
        let body = home_body(&signed, AuthMode::Stateless, Some(&orders), &sessions);
        assert!(!body.contains("<img"));
        assert!(body.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(body.contains("&lt;b&gt;10.0.0.1&lt;/b&gt;"));
        assert_eq!(
            body.matches("<form").count(),
            body.matches(r#"name="csrf" value="csrf-token""#).count(),
            "{body}"
        );
        assert!(body.contains(r#"action="/orders/o1/cancel""#));
        assert!(body.contains(r#"action="/sessions/s2/end""#));
        assert!(
            !body.contains(r#"action="/sessions/s1/end""#),
            "this one: log out instead"
        );
        assert!(body.contains("This device"));
        assert!(body.contains(r#"action="/sessions/end-others""#));
    }

    #[test]
    fn read_only_users_get_no_forms_to_change_orders() {
        let signed = signed("orders:read");
        let orders = [order("tea", "placed")];
        let body = home_body(&signed, AuthMode::Hybrid, Some(&orders), &[]);
        assert!(!body.contains(r#"action="/orders""#));
        assert!(!body.contains("/cancel"));
        assert!(body.contains("tea"));
        assert!(!body.contains("end-others"), "no other session to end");
    }
}
