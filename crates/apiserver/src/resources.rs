//! Generic object handlers (placeholder until implemented).

use axum::response::Response;

use crate::error::{ApiError, ApiResult};
use crate::{ApiState, Call};

pub async fn handle(_state: &ApiState, _call: Call) -> ApiResult<Response> {
    Err(ApiError::path_not_found())
}
