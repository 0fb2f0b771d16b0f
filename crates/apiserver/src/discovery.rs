//! Discovery documents (placeholder until implemented).

use axum::response::Response;

use crate::request::RequestInfo;

pub fn handle(_info: &RequestInfo, _pretty: bool) -> Option<Response> {
    None
}
