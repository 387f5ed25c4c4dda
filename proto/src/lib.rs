//! The wire contracts between services, generated at build time from `proto/**/*.proto`.
//!
//! - [`auth::v1`]: the issuer's `SessionService`, which `stateful` verifiers ask whether a session
//!   is still active.
//! - [`orders::v1`]: the resource service's `OrderService`.

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("auth.v1");
    }
}

pub mod orders {
    pub mod v1 {
        tonic::include_proto!("orders.v1");
    }
}
