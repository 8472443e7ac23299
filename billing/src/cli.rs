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
    /// `--from`, RFC 3339.
    pub from: Option<String>,
    /// `--to`, RFC 3339, exclusive.
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
    let spec = q.validate()?;
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
        let p = list_invoices(pool, &q).await?;
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
    let summary = format!(
        "metered through {}: {} records, {} corrections, {} retried periods; {} invoices cut",
        meter.to.map_or("nothing".into(), |t| t.to_rfc3339()),
        meter.records,
        meter.corrections,
        meter.retried,
        cut.invoices.len()
    );
    let mut problems = Vec::new();
    if let Some(w) = cut.waiting_for_meter {
        problems.push(format!("invoices wait: {w}"));
    }
    problems.extend(meter.errors.iter().map(|e| format!("billing: {e}")));
    let failure = (!meter.errors.is_empty()).then(|| {
        format!(
            "{} environment periods were not billed (bad input above; fix it and run again)",
            meter.errors.len()
        )
    });
    Ok(OnceSummary {
        summary,
        problems,
        failure,
    })
}

fn time(field: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, ReportError> {
    v.map(|s| {
        s.parse::<DateTime<Utc>>().map_err(|e| {
            ReportError::Usage(format!("--{field}: not an RFC 3339 time ({e}): {s:?}"))
        })
    })
    .transpose()
}
