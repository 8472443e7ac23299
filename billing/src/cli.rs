//! The billing commands of the `gpuwatch` binary: `report usage|invoices`
//! (the command line's arguments, as typed, to the text printed on stdout)
//! and what `billing --once` tells the operator. The binary only forwards
//! arguments and prints.

use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::format::ReportFormat;
use crate::invoice::{list_invoices, render, InvoiceQuery};
use crate::report::{to_csv, usage_report, UsageQuery};
use crate::BillingError;

/// What a report on the command line can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A flag the operator got wrong; the message names it.
    #[error("{0}")]
    Usage(String),
    /// The report itself failed (bad query, database).
    #[error(transparent)]
    Billing(#[from] BillingError),
}

/// `gpuwatch report usage` as given.
#[derive(Debug, Clone, Default)]
pub struct UsageArgs {
    /// `--month YYYY-MM`.
    pub month: Option<String>,
    /// `--from`, RFC 3339 or YYYY-MM-DD (midnight UTC).
    pub from: Option<String>,
    /// `--to`, like `--from`, exclusive.
    pub to: Option<String>,
    /// `--group-by a,b`.
    pub group_by: Option<String>,
    /// `--customer`.
    pub customer: Option<i64>,
    /// `--format`: csv or json.
    pub format: String,
}

/// `gpuwatch report invoices` as given.
#[derive(Debug, Clone, Default)]
pub struct InvoiceArgs {
    /// `--month YYYY-MM`.
    pub month: Option<String>,
    /// `--customer`.
    pub customer: Option<i64>,
    /// `--status`.
    pub status: Option<String>,
    /// `--format`: text, csv or json.
    pub format: String,
}

/// The usage report, rendered as asked.
pub async fn usage(pool: &gpuwatch_store::Pool, a: UsageArgs) -> Result<String, ReportError> {
    let q = UsageQuery {
        from: time("from", a.from)?,
        to: time("to", a.to)?,
        month: a.month,
        group_by: a.group_by,
        customer_id: a.customer,
        format: Some(a.format),
    };
    let spec = q.validate().map_err(as_flags)?;
    let rows = usage_report(pool, &spec).await?;
    match spec.format {
        ReportFormat::Csv => Ok(to_csv(&rows)),
        _ => serde_json::to_string_pretty(&rows)
            .map(|s| s + "\n")
            .map_err(|e| ReportError::Usage(format!("cannot render the report as JSON: {e}"))),
    }
}

/// Every invoice matching the filters (all pages), rendered as asked.
pub async fn invoices(pool: &gpuwatch_store::Pool, a: InvoiceArgs) -> Result<String, ReportError> {
    use ReportFormat::*;
    let format = ReportFormat::parse("--format", &a.format, &[Text, Csv, Json])
        .map_err(ReportError::Usage)?;
    let mut all = Vec::new();
    loop {
        let q = InvoiceQuery {
            customer_id: a.customer,
            status: a.status.clone(),
            month: a.month.clone(),
            limit: Some(1000),
            offset: Some(all.len() as i64),
        };
        let p = list_invoices(pool, &q).await.map_err(as_flags)?;
        let got = p.items.len();
        all.extend(p.items);
        if got == 0 || all.len() as i64 >= p.total {
            break;
        }
    }
    Ok(render(&all, format))
}

/// What `gpuwatch billing --once` did, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceSummary {
    /// One line for stdout: how far the meter got, what it wrote, invoices cut.
    pub summary: String,
    /// Lines for stderr: why invoices wait, and each environment period not
    /// billed for bad input.
    pub problems: Vec<String>,
    /// Set when periods were not billed: the run must fail with this.
    pub failure: Option<String>,
}

/// `gpuwatch billing --once`: meter until caught up, cut what is due, and
/// say what happened.
pub async fn once(
    pool: &gpuwatch_store::Pool,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<OnceSummary, BillingError> {
    let (meter, cut) = crate::run_once(pool, settings, now).await?;
    let metered = match meter.to {
        Some(t) => format!("metered through {}", t.to_rfc3339()),
        None => "nothing to meter yet (no environment status history)".into(),
    };
    let summary = format!(
        "{metered}: {}, {}, {}; {} cut",
        count(meter.records, "record", "records"),
        count(meter.corrections, "correction", "corrections"),
        count(meter.retried, "retried period", "retried periods"),
        count(cut.invoices.len() as u64, "invoice", "invoices"),
    );
    let mut problems = Vec::new();
    if let Some(w) = cut.waiting_for_meter {
        problems.push(format!("invoices wait: {w}"));
    }
    problems.extend(meter.errors.iter().map(|e| format!("billing: {e}")));
    let failure = (!meter.errors.is_empty()).then(|| {
        let n = meter.errors.len() as u64;
        format!(
            "{} {} not billed (bad input above; fix it and run again)",
            count(n, "environment period", "environment periods"),
            if n == 1 { "was" } else { "were" }
        )
    });
    Ok(OnceSummary {
        summary,
        problems,
        failure,
    })
}

/// "1 invoice", "2 invoices".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The library names fields as the API spells them (`group_by`); on the
/// command line the same field is a flag (`--group-by`).
fn as_flags(e: BillingError) -> BillingError {
    const FIELDS: [&str; 7] = [
        "from/to", "from", "to", "month", "group_by", "format", "status",
    ];
    match e {
        BillingError::Invalid(v) => BillingError::Invalid(
            v.into_iter()
                .map(
                    |m| match FIELDS.iter().find(|f| m.starts_with(&format!("{f}:"))) {
                        Some(f) => format!(
                            "--{}{}",
                            f.replace('_', "-").replace('/', "/--"),
                            &m[f.len()..]
                        ),
                        None => m,
                    },
                )
                .collect(),
        ),
        other => other,
    }
}

/// A range bound: RFC 3339, or a date meaning its midnight UTC (finance
/// thinks in days: `--from 2026-10-01 --to 2026-11-01`).
fn time(field: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, ReportError> {
    v.map(|s| {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
            return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
        }
        s.trim().parse::<DateTime<Utc>>().map_err(|_| {
            ReportError::Usage(format!(
                "--{field}: expected a date (2026-10-01) or an RFC 3339 time (2026-10-01T00:00:00Z), got {s:?}"
            ))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_both_bound_a_range() {
        let day = time("from", Some("2026-10-01".into())).unwrap().unwrap();
        assert_eq!(day.to_rfc3339(), "2026-10-01T00:00:00+00:00");
        let t = time("to", Some("2026-10-01T12:30:00+02:00".into()))
            .unwrap()
            .unwrap();
        assert_eq!(t.to_rfc3339(), "2026-10-01T10:30:00+00:00");
        let e = time("from", Some("2026-10-01x".into()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--from: expected a date"), "{e}");
    }

    #[test]
    fn counts_read_as_english_and_fields_as_flags() {
        assert_eq!(count(1, "invoice", "invoices"), "1 invoice");
        assert_eq!(count(0, "invoice", "invoices"), "0 invoices");
        let e = as_flags(BillingError::Invalid(vec![
            "group_by: \"team\" is not one".into(),
            "from/to: give both".into(),
            "something else".into(),
        ]));
        assert_eq!(
            e.to_string(),
            "invalid request: --group-by: \"team\" is not one; --from/--to: give both; something else"
        );
    }
}
