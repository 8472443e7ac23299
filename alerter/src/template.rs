//! Annotation templates: `{{ $labels.name }}`, `{{ $value }}` and
//! `{{ $severity }}`, Prometheus' spelling, and `{{ $details.name }}`: text
//! a series carries for its annotations only (a DLWorkspace job's errorMsg
//! and status detail), never a label. Deliberately tiny: a template
//! is parsed when its rule is saved (a syntax error is refused there), and
//! rendering can then only fail on a label the alert lacks, where the caller
//! falls back to a plain message instead of dropping the notification.

use std::collections::BTreeMap;

enum Part<'a> {
    Text(&'a str),
    Label(&'a str),
    Detail(&'a str),
    Value,
    Severity,
}

fn parse(t: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        parts.push(Part::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| {
            format!(
                "\"{{{{\" at byte {} is never closed with \"}}}}\"",
                t.len() - rest.len() + open
            )
        })?;
        let expr = after[..close].trim();
        parts.push(match expr {
            "$value" => Part::Value,
            "$severity" => Part::Severity,
            _ => {
                let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                match (expr.strip_prefix("$labels."), expr.strip_prefix("$details.")) {
                    (Some(name), _) if name_ok(name) => Part::Label(name),
                    (_, Some(name)) if name_ok(name) => Part::Detail(name),
                    _ => {
                        return Err(format!(
                            "unknown expression {{{{ {expr} }}}}; use {{{{ $labels.<name> }}}}, {{{{ $details.<name> }}}}, {{{{ $value }}}} or {{{{ $severity }}}}"
                        ))
                    }
                }
            }
        });
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err("\"}}\" without an opening \"{{\"".into());
    }
    parts.push(Part::Text(rest));
    Ok(parts)
}

/// Checks a template's syntax.
pub fn validate(t: &str) -> Result<(), String> {
    parse(t).map(|_| ())
}

/// Formats a value the way people read it: integers without decimals, else two.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Renders a template; an error names what could not be filled in.
pub fn render(
    t: &str,
    labels: &BTreeMap<String, String>,
    details: &BTreeMap<String, String>,
    value: Option<f64>,
    severity: &str,
) -> Result<String, String> {
    let mut out = String::with_capacity(t.len());
    for p in parse(t)? {
        match p {
            Part::Text(s) => out.push_str(s),
            Part::Value => out.push_str(&value.map_or_else(|| "no data".into(), format_value)),
            Part::Severity => out.push_str(severity),
            Part::Label(name) => match labels.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(format!("the alert has no label {name:?}")),
            },
            Part::Detail(name) => match details.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(format!("the alert has no detail {name:?}")),
            },
        }
    }
    Ok(out)
}

/// Renders every annotation; one that fails becomes a plain message naming
/// the alert, and the error is kept in `template_error` so it gets fixed.
pub fn render_all(
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    details: &BTreeMap<String, String>,
    value: Option<f64>,
    severity: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, t) in annotations {
        match render(t, labels, details, value, severity) {
            Ok(s) => {
                out.insert(k.clone(), s);
            }
            Err(e) => {
                let alertname = labels.get("alertname").map_or("alert", String::as_str);
                out.insert(
                    k.clone(),
                    format!(
                        "{alertname} ({severity}) value {}, labels {labels:?}",
                        value.map_or_else(|| "no data".into(), format_value)
                    ),
                );
                out.insert("template_error".into(), format!("annotation {k:?}: {e}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        [("host", "h1"), ("alertname", "Hot")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    #[test]
    fn renders_labels_value_and_severity() {
        let s = render(
            "{{ $labels.host }} at {{$value}} ({{ $severity }})",
            &labels(),
            &BTreeMap::new(),
            Some(86.5),
            "critical",
        );
        assert_eq!(s.unwrap(), "h1 at 86.50 (critical)");
        assert_eq!(
            render("{{ $value }}", &labels(), &BTreeMap::new(), Some(90.0), "x").unwrap(),
            "90"
        );
    }

    #[test]
    fn syntax_errors_are_found_at_save_time() {
        assert!(validate("{{ $labels.host")
            .unwrap_err()
            .contains("never closed"));
        assert!(validate("{{ .Labels.host }}")
            .unwrap_err()
            .contains("unknown expression"));
        assert!(validate("a }} b").is_err());
        assert!(validate("plain {{ $labels.gpu_uuid }}").is_ok());
        assert!(validate("{{ $details.error_msg }}").is_ok());
        assert!(validate("{{ $details. }}").is_err());
    }

    #[test]
    fn details_fill_in_beside_labels_and_a_missing_one_falls_back() {
        let details = [("error_msg".to_string(), "CUDA out of memory".to_string())].into();
        let s = render(
            "{{ $labels.host }}: {{ $details.error_msg }}",
            &labels(),
            &details,
            None,
            "x",
        );
        assert_eq!(s.unwrap(), "h1: CUDA out of memory");
        let ann = [("d".to_string(), "{{ $details.nope }}".to_string())].into();
        let out = render_all(&ann, &labels(), &details, None, "warning");
        assert!(out["template_error"].contains("detail \"nope\""), "{out:?}");
    }

    #[test]
    fn a_missing_label_falls_back_instead_of_dropping() {
        let ann = [("summary".to_string(), "{{ $labels.nope }}".to_string())].into();
        let out = render_all(&ann, &labels(), &BTreeMap::new(), Some(1.0), "warning");
        assert!(out["summary"].contains("Hot (warning) value 1"));
        assert!(out["template_error"].contains("nope"));
    }
}
