//! List pages and watch events as an API server sends them, read one object at a time.
//!
//! serde_json reads 127 levels of nesting into a `Value`, and kube-apiserver stores deeper
//! objects (Go reads 10,000): an AuthConfig's free-form `value` can carry one. Read whole, one
//! such object made every list and watch of its collection fail, and the follower stopped
//! following for every namespace. Here each object is read on its own; one too deep to read
//! comes back as its metadata and status alone ([`Item::Unreadable`]), read past the rest
//! without recursion (serde_json skips unread fields iteratively).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokenwarden_core::Object;

/// One object of a list or event.
pub enum Item {
    Object(Object),
    /// An object that could not be read whole: its metadata (and status), and why.
    Unreadable(Object, String),
    /// JSON without a name: an ERROR event's Status, a BOOKMARK's object.
    Nameless(Value),
    /// Neither readable nor with metadata to go by.
    Invalid(String),
}

impl Item {
    /// `metadata.resourceVersion`, if it has one.
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            Self::Object(object) | Self::Unreadable(object, _) => object.str_at("metadata.resourceVersion"),
            Self::Nameless(value) => value.pointer("/metadata/resourceVersion").and_then(Value::as_str),
            Self::Invalid(_) => None,
        }
    }

    /// The JSON read (`null` when none).
    pub fn into_value(self) -> Value {
        match self {
            Self::Object(object) | Self::Unreadable(object, _) => object.into_value(),
            Self::Nameless(value) => value,
            Self::Invalid(_) => Value::Null,
        }
    }
}

/// One page of a list: its items, `metadata.resourceVersion` and `metadata.continue`.
pub struct Page {
    pub items: Vec<Item>,
    pub resource_version: String,
    pub continue_token: String,
}

/// One watch event: its `type` and object.
pub struct Event {
    pub kind: String,
    pub object: Item,
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default, rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

/// What is read of an object too deep to read whole: who it is and its status (so a status
/// written back is seen as written), not what it says.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Skeleton<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    metadata: SkeletonMeta,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SkeletonMeta {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Reads a list page: an object with `items`, as kube-apiserver sends even an empty one (an
/// answer without them must not read as "there are none").
pub fn page(body: &[u8]) -> Result<Page, String> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("not a JSON object".to_owned());
    }
    let raw: RawPage<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(Page {
        items: raw.items.into_iter().map(item).collect(),
        resource_version: raw.metadata.resource_version.unwrap_or_default(),
        continue_token: raw.metadata.continue_token.unwrap_or_default(),
    })
}

/// Reads one line of a watch.
pub fn event(line: &[u8]) -> Result<Event, String> {
    let raw: RawEvent<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let object = raw.object.map_or(Item::Nameless(Value::Null), item);
    Ok(Event { kind: raw.kind, object })
}

fn object_or_nameless(value: Value) -> Item {
    let named = value.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|name| !name.is_empty());
    match value {
        Value::Object(_) if named => Object::from_value(value).map_or(Item::Invalid(String::new()), Item::Object),
        other => Item::Nameless(other),
    }
}

fn item(raw: &RawValue) -> Item {
    let whole = match serde_json::from_str::<Value>(raw.get()) {
        Ok(value) => return object_or_nameless(value),
        // Without serde_json's position, which moves as the metadata grows: the same object
        // keeps the same reason (and is not rebuilt on each status write).
        Err(e) => e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    };
    let Ok(skeleton) = serde_json::from_str::<Skeleton>(raw.get()) else { return Item::Invalid(whole) };
    let mut value = json!({"metadata": skeleton.metadata});
    for (field, text) in [("apiVersion", skeleton.api_version), ("kind", skeleton.kind)] {
        if let Some(text) = text {
            value[field] = Value::String(text);
        }
    }
    // A status too deep to read is left out with the rest.
    if let Some(status) = skeleton.status.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok()) {
        value["status"] = status;
    }
    match Object::from_value(value) {
        Some(object) => Item::Unreadable(object, format!("cannot be read: {whole}")),
        None => Item::Invalid(whole),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        (1..depth).fold("{}".to_owned(), |inner, _| format!(r#"{{"a":{inner}}}"#))
    }

    #[test]
    fn a_page_reads_each_object_and_keeps_who_a_too_deep_one_is() {
        let deep = format!(r#"{{"metadata":{{"name":"deep","namespace":"ns","resourceVersion":"7","labels":{{"k":"v"}}}},"spec":{},"status":{{"ok":false}}}}"#, nested(200));
        let body = format!(
            r#"{{"kind":"List","metadata":{{"resourceVersion":"9","continue":"next"}},"items":[{{"metadata":{{"name":"fine"}}}},{deep},{{"nameless":1}}]}}"#
        );
        assert!(serde_json::from_str::<Value>(&body).is_err(), "serde_json cannot read this page whole");
        let read = page(body.as_bytes()).unwrap();
        assert_eq!((read.resource_version.as_str(), read.continue_token.as_str()), ("9", "next"));
        assert!(matches!(&read.items[0], Item::Object(o) if o.name() == "fine"));
        let Item::Unreadable(skeleton, why) = &read.items[1] else { panic!("the deep item") };
        let expected = json!({"metadata": {"name": "deep", "namespace": "ns", "resourceVersion": "7", "labels": {"k": "v"}}, "status": {"ok": false}});
        assert_eq!(skeleton.value(), expected.as_object().unwrap());
        assert_eq!(why, "cannot be read: recursion limit exceeded");
        assert!(matches!(&read.items[2], Item::Nameless(v) if v["nameless"] == 1));
        for not_a_list in [&b"[]"[..], br#"{"items":null}"#, br#"{"metadata":{}}"#, b"<html>"] {
            assert!(page(not_a_list).is_err(), "{}", String::from_utf8_lossy(not_a_list));
        }
        assert!(page(br#" {"items":[]}"#).unwrap().items.is_empty());
    }

    #[test]
    fn an_event_with_a_too_deep_object_keeps_its_type_and_who_it_is() {
        let line = format!(r#"{{"type":"DELETED","object":{{"kind":"AuthConfig","metadata":{{"name":"x","namespace":"ns"}},"spec":{},"status":{}}}}}"#, nested(300), nested(300));
        let deleted = event(line.as_bytes()).unwrap();
        assert_eq!(deleted.kind, "DELETED");
        let Item::Unreadable(skeleton, _) = deleted.object else { panic!("unreadable") };
        assert_eq!((skeleton.name(), skeleton.namespace(), skeleton.value()["kind"].as_str()), ("x", "ns", Some("AuthConfig")));
        assert!(skeleton.value().get("status").is_none(), "a status too deep is left out");
        let plain = event(br#"{"type":"ADDED","object":{"metadata":{"name":"y"}}}"#).unwrap();
        assert!(matches!(plain.object, Item::Object(o) if o.name() == "y"));
        assert!(event(b"not json").is_err());
        let error = event(br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#).unwrap();
        assert_eq!(error.object.into_value()["code"], 410);
        let bookmark = event(br#"{"type":"BOOKMARK","object":{"kind":"Secret","metadata":{"resourceVersion":"12"}}}"#).unwrap();
        assert_eq!(bookmark.object.resource_version(), Some("12"));
    }
}
