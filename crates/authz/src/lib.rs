//! tokenwarden-authz: the Authorino-compatible authorizer.
//!
//! [`Authorizer`] holds the AuthConfig host index and the identity backends and runs the
//! core's evaluation; the transports adapt it to Envoy ext_authz (gRPC), HTTP checks
//! (Envoy `http_service`, nginx `auth_request`, Traefik ForwardAuth) and a reverse proxy.

pub mod access;
pub mod authorizer;
mod configs;
pub mod dir;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod jwks;
pub mod kubeconfig;
pub mod metrics;
pub mod observe;
pub mod proxy;
pub mod remote;
pub mod source;
mod wire;

pub use authorizer::Authorizer;
