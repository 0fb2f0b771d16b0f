//! Kubernetes protobuf request bodies, turned into the JSON the handlers read.
//!
//! kubectl's typed clients (`create token`, `auth whoami`, `auth can-i`, `create
//! serviceaccount|namespace|secret|role|rolebinding|clusterrole|clusterrolebinding`) send `application/vnd.kubernetes.protobuf` while accepting JSON answers, so only
//! decoding is needed, and only for the kinds those commands send. The envelope is the magic
//! `k8s\0` followed by a `runtime.Unknown {typeMeta{apiVersion, kind}, raw}`; `raw` is the
//! object in the field numbering of k8s.io/api's generated.proto.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// metav1.Time `{seconds, nanos}` → RFC 3339.
    Time,
    Msg(&'static [F]),
    RepeatedStr,
    RepeatedMsg(&'static [F]),
    MapStr,
    MapBytes,
}

/// One field: number, JSON name, kind.
#[derive(Clone, Copy)]
struct F(u64, &'static str, Kind);

const OWNER_REFERENCE: &[F] = &[
    F(5, "apiVersion", Kind::Str),
    F(1, "kind", Kind::Str),
    F(3, "name", Kind::Str),
    F(4, "uid", Kind::Str),
    F(6, "controller", Kind::Bool),
    F(7, "blockOwnerDeletion", Kind::Bool),
];

const OBJECT_META: &[F] = &[
    F(1, "name", Kind::Str),
    F(2, "generateName", Kind::Str),
    F(3, "namespace", Kind::Str),
    F(5, "uid", Kind::Str),
    F(6, "resourceVersion", Kind::Str),
    F(7, "generation", Kind::Int),
    F(8, "creationTimestamp", Kind::Time),
    F(9, "deletionTimestamp", Kind::Time),
    F(10, "deletionGracePeriodSeconds", Kind::Int),
    F(11, "labels", Kind::MapStr),
    F(12, "annotations", Kind::MapStr),
    F(13, "ownerReferences", Kind::RepeatedMsg(OWNER_REFERENCE)),
    F(14, "finalizers", Kind::RepeatedStr),
];

const BOUND_OBJECT_REFERENCE: &[F] =
    &[F(1, "kind", Kind::Str), F(2, "apiVersion", Kind::Str), F(3, "name", Kind::Str), F(4, "uid", Kind::Str)];

const TOKEN_REQUEST: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(
        2,
        "spec",
        Kind::Msg(&[
            F(1, "audiences", Kind::RepeatedStr),
            F(4, "expirationSeconds", Kind::Int),
            F(3, "boundObjectRef", Kind::Msg(BOUND_OBJECT_REFERENCE)),
        ]),
    ),
];

const TOKEN_REVIEW: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(2, "spec", Kind::Msg(&[F(1, "token", Kind::Str), F(2, "audiences", Kind::RepeatedStr)])),
];

const SELF_SUBJECT_REVIEW: &[F] = &[F(1, "metadata", Kind::Msg(OBJECT_META))];

const OBJECT_REFERENCE: &[F] = &[
    F(1, "kind", Kind::Str),
    F(2, "namespace", Kind::Str),
    F(3, "name", Kind::Str),
    F(4, "uid", Kind::Str),
    F(5, "apiVersion", Kind::Str),
    F(6, "resourceVersion", Kind::Str),
    F(7, "fieldPath", Kind::Str),
];

const SERVICE_ACCOUNT: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(2, "secrets", Kind::RepeatedMsg(OBJECT_REFERENCE)),
    F(3, "imagePullSecrets", Kind::RepeatedMsg(&[F(1, "name", Kind::Str)])),
    F(4, "automountServiceAccountToken", Kind::Bool),
];

const NAMESPACE: &[F] = &[F(1, "metadata", Kind::Msg(OBJECT_META)), F(2, "spec", Kind::Msg(&[F(1, "finalizers", Kind::RepeatedStr)]))];

const SECRET: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(2, "data", Kind::MapBytes),
    F(3, "type", Kind::Str),
    F(4, "stringData", Kind::MapStr),
    F(5, "immutable", Kind::Bool),
];

const RESOURCE_ATTRIBUTES: &[F] = &[
    F(1, "namespace", Kind::Str),
    F(2, "verb", Kind::Str),
    F(3, "group", Kind::Str),
    F(4, "version", Kind::Str),
    F(5, "resource", Kind::Str),
    F(6, "subresource", Kind::Str),
    F(7, "name", Kind::Str),
];

const NON_RESOURCE_ATTRIBUTES: &[F] = &[F(1, "path", Kind::Str), F(2, "verb", Kind::Str)];

const SELF_SUBJECT_ACCESS_REVIEW: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(2, "spec", Kind::Msg(&[F(1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)), F(2, "nonResourceAttributes", Kind::Msg(NON_RESOURCE_ATTRIBUTES))])),
];

const SELF_SUBJECT_RULES_REVIEW: &[F] = &[F(1, "metadata", Kind::Msg(OBJECT_META)), F(2, "spec", Kind::Msg(&[F(1, "namespace", Kind::Str)]))];

/// SubjectAccessReview and LocalSubjectAccessReview (`extra` is not decoded).
const SUBJECT_ACCESS_REVIEW: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(
        2,
        "spec",
        Kind::Msg(&[
            F(1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
            F(2, "nonResourceAttributes", Kind::Msg(NON_RESOURCE_ATTRIBUTES)),
            F(3, "user", Kind::Str),
            F(4, "groups", Kind::RepeatedStr),
            F(6, "uid", Kind::Str),
        ]),
    ),
];

const POLICY_RULE: &[F] = &[
    F(1, "verbs", Kind::RepeatedStr),
    F(2, "apiGroups", Kind::RepeatedStr),
    F(3, "resources", Kind::RepeatedStr),
    F(4, "resourceNames", Kind::RepeatedStr),
    F(5, "nonResourceURLs", Kind::RepeatedStr),
];

/// Role and ClusterRole (`aggregationRule` is not decoded).
const ROLE: &[F] = &[F(1, "metadata", Kind::Msg(OBJECT_META)), F(2, "rules", Kind::RepeatedMsg(POLICY_RULE))];

/// RoleBinding and ClusterRoleBinding.
const BINDING: &[F] = &[
    F(1, "metadata", Kind::Msg(OBJECT_META)),
    F(2, "subjects", Kind::RepeatedMsg(&[F(1, "kind", Kind::Str), F(2, "apiGroup", Kind::Str), F(3, "name", Kind::Str), F(4, "namespace", Kind::Str)])),
    F(3, "roleRef", Kind::Msg(&[F(1, "apiGroup", Kind::Str), F(2, "kind", Kind::Str), F(3, "name", Kind::Str)])),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (api_version, kind) {
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("authentication.k8s.io/v1" | "authentication.k8s.io/v1beta1", "TokenReview") => TOKEN_REVIEW,
        ("authentication.k8s.io/v1" | "authentication.k8s.io/v1beta1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Secret") => SECRET,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => SUBJECT_ACCESS_REVIEW,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        _ => return None,
    })
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf body could not be decoded")
}

/// A protobuf reader over one message.
struct Reader<'a>(&'a [u8]);

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or_else(malformed)?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed())
    }

    fn next(&mut self) -> ApiResult<Option<(u64, Wire<'a>)>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| malformed())?;
                if len > self.0.len() {
                    return Err(malformed());
                }
                let (bytes, rest) = self.0.split_at(len);
                self.0 = rest;
                Wire::Bytes(bytes)
            }
            1 => {
                self.0 = self.0.get(8..).ok_or_else(malformed)?;
                Wire::Varint(0)
            }
            5 => {
                self.0 = self.0.get(4..).ok_or_else(malformed)?;
                Wire::Varint(0)
            }
            _ => return Err(malformed()),
        };
        Ok(Some((key >> 3, wire)))
    }
}

fn text(bytes: &[u8]) -> ApiResult<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed())
}

/// Decodes a message with `fields` into a JSON object; unknown fields are skipped.
fn message(bytes: &[u8], fields: &[F], depth: usize) -> ApiResult<Map<String, Value>> {
    if depth > 16 {
        return Err(malformed());
    }
    let mut out = Map::new();
    let mut reader = Reader(bytes);
    while let Some((number, wire)) = reader.next()? {
        let Some(F(_, name, kind)) = fields.iter().find(|f| f.0 == number).copied() else { continue };
        let name = name.to_owned();
        match (kind, wire) {
            (Kind::Str, Wire::Bytes(b)) => {
                out.insert(name, json!(text(b)?));
            }
            #[allow(clippy::cast_possible_wrap)] // protobuf int64 is two's complement on the wire
            (Kind::Int, Wire::Varint(v)) => {
                out.insert(name, json!(v as i64));
            }
            (Kind::Bool, Wire::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (Kind::Bytes, Wire::Bytes(b)) => {
                out.insert(name, json!(base64::engine::general_purpose::STANDARD.encode(b)));
            }
            (Kind::Time, Wire::Bytes(b)) => {
                let time = message(b, &[F(1, "seconds", Kind::Int)], depth + 1)?;
                let seconds = time.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                out.insert(name, json!(tokenwarden_core::Timestamp(seconds).to_string()));
            }
            (Kind::Msg(inner), Wire::Bytes(b)) => {
                out.insert(name, Value::Object(message(b, inner, depth + 1)?));
            }
            (Kind::RepeatedStr, Wire::Bytes(b)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Value::Array(items) = list {
                    items.push(json!(text(b)?));
                }
            }
            (Kind::RepeatedMsg(inner), Wire::Bytes(b)) => {
                let item = Value::Object(message(b, inner, depth + 1)?);
                if let Value::Array(items) = out.entry(name).or_insert_with(|| json!([])) {
                    items.push(item);
                }
            }
            (Kind::MapStr | Kind::MapBytes, Wire::Bytes(b)) => {
                let value_kind = if matches!(kind, Kind::MapStr) { Kind::Str } else { Kind::Bytes };
                let entry = message(b, &[F(1, "key", Kind::Str), F(2, "value", value_kind)], depth + 1)?;
                let key = entry.get("key").and_then(Value::as_str).unwrap_or("").to_owned();
                let value = entry.get("value").cloned().unwrap_or_else(|| json!(""));
                if let Value::Object(map) = out.entry(name).or_insert_with(|| json!({})) {
                    map.insert(key, value);
                }
            }
            _ => return Err(malformed()),
        }
    }
    Ok(out)
}

/// Decodes a `k8s\0` protobuf body into the equivalent JSON object.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| ApiError::bad_request("the protobuf body lacks the k8s envelope"))?;
    let type_meta = [F(1, "apiVersion", Kind::Str), F(2, "kind", Kind::Str)];
    // runtime.Unknown: typeMeta (1) and raw (2), read by hand so raw stays bytes.
    let mut reader = Reader(envelope);
    let (mut meta, mut raw) = (Map::new(), &[][..]);
    while let Some((number, wire)) = reader.next()? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => meta = message(b, &type_meta, 1)?,
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let api_version = meta.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_owned();
    let kind = meta.get("kind").and_then(Value::as_str).unwrap_or("").to_owned();
    let fields = schema(&api_version, &kind).ok_or_else(|| {
        ApiError::unsupported_media_type(&format!("application/vnd.kubernetes.protobuf for {api_version} {kind} (send JSON)"))
    })?;
    let mut object = message(raw, fields, 0)?;
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(number << 3 | 2).unwrap(), u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_token_request_as_kubectl_sends_it() {
        // spec { audiences: "talker-api", expirationSeconds: 600, boundObjectRef { kind: Pod, name: web } }
        let mut spec = field(1, b"talker-api");
        spec.extend([4 << 3, 0xd8, 0x04]); // 600 as a varint
        let mut bound = field(1, b"Pod");
        bound.extend(field(3, b"web"));
        spec.extend(field(3, &bound));
        let raw = [field(1, &field(1, b"bot")), field(2, &spec)].concat();
        let type_meta = [field(1, b"authentication.k8s.io/v1"), field(2, b"TokenRequest")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let value = decode(&body).unwrap();
        assert_eq!(
            value,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {"name": "bot"},
                   "spec": {"audiences": ["talker-api"], "expirationSeconds": 600, "boundObjectRef": {"kind": "Pod", "name": "web"}}})
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(&[b'k', b'8', b's', 0, 0x0a, 0x7f]).unwrap_err().code, 400);
        let type_meta = [field(1, b"v1"), field(2, b"Pod")].concat();
        assert_eq!(decode(&[MAGIC.to_vec(), field(1, &type_meta)].concat()).unwrap_err().code, 415);
    }
}
