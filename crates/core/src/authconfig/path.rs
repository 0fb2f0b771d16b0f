//! gjson-lite: the subset of GJSON paths Authorino users write in `selector` fields.
//!
//! Supported: dotted keys (`context.request.http.headers.x-foo`), `\` escapes (`user.extra.a\.b`),
//! array indexes (`groups.0`), `#` (array length), `#.rest` (map `rest` over the elements,
//! missing results left out), `|` as a separator, the modifiers Authorino registers
//! (`@extract`, `@replace`, `@case`, `@base64`, `@strip`) plus `@this`, and `{…}` templates
//! (`Bearer {auth.identity.token}`) that interpolate paths into a string. Queries (`#(…)`) and
//! key wildcards are refused when parsed, so a config never silently matches nothing.

use std::fmt;

use base64::Engine;
use serde_json::Value;

/// A parsed selector: a path, or a template mixing text and `{path}` placeholders.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonSelector {
    raw: String,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Path(Vec<Segment>),
    Template(Vec<Part>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Path(Vec<Segment>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    /// `#` at the end: the array length.
    Count,
    /// `#` followed by more path: map over the elements.
    Each,
    Modifier(Modifier),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Modifier {
    This,
    Extract { sep: String, pos: usize },
    Replace { old: String, new: String },
    Upper,
    Lower,
    Base64Encode,
    Base64Decode,
    Strip,
}

impl fmt::Debug for JsonSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonSelector({:?})", self.raw)
    }
}

impl fmt::Display for JsonSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl JsonSelector {
    /// Parses a selector; the error says what is wrong (without the field name).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("selector may not be empty".to_owned());
        }
        let kind = if is_template(raw) { Kind::Template(parse_template(raw)?) } else { Kind::Path(parse_path(raw)?) };
        Ok(Self { raw: raw.to_owned(), kind })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// GJSON's `Get(...).Value()`: the value found (a template gives a string), or `None`.
    pub fn get(&self, data: &Value) -> Option<Value> {
        match &self.kind {
            Kind::Path(segments) => eval(data, segments),
            Kind::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Text(text) => out.push_str(text),
                        Part::Path(segments) => out.push_str(&to_gjson_string(eval(data, segments).as_ref())),
                    }
                }
                Some(Value::String(out))
            }
        }
    }

    /// GJSON's `Get(...).String()`: `""` when missing or null, strings unquoted, anything
    /// else as compact JSON.
    pub fn get_string(&self, data: &Value) -> String {
        to_gjson_string(self.get(data).as_ref())
    }

    /// GJSON's `Get(...).Array()`: the elements of an array, `[]` when missing or null,
    /// `[value]` for any other value.
    pub fn get_array(&self, data: &Value) -> Vec<Value> {
        match self.get(data) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => vec![other],
        }
    }
}

/// GJSON's `Result.String()` of a value: an object or array is its JSON text, which Authorino
/// has from Go's encoding/json.
pub fn to_gjson_string(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => go_json(other),
    }
}

/// JSON text with the escaping of Go's `json.Marshal`: `<`, `>`, `&`, U+2028 and U+2029 as
/// `\u003c`-style escapes (they occur only inside strings in JSON text, so escaping them in
/// the text is exact); keys come sorted, as Go's, from serde_json's ordered map. Numbers stay
/// serde_json's: a float read as `1.0` stays `1.0` where Go, holding a float64, writes `1`.
pub fn go_json(value: &Value) -> String {
    let text = value.to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Authorino's `IsTemplate`: some `{` is not the argument brace of a modifier (`@name:{`).
fn is_template(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'@' => {
                // skip `@name:{...}` (balanced) or `@name:arg`
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                if j + 1 < bytes.len() && bytes[j] == b':' && matches!(bytes[j + 1], b'{' | b'[') {
                    i = skip_json(bytes, j + 1);
                } else {
                    i = j;
                }
            }
            b'{' => return true,
            _ => i += 1,
        }
    }
    false
}

/// Index just past the balanced JSON value starting at `start` (`{` or `[`), strings honoured.
fn skip_json(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    bytes.len()
}

/// Authorino's `ReplaceJSONPlaceholders` parse: `\{` is a literal brace, `{path}` a placeholder
/// (nested braces belong to the path).
fn parse_template(raw: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut buffer = String::new();
    let mut escaping = false;
    let mut inside = false;
    let mut nested = 0usize;
    for c in raw.chars() {
        match c {
            '{' => {
                if escaping {
                    text.push(c);
                } else if inside {
                    buffer.push(c);
                    nested += 1;
                } else {
                    inside = true;
                }
                escaping = false;
            }
            '}' => {
                if inside {
                    if nested > 0 {
                        buffer.push(c);
                        nested -= 1;
                    } else {
                        if !text.is_empty() {
                            parts.push(Part::Text(std::mem::take(&mut text)));
                        }
                        if !buffer.is_empty() {
                            parts.push(Part::Path(parse_path(&buffer)?));
                            buffer.clear();
                        }
                        inside = false;
                    }
                } else {
                    text.push(c);
                }
                escaping = false;
            }
            '\\' => {
                if inside {
                    buffer.push(c);
                } else {
                    if escaping {
                        text.push(c);
                    }
                    escaping = !escaping;
                }
            }
            _ => {
                if inside {
                    buffer.push(c);
                } else {
                    text.push(c);
                }
                escaping = false;
            }
        }
    }
    if inside {
        return Err(format!("unterminated placeholder in template {raw:?}"));
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn parse_path(raw: &str) -> Result<Vec<Segment>, String> {
    let bytes = raw.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == b'@' {
            let (modifier, next) = parse_modifier(raw, i)?;
            segments.push(Segment::Modifier(modifier));
            i = next;
        } else {
            let mut key = String::new();
            let mut chars = raw[i..].char_indices();
            let mut end = raw.len();
            while let Some((offset, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            key.push(escaped);
                        }
                    }
                    '.' | '|' => {
                        end = i + offset;
                        break;
                    }
                    '*' | '?' => return Err(format!("wildcards are not supported in selector {raw:?}")),
                    _ => key.push(c),
                }
            }
            let literal = &raw[i..end];
            if literal.starts_with("#(") {
                return Err(format!("queries (#(...)) are not supported in selector {raw:?}"));
            }
            if key.is_empty() {
                return Err(format!("empty path component in selector {raw:?}"));
            }
            if literal == "#" {
                segments.push(if end < raw.len() { Segment::Each } else { Segment::Count });
            } else {
                segments.push(Segment::Key(key));
            }
            i = end;
        }
        if i >= bytes.len() {
            break;
        }
        // bytes[i] is a separator
        i += 1;
        if i >= bytes.len() {
            return Err(format!("selector {raw:?} ends with a separator"));
        }
    }
    Ok(segments)
}

/// Parses `@name` or `@name:arg` starting at `start` (the `@`); returns the index of the
/// separator after it (or the end).
fn parse_modifier(raw: &str, start: usize) -> Result<(Modifier, usize), String> {
    let bytes = raw.as_bytes();
    let mut j = start + 1;
    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
        j += 1;
    }
    let name = &raw[start + 1..j];
    let mut arg = "";
    let mut next = j;
    if j < bytes.len() && bytes[j] == b':' {
        let arg_start = j + 1;
        let arg_end = if arg_start < bytes.len() && matches!(bytes[arg_start], b'{' | b'[') {
            skip_json(bytes, arg_start)
        } else {
            let mut k = arg_start;
            while k < bytes.len() && !matches!(bytes[k], b'.' | b'|') {
                k += 1;
            }
            k
        };
        arg = &raw[arg_start..arg_end];
        next = arg_end;
    }
    if next < bytes.len() && !matches!(bytes[next], b'.' | b'|') {
        return Err(format!("unexpected character after modifier @{name} in selector {raw:?}"));
    }
    let json_arg = || -> Result<serde_json::Map<String, Value>, String> {
        if arg.is_empty() {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_str::<Value>(arg) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(format!("the argument of @{name} must be a JSON object in selector {raw:?}")),
        }
    };
    let modifier = match name {
        "this" => Modifier::This,
        "extract" => {
            let args = json_arg()?;
            let sep = args.get("sep").map_or_else(|| " ".to_owned(), |v| to_gjson_string(Some(v)));
            let pos = match args.get("pos") {
                None => 0,
                Some(v) => v
                    .as_u64()
                    .and_then(|p| usize::try_from(p).ok())
                    .ok_or_else(|| format!("@extract pos must be a non-negative integer in selector {raw:?}"))?,
            };
            Modifier::Extract { sep, pos }
        }
        "replace" => {
            let args = json_arg()?;
            let get = |k: &str| args.get(k).map(|v| to_gjson_string(Some(v))).unwrap_or_default();
            Modifier::Replace { old: get("old"), new: get("new") }
        }
        "case" => match arg {
            "upper" => Modifier::Upper,
            "lower" => Modifier::Lower,
            _ => return Err(format!("@case takes upper or lower in selector {raw:?}")),
        },
        "base64" => match arg {
            "encode" => Modifier::Base64Encode,
            "decode" => Modifier::Base64Decode,
            _ => return Err(format!("@base64 takes encode or decode in selector {raw:?}")),
        },
        "strip" => Modifier::Strip,
        _ => return Err(format!("unsupported modifier @{name} in selector {raw:?}")),
    };
    Ok((modifier, next))
}

fn eval(data: &Value, segments: &[Segment]) -> Option<Value> {
    let Some((first, rest)) = segments.split_first() else {
        return Some(data.clone());
    };
    match first {
        Segment::Key(key) => {
            let child = match data {
                Value::Object(map) => map.get(key)?,
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
            eval(child, rest)
        }
        Segment::Count => match data {
            Value::Array(items) => Some(Value::from(items.len())),
            _ => None,
        },
        Segment::Each => match data {
            Value::Array(items) => Some(Value::Array(items.iter().filter_map(|item| eval(item, rest)).collect())),
            _ => None,
        },
        Segment::Modifier(modifier) => eval(&apply(modifier, data)?, rest),
    }
}

fn apply(modifier: &Modifier, data: &Value) -> Option<Value> {
    let text = || to_gjson_string(Some(data));
    Some(match modifier {
        Modifier::This => data.clone(),
        Modifier::Extract { sep, pos } => {
            if sep.is_empty() {
                return None;
            }
            Value::String(text().split(sep.as_str()).nth(*pos)?.to_owned())
        }
        Modifier::Replace { old, new } => {
            let s = text();
            Value::String(if old.is_empty() { s } else { s.replace(old.as_str(), new) })
        }
        Modifier::Upper => match data {
            Value::String(s) => Value::String(s.to_uppercase()),
            other => other.clone(),
        },
        Modifier::Lower => match data {
            Value::String(s) => Value::String(s.to_lowercase()),
            other => other.clone(),
        },
        Modifier::Base64Encode => Value::String(base64::engine::general_purpose::STANDARD.encode(text())),
        Modifier::Base64Decode => {
            let s = text();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&s)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.trim_end_matches('=')))
                .ok()?;
            Value::String(String::from_utf8_lossy(&decoded).into_owned())
        }
        Modifier::Strip => match data {
            Value::String(s) => Value::String(s.chars().filter(|c| !c.is_control()).collect()),
            other => other.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(sel: &str, data: &Value) -> Option<Value> {
        JsonSelector::parse(sel).unwrap().get(data)
    }

    #[test]
    fn paths_indexes_counts_and_maps() {
        let data = json!({"a": {"b.c": 1, "list": [{"n": "x"}, {"n": "y"}, {"m": 1}]}, "s": "Bearer abc"});
        assert_eq!(get("a.b\\.c", &data), Some(json!(1)));
        assert_eq!(get("a.list.1.n", &data), Some(json!("y")));
        assert_eq!(get("a.list.#", &data), Some(json!(3)));
        assert_eq!(get("a.list.#.n", &data), Some(json!(["x", "y"])));
        assert_eq!(get("a.missing", &data), None);
        assert_eq!(get("s.@extract:{\"sep\":\" \",\"pos\":1}", &data), Some(json!("abc")));
        assert_eq!(get("s|@case:upper", &data), Some(json!("BEARER ABC")));
        assert_eq!(get("s.@base64:encode.@base64:decode", &data), Some(json!("Bearer abc")));
        assert_eq!(get("s.@replace:{\"old\":\"abc\",\"new\":\"x\"}", &data), Some(json!("Bearer x")));
        assert_eq!(get("id-{a.list.0.n}/{s}", &data), Some(json!("id-x/Bearer abc")));
        assert!(JsonSelector::parse("a.#(n==x)").is_err());
        assert!(JsonSelector::parse("a.*").is_err());
        assert!(JsonSelector::parse("a.@nope").is_err());
        assert!(JsonSelector::parse("a.").is_err());
        assert!(JsonSelector::parse("{a").is_err());
    }
}
