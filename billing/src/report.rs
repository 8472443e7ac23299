//! Usage reports for finance: billing records of a time range, split by the
//! dimensions asked for, each row inside one invoice line.
//!
//! Which records a range holds: invoiced records by their document's month
//! (so a month's report is exactly that month's invoices and credit notes,
//! corrections of earlier months included and marked with the month they
//! correct), records not yet invoiced by their start time, or by the month
//! after the last one cut if they start before it: a month's report never
//! changes once the invoice run has cut it.
//! Records of report-only DLWorkspace clusters (`billed` false) are
//! never invoiced: they are placed by their start time and marked with the
//! charge class `report_only`. Voided invoices are left out. Rows that split an invoice line (by
//! workspace or environment) get the line's rounded amount by a
//! largest-remainder allocation done in exact NUMERIC arithmetic: each row
//! gets its amount rounded down to the cent, and the cents left over go one
//! each to the rows with the largest remainders, so rows sum exactly to the line.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{db, BillingError, Result};
use crate::format::{csv_table, ReportFormat};
use crate::money;
use crate::usage::Resource;

/// A dimension to split rows by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Customer (always part of a row: invoices are per customer).
    Customer,
    /// Workspace.
    Workspace,
    /// Environment.
    Environment,
    /// Resource (always part of a row: invoice lines are per resource).
    Resource,
    /// GPU model (always part of a row: lines are per model).
    GpuModel,
}

impl GroupBy {
    /// Parses "customer,workspace"; the error names the field.
    pub fn parse_list(field: &str, s: &str) -> std::result::Result<Vec<GroupBy>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| match x {
                "customer" => Ok(GroupBy::Customer),
                "workspace" => Ok(GroupBy::Workspace),
                "environment" => Ok(GroupBy::Environment),
                "resource" => Ok(GroupBy::Resource),
                "gpu_model" => Ok(GroupBy::GpuModel),
                other => Err(format!(
                    "{field}: {other:?} is not one of customer, workspace, environment, resource, gpu_model"
                )),
            })
            .collect()
    }
}

/// The query of `GET /api/v1/reports/usage` (and `gpuwatch report usage`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Range start (RFC 3339), or use `month`.
    pub from: Option<DateTime<Utc>>,
    /// Range end (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// A month "2026-10" instead of from/to.
    pub month: Option<String>,
    /// Comma-separated dimensions: customer, workspace, environment, resource, gpu_model.
    pub group_by: Option<String>,
    /// Only this customer.
    pub customer_id: Option<i64>,
    /// "json" (default) or "csv": read by the caller to pick a renderer.
    pub format: Option<String>,
}

/// A validated report request.
#[derive(Debug, Clone)]
pub struct UsageSpec {
    /// Range start.
    pub from: DateTime<Utc>,
    /// Range end.
    pub to: DateTime<Utc>,
    /// Dimensions.
    pub group_by: Vec<GroupBy>,
    /// Only this customer.
    pub customer_id: Option<i64>,
    /// JSON or CSV.
    pub format: ReportFormat,
}

impl UsageQuery {
    /// Checks every field; all problems at once.
    pub fn validate(&self) -> Result<UsageSpec> {
        let mut e = Vec::new();
        let range = match (&self.month, self.from, self.to) {
            (Some(m), None, None) => crate::invoice::month_range("month", m)
                .map_err(|x| e.push(x))
                .ok(),
            (None, Some(f), Some(t)) if f < t => Some((f, t)),
            (None, Some(_), Some(_)) => {
                e.push("to: must be after from".into());
                None
            }
            _ => {
                e.push(
                    "from/to: give both from and to (RFC 3339), or month (YYYY-MM) alone".into(),
                );
                None
            }
        };
        let group_by = GroupBy::parse_list("group_by", self.group_by.as_deref().unwrap_or(""))
            .map_err(|x| e.push(x))
            .unwrap_or_default();
        let format = ReportFormat::parse(
            "format",
            self.format.as_deref().unwrap_or("json"),
            &[ReportFormat::Json, ReportFormat::Csv],
        )
        .map_err(|x| e.push(x))
        .unwrap_or(ReportFormat::Json);
        match range {
            Some((from, to)) if e.is_empty() => Ok(UsageSpec {
                from,
                to,
                group_by,
                customer_id: self.customer_id,
                format,
            }),
            _ => Err(BillingError::Invalid(e)),
        }
    }
}

/// One report row.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct UsageRow {
    /// Earliest record start in the row.
    pub period_start: DateTime<Utc>,
    /// Latest record end in the row.
    pub period_end: DateTime<Utc>,
    /// Customer.
    pub customer_id: i64,
    /// Workspace (when grouped by workspace or environment).
    pub workspace_id: Option<i64>,
    /// Environment (when grouped by environment).
    pub env_id: Option<String>,
    /// cpu, memory, gpu or job_gpu.
    pub resource_type: String,
    /// GPU model of gpu rows.
    pub gpu_model: Option<String>,
    /// Unit-hours to 6 decimals: the rows of an invoice line split its
    /// rounded quantity by largest remainder, so they add up to it exactly.
    pub quantity: Decimal,
    /// "core-hour", "GiB-hour", "GPU-hour".
    pub unit: String,
    /// Price per unit-hour when one price applied to the whole row, written
    /// as in CSV and text (no trailing zeros).
    #[serde(serialize_with = "crate::format::price_json")]
    #[schemars(with = "Option<String>")]
    pub unit_price: Option<Decimal>,
    /// Allocated, rounded amount.
    pub amount: Decimal,
    /// The amount with the currency symbol, for people.
    pub amount_display: String,
    /// Currency code.
    pub currency: String,
    /// Invoice holding the row's records (None: not invoiced yet).
    pub invoice_id: Option<i64>,
    /// "usage", "correction", or "report_only" (a DLWorkspace cluster whose
    /// jobs are reported, not billed).
    pub charge_class: String,
    /// The month ("2026-08") these records correct, when it is not the
    /// month that carries them (a late change to a month already invoiced).
    pub corrects_period: Option<String>,
}

/// The report rows of a validated request.
pub async fn usage_report(pool: &gpuwatch_store::Pool, spec: &UsageSpec) -> Result<Vec<UsageRow>> {
    let by_ws = spec
        .group_by
        .iter()
        .any(|g| matches!(g, GroupBy::Workspace | GroupBy::Environment));
    let by_env = spec.group_by.contains(&GroupBy::Environment);
    let client = pool.get().await?;
    let rows = client
        .query(
            REPORT_SQL,
            &[&spec.from, &spec.to, &by_ws, &by_env, &spec.customer_id],
        )
        .await
        .map_err(db("computing the usage report"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let currency: String = r.get(6);
            let amount: Decimal = r.get(11);
            let resource: String = r.get(4);
            UsageRow {
                period_start: r.get(0),
                period_end: r.get(1),
                customer_id: r.get(2),
                workspace_id: r.get(7),
                env_id: r.get(8),
                unit: Resource::parse(&resource)
                    .map_or("unit-hour", |x| x.unit())
                    .into(),
                resource_type: resource,
                gpu_model: r.get(5),
                quantity: r.get(9),
                unit_price: r.get(10),
                amount_display: money::display(amount, &currency),
                amount,
                currency,
                invoice_id: r.get(3),
                charge_class: r.get(12),
                corrects_period: r.get(13),
            }
        })
        .collect())
}

/// x is an amount in cents times 3600 (exact); a line is (customer,
/// currency, invoice, charge class, resource, model). base = floor(x/3600)
/// cents; the line's rounded total minus the bases is handed out one cent
/// each by descending remainder. Quantities go the same way in millionths
/// of a unit-hour (xq, base_q), against the line's quantity rounded by
/// gpuwatch_round_quantity.
const REPORT_SQL: &str = "
WITH recs AS (
    SELECT r.customer_id, r.currency::text AS currency, r.invoice_id,
           CASE WHEN NOT r.billed THEN 'report_only' WHEN r.is_correction THEN 'correction'
                ELSE 'usage' END AS charge_class,
           r.resource_type::text AS resource_type, r.gpu_model::text AS gpu_model,
           CASE WHEN $3 THEN r.workspace_id END AS workspace_id,
           CASE WHEN $4 THEN r.env_id::text END AS env_id,
           r.quantity * r.usage_seconds AS unit_seconds,
           r.quantity * r.usage_seconds * r.unit_price * 100 AS x,
           r.unit_price, r.start_time, r.end_time,
           CASE WHEN r.start_time < coalesce(i.period_start, date_trunc('month', greatest(r.start_time, m.placed_after) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
                THEN to_char(r.start_time AT TIME ZONE 'UTC', 'YYYY-MM') END AS corrects_period
    FROM billing_records r
    -- Report-only records are never invoiced: they stay in their own month.
    CROSS JOIN LATERAL (SELECT CASE WHEN r.billed THEN invoiced_through END AS placed_after
                        FROM billing_meter_state) m
    LEFT JOIN invoices i ON i.id = r.invoice_id
    WHERE ((i.id IS NOT NULL AND i.status <> 'void' AND i.period_start >= $1 AND i.period_start < $2)
        OR (r.invoice_id IS NULL AND greatest(r.start_time, m.placed_after) >= $1
            AND greatest(r.start_time, m.placed_after) < $2))
      AND ($5::bigint IS NULL OR r.customer_id = $5)
), groups AS (
    SELECT customer_id, currency, invoice_id, charge_class, resource_type, gpu_model, workspace_id, env_id,
           corrects_period,
           min(start_time) AS ps, max(end_time) AS pe, sum(unit_seconds) AS us, sum(x) AS x,
           sum(unit_seconds) * 1000000 AS xq,
           min(unit_price) AS pmin, max(unit_price) AS pmax
    FROM recs GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
), split AS (
    SELECT g.*, div(x, 3600) - CASE WHEN mod(x, 3600) < 0 THEN 1 ELSE 0 END AS base,
           div(xq, 3600) - CASE WHEN mod(xq, 3600) < 0 THEN 1 ELSE 0 END AS base_q
    FROM groups g
), ranked AS (
    SELECT s.*,
           gpuwatch_round_money(sum(x) OVER line, 360000) * 100 - sum(base) OVER line AS leftover,
           row_number() OVER (PARTITION BY customer_id, currency, invoice_id, charge_class, resource_type, gpu_model
                              ORDER BY x - base * 3600 DESC, workspace_id NULLS FIRST, env_id NULLS FIRST,
                                       corrects_period NULLS FIRST) AS rn
           , gpuwatch_round_quantity(sum(us) OVER line, 3600) * 1000000 - sum(base_q) OVER line AS leftover_q,
           row_number() OVER (PARTITION BY customer_id, currency, invoice_id, charge_class, resource_type, gpu_model
                              ORDER BY xq - base_q * 3600 DESC, workspace_id NULLS FIRST, env_id NULLS FIRST,
                                       corrects_period NULLS FIRST) AS rnq
    FROM split s
    WINDOW line AS (PARTITION BY customer_id, currency, invoice_id, charge_class, resource_type, gpu_model)
)
SELECT ps, pe, customer_id, invoice_id, resource_type, gpu_model, currency, workspace_id, env_id,
       ((base_q + CASE WHEN rnq <= leftover_q THEN 1 ELSE 0 END) * 0.000001)::numeric(38, 6),
       CASE WHEN pmin = pmax THEN pmin END,
       ((base + CASE WHEN rn <= leftover THEN 1 ELSE 0 END) * 0.01)::numeric(38, 2),
       charge_class, corrects_period
FROM ranked
ORDER BY customer_id, currency, invoice_id NULLS LAST, charge_class DESC, resource_type, gpu_model,
         corrects_period NULLS FIRST, workspace_id NULLS FIRST, env_id NULLS FIRST";

/// Column names of the CSV rendering, in order.
pub const CSV_COLUMNS: [&str; 15] = [
    "period_start",
    "period_end",
    "customer_id",
    "workspace_id",
    "env_id",
    "resource_type",
    "gpu_model",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "currency",
    "invoice_id",
    "charge_class",
    "corrects_period",
];

/// Renders rows as CSV (RFC 4180 quoting; amounts as plain decimals, the
/// currency in its own column).
pub fn to_csv(rows: &[UsageRow]) -> String {
    csv_table(
        CSV_COLUMNS,
        rows.iter().map(|r| {
            [
                r.period_start.to_rfc3339(),
                r.period_end.to_rfc3339(),
                r.customer_id.to_string(),
                r.workspace_id.map(|x| x.to_string()).unwrap_or_default(),
                r.env_id.clone().unwrap_or_default(),
                r.resource_type.clone(),
                r.gpu_model.clone().unwrap_or_default(),
                r.quantity.to_string(),
                r.unit.clone(),
                r.unit_price
                    .map(crate::format::price_text)
                    .unwrap_or_default(),
                r.amount.to_string(),
                r.currency.clone(),
                r.invoice_id.map(|x| x.to_string()).unwrap_or_default(),
                r.charge_class.clone(),
                r.corrects_period.clone().unwrap_or_default(),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_lists_and_bad_names() {
        assert_eq!(
            GroupBy::parse_list("group_by", "workspace, environment").unwrap(),
            vec![GroupBy::Workspace, GroupBy::Environment]
        );
        let e = GroupBy::parse_list("group_by", "team").unwrap_err();
        assert!(e.starts_with("group_by: \"team\""), "{e}");
    }

    #[test]
    fn every_query_problem_is_reported() {
        let q = UsageQuery {
            from: None,
            to: None,
            month: None,
            group_by: Some("x".into()),
            customer_id: None,
            format: Some("xml".into()),
        };
        match q.validate() {
            Err(BillingError::Invalid(v)) => assert_eq!(v.len(), 3, "{v:?}"),
            other => panic!("{other:?}"),
        }
    }
}
