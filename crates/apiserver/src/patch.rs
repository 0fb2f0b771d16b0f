//! Patch documents: RFC 7386 JSON merge patch (also used for strategic merge patches and
//! server-side apply of these schema-less types) and RFC 6902 JSON patch.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The patch types kube-apiserver accepts, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type (parameters ignored); `None` is 415.
    pub fn from_media_type(media: &str) -> Option<Self> {
        match media.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// kube-apiserver's 415 for a PATCH with another Content-Type.
pub fn unsupported(media: &str) -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {media}"),
    )
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// A strategic merge patch without a schema: the `$patch`, `$retainKeys`,
/// `$setElementOrder/...` and `$deleteFromPrimitiveList/...` directives are honoured where
/// they make sense for plain maps and dropped otherwise; lists are replaced, as for the
/// types without merge keys.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(&Value::Object(patch.clone()));
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        map.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if let Some(list_key) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(remove)) = (map.get_mut(list_key), value) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() || value.get("$patch").and_then(Value::as_str) == Some("delete") {
            map.remove(key);
        } else {
            strategic(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The document without strategic-merge directives (for field validation and `replace`).
pub fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn json_patch_error(message: impl Into<String>) -> ApiError {
    // kube-apiserver reports a failed JSON patch as 422 Invalid... via a plain message; the
    // body is unprocessable, so 422 with reason Invalid.
    ApiError::new(422, "Invalid", message)
}

/// The reference tokens of a JSON pointer (RFC 6901).
fn pointer_tokens(pointer: &str) -> ApiResult<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(json_patch_error(format!("the server rejected our request due to an error in our request: invalid JSON pointer {pointer:?}")));
    };
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String], path: &str) -> ApiResult<&'a mut Value> {
    let mut current = doc;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(current)
}

fn missing(path: &str) -> ApiError {
    json_patch_error(format!("the server rejected our request due to an error in our request: doc is missing path: {path:?}"))
}

fn get<'a>(doc: &'a Value, path: &str) -> ApiResult<&'a Value> {
    let tokens = pointer_tokens(path)?;
    let mut current = doc;
    for token in &tokens {
        current = match current {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(current)
}

fn add(doc: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let index = if last == "-" { items.len() } else { last.parse::<usize>().map_err(|_| missing(path))? };
            if index > items.len() {
                return Err(missing(path));
            }
            items.insert(index, value);
        }
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Ok(std::mem::take(doc));
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(map) => map.remove(last).ok_or_else(|| missing(path)),
        Value::Array(items) => {
            let index = last.parse::<usize>().map_err(|_| missing(path))?;
            if index >= items.len() {
                return Err(missing(path));
            }
            Ok(items.remove(index))
        }
        _ => Err(missing(path)),
    }
}

/// Applies an RFC 6902 patch (add, remove, replace, move, copy, test).
pub fn json_patch(doc: &mut Value, patch: &Value) -> ApiResult<()> {
    let Value::Array(ops) = patch else {
        return Err(ApiError::bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch"));
    };
    for op in ops {
        let field = |name: &str| op.get(name).and_then(Value::as_str);
        let path = field("path").ok_or_else(|| json_patch_error("the server rejected our request due to an error in our request: operation missing path"))?;
        let value = || op.get("value").cloned().ok_or_else(|| json_patch_error(format!("the server rejected our request due to an error in our request: operation missing value for {path:?}")));
        let from = || field("from").ok_or_else(|| json_patch_error("the server rejected our request due to an error in our request: operation missing from"));
        match field("op").unwrap_or("") {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, value()?)?;
            }
            "move" => {
                let moved = remove(doc, from()?)?;
                add(doc, path, moved)?;
            }
            "copy" => {
                let copied = get(doc, from()?)?.clone();
                add(doc, path, copied)?;
            }
            "test" => {
                if *get(doc, path)? != value()? {
                    return Err(json_patch_error(format!(
                        "the server rejected our request due to an error in our request: testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(json_patch_error(format!(
                    "the server rejected our request due to an error in our request: unexpected kind of operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": [1]});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}, "new": {"x": 1}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "keep": [1], "new": {"x": 1}}));
    }

    #[test]
    fn strategic_drops_directives() {
        let mut doc = json!({"secrets": [{"name": "a"}], "metadata": {"labels": {"x": "1", "y": "2"}}, "tags": ["a", "b"]});
        strategic(
            &mut doc,
            &json!({"$setElementOrder/secrets": [{"name": "b"}], "secrets": [{"name": "b"}], "metadata": {"labels": {"y": null}},
                    "$deleteFromPrimitiveList/tags": ["a"]}),
        );
        assert_eq!(doc, json!({"secrets": [{"name": "b"}], "metadata": {"labels": {"x": "1"}}, "tags": ["b"]}));
        strategic(&mut doc, &json!({"metadata": {"labels": {"$patch": "replace", "z": "3"}}}));
        assert_eq!(doc["metadata"]["labels"], json!({"z": "3"}));
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let mut doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/metadata/labels/a", "value": "1"},
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/list/0", "value": 9},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "copy", "from": "/list", "path": "/copy"},
                {"op": "move", "from": "/copy", "path": "/moved"},
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"metadata": {"labels": {"b/c": "2"}}, "list": [9, 2, 3], "moved": [9, 2, 3]}));
        let err = json_patch(&mut doc, &json!([{"op": "test", "path": "/list/0", "value": 1}])).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut doc, &json!({"op": "add"})).is_err());
    }
}
