//! `orders.v1.OrderService`: authorization from claims, validation, and calls to the
//! repository. No SQL here, no token parsing here (the [`authn::grpc::RequireAuthLayer`] in
//! front of the service has already verified the token and left a [`Principal`]).
//!
//! Visibility rule: a caller who may not access an order (neither its owner nor an admin) gets
//! NOT_FOUND for it, exactly as for an id that does not exist, so ids of other users' orders
//! cannot be probed.

use authn::{Principal, Role, Scope};
use proto::orders::v1 as pb;
use proto::orders::v1::order_service_server::OrderService;
use tonic::{Request, Response, Status};

use crate::domain::{NewOrder, OrderId, PageRequest, Status as OrderStatus};
use crate::error::Error;
use crate::repo::{self, OrderRepository};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct OrdersRpc {
    repo: OrderRepository,
}

impl OrdersRpc {
    pub fn new(repo: OrderRepository) -> Self {
        Self { repo }
    }

    #[tracing::instrument(name = "CreateOrder", skip_all, fields(sub = %principal.sub()))]
    async fn create(
        &self,
        principal: &Principal,
        request: &pb::CreateOrderRequest,
    ) -> Result<pb::Order, Error> {
        principal.require(Scope::OrdersWrite)?;
        let new = NewOrder::parse(&request.item, request.quantity)?;
        let order = self
            .repo
            .create(principal.sub(), new, authn::unix_now())
            .await?;
        tracing::info!(order_id = %order.id, "order placed");
        Ok(order.into())
    }

    #[tracing::instrument(name = "GetOrder", skip_all, fields(sub = %principal.sub()))]
    async fn get(
        &self,
        principal: &Principal,
        request: &pb::GetOrderRequest,
    ) -> Result<pb::Order, Error> {
        principal.require(Scope::OrdersRead)?;
        let id = OrderId::parse(&request.id)?;
        let order = self.visible_order(principal, id).await?;
        Ok(order.into())
    }

    #[tracing::instrument(name = "ListOrders", skip_all, fields(sub = %principal.sub()))]
    async fn list(
        &self,
        principal: &Principal,
        request: &pb::ListOrdersRequest,
    ) -> Result<pb::ListOrdersResponse, Error> {
        principal.require(Scope::OrdersRead)?;
        let page = PageRequest::parse(request.page_size, &request.page_token)?;
        let scope = if principal.is(Role::Admin) {
            repo::Scope::All
        } else {
            repo::Scope::Owner(principal.sub())
        };
        let page = self.repo.list(scope, page).await?;
        Ok(pb::ListOrdersResponse {
            orders: page.orders.into_iter().map(Into::into).collect(),
            next_page_token: page.next.map(|cursor| cursor.encode()).unwrap_or_default(),
        })
    }

    #[tracing::instrument(name = "CancelOrder", skip_all, fields(sub = %principal.sub()))]
    async fn cancel(
        &self,
        principal: &Principal,
        request: &pb::CancelOrderRequest,
    ) -> Result<pb::Order, Error> {
        principal.require(Scope::OrdersWrite)?;
        let id = OrderId::parse(&request.id)?;
        let order = self.visible_order(principal, id).await?;
        if order.status == OrderStatus::Cancelled {
            return Err(Error::AlreadyCancelled);
        }
        // The update only applies to a placed order: losing a race with another cancel is
        // the same outcome as finding it cancelled.
        let cancelled = self
            .repo
            .cancel(id, authn::unix_now())
            .await?
            .ok_or(Error::AlreadyCancelled)?;
        tracing::info!(order_id = %id, "order cancelled");
        Ok(cancelled.into())
    }

    /// The order, if it exists and the caller may access it; NOT_FOUND otherwise.
    async fn visible_order(
        &self,
        principal: &Principal,
        id: OrderId,
    ) -> Result<crate::domain::Order, Error> {
        match self.repo.get(id).await? {
            Some(order) if principal.can_access(&order.owner) => Ok(order),
            _ => Err(Error::NotFound),
        }
    }
}

#[tonic::async_trait]
impl OrderService for OrdersRpc {
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let result = match authn::grpc::principal(&request) {
            Ok(principal) => self
                .create(principal, request.get_ref())
                .await
                .map_err(Status::from),
            Err(status) => Err(status),
        };
        finish(result)
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let result = match authn::grpc::principal(&request) {
            Ok(principal) => self
                .get(principal, request.get_ref())
                .await
                .map_err(Status::from),
            Err(status) => Err(status),
        };
        finish(result)
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let result = match authn::grpc::principal(&request) {
            Ok(principal) => self
                .list(principal, request.get_ref())
                .await
                .map_err(Status::from),
            Err(status) => Err(status),
        };
        finish(result)
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let result = match authn::grpc::principal(&request) {
            Ok(principal) => self
                .cancel(principal, request.get_ref())
                .await
                .map_err(Status::from),
            Err(status) => Err(status),
        };
        finish(result)
    }
}

/// Wraps the answer (calls are counted and timed by [`platform::request_metrics::GrpcMetricsLayer`]).
fn finish<T>(result: Result<T, Status>) -> Result<Response<T>, Status> {
    result.map(Response::new)
}
