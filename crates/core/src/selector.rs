//! Label and field selectors with Kubernetes syntax and semantics.
//!
//! Label selectors (`labels.Parse`): comma-separated requirements `a=b`, `a==b`, `a!=b`,
//! `a in (x,y)`, `a notin (x)`, `a` (exists), `!a` (does not exist), `a>1`, `a<1`;
//! whitespace between tokens is ignored. Field selectors (`fields.ParseSelector`):
//! comma-separated `path=value`, `path==value`, `path!=value`, where `\,`, `\=` and `\\`
//! escape those characters in values. The empty string selects everything.

use std::fmt;

use crate::error::go_quote;
use crate::{Error, Object, names};

/// How a label requirement compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelOp {
    /// `a=b`, `a==b`, `a in (b,c)`: present with one of the values.
    In(Vec<String>),
    /// `a!=b`, `a notin (b,c)`: absent, or present with none of the values.
    NotIn(Vec<String>),
    /// `a`
    Exists,
    /// `!a`
    DoesNotExist,
    /// `a>5`: present, an integer, greater.
    GreaterThan(i64),
    /// `a<5`: present, an integer, less.
    LessThan(i64),
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
}

impl LabelRequirement {
    pub fn matches(&self, object: &Object) -> bool {
        let value = object.label(&self.key);
        match &self.op {
            LabelOp::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
            LabelOp::NotIn(values) => value.is_none_or(|v| values.iter().all(|x| x != v)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::GreaterThan(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            LabelOp::LessThan(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        }
    }
}

/// A parsed label selector: all requirements must match. `Default` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses a selector as `kubectl -l` / `?labelSelector=` take it.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let tokens = lex(input)?;
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek() == &Token::End {
            return Ok(Self::default());
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                Token::End => break,
                Token::Comma => {}
                other => return Err(label_error(format!("found '{other}', expected: ',' or 'end of string'"))),
            }
        }
        Ok(Self { requirements })
    }

    /// A selector from requirements built in code.
    pub fn from_requirements(requirements: Vec<LabelRequirement>) -> Self {
        Self { requirements }
    }

    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, object: &Object) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }
}

fn label_error(detail: impl fmt::Display) -> Error {
    Error::BadRequest(format!("unable to parse requirement: {detail}"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    In,
    NotIn,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Comma,
    Open,
    Close,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Ident(s) => s.as_str(),
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Not => "!",
            Self::Eq => "=",
            Self::DoubleEq => "==",
            Self::NotEq => "!=",
            Self::Gt => ">",
            Self::Lt => "<",
            Self::Comma => ",",
            Self::Open => "(",
            Self::Close => ")",
            Self::End => "",
        };
        f.write_str(s)
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '>' | '<' | ',' | '(' | ')')
}

fn lex(input: &str) -> Result<Vec<Token>, Error> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next_is_eq = chars.peek().is_some_and(|&(_, n)| n == '=');
            let token = match c {
                '!' if next_is_eq => {
                    chars.next();
                    Token::NotEq
                }
                '!' => Token::Not,
                '=' if next_is_eq => {
                    chars.next();
                    Token::DoubleEq
                }
                '=' => Token::Eq,
                '>' => Token::Gt,
                '<' => Token::Lt,
                ',' => Token::Comma,
                '(' => Token::Open,
                _ => Token::Close,
            };
            tokens.push(token);
            continue;
        }
        let mut end = input.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                end = i;
                break;
            }
            chars.next();
        }
        let word = input.get(start..end).unwrap_or_default();
        tokens.push(match word {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word.to_owned()),
        });
    }
    tokens.push(Token::End);
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.pos = self.pos.saturating_add(1);
        token
    }

    fn key(&mut self) -> Result<String, Error> {
        match self.next() {
            Token::Ident(key) => {
                validate_key(&key)?;
                Ok(key)
            }
            other => Err(label_error(format!("found '{other}', expected: identifier"))),
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, Error> {
        if self.peek() == &Token::Not {
            self.next();
            let key = self.key()?;
            return Ok(LabelRequirement { key, op: LabelOp::DoesNotExist });
        }
        let key = self.key()?;
        let op = match self.peek().clone() {
            Token::Comma | Token::End => LabelOp::Exists,
            Token::Eq | Token::DoubleEq => {
                self.next();
                LabelOp::In(vec![self.single_value()?])
            }
            Token::NotEq => {
                self.next();
                LabelOp::NotIn(vec![self.single_value()?])
            }
            Token::In => {
                self.next();
                LabelOp::In(self.value_set()?)
            }
            Token::NotIn => {
                self.next();
                LabelOp::NotIn(self.value_set()?)
            }
            Token::Gt => {
                self.next();
                LabelOp::GreaterThan(self.integer()?)
            }
            Token::Lt => {
                self.next();
                LabelOp::LessThan(self.integer()?)
            }
            other => {
                return Err(label_error(format!(
                    "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        };
        Ok(LabelRequirement { key, op })
    }

    /// The value after `=`, `==` or `!=`; empty when the requirement ends there.
    fn single_value(&mut self) -> Result<String, Error> {
        match self.peek().clone() {
            Token::Comma | Token::End => Ok(String::new()),
            Token::Ident(value) => {
                self.next();
                validate_value(&value)?;
                Ok(value)
            }
            // `in`/`notin` are plain values after an operator.
            Token::In | Token::NotIn => Ok(self.next().to_string()),
            other => Err(label_error(format!("found '{other}', expected: identifier"))),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, Error> {
        match self.next() {
            Token::Open => {}
            other => return Err(label_error(format!("found '{other}', expected: '('"))),
        }
        let mut values = Vec::new();
        loop {
            let value = match self.peek().clone() {
                Token::Ident(value) => {
                    self.next();
                    validate_value(&value)?;
                    value
                }
                Token::In | Token::NotIn => self.next().to_string(),
                Token::Comma | Token::Close => String::new(),
                other => return Err(label_error(format!("found '{other}', expected: ',', ')' or identifier"))),
            };
            values.push(value);
            match self.next() {
                Token::Comma => {}
                Token::Close => return Ok(values),
                other => return Err(label_error(format!("found '{other}', expected: ',' or ')'"))),
            }
        }
    }

    fn integer(&mut self) -> Result<i64, Error> {
        match self.next() {
            Token::Ident(value) => value.parse::<i64>().map_err(|_| {
                label_error(format!("for 'Gt', 'Lt' operators, the value must be an integer: {}", go_quote(&value)))
            }),
            other => Err(label_error(format!("found '{other}', expected: identifier"))),
        }
    }
}

/// kube's `validateLabelKey`: every problem of `IsQualifiedName`, joined by `; `.
fn validate_key(key: &str) -> Result<(), Error> {
    let problems = names::qualified_name_problems(key);
    if problems.is_empty() {
        return Ok(());
    }
    Err(label_error(format!("key: Invalid value: {}: {}", go_quote(key), problems.join("; "))))
}

/// kube's `validateLabelValue`, with `IsValidLabelValue`'s problems joined by `; `.
fn validate_value(value: &str) -> Result<(), Error> {
    let problems = names::label_value_problems(value);
    if problems.is_empty() {
        return Ok(());
    }
    Err(label_error(format!("values[0]: Invalid value: {}: {}", go_quote(value), problems.join("; "))))
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// A `.`-separated path such as `metadata.name` or `spec.nodeName`.
    pub field: String,
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

impl FieldRequirement {
    pub fn matches(&self, object: &Object) -> bool {
        let actual = match self.field.as_str() {
            "metadata.name" => object.name(),
            "metadata.namespace" => object.namespace(),
            // The booleans of kube's field sets (Pods', Nodes'): `true` or `false`, unset `false`.
            path @ ("spec.hostNetwork" | "spec.unschedulable") => {
                let mut parts = path.split('.');
                let first = parts.next().and_then(|part| object.value().get(part));
                let value = parts.fold(first, |value, part| value.and_then(|v| v.get(part)));
                if value.and_then(serde_json::Value::as_bool) == Some(true) { "true" } else { "false" }
            }
            path => object.str_at(path).unwrap_or(""),
        };
        (actual == self.value) != self.negated
    }
}

/// A parsed field selector: all terms must match. `Default` matches everything. A field
/// that is absent (or not a string) reads as `""`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses a selector as `?fieldSelector=` takes it.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let mut requirements = Vec::new();
        for part in split_terms(input) {
            if part.trim().is_empty() {
                continue;
            }
            let Some((field, op, value)) = split_term(part) else {
                return Err(Error::BadRequest(format!("invalid selector: '{input}'; can't understand '{part}'")));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(Error::BadRequest(format!("invalid selector: '{input}'; can't understand '{part}'")));
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                value: unescape(value.trim())?,
                negated: op == "!=",
            });
        }
        Ok(Self { requirements })
    }

    /// A selector from requirements built in code.
    pub fn from_requirements(requirements: Vec<FieldRequirement>) -> Self {
        Self { requirements }
    }

    /// Each term's field through `convert`, in order, as kube's `Selector.Transform` runs a
    /// kind's `ConvertFieldLabel`: the field it selects, or the error the request gets.
    pub fn convert(mut self, convert: impl Fn(&str) -> Result<String, Error>) -> Result<Self, Error> {
        for requirement in &mut self.requirements {
            requirement.field = convert(&requirement.field)?;
        }
        Ok(self)
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value `field` must equal (`field=x` or `==`, among other terms): kube's
    /// `RequiresExactMatch`.
    pub fn requires_exact(&self, field: &str) -> Option<&str> {
        self.requirements.iter().find(|r| r.field == field && !r.negated).map(|r| r.value.as_str())
    }

    /// Matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, object: &Object) -> bool {
        self.requirements.iter().all(|r| r.matches(object))
    }
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(input.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    terms.push(input.get(start..).unwrap_or_default());
    terms
}

/// The first `!=`, `==` or `=` (not escaped) splits a term.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = term.get(i..)?;
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((term.get(..i)?, op, term.get(i + op.len()..)?));
            }
        }
    }
    None
}

fn unescape(value: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(other) => {
                    return Err(Error::BadRequest(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )));
                }
                None => {
                    return Err(Error::BadRequest("invalid field selector: invalid escape sequence: \\".to_owned()));
                }
            },
            ',' | '=' => {
                return Err(Error::BadRequest(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(labels: serde_json::Value) -> Object {
        Object::from_value(json!({
            "metadata": {"name": "n1", "namespace": "ns1", "labels": labels},
            "spec": {"nodeName": "node-a"},
        }))
        .unwrap()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn empty_matches_everything() {
        let o = obj(json!({"a": "b"}));
        assert!(sel("").matches(&o));
        assert!(sel("   ").matches(&o));
        assert!(sel("").is_empty());
        assert!(LabelSelector::default().matches(&o));
        assert!(FieldSelector::parse("").unwrap().matches(&o));
        assert!(FieldSelector::default().matches(&o));
    }

    #[test]
    fn label_operators() {
        let o = obj(json!({"app": "web", "tier": "front", "n": "5"}));
        for s in [
            "app=web",
            "app==web",
            "app = web",
            "app!=db",
            "missing!=x",
            "app in (web,db)",
            "app in ( db , web )",
            "app notin (db)",
            "missing notin (db)",
            "app",
            "!missing",
            " ! missing ",
            "app=web,tier=front",
            "app=web, tier in (front), !x",
            "n>4",
            "n<6",
            "example.com/x notin (y)",
        ] {
            assert!(sel(s).matches(&o), "{s} should match");
        }
        for s in [
            "app=db",
            "app!=web",
            "app in (db)",
            "app notin (web,x)",
            "missing",
            "!app",
            "app=web,tier=back",
            "missing=x",
            "n>5",
            "n<5",
            "app>1",
            "missing in (a)",
        ] {
            assert!(!sel(s).matches(&o), "{s} should not match");
        }
    }

    #[test]
    fn empty_values() {
        let o = obj(json!({"e": ""}));
        assert!(sel("e=").matches(&o));
        assert!(sel("e in ()").matches(&o));
        assert!(sel("e in (x,)").matches(&o));
        assert!(!sel("e!=").matches(&o));
        assert_eq!(
            sel("a in (x, y)").requirements(),
            &[LabelRequirement { key: "a".into(), op: LabelOp::In(vec!["x".into(), "y".into()]) }]
        );
    }

    #[test]
    fn label_parse_errors() {
        for s in [
            "a=b,",
            ",a",
            "a in b",
            "a in (b",
            "a in (b c)",
            "a b",
            "=b",
            "a=b=c",
            "a===b",
            "a>x",
            "!",
            "!a=b",
            "a b=c",
            "a=(b)",
            "bad key=x",
            "a=b c",
            "-a=b",
            "a=-b",
            "Example.com/a=b",
            "/a",
            "a/",
            "a=0123456789012345678901234567890123456789012345678901234567890123",
        ] {
            match LabelSelector::parse(s) {
                Err(Error::BadRequest(msg)) => {
                    assert!(msg.starts_with("unable to parse requirement: "), "{s}: {msg}");
                }
                other => panic!("{s}: expected BadRequest, got {other:?}"),
            }
        }
        let err = LabelSelector::parse("a b").unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        // Every problem of a key, joined as kube's validateLabelKey joins them.
        let err = LabelSelector::parse("a/=b").unwrap_err().to_string();
        assert_eq!(
            err,
            "unable to parse requirement: key: Invalid value: \"a/\": name part must be non-empty; name part must consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
    }

    #[test]
    fn field_selectors() {
        let o = obj(json!({}));
        let f = |s: &str| FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(f("metadata.name=n1").matches(&o));
        assert!(f("metadata.name==n1,metadata.namespace=ns1").matches(&o));
        assert!(f("metadata.namespace!=other").matches(&o));
        assert!(f("spec.nodeName=node-a").matches(&o));
        assert!(f("spec.missing=").matches(&o));
        assert!(f("spec.missing!=x").matches(&o));
        assert!(!f("metadata.name=n2").matches(&o));
        assert!(!f("metadata.name!=n1").matches(&o));
        assert!(!f("metadata.name=n1,spec.nodeName=b").matches(&o));
        assert_eq!(
            f(r"a=x\,y\=z\\").requirements(),
            &[FieldRequirement { field: "a".into(), value: r"x,y=z\".into(), negated: false }]
        );
        let pod = Object::from_value(json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true}})).unwrap();
        assert!(f("spec.hostNetwork=true,spec.unschedulable=false").matches(&pod));
        assert!(!f("spec.hostNetwork=false").matches(&pod));
        assert!(f("spec.hostNetwork=false").matches(&o), "unset reads false");
    }

    #[test]
    fn field_conversion() {
        let only_name = |field: &str| match field {
            "metadata.name" => Ok(field.to_owned()),
            "old.name" => Ok("metadata.name".to_owned()),
            _ => Err(Error::BadRequest(format!("field label not supported: {field}"))),
        };
        let converted = FieldSelector::parse("old.name=n1").unwrap().convert(only_name).unwrap();
        assert!(converted.matches(&obj(json!({}))));
        assert_eq!(converted.requirements()[0].field, "metadata.name");
        let err = FieldSelector::parse("metadata.name=a,x!=b,y=c").unwrap().convert(only_name).unwrap_err();
        assert_eq!((err.code(), err.to_string()), (400, "field label not supported: x".to_owned()), "the first refused term");
        assert!(FieldSelector::parse("").unwrap().convert(only_name).unwrap().is_empty());
    }

    #[test]
    fn field_parse_errors() {
        let err = FieldSelector::parse("metadata.name=a,foo").unwrap_err();
        assert_eq!(err.to_string(), "invalid selector: 'metadata.name=a,foo'; can't understand 'foo'");
        assert_eq!(err.code(), 400);
        for s in ["=x", "a=b=c", r"a=\x", "a=b\\", "noop"] {
            assert!(matches!(FieldSelector::parse(s), Err(Error::BadRequest(_))), "{s}");
        }
    }

    proptest! {
        #[test]
        fn label_parse_never_panics(s in "\\PC{0,60}") {
            let _ = LabelSelector::parse(&s);
        }

        #[test]
        fn label_parse_never_panics_on_selector_alphabet(s in "[a-z!=,() <>/.\\-]{0,40}") {
            if let Ok(selector) = LabelSelector::parse(&s) {
                let _ = selector.matches(&obj(json!({"a": "b"})));
            }
        }

        #[test]
        fn field_parse_never_panics(s in "\\PC{0,60}") {
            if let Ok(selector) = FieldSelector::parse(&s) {
                let _ = selector.matches(&obj(json!({})));
            }
        }
    }
}
