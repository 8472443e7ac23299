//! The one label-matcher language of gpuwatch: rule scopes, silences,
//! inhibition, webhook filters and the API's `label=` filters all use
//! [`Matcher`], with Alertmanager's four operators `=`, `!=`, `=~`, `!~`.
//!
//! - Regexes are compiled once, when a matcher is built, and anchored as
//!   Alertmanager anchors them (`^(?:re)$`); a regex that does not compile
//!   refuses the matcher, so it never reaches the database.
//! - A label that is missing reads as "", as in Alertmanager.
//! - Text is Alertmanager's syntax ([`parse_matchers`]):
//!   `{alertname="X", severity=~"warn|crit"}`, braces optional, values
//!   quoted or not.
//! - JSON is either gpuwatch's `{"name", "op", "value"}` (op defaults to
//!   `=`), Alertmanager's silence matcher `{"name", "value", "isRegex",
//!   "isEqual"}` (isEqual defaults to true), or one matcher as text.
//!   [`deserialize_list`] also takes a whole list as one text. Matchers are
//!   always written back as `{"name", "op", "value"}`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A matcher that cannot be built; the message names the matcher and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MatcherError(String);

/// How a label's value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    NotEq,
    /// `=~`: the whole value matches the regex.
    Re,
    /// `!~`: the whole value does not match the regex.
    NotRe,
}

impl MatchOp {
    /// Every operator, longest spelling first (the order a parser tries them in).
    pub const ALL: [MatchOp; 4] = [MatchOp::Re, MatchOp::NotRe, MatchOp::NotEq, MatchOp::Eq];

    /// The operator as written: `=`, `!=`, `=~` or `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }

    /// Whether the operator takes a regex.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Re | MatchOp::NotRe)
    }

    /// Whether a value that satisfies the comparison is wanted (`=`, `=~`).
    pub fn is_positive(self) -> bool {
        matches!(self, MatchOp::Eq | MatchOp::Re)
    }
}

impl std::str::FromStr for MatchOp {
    type Err = MatcherError;

    fn from_str(s: &str) -> Result<Self, MatcherError> {
        MatchOp::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| MatcherError(format!("operator {s:?} is not one of =, !=, =~, !~")))
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One label matcher: `name op value`.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex of `=~` and `!~`, compiled once.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher; fails on an empty name or a regex that does not compile.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() {
            return Err(MatcherError(format!(
                "matcher {op}{value:?} has no label name; write name{op}\"value\""
            )));
        }
        let re = if op.is_regex() {
            let anchored = format!("^(?:{value})$");
            Some(Regex::new(&anchored).map_err(|e| {
                MatcherError(format!(
                    "matcher {name}{op}{value:?}: the regex does not compile: {}",
                    one_line(&e.to_string())
                ))
            })?)
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `name="value"`, which cannot fail for a non-empty name.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Result<Self, MatcherError> {
        Matcher::new(name, MatchOp::Eq, value)
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or regex, as written (not anchored).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label's value (`None`: the label is missing, read as "")
    /// satisfies this matcher.
    pub fn matches_value(&self, v: Option<&str>) -> bool {
        let v = v.unwrap_or("");
        match (&self.re, self.op) {
            (Some(re), MatchOp::Re) => re.is_match(v),
            (Some(re), MatchOp::NotRe) => !re.is_match(v),
            (_, MatchOp::NotEq) => v != self.value,
            _ => v == self.value,
        }
    }

    /// Whether a label set satisfies this matcher.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str))
    }
}

/// Whether every matcher holds (an empty list holds for every label set:
/// callers refuse empty lists where that would mean "everything").
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

/// `s` as a regex that matches exactly `s` (for `=~` over a set of values).
pub fn escape(s: &str) -> String {
    regex::escape(s)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses Alertmanager's matcher syntax: `{a="b", c=~"d|e"}`, or the same
/// without braces (`a=b, c!=d`); values quoted (with `\"`, `\\`, `\n`
/// escapes) or not; a trailing comma is allowed.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    let t = text.trim();
    let inner = match (t.strip_prefix('{'), t.ends_with('}')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (Some(_), false) => {
            return Err(MatcherError(format!(
                "matchers {text:?} open a {{ that is not closed"
            )))
        }
        (None, _) => t,
    };
    split_outside_quotes(inner)?
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(parse_matcher)
        .collect()
}

/// Parses one matcher, e.g. `severity=~"warning|critical"`.
pub fn parse_matcher(text: &str) -> Result<Matcher, MatcherError> {
    let t = text.trim();
    let (name, rest) = if let Some(q) = t.strip_prefix('"') {
        let (name, len) = unquote(q, text)?;
        (Cow::Owned(name), &q[len..])
    } else {
        let end = t
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')))
            .unwrap_or(t.len());
        (Cow::Borrowed(&t[..end]), &t[end..])
    };
    let rest = rest.trim_start();
    let Some(op) = MatchOp::ALL
        .into_iter()
        .find(|op| rest.starts_with(op.as_str()))
    else {
        return Err(MatcherError(format!(
            "label matcher {t:?} has no operator; write key=value, key!=value, key=~regex or key!~regex"
        )));
    };
    let raw = rest[op.as_str().len()..].trim();
    let value = match raw.strip_prefix('"') {
        Some(q) => {
            let (v, len) = unquote(q, text)?;
            if !q[len..].trim().is_empty() {
                return Err(MatcherError(format!(
                    "label matcher {t:?} has text after its quoted value"
                )));
            }
            v
        }
        None => raw.to_string(),
    };
    Matcher::new(name.into_owned(), op, value)
}

/// Splits at commas that are not inside double quotes.
fn split_outside_quotes(s: &str) -> Result<Vec<&str>, MatcherError> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(MatcherError(format!(
            "matchers {s:?} have a quote that is not closed"
        )));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Reads a quoted string whose opening quote is already consumed; returns
/// the text and the bytes consumed, closing quote included.
fn unquote(s: &str, whole: &str) -> Result<(String, usize), MatcherError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(MatcherError(format!(
        "label matcher {:?} has a quote that is not closed",
        whole.trim()
    )))
}

/// The JSON object forms of one matcher.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Object {
    name: String,
    value: String,
    #[serde(default)]
    op: Option<String>,
    #[serde(default, rename = "isRegex")]
    is_regex: Option<bool>,
    #[serde(default, rename = "isEqual")]
    is_equal: Option<bool>,
}

impl Object {
    fn build(self) -> Result<Matcher, MatcherError> {
        let op = match (self.op, self.is_regex, self.is_equal) {
            (Some(op), None, None) => op
                .parse::<MatchOp>()
                .map_err(|e| MatcherError(format!("matcher on {:?}: {e}", self.name)))?,
            (None, re, eq) => match (re.unwrap_or(false), eq.unwrap_or(true)) {
                (false, true) => MatchOp::Eq,
                (false, false) => MatchOp::NotEq,
                (true, true) => MatchOp::Re,
                (true, false) => MatchOp::NotRe,
            },
            (Some(_), _, _) => {
                return Err(MatcherError(format!(
                    "matcher on {:?}: give either op or isRegex/isEqual, not both",
                    self.name
                )))
            }
        };
        Matcher::new(self.name, op, self.value)
    }
}

/// One matcher, as JSON gives it: an object or Alertmanager text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Text(String),
    Object(serde_json::Map<String, serde_json::Value>),
}

fn from_repr(r: Repr) -> Result<Matcher, MatcherError> {
    match r {
        Repr::Text(t) => parse_matcher(&t),
        Repr::Object(o) => serde_json::from_value::<Object>(serde_json::Value::Object(o))
            .map_err(|e| {
                MatcherError(format!(
                    "a matcher is {{\"name\", \"op\", \"value\"}} or {{\"name\", \"value\", \"isRegex\", \"isEqual\"}}: {e}"
                ))
            })?
            .build(),
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = Repr::deserialize(d).map_err(|_| {
            D::Error::custom("a matcher is an object {\"name\", \"op\", \"value\"} or text such as \"severity=~warning|critical\"")
        })?;
        from_repr(r).map_err(D::Error::custom)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            name: &'a str,
            op: &'a str,
            value: &'a str,
        }
        Out {
            name: &self.name,
            op: self.op.as_str(),
            value: &self.value,
        }
        .serialize(s)
    }
}

/// A list of matchers as JSON gives it: an array of matchers, or one text in
/// Alertmanager's syntax (`"{host=\"h1\", gpu=~\"0|1\"}"`). For
/// `#[serde(deserialize_with = "...")]`.
pub fn deserialize_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Matcher>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Text(String),
        Items(Vec<serde_json::Value>),
    }
    match List::deserialize(d).map_err(|_| {
        D::Error::custom("matchers are a list of matchers or one text such as {alertname=\"X\"}")
    })? {
        List::Text(t) => parse_matchers(&t).map_err(D::Error::custom),
        List::Items(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value::<Matcher>(v)
                    .map_err(|e| D::Error::custom(format!("[{i}]: {e}")))
            })
            .collect(),
    }
}

/// The JSON Schema of the object form (text is accepted too).
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct MatcherSchema {
    /// Label name.
    name: String,
    /// `=` (default), `!=`, `=~` or `!~`; or give Alertmanager's isRegex/isEqual.
    op: Option<String>,
    /// Value, or an (anchored) regex for `=~` and `!~`.
    value: String,
    /// Alertmanager's form: a regex matcher.
    #[schemars(rename = "isRegex")]
    is_regex: Option<bool>,
    /// Alertmanager's form: false negates (default true).
    #[schemars(rename = "isEqual")]
    is_equal: Option<bool>,
}

impl schemars::JsonSchema for Matcher {
    fn schema_name() -> Cow<'static, str> {
        "Matcher".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        MatcherSchema::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators_compare_and_missing_labels_read_as_empty() {
        let l = labels(&[("host", "h1"), ("severity", "warning")]);
        let m = |op, v: &str| Matcher::new("severity", op, v).unwrap();
        assert!(m(MatchOp::Eq, "warning").matches(&l));
        assert!(m(MatchOp::NotEq, "critical").matches(&l));
        assert!(m(MatchOp::Re, "warn.*|crit").matches(&l));
        assert!(!m(MatchOp::NotRe, "warning|critical").matches(&l));
        let gpu = |op, v: &str| Matcher::new("gpu", op, v).unwrap();
        assert!(gpu(MatchOp::Eq, "").matches(&l));
        assert!(gpu(MatchOp::NotEq, "0").matches(&l));
        assert!(!gpu(MatchOp::Eq, "0").matches(&l));
        assert!(gpu(MatchOp::Re, ".*").matches(&l));
    }

    #[test]
    fn regexes_are_anchored_as_alertmanager_anchors_them() {
        let m = Matcher::new("host", MatchOp::Re, "h1|h2").unwrap();
        assert!(m.matches_value(Some("h2")));
        assert!(!m.matches_value(Some("h12")), "not a substring match");
        assert!(!m.matches_value(Some("xh1")));
        let e = Matcher::new("host", MatchOp::Re, "(").unwrap_err();
        assert!(e.to_string().contains("host=~\"(\""), "{e}");
        assert!(e.to_string().contains("does not compile"), "{e}");
    }

    #[test]
    fn alertmanager_text_with_and_without_braces() {
        let ms =
            parse_matchers(r#"{alertname="Gpu Hot", severity=~"warn|crit", host!="h,1"}"#).unwrap();
        let got: Vec<String> = ms.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                r#"alertname="Gpu Hot""#,
                r#"severity=~"warn|crit""#,
                r#"host!="h,1""#
            ]
        );
        let ms = parse_matchers("a=b, c!=d, e!~f.*,").unwrap();
        let ops: Vec<MatchOp> = ms.iter().map(Matcher::op).collect();
        assert_eq!(ops, [MatchOp::Eq, MatchOp::NotEq, MatchOp::NotRe]);
        assert_eq!(ms[2].value(), "f.*");
        assert_eq!(
            parse_matchers(r#"{x="a \"q\" \\ b"}"#).unwrap()[0].value(),
            r#"a "q" \ b"#
        );
        assert_eq!(parse_matchers("{}").unwrap(), vec![]);
        for bad in ["rack", "{a=b", "a=\"b", "=b", "a=~(", "a=\"b\" c"] {
            assert!(parse_matchers(bad).is_err(), "{bad}");
        }
        assert!(parse_matchers("rack")
            .unwrap_err()
            .to_string()
            .contains("key=value"));
    }

    #[test]
    fn json_in_gpuwatch_and_alertmanager_forms() {
        let ms: Vec<Matcher> = serde_json::from_value(serde_json::json!([
            {"name": "gpu", "value": "1"},
            {"name": "gpu", "op": "!~", "value": "2|3"},
            {"name": "host", "value": "h.*", "isRegex": true},
            {"name": "host", "value": "h9", "isRegex": false, "isEqual": false},
            "severity=~\"warning|critical\""
        ]))
        .unwrap();
        let ops: Vec<MatchOp> = ms.iter().map(Matcher::op).collect();
        assert_eq!(
            ops,
            [
                MatchOp::Eq,
                MatchOp::NotRe,
                MatchOp::Re,
                MatchOp::NotEq,
                MatchOp::Re
            ]
        );
        assert_eq!(
            serde_json::to_value(&ms[2]).unwrap(),
            serde_json::json!({"name": "host", "op": "=~", "value": "h.*"})
        );
        for bad in [
            serde_json::json!({"nme": "gpu", "value": "1"}),
            serde_json::json!({"name": "gpu", "op": "=~", "value": "("}),
            serde_json::json!({"name": "gpu", "op": "~", "value": "1"}),
            serde_json::json!({"name": "gpu", "op": "=", "isRegex": true, "value": "1"}),
            serde_json::json!(7),
        ] {
            assert!(
                serde_json::from_value::<Matcher>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_list_may_be_one_text() {
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "deserialize_list")]
            m: Vec<Matcher>,
        }
        let s: S = serde_json::from_str(r#"{"m": "{a=\"1\", b=~\"x|y\"}"}"#).unwrap();
        assert_eq!(s.m.len(), 2);
        let s: S = serde_json::from_str(r#"{"m": [{"name": "a", "value": "1"}]}"#).unwrap();
        assert_eq!(s.m, vec![Matcher::eq("a", "1").unwrap()]);
        let e = serde_json::from_str::<S>(
            r#"{"m": [{"name": "a", "value": "1"}, {"name": "b", "op": "=~", "value": "["}]}"#,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("[1]"), "{e}");
    }
}
