//! How finance reports leave gpuwatch: the [`ReportFormat`] a caller asks
//! for, and the one CSV writer every CSV answer goes through (the CLI's
//! `report usage|invoices` and the API's reports), so quoting is RFC 4180
//! everywhere and a GPU model such as `A100, 80GB` stays one field.

use std::fmt;

use rust_decimal::Decimal;
use std::str::FromStr;

/// The rendering of a report. Not every report offers every format: a usage
/// report is `json` or `csv`, an invoice listing also `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// For people: one line per invoice and per line, amounts with the
    /// currency symbol.
    Text,
    /// RFC 4180 CSV with a header row, amounts as plain decimals.
    Csv,
    /// Pretty-printed JSON.
    Json,
}

impl ReportFormat {
    /// Parses `raw` for the field `field`, accepting only `allowed`; the
    /// error names the field and the choices.
    pub fn parse(field: &str, raw: &str, allowed: &[ReportFormat]) -> Result<Self, String> {
        match raw.parse::<ReportFormat>() {
            Ok(f) if allowed.contains(&f) => Ok(f),
            _ => Err(format!(
                "{field}: must be {}, got {raw:?}",
                choices(allowed)
            )),
        }
    }

    /// The name callers write (`text`, `csv`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Text => "text",
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
        }
    }
}

/// "a, b or c".
fn choices(allowed: &[ReportFormat]) -> String {
    let names: Vec<&str> = allowed.iter().map(|f| f.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(ReportFormat::Text),
            "csv" => Ok(ReportFormat::Csv),
            "json" => Ok(ReportFormat::Json),
            other => Err(format!("not a report format: {other:?}")),
        }
    }
}

impl fmt::Display for ReportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `header` and `rows` as CSV (quoted where RFC 4180 needs it, `\n`
/// line ends). Rows and header have the same width by type.
pub fn csv_table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // Writing into a Vec cannot fail on I/O, and every record has the
    // header's width (the array type says so), the only other error the
    // writer knows.
    w.write_record(header).expect("CSV into memory");
    for r in rows {
        w.write_record(&r).expect("CSV into memory");
    }
    let bytes = w.into_inner().expect("CSV into memory: flushing a Vec");
    // Only UTF-8 strings and ASCII quotes went in.
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

/// A unit price as every format writes it: its decimal value without
/// trailing zeros (`0.05`, not the column's `0.0500000000`).
pub fn price_text(p: Decimal) -> String {
    p.normalize().to_string()
}

/// serde: an optional unit price as a JSON string written by [`price_text`].
pub fn price_json<S: serde::Serializer>(p: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&price_text(*p)),
        None => s.serialize_none(),
    }
}

/// serde: a unit price as a JSON string written by [`price_text`].
pub fn price_json_one<S: serde::Serializer>(p: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&price_text(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let out = csv_table(
            ["model", "note"],
            [
                ["a,b".to_string(), "H100 \"SXM\"".to_string()],
                ["plain".to_string(), String::new()],
            ],
        );
        assert_eq!(out, "model,note\n\"a,b\",\"H100 \"\"SXM\"\"\"\nplain,\n");
    }

    #[test]
    fn formats_parse_only_where_allowed() {
        use ReportFormat::*;
        assert_eq!(ReportFormat::parse("format", "csv", &[Json, Csv]), Ok(Csv));
        assert_eq!(
            ReportFormat::parse("format", "text", &[Json, Csv]),
            Err("format: must be json or csv, got \"text\"".into())
        );
        assert_eq!(
            ReportFormat::parse("--format", "xml", &[Text, Csv, Json]),
            Err("--format: must be text, csv or json, got \"xml\"".into())
        );
    }
}
