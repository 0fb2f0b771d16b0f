//! Envoy ext_authz v3 over gRPC: `envoy.service.auth.v3.Authorization/Check`.
//!
//! The RPC always succeeds at the transport level; the decision travels in the
//! `CheckResponse` (`status.code` 0 allows; otherwise a `denied_response` with Authorino's
//! HTTP status, headers and body), as Authorino answers.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value as ProtoValue, value::Kind};
use envoy_types::pb::google::rpc::Status;
use serde_json::Value;
use tokenwarden_core::authconfig::{AuthRequest, Decision, Peer};

use crate::Authorizer;

/// The generated server type, named for health reporting.
pub type ExtAuthzServer = AuthorizationServer<ExtAuthz>;

/// The ext_authz service over an [`Authorizer`].
#[derive(Clone)]
pub struct ExtAuthz(pub Arc<Authorizer>);

impl ExtAuthz {
    pub fn server(authorizer: Arc<Authorizer>) -> AuthorizationServer<Self> {
        AuthorizationServer::new(Self(authorizer))
    }
}

fn peer(peer: Option<&envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer>) -> Peer {
    use envoy_types::pb::envoy::config::core::v3::address::Address;
    use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
    let Some(peer) = peer else { return Peer::default() };
    let mut out = Peer { principal: peer.principal.clone(), certificate: peer.certificate.clone(), ..Peer::default() };
    if let Some(Address::SocketAddress(socket)) = peer.address.as_ref().and_then(|a| a.address.as_ref()) {
        out.address.clone_from(&socket.address);
        if let Some(PortSpecifier::PortValue(port)) = socket.port_specifier {
            out.port = port;
        }
    }
    out
}

/// The request as the core sees it, from `attributes.request.http`; headers from both
/// `headers` and `header_map` (with `encode_raw_headers`). `None` without HTTP attributes.
/// Takes the message so its strings move into the request instead of being copied.
pub fn auth_request(check: CheckRequest) -> Option<AuthRequest<'static>> {
    let attributes = check.attributes?;
    let http = attributes.request?.http?;
    let mut request = AuthRequest {
        id: http.id.into(),
        method: http.method.into(),
        scheme: http.scheme.into(),
        host: http.host.into(),
        path: http.path.into(),
        protocol: http.protocol.into(),
        body: http.body.into(),
        context_extensions: attributes.context_extensions.into_iter().collect(),
        source: peer(attributes.source.as_ref()),
        destination: peer(attributes.destination.as_ref()),
        ..AuthRequest::default()
    };
    for (name, value) in http.headers {
        request.insert_header(name, value);
    }
    for header in http.header_map.map(|map| map.headers).unwrap_or_default() {
        let value = if header.raw_value.is_empty() {
            header.value
        } else {
            String::from_utf8(header.raw_value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        request.insert_header(header.key, value);
    }
    Some(request)
}

fn header(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: name.to_ascii_lowercase(), value: value.to_owned(), ..HeaderValue::default() }),
        ..HeaderValueOption::default()
    }
}

fn proto_value(value: &Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(proto_value).collect() }),
        Value::Object(map) => Kind::StructValue(proto_struct(map)),
    };
    ProtoValue { kind: Some(kind) }
}

fn proto_struct(map: &serde_json::Map<String, Value>) -> Struct {
    Struct { fields: map.iter().map(|(k, v)| (k.clone(), proto_value(v))).collect::<HashMap<_, _>>() }
}

/// The `CheckResponse` for a decision.
pub fn check_response(decision: &Decision) -> CheckResponse {
    match decision {
        Decision::Allow { headers, dynamic_metadata, .. } => CheckResponse {
            status: Some(Status { code: 0, ..Status::default() }),
            dynamic_metadata: (!dynamic_metadata.is_empty()).then(|| proto_struct(dynamic_metadata)),
            http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                headers: headers.iter().map(|(n, v)| header(n, v)).collect(),
                ..OkHttpResponse::default()
            })),
        },
        Decision::Deny { code, grpc_code, headers, body, message } => CheckResponse {
            status: Some(Status { code: *grpc_code, message: message.clone(), ..Status::default() }),
            dynamic_metadata: None,
            http_response: Some(check_response::HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: i32::from(*code) }),
                headers: headers.iter().map(|(n, v)| header(n, v)).collect(),
                body: body.clone(),
            })),
        },
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let decision = match auth_request(request.into_inner()) {
            Some(auth) => self.0.check(&auth).await,
            None => Decision::invalid_request(),
        };
        Ok(tonic::Response::new(check_response(&decision)))
    }
}
