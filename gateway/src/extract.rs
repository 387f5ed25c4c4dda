//! Extractors whose rejections are the gateway's JSON errors, not axum's plain-text defaults:
//! axum's own `Json`, `Query` and `Path`, with each rejection mapped to an [`ApiError`].

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::StatusCode;

use crate::error::ApiError;

/// A JSON request body; any failure is a JSON 400 (413 when too large, 415 without a JSON
/// content type). Descriptions never quote the body back.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// Query parameters; a malformed query is a JSON 400.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

/// A path parameter; an undecodable one is a JSON 400.
#[derive(Debug, Clone, FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => return ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => return ApiError::UnsupportedMediaType,
            _ => {}
        }
        let description = match rejection {
            JsonRejection::JsonSyntaxError(_) => "the request body is not valid JSON",
            JsonRejection::JsonDataError(_) => {
                "the request body does not have the expected fields and types"
            }
            _ => "the request body cannot be read",
        };
        ApiError::InvalidRequest(description.into())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(_: QueryRejection) -> Self {
        ApiError::InvalidRequest("the query parameters are not valid".into())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::InvalidRequest("the path parameters are not valid".into())
    }
}
