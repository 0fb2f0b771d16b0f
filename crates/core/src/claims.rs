//! The JWT claims kube-apiserver writes: bound tokens (TokenRequest) and legacy Secret tokens.
//! Fields are declared in alphabetical order so tokens serialize as Go's map marshalling does.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The issuer of legacy (Secret-based) tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// `name` + `uid` of an object a token names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// The private `kubernetes.io` claim of bound tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default)]
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// Every claim tokenwarden reads or writes. Bound tokens use the registered claims and
/// `kubernetes.io`; legacy tokens use `iss`, `sub` and the four flat `kubernetes.io/serviceaccount/*` keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, deserialize_with = "audience", skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date", skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date", skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(rename = "kubernetes.io", default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesClaims>,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace", default, skip_serializing_if = "Option::is_none")]
    pub legacy_namespace: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name", default, skip_serializing_if = "Option::is_none")]
    pub legacy_secret_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name", default, skip_serializing_if = "Option::is_none")]
    pub legacy_service_account_name: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid", default, skip_serializing_if = "Option::is_none")]
    pub legacy_service_account_uid: Option<String>,
    #[serde(default, deserialize_with = "numeric_date", skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub sub: String,
}

/// `system:serviceaccount:<namespace>:<name>`
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Splits `system:serviceaccount:<ns>:<name>`.
pub fn split_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3). Read by a visitor: an untagged
/// enum buffers the value and, for the array every ServiceAccount token carries, first builds
/// the error of the string variant.
fn audience<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Audience;
    impl<'de> Visitor<'de> for Audience {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: serde::de::Error>(self, one: &str) -> Result<Self::Value, E> {
            Ok(vec![one.to_owned()])
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
            while let Some(one) = seq.next_element()? {
                many.push(one);
            }
            Ok(many)
        }
    }
    d.deserialize_any(Audience)
}

/// NumericDate: JSON number, possibly fractional (go-jose accepts floats), truncated.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(d)? else { return Ok(None) };
    if !n.is_finite() || n.abs() > 1e15 {
        return Err(serde::de::Error::custom("NumericDate out of range"));
    }
    #[allow(clippy::cast_possible_truncation)] // bounded just above
    Ok(Some(n.trunc() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bound_claims_serialize_like_kube_apiserver() {
        let claims = Claims {
            aud: vec!["a".into()],
            exp: Some(10),
            iat: Some(1),
            iss: "https://issuer".into(),
            jti: Some("j".into()),
            kubernetes: Some(KubernetesClaims {
                namespace: "ns".into(),
                serviceaccount: Ref { name: "sa".into(), uid: "u".into() },
                ..Default::default()
            }),
            nbf: Some(1),
            sub: "system:serviceaccount:ns:sa".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            r#"{"aud":["a"],"exp":10,"iat":1,"iss":"https://issuer","jti":"j","kubernetes.io":{"namespace":"ns","serviceaccount":{"name":"sa","uid":"u"}},"nbf":1,"sub":"system:serviceaccount:ns:sa"}"#
        );
    }

    #[test]
    fn reads_string_audience_and_float_dates() {
        let c: Claims = serde_json::from_value(json!({"aud": "x", "exp": 12.7, "sub": "s"})).unwrap();
        assert_eq!((c.aud, c.exp), (vec!["x".to_owned()], Some(12)));
        assert!(serde_json::from_value::<Claims>(json!({"exp": "soon"})).is_err());
        assert!(serde_json::from_value::<Claims>(json!({"aud": [1]})).is_err());
        assert!(serde_json::from_value::<Claims>(json!({"aud": 1})).is_err());
        let c: Claims = serde_json::from_str(r#"{"aud": ["a", "b"]}"#).unwrap();
        assert_eq!(c.aud, ["a", "b"]);
        let c: Claims = serde_json::from_str(r#"{"aud": null}"#).unwrap();
        assert!(c.aud.is_empty());
        assert!(serde_json::from_value::<Claims>(json!({"exp": 1e300})).is_err());
    }

    #[test]
    fn usernames() {
        assert_eq!(split_username("system:serviceaccount:ns:sa"), Some(("ns", "sa")));
        assert_eq!(split_username("system:serviceaccount:ns"), None);
        assert_eq!(split_username("system:serviceaccount:ns:a:b"), None);
    }
}
