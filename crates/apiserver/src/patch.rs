//! Patch documents: RFC 7386 JSON merge patch (also used for strategic merge patches and
//! server-side apply of these schema-less types) and RFC 6902 JSON patch.

use serde_json::{Map, Value};
use tokenwarden_store::authority::{MAX_OBJECT_DEPTH, nesting_depth};

use crate::error::{ApiError, ApiResult};

/// kube-apiserver's `maxJSONPatchOperations`.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// kube-apiserver's `JSONPatchMaxCopyBytes` (3 MiB), which it sets as evanphx/json-patch's
/// `AccumulatedCopySizeLimit`: how much the `copy` operations of one patch may add, counted
/// as the copied values' compact JSON. Without it each copy can double the document.
const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

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
/// they make sense for plain maps and dropped otherwise. A list is replaced, as for the types
/// without merge keys, unless the patch shows it merges (see [`merge_list`]).
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
        } else if let Value::Array(items) = value {
            let order = match patch.get(&format!("$setElementOrder/{key}")) {
                Some(Value::Array(order)) => Some(order.as_slice()),
                _ => None,
            };
            let current = match map.get(key) {
                Some(Value::Array(current)) => current.as_slice(),
                _ => &[],
            };
            let merged = merge_list(current, items, order).unwrap_or_else(|| items.iter().filter(|item| !is_delete(item)).map(strip_directives).collect());
            map.insert(key.clone(), Value::Array(merged));
        } else {
            strategic(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn is_delete(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

/// A list the patch merges rather than replaces: kubectl apply and edit send, for a list with a
/// merge key (`secrets`, `containers`: `name`), `$setElementOrder/<list>` with every item's key
/// in the final order, the changed items, and `{"$patch": "delete", "name": …}` for removed
/// ones. Items are matched by the merge key those entries name; items only the server has stay,
/// after the ordered ones. `None` when the patch shows no merge (no order, no delete): the list
/// is then replaced.
fn merge_list(current: &[Value], items: &[Value], order: Option<&[Value]>) -> Option<Vec<Value>> {
    let named_by = |entry: &Value| entry.as_object().and_then(|m| m.keys().find(|k| !k.starts_with('$')).cloned());
    let merge_key = order.and_then(|order| order.iter().find_map(named_by)).or_else(|| items.iter().filter(|i| is_delete(i)).find_map(named_by))?;
    let key_of = |item: &Value| item.get(&merge_key).cloned();
    let deleted: Vec<Value> = items.iter().filter(|i| is_delete(i)).filter_map(key_of).collect();
    let changed: Vec<&Value> = items.iter().filter(|i| !is_delete(i)).collect();
    // Each changed item merged onto the current one of its key, or as it is if new.
    let updated = |item: &Value| {
        let mut merged = current.iter().find(|c| key_of(c).is_some() && key_of(c) == key_of(item)).cloned().unwrap_or(Value::Null);
        strategic(&mut merged, item);
        merged
    };
    let mut result: Vec<Value> = Vec::new();
    let mut placed: Vec<Value> = Vec::new();
    for entry in order.unwrap_or_default() {
        let Some(key) = key_of(entry) else { continue };
        if deleted.contains(&key) || placed.contains(&key) {
            continue;
        }
        if let Some(item) = changed.iter().find(|i| key_of(i).as_ref() == Some(&key)) {
            result.push(updated(item));
        } else if let Some(item) = current.iter().find(|c| key_of(c).as_ref() == Some(&key)) {
            result.push(item.clone());
        } else {
            continue;
        }
        placed.push(key);
    }
    // Without an order, or not named in it: the server's items in their order, then new ones.
    for item in current {
        let key = key_of(item);
        if key.as_ref().is_some_and(|k| deleted.contains(k) || placed.contains(k)) {
            continue;
        }
        let change = changed.iter().find(|i| key.is_some() && key_of(i) == key);
        result.push(change.map_or_else(|| item.clone(), |change| updated(change)));
        placed.extend(key);
    }
    for item in changed {
        if key_of(item).is_none_or(|k| !placed.contains(&k)) {
            result.push(updated(item));
        }
    }
    Some(result)
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

/// The document stays as shallow as the store can read back, so that nothing applying the
/// patch (copies, comparisons, drops: all recursive) goes deeper either. A value added under
/// `tokens` pointer tokens nests `tokens` levels below the document's top.
fn within_depth(op: &str, path: &str, tokens: usize, value: &Value) -> ApiResult<()> {
    let depth = tokens + nesting_depth(value);
    if depth > MAX_OBJECT_DEPTH {
        return Err(json_patch_error(format!(
            "the server rejected our request due to an error in our request: {op} to {path:?} would nest the object {depth} levels deep, over the {MAX_OBJECT_DEPTH} it may nest"
        )));
    }
    Ok(())
}

fn add(doc: &mut Value, op: &str, path: &str, value: Value) -> ApiResult<()> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        within_depth(op, path, 0, &value)?;
        *doc = value;
        return Ok(());
    };
    let parent = parent_mut(doc, parents, path)?;
    within_depth(op, path, tokens.len(), &value)?;
    match parent {
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
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}", ops.len()),
        ));
    }
    let mut copied = 0usize;
    for op in ops {
        let field = |name: &str| op.get(name).and_then(Value::as_str);
        let path = field("path").ok_or_else(|| json_patch_error("the server rejected our request due to an error in our request: operation missing path"))?;
        let value = || op.get("value").cloned().ok_or_else(|| json_patch_error(format!("the server rejected our request due to an error in our request: operation missing value for {path:?}")));
        let from = || field("from").ok_or_else(|| json_patch_error("the server rejected our request due to an error in our request: operation missing from"));
        match field("op").unwrap_or("") {
            "add" => add(doc, "add", path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, "replace", path, value()?)?;
            }
            "move" => {
                let moved = remove(doc, from()?)?;
                add(doc, "move", path, moved)?;
            }
            "copy" => {
                let source = get(doc, from()?)?;
                copied = copied.saturating_add(json_len(source));
                if copied > MAX_JSON_PATCH_COPY_BYTES {
                    return Err(json_patch_error(format!(
                        "the server rejected our request due to an error in our request: Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                    )));
                }
                let source = source.clone();
                add(doc, "copy", path, source)?;
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

/// The length of `value`'s compact JSON, as evanphx/json-patch counts a copy.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
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
        // `secrets` merges by name (the order names it): b joins, a (not deleted) stays.
        assert_eq!(doc, json!({"secrets": [{"name": "b"}, {"name": "a"}], "metadata": {"labels": {"x": "1"}}, "tags": ["b"]}));
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

    #[test]
    fn json_patch_limits() {
        assert_eq!(json_len(&json!({"a": [1, "é\""], "b": null})), r#"{"a":[1,"é\""],"b":null}"#.len());
        let mut doc = json!({"x": {}});
        let too_many = json_patch(&mut doc, &Value::Array(vec![json!({"op": "test", "path": "/x", "value": {}}); 10_001])).unwrap_err();
        assert_eq!((too_many.code, too_many.reason), (413, "RequestEntityTooLarge"));
        // Each copy of `/x` into itself nests it one level deeper, until the limit.
        let copies: Vec<Value> = (0..200).map(|_| json!({"op": "copy", "from": "/x", "path": "/x/x"})).collect();
        let too_deep = json_patch(&mut doc, &Value::Array(copies)).unwrap_err();
        assert_eq!(too_deep.code, 422);
        assert!(too_deep.message.ends_with(r#"copy to "/x/x" would nest the object 126 levels deep, over the 125 it may nest"#), "{}", too_deep.message);
        assert_eq!(nesting_depth(&doc), MAX_OBJECT_DEPTH);
    }
}
