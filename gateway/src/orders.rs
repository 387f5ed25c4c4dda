//! REST over `orders.v1.OrderService`.
//!
//! | route | gRPC | scope |
//! | --- | --- | --- |
//! | `POST /v1/orders` `{"item","quantity"}` → 201 | `CreateOrder` | `orders:write` |
//! | `GET /v1/orders?page_size=&page_token=` | `ListOrders` | `orders:read` |
//! | `GET /v1/orders/{id}` | `GetOrder` | `orders:read` |
//! | `POST /v1/orders/{id}/cancel` | `CancelOrder` | `orders:write` |
//!
//! The token is verified here (the [`Authenticated`] extractor, at the level `AUTH_ROUTE_POLICY`
//! gives the route, else the mode's) and the scope checked, so a bad request costs no upstream
//! call; the original token then goes on to the orders service, which
//! verifies it again and decides ownership (defence in depth: the network is not trusted).

use std::time::{Duration, UNIX_EPOCH};

use authn::Scope;
use authn::http::Authenticated;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::trace::TraceContext;
use proto::orders::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::state::AppState;

/// The routes above as `AUTH_ROUTE_POLICY` names them (`METHOD /template`): the routes whose
/// freshness a policy may set at the gateway, since they are the ones that verify a token.
pub const ROUTES: &[&str] = &[
    "POST /v1/orders",
    "GET /v1/orders",
    "GET /v1/orders/{id}",
    "POST /v1/orders/{id}/cancel",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(create_order).get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/cancel", post(cancel_order))
}

/// `POST /v1/orders` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateOrderBody {
    pub item: String,
    pub quantity: i32,
}

/// `GET /v1/orders` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// An order as the REST API shows it. Times are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderJson {
    pub id: String,
    pub owner: String,
    pub item: String,
    pub quantity: i32,
    /// `placed` or `cancelled`.
    pub status: &'static str,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
}

/// `GET /v1/orders` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderListJson {
    pub orders: Vec<OrderJson>,
    /// Pass as `page_token` for the next page; `null` on the last page.
    pub next_page_token: Option<String>,
}

impl TryFrom<pb::Order> for OrderJson {
    type Error = ApiError;

    fn try_from(order: pb::Order) -> Result<Self, Self::Error> {
        let status = match order.status() {
            pb::OrderStatus::Placed => "placed",
            pb::OrderStatus::Cancelled => "cancelled",
            pb::OrderStatus::Unspecified => {
                return Err(ApiError::BadGateway(format!(
                    "order {} has no status",
                    order.id
                )));
            }
        };
        let cancelled_at = match order.cancelled_at {
            0 => None,
            at => Some(rfc3339(at)?),
        };
        Ok(Self {
            created_at: rfc3339(order.created_at)?,
            cancelled_at,
            id: order.id,
            owner: order.owner,
            item: order.item,
            quantity: order.quantity,
            status,
        })
    }
}

/// Unix seconds as RFC 3339 (`2025-01-31T12:00:00Z`).
fn rfc3339(unix_seconds: i64) -> Result<String, ApiError> {
    let seconds = u64::try_from(unix_seconds)
        .map_err(|_| ApiError::BadGateway(format!("timestamp {unix_seconds} before 1970")))?;
    let time = UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or_else(|| ApiError::BadGateway(format!("timestamp {unix_seconds} out of range")))?;
    Ok(humantime::format_rfc3339_seconds(time).to_string())
}

/// A gRPC request carrying the caller's original token, the request id, the trace context
/// (this request's span as the parent) and the deadline.
fn outgoing<T>(
    state: &AppState,
    message: T,
    auth: &Authenticated,
    context: &TraceContext,
) -> Result<tonic::Request<T>, ApiError> {
    let mut request = tonic::Request::new(message);
    authn::grpc::with_bearer(&mut request, auth.token.as_str())
        .map_err(|status| ApiError::Internal(format!("cannot attach token: {}", status.code())))?;
    platform::grpc::with_trace(&mut request, context);
    request.set_timeout(state.request_timeout);
    Ok(request)
}

#[tracing::instrument(name = "create_order", skip_all, fields(sub = %auth.principal.sub()))]
async fn create_order(
    State(state): State<AppState>,
    auth: Authenticated,
    context: TraceContext,
    JsonBody(body): JsonBody<CreateOrderBody>,
) -> Result<Response, ApiError> {
    auth.principal.require(Scope::OrdersWrite)?;
    let message = pb::CreateOrderRequest {
        item: body.item,
        quantity: body.quantity,
    };
    let request = outgoing(&state, message, &auth, &context)?;
    let order = state
        .orders
        .clone()
        .create_order(request)
        .await?
        .into_inner();
    let order = OrderJson::try_from(order)?;
    let location = HeaderValue::try_from(format!("/v1/orders/{}", order.id))
        .map_err(|_| ApiError::BadGateway("order id is not a valid header value".into()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order),
    )
        .into_response())
}

#[tracing::instrument(name = "list_orders", skip_all, fields(sub = %auth.principal.sub()))]
async fn list_orders(
    State(state): State<AppState>,
    auth: Authenticated,
    context: TraceContext,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<OrderListJson>, ApiError> {
    auth.principal.require(Scope::OrdersRead)?;
    let message = pb::ListOrdersRequest {
        page_size: query.page_size.unwrap_or(0),
        page_token: query.page_token.unwrap_or_default(),
    };
    let request = outgoing(&state, message, &auth, &context)?;
    let page = state
        .orders
        .clone()
        .list_orders(request)
        .await?
        .into_inner();
    Ok(Json(OrderListJson {
        orders: page
            .orders
            .into_iter()
            .map(OrderJson::try_from)
            .collect::<Result<_, _>>()?,
        next_page_token: Some(page.next_page_token).filter(|token| !token.is_empty()),
    }))
}

#[tracing::instrument(name = "get_order", skip_all, fields(sub = %auth.principal.sub()))]
async fn get_order(
    State(state): State<AppState>,
    auth: Authenticated,
    context: TraceContext,
    PathParam(id): PathParam<String>,
) -> Result<Json<OrderJson>, ApiError> {
    auth.principal.require(Scope::OrdersRead)?;
    let request = outgoing(&state, pb::GetOrderRequest { id }, &auth, &context)?;
    let order = state.orders.clone().get_order(request).await?.into_inner();
    Ok(Json(OrderJson::try_from(order)?))
}

#[tracing::instrument(name = "cancel_order", skip_all, fields(sub = %auth.principal.sub()))]
async fn cancel_order(
    State(state): State<AppState>,
    auth: Authenticated,
    context: TraceContext,
    PathParam(id): PathParam<String>,
) -> Result<Json<OrderJson>, ApiError> {
    auth.principal.require(Scope::OrdersWrite)?;
    let request = outgoing(&state, pb::CancelOrderRequest { id }, &auth, &context)?;
    let order = state
        .orders
        .clone()
        .cancel_order(request)
        .await?
        .into_inner();
    Ok(Json(OrderJson::try_from(order)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: pb::OrderStatus, cancelled_at: i64) -> pb::Order {
        pb::Order {
            id: "0190a0a0-0000-7000-8000-000000000000".into(),
            owner: "alice".into(),
            item: "book".into(),
            quantity: 2,
            status: status.into(),
            created_at: 1_700_000_000,
            cancelled_at,
        }
    }

    #[test]
    fn placed_order_json() {
        let json = OrderJson::try_from(order(pb::OrderStatus::Placed, 0)).unwrap();
        assert_eq!(json.status, "placed");
        assert_eq!(json.created_at, "2023-11-14T22:13:20Z");
        assert_eq!(json.cancelled_at, None);
        let value = serde_json::to_value(&json).unwrap();
        assert!(value.get("cancelled_at").is_none());
        assert_eq!(value["quantity"], 2);
    }

    #[test]
    fn cancelled_order_json() {
        let json = OrderJson::try_from(order(pb::OrderStatus::Cancelled, 1_700_000_060)).unwrap();
        assert_eq!(json.status, "cancelled");
        assert_eq!(json.cancelled_at.as_deref(), Some("2023-11-14T22:14:20Z"));
    }

    /// Every entry of [`ROUTES`] is a route of [`router`], with that method and template: what
    /// `AUTH_ROUTE_POLICY` is validated against is what requests are matched with.
    #[tokio::test]
    async fn the_policy_routes_are_the_routers_routes() {
        use axum::extract::{MatchedPath, Request};
        use tower::ServiceExt as _;

        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let state = AppState {
            verifier: testkit::TestIssuer::new().verifier(),
            orders: pb::order_service_client::OrderServiceClient::new(channel),
            request_timeout: Duration::from_secs(1),
            lifecycle: platform::shutdown::Lifecycle::new(),
        };
        let app = router()
            .route_layer(axum::middleware::from_fn(
                |route: MatchedPath, _: Request, _: axum::middleware::Next| async move {
                    route.as_str().to_owned()
                },
            ))
            .with_state(state);
        for route in ROUTES {
            let (method, template) = route.split_once(' ').unwrap();
            let path = template.replace("{id}", "0190a0a0-0000-7000-8000-000000000000");
            let request = Request::builder()
                .method(method)
                .uri(&path)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{route}");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(body, template.as_bytes(), "{route}");
        }
    }

    #[test]
    fn nonsense_from_upstream_is_a_bad_gateway() {
        assert!(matches!(
            OrderJson::try_from(order(pb::OrderStatus::Unspecified, 0)),
            Err(ApiError::BadGateway(_))
        ));
        let mut negative = order(pb::OrderStatus::Placed, 0);
        negative.created_at = -1;
        assert!(matches!(
            OrderJson::try_from(negative),
            Err(ApiError::BadGateway(_))
        ));
    }
}
