//! Monthly invoices: cut per customer and currency after the grace period,
//! draft → issued → paid | void, never changed once issued (a trigger in
//! migration 0019 enforces it), lines by charge class, resource and GPU model.
//!
//! A line's amount is `gpuwatch_round_money(Σ quantity × seconds × price,
//! 3600)`: the exact sum of its records, rounded once, half away from zero.
//! The subtotal is the exact sum of the lines (a CHECK enforces it); tax is
//! the subtotal times the customer's rate, rounded once by the same rule.
//! Records that arrive after their month was invoiced (corrections, late
//! usage) land on the customer's next regular invoice, or, when there is
//! none and they give money back, on a credit note (see [`cut_invoices_with`]).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use gpuwatch_store::listing::{self, Filter, Page, Source};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;

use crate::error::{db, BillingError, Result};
use crate::format::{csv_table, ReportFormat};
use crate::money;

/// Invoice run settings.
#[derive(Debug, Clone, Copy)]
pub struct InvoiceOptions {
    /// Months are cut only this long after they end.
    pub grace: Duration,
    /// Issue invoices when cut.
    pub auto_issue: bool,
    /// Days from issue to due date.
    pub due_days: u32,
}

/// What invoices take from configuration beyond [`InvoiceOptions`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InvoiceDefaults {
    /// Tax rate of customers without their own (`billing.default_tax_rate`).
    pub tax_rate: Decimal,
}

/// What one invoice run did.
#[derive(Debug, Default, Clone)]
pub struct CutReport {
    /// Ids of the invoices cut.
    pub invoices: Vec<i64>,
    /// Set when a month is past its grace but not fully metered yet.
    pub waiting_for_meter: Option<String>,
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InvoiceLine {
    /// "usage" or "correction".
    pub charge_class: String,
    /// cpu, memory, gpu or job_gpu.
    pub resource_type: String,
    /// GPU model of gpu lines.
    pub gpu_model: Option<String>,
    /// Unit of the quantity ("GPU-hour").
    pub unit: String,
    /// Unit-hours: the exact sum rounded once to 6 decimals by
    /// `gpuwatch_round_quantity` (half away from zero; not money).
    pub quantity: Decimal,
    /// The price per unit-hour when one price applied to the whole line.
    #[serde(serialize_with = "crate::format::price_json")]
    #[schemars(with = "Option<String>")]
    pub unit_price: Option<Decimal>,
    /// A line that spans a price change: one segment per price, in time
    /// order, their quantities adding up to the line's exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub price_segments: Vec<PriceSegment>,
    /// Rounded amount of the line.
    pub amount: Decimal,
    /// Number of billing records on the line.
    pub records: i64,
}

/// The part of an invoice line billed at one price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PriceSegment {
    /// Price per unit-hour.
    #[serde(serialize_with = "crate::format::price_json_one")]
    #[schemars(with = "String")]
    pub unit_price: Decimal,
    /// Unit-hours at this price (the line's quantity split by largest remainder).
    pub quantity: Decimal,
    /// Earliest record start at this price.
    pub from: DateTime<Utc>,
    /// Latest record end at this price.
    pub to: DateTime<Utc>,
}

impl PriceSegment {
    /// "0.05 × 12.5 (2026-10-01 00:00..2026-10-15 00:00)", as CSV and text show it.
    pub fn text(&self) -> String {
        format!(
            "{} x {} ({}..{})",
            crate::format::price_text(self.unit_price),
            self.quantity,
            self.from.format("%Y-%m-%d %H:%M"),
            self.to.format("%Y-%m-%d %H:%M")
        )
    }
}

impl InvoiceLine {
    /// The unit price column of CSV and text: the one price, or each segment.
    pub fn price_text(&self) -> String {
        match self.unit_price {
            Some(p) if self.price_segments.is_empty() => crate::format::price_text(p),
            _ => self
                .price_segments
                .iter()
                .map(PriceSegment::text)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// An invoice, as the API returns it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Invoice {
    /// Id.
    pub id: i64,
    /// "INV-202610-42-CNY"; credit notes "CN-202610-000001".
    pub invoice_number: String,
    /// "invoice" (a bill, due on `due_at`) or "credit_note" (money back to
    /// the customer: negative total, never due).
    pub document_type: String,
    /// Customer.
    pub customer_id: i64,
    /// Month start (UTC).
    pub period_start: DateTime<Utc>,
    /// Month end (exclusive).
    pub period_end: DateTime<Utc>,
    /// Currency code.
    pub currency: String,
    /// Sum of the lines.
    pub subtotal: Decimal,
    /// The tax rate applied (0.06 = 6%): the customer's, or the default.
    pub tax_rate: Decimal,
    /// subtotal × tax_rate, rounded once by the money rule.
    pub tax: Decimal,
    /// subtotal + tax.
    pub total: Decimal,
    /// Total with currency symbol, for people ("¥12.30").
    pub total_display: String,
    /// draft, issued, paid or void.
    pub status: String,
    /// When issued.
    pub issued_at: Option<DateTime<Utc>>,
    /// Due date.
    pub due_at: Option<DateTime<Utc>>,
    /// When paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// Lines.
    pub lines: Vec<InvoiceLine>,
}

/// Filters and paging of [`list_invoices`].
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    /// Only this customer's invoices.
    pub customer_id: Option<i64>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this month ("2026-10").
    pub month: Option<String>,
    /// Page size (default 50, at most 1000), as every list of the API.
    pub limit: Option<i64>,
    /// Invoices to skip.
    pub offset: Option<i64>,
}

/// A page of invoices, newest month first.
pub type InvoicePage = Page<Invoice>;

/// `[start, end)` of a month given as "YYYY-MM"; the error names the field.
pub fn month_range(
    field: &str,
    s: &str,
) -> std::result::Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let bad = || format!("{field}: expected a month as YYYY-MM (e.g. 2026-10), got {s:?}");
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let start = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
    Ok((
        Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).ok_or_else(bad)?),
        next_month(Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).ok_or_else(bad)?)),
    ))
}

/// Start of the month holding `t`.
pub fn month_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

fn next_month(start: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if start.month() == 12 {
        (start.year() + 1, 1)
    } else {
        (start.year(), start.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(start)
}

/// Cuts every invoice that is due as of `now`: months that ended at least
/// `grace` ago and are fully metered, per customer and currency with
/// uninvoiced records. Idempotent: a month already invoiced for a customer
/// is not cut again (the unique key on invoices backs this).
pub async fn cut_invoices(
    pool: &gpuwatch_store::Pool,
    opts: &InvoiceOptions,
    now: DateTime<Utc>,
) -> Result<CutReport> {
    cut_invoices_with(pool, opts, &InvoiceDefaults::default(), now).await
}

/// [`cut_invoices`] with the configured defaults (tax).
///
/// A month gets a regular invoice per customer and currency with usage in
/// it; that invoice also carries every record of earlier months not on a
/// document yet (corrections and late usage of months already invoiced).
/// After the months, a customer whose carried records give money back and
/// had no regular invoice to take them gets a credit note for the last
/// month cut; carried records that add up to money owed wait for the
/// customer's next regular invoice.
pub async fn cut_invoices_with(
    pool: &gpuwatch_store::Pool,
    opts: &InvoiceOptions,
    defaults: &InvoiceDefaults,
    now: DateTime<Utc>,
) -> Result<CutReport> {
    let mut client = pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("starting the invoice transaction"))?;
    // The meter's lock: no record is written while invoices are cut.
    let state = tx
        .query_one(
            "SELECT watermark, invoiced_through FROM billing_meter_state WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(db("locking the meter watermark (run gpuwatch migrate?)"))?;
    let (wm, invoiced_through): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        (state.get(0), state.get(1));
    let mut report = CutReport::default();
    let due_end = month_floor(now - opts.grace);
    let metered_end = wm.map_or(DateTime::<Utc>::MIN_UTC, month_floor);
    if metered_end < due_end {
        report.waiting_for_meter = Some(match wm {
            Some(w) => format!(
                "months before {due_end} are due but the meter has only reached {}",
                w.to_rfc3339()
            ),
            None => format!("months before {due_end} are due but nothing is metered yet"),
        });
    }
    let last_end = due_end.min(metered_end);
    let first: Option<DateTime<Utc>> = tx
        .query_one(
            "SELECT min(start_time) FROM billing_records WHERE invoice_id IS NULL AND billed",
            &[],
        )
        .await
        .map_err(db("finding uninvoiced records"))?
        .get(0);
    let Some(first) = first else {
        advance(&tx, invoiced_through, last_end).await?;
        tx.commit().await.map_err(db("committing invoices"))?;
        return Ok(report);
    };
    let mut month = month_floor(first);
    while next_month(month) <= last_end {
        let end = next_month(month);
        let due = tx
            .query(
                "SELECT DISTINCT r.customer_id, r.currency::text FROM billing_records r
                 WHERE r.invoice_id IS NULL AND r.billed AND NOT r.is_correction
                   AND r.start_time >= $2 AND r.start_time < $1
                   AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = r.customer_id
                                   AND i.currency = r.currency AND i.period_start = $2)
                 ORDER BY 1, 2",
                &[&end, &month],
            )
            .await
            .map_err(db("finding customers to invoice"))?;
        for r in due {
            let doc = Document {
                customer: r.get(0),
                currency: r.get(1),
                start: month,
                end,
            };
            report
                .invoices
                .push(cut_one(&tx, &doc, opts, defaults, now).await?);
        }
        month = end;
    }
    if invoiced_through.is_none_or(|t| t < last_end) && first < last_end {
        report
            .invoices
            .extend(credit_notes(&tx, last_end, opts, defaults, now).await?);
    }
    advance(&tx, invoiced_through, last_end).await?;
    tx.commit().await.map_err(db("committing invoices"))?;
    crate::metrics::invoices_cut(report.invoices.len());
    Ok(report)
}

/// Moves `invoiced_through` to the end of the last month cut (never back).
async fn advance(
    tx: &Transaction<'_>,
    was: Option<DateTime<Utc>>,
    last_end: DateTime<Utc>,
) -> Result<()> {
    if last_end > DateTime::<Utc>::MIN_UTC && was.is_none_or(|t| t < last_end) {
        tx.execute(
            "UPDATE billing_meter_state SET invoiced_through = $1 WHERE id = 1",
            &[&last_end],
        )
        .await
        .map_err(db("recording the months invoiced"))?;
    }
    Ok(())
}

/// Records of months already invoiced that no regular invoice took and that
/// give money back: one credit note per customer and currency, for the
/// month ending at `last_end`.
async fn credit_notes(
    tx: &Transaction<'_>,
    last_end: DateTime<Utc>,
    opts: &InvoiceOptions,
    defaults: &InvoiceDefaults,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let start = month_floor(last_end - Duration::days(1));
    let owed = tx
        .query(
            "SELECT customer_id, currency::text FROM billing_records
             WHERE invoice_id IS NULL AND billed AND start_time < $1
             GROUP BY 1, 2 HAVING sum(quantity * usage_seconds * unit_price) < 0 ORDER BY 1, 2",
            &[&last_end],
        )
        .await
        .map_err(db("finding corrections owed back to customers"))?;
    let mut ids = Vec::new();
    for r in owed {
        let doc = Document {
            customer: r.get(0),
            currency: r.get(1),
            start,
            end: last_end,
        };
        ids.push(cut_one(tx, &doc, opts, defaults, now).await?);
    }
    Ok(ids)
}

/// Whose document, in what currency, for which month.
struct Document {
    customer: i64,
    currency: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// Cuts one document: every record of the customer and currency before
/// `doc.end` not on a document yet. A negative total makes it a credit
/// note (CN- number, no due date): money owed to the customer is not a bill.
async fn cut_one(
    tx: &Transaction<'_>,
    doc: &Document,
    opts: &InvoiceOptions,
    defaults: &InvoiceDefaults,
    now: DateTime<Utc>,
) -> Result<i64> {
    let Document {
        customer,
        currency,
        start,
        end,
    } = doc;
    let number = format!("INV-{}-{customer}-{currency}", start.format("%Y%m"));
    let rate: Decimal = tx
        .query_one(
            "SELECT coalesce((SELECT tax_rate FROM billing_customer_settings WHERE customer_id = $1), $2)",
            &[customer, &defaults.tax_rate],
        )
        .await
        .map_err(db("reading the customer's tax rate (billing_customer_settings)"))?
        .get(0);
    // A temporary number while the kind is unknown: a credit note takes
    // the next CN- number below, a regular invoice keeps its INV- one.
    let id: i64 = tx
        .query_one(
            "INSERT INTO invoices (invoice_number, customer_id, period_start, period_end, currency, status, tax_rate)
             VALUES ($1 || '-' || nextval('invoices_id_seq'), $2, $3, $4, $5, 'draft', $6) RETURNING id",
            &[&number, customer, start, end, currency, &rate],
        )
        .await
        .map_err(db("creating an invoice"))?
        .get(0);
    // Attach first, then add up what is attached: no record can slip in
    // between the sum and the attachment.
    tx.execute(
        "UPDATE billing_records SET invoice_id = $1
         WHERE customer_id = $2 AND currency = $3 AND invoice_id IS NULL AND billed AND start_time < $4",
        &[&id, customer, currency, end],
    )
    .await
    .map_err(db("attaching records to an invoice"))?;
    let lines = lines_of(tx, id).await?;
    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let json = serde_json::to_value(&lines)
        .map_err(|e| BillingError::Invalid(vec![format!("invoice lines: {e}")]))?;
    let row = tx
        .query_one(
            "UPDATE invoices SET lines = $2, subtotal = $3,
                 tax = gpuwatch_round_money($3 * tax_rate, 1),
                 total = $3 + gpuwatch_round_money($3 * tax_rate, 1),
                 document_type = CASE WHEN $3 + gpuwatch_round_money($3 * tax_rate, 1) < 0
                                      THEN 'credit_note' ELSE 'invoice' END,
                 invoice_number = CASE WHEN $3 + gpuwatch_round_money($3 * tax_rate, 1) < 0
                                       THEN 'CN-' || to_char(period_start AT TIME ZONE 'UTC', 'YYYYMM') || '-'
                                            || lpad(nextval('billing_credit_note_number_seq')::text, 6, '0')
                                       ELSE $4 END
             WHERE id = $1 RETURNING invoice_number, total",
            &[&id, &json, &subtotal, &number],
        )
        .await
        .map_err(db("writing invoice lines"))?;
    let (number, total): (String, Decimal) = (row.get(0), row.get(1));
    if opts.auto_issue {
        set_issued(tx, id, now, opts.due_days).await?;
    }
    tracing::info!(invoice = %number, customer.id = customer, total = %total, "invoice cut");
    Ok(id)
}

async fn lines_of(tx: &Transaction<'_>, id: i64) -> Result<Vec<InvoiceLine>> {
    let segments = segments_of(tx, id).await?;
    let rows = tx
        .query(
            "SELECT CASE WHEN is_correction THEN 'correction' ELSE 'usage' END, resource_type, gpu_model,
                    gpuwatch_round_quantity(sum(quantity * usage_seconds), 3600),
                    CASE WHEN min(unit_price) = max(unit_price) THEN min(unit_price) END,
                    gpuwatch_round_money(sum(quantity * usage_seconds * unit_price), 3600),
                    count(*)
             FROM billing_records WHERE invoice_id = $1
             GROUP BY 1, 2, 3 ORDER BY 1 DESC, 2, 3",
            &[&id],
        )
        .await
        .map_err(db("adding up invoice lines"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let resource: String = r.get(1);
            InvoiceLine {
                charge_class: r.get(0),
                unit: crate::usage::Resource::parse(&resource)
                    .map_or("unit-hour", |x| x.unit())
                    .into(),
                resource_type: resource,
                gpu_model: r.get(2),
                quantity: r.get(3),
                unit_price: r.get(4),
                price_segments: Vec::new(),
                amount: r.get(5),
                records: r.get(6),
            }
        })
        .collect::<Vec<_>>())
    .map(|mut lines: Vec<InvoiceLine>| {
        for (key, seg) in segments {
            if let Some(l) = lines.iter_mut().find(|l| {
                (
                    l.charge_class.as_str(),
                    l.resource_type.as_str(),
                    l.gpu_model.as_deref(),
                ) == (key.0.as_str(), key.1.as_str(), key.2.as_deref())
            }) {
                l.price_segments.push(seg);
            }
        }
        lines.iter_mut().for_each(|l| {
            if l.price_segments.len() < 2 {
                l.price_segments.clear();
            }
        });
        lines
    })
}

/// A line's key (charge class, resource, model) with one of its price segments.
type Segment = ((String, String, Option<String>), PriceSegment);

/// Price segments of every line of invoice `id`, quantities split from the
/// line's rounded quantity by largest remainder (as report rows are).
async fn segments_of(tx: &Transaction<'_>, id: i64) -> Result<Vec<Segment>> {
    let rows = tx
        .query(
            "WITH s AS (
                 SELECT CASE WHEN is_correction THEN 'correction' ELSE 'usage' END AS class,
                        resource_type::text AS resource, gpu_model::text AS model, unit_price,
                        min(start_time) AS ps, max(end_time) AS pe,
                        sum(quantity * usage_seconds) * 1000000 AS xq
                 FROM billing_records WHERE invoice_id = $1 GROUP BY 1, 2, 3, 4
             ), b AS (
                 SELECT s.*, div(xq, 3600) - CASE WHEN mod(xq, 3600) < 0 THEN 1 ELSE 0 END AS base
                 FROM s
             ), r AS (
                 SELECT b.*,
                        gpuwatch_round_quantity(sum(xq) OVER line, 3600000000) * 1000000
                            - sum(base) OVER line AS leftover,
                        row_number() OVER (PARTITION BY class, resource, model
                                           ORDER BY xq - base * 3600 DESC, ps) AS rn
                 FROM b WINDOW line AS (PARTITION BY class, resource, model)
             )
             SELECT class, resource, model, unit_price,
                    ((base + CASE WHEN rn <= leftover THEN 1 ELSE 0 END) * 0.000001)::numeric(38, 6),
                    ps, pe
             FROM r ORDER BY class, resource, model, ps, unit_price",
            &[&id],
        )
        .await
        .map_err(db("splitting invoice lines by price"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2)),
                PriceSegment {
                    unit_price: r.get(3),
                    quantity: r.get(4),
                    from: r.get(5),
                    to: r.get(6),
                },
            )
        })
        .collect())
}

async fn set_issued(
    tx: &Transaction<'_>,
    id: i64,
    now: DateTime<Utc>,
    due_days: u32,
) -> Result<()> {
    let due = now + Duration::days(i64::from(due_days));
    // A credit note is issued but never due: the money goes to the customer.
    tx.execute(
        "UPDATE invoices SET status = 'issued', issued_at = $2,
             due_at = CASE WHEN document_type = 'credit_note' THEN NULL ELSE $3::timestamptz END
         WHERE id = $1",
        &[&id, &now, &due],
    )
    .await
    .map_err(db("issuing an invoice"))?;
    Ok(())
}

const INVOICE_COLUMNS: &str =
    "id, invoice_number, customer_id, period_start, period_end, currency::text,
    subtotal, tax, total, status, issued_at, due_at, paid_at, lines, document_type, tax_rate";

fn invoice_row(r: &tokio_postgres::Row) -> Invoice {
    let currency: String = r.get(5);
    let total: Decimal = r.get(8);
    let lines: serde_json::Value = r.get(13);
    Invoice {
        id: r.get(0),
        invoice_number: r.get(1),
        customer_id: r.get(2),
        period_start: r.get(3),
        period_end: r.get(4),
        total_display: money::display(total, &currency),
        currency,
        subtotal: r.get(6),
        tax: r.get(7),
        total,
        status: r.get(9),
        issued_at: r.get(10),
        due_at: r.get(11),
        paid_at: r.get(12),
        // Written by cut_one from the same type; a row that does not parse is shown without lines.
        lines: serde_json::from_value(lines).unwrap_or_default(),
        document_type: r.get(14),
        tax_rate: r.get(15),
    }
}

/// Invoices matching the filters, a page at a time.
pub async fn list_invoices(pool: &gpuwatch_store::Pool, q: &InvoiceQuery) -> Result<InvoicePage> {
    let mut problems = Vec::new();
    if let Some(s) = &q.status {
        if !["draft", "issued", "paid", "void"].contains(&s.as_str()) {
            problems.push(format!(
                "status: must be draft, issued, paid or void, got {s:?}"
            ));
        }
    }
    let month = match q.month.as_deref().map(|m| month_range("month", m)) {
        Some(Ok((s, _))) => Some(s),
        Some(Err(e)) => {
            problems.push(e);
            None
        }
        None => None,
    };
    let bounds = listing::bounds(q.limit, q.offset, &mut problems);
    if !problems.is_empty() {
        return Err(BillingError::Invalid(problems));
    }
    let mut f = Filter::default();
    f.opt("customer_id = $?", q.customer_id);
    f.opt("status = $?", q.status.clone());
    f.opt("period_start = $?", month);
    let source = Source {
        what: "invoices",
        from: "invoices",
        columns: INVOICE_COLUMNS,
    };
    let order = "ORDER BY period_start DESC, customer_id, currency";
    Ok(listing::fetch(pool, &source, &f, order, bounds, invoice_row).await?)
}

/// One invoice with its lines.
pub async fn get_invoice(pool: &gpuwatch_store::Pool, id: i64) -> Result<Invoice> {
    let client = pool.get().await?;
    client
        .query_opt(
            &format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db("reading an invoice"))?
        .map(|r| invoice_row(&r))
        .ok_or_else(|| BillingError::NotFound(format!("no invoice with id {id}")))
}

/// A status change asked of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// draft → issued.
    Issue,
    /// issued → paid.
    Pay,
    /// draft or issued → void. A voided draft releases its records to the
    /// next invoice; a voided issued invoice keeps them (it was sent).
    Void,
}

/// Applies a status change; `Conflict` when the invoice's status does not allow it.
pub async fn transition(
    pool: &gpuwatch_store::Pool,
    id: i64,
    t: Transition,
    now: DateTime<Utc>,
    due_days: u32,
) -> Result<Invoice> {
    let mut client = pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("starting an invoice transition"))?;
    let row = tx
        .query_opt(
            "SELECT status, invoice_number FROM invoices WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db("locking an invoice"))?
        .ok_or_else(|| BillingError::NotFound(format!("no invoice with id {id}")))?;
    let (status, number): (String, String) = (row.get(0), row.get(1));
    match (t, status.as_str()) {
        (Transition::Issue, "draft") => set_issued(&tx, id, now, due_days).await?,
        (Transition::Pay, "issued") => {
            tx.execute(
                "UPDATE invoices SET status = 'paid', paid_at = $2 WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(db("marking an invoice paid"))?;
        }
        (Transition::Void, "draft") => {
            tx.execute(
                "UPDATE billing_records SET invoice_id = NULL WHERE invoice_id = $1",
                &[&id],
            )
            .await
            .map_err(db("releasing a voided draft's records"))?;
            tx.execute("UPDATE invoices SET status = 'void' WHERE id = $1", &[&id])
                .await
                .map_err(db("voiding an invoice"))?;
        }
        (Transition::Void, "issued") => {
            tx.execute("UPDATE invoices SET status = 'void' WHERE id = $1", &[&id])
                .await
                .map_err(db("voiding an invoice"))?;
        }
        (t, s) => {
            let allowed = match t {
                Transition::Issue => "only a draft can be issued",
                Transition::Pay => "only an issued invoice can be paid",
                Transition::Void => "only a draft or issued invoice can be voided",
            };
            return Err(BillingError::Conflict(format!(
                "invoice {number} is {s}: {allowed}"
            )));
        }
    }
    tx.commit()
        .await
        .map_err(db("committing an invoice transition"))?;
    get_invoice(pool, id).await
}

/// Renders invoices for `gpuwatch report invoices`: text for people (one
/// line per invoice and per line, amounts with the currency symbol), CSV
/// (one row per invoice line, amounts as plain decimals) or JSON.
pub fn render(invoices: &[Invoice], format: ReportFormat) -> String {
    match format {
        ReportFormat::Json => serde_json::to_string_pretty(invoices)
            .map(|s| s + "\n")
            .unwrap_or_default(),
        ReportFormat::Csv => csv_table(
            [
                "invoice_number",
                "customer_id",
                "period_start",
                "period_end",
                "status",
                "currency",
                "charge_class",
                "resource_type",
                "gpu_model",
                "quantity",
                "unit",
                "unit_price",
                "amount",
                "invoice_total",
                "document_type",
                "tax_rate",
                "invoice_tax",
            ],
            invoices.iter().flat_map(|i| {
                i.lines.iter().map(move |l| {
                    [
                        i.invoice_number.clone(),
                        i.customer_id.to_string(),
                        i.period_start.to_rfc3339(),
                        i.period_end.to_rfc3339(),
                        i.status.to_string(),
                        i.currency.clone(),
                        l.charge_class.to_string(),
                        l.resource_type.to_string(),
                        l.gpu_model.clone().unwrap_or_default(),
                        l.quantity.to_string(),
                        l.unit.to_string(),
                        l.price_text(),
                        l.amount.to_string(),
                        i.total.to_string(),
                        i.document_type.clone(),
                        i.tax_rate.normalize().to_string(),
                        i.tax.to_string(),
                    ]
                })
            }),
        ),
        ReportFormat::Text => {
            let mut out = String::new();
            for i in invoices {
                let due = i
                    .due_at
                    .map(|d| format!("  due {}", d.format("%Y-%m-%d")))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{}  {}  customer {}  {}  {}  subtotal {}  tax {} ({}%)  total {}{due}\n",
                    i.invoice_number,
                    i.document_type.replace('_', " "),
                    i.customer_id,
                    i.period_start.format("%Y-%m"),
                    i.status,
                    money::display(i.subtotal, &i.currency),
                    money::display(i.tax, &i.currency),
                    (i.tax_rate * Decimal::ONE_HUNDRED).normalize(),
                    i.total_display
                ));
                for l in &i.lines {
                    out.push_str(&format!(
                        "    {:<10} {:<6} {:<10} {:>16} {:<9} {:>14}  at {}\n",
                        l.charge_class,
                        l.resource_type,
                        l.gpu_model.as_deref().unwrap_or("-"),
                        l.quantity.to_string(),
                        l.unit,
                        money::display(l.amount, &i.currency),
                        l.price_text()
                    ));
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let (s, e) = month_range("month", "2026-12").unwrap();
        assert_eq!(s.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert!(month_range("month", "2026-13")
            .unwrap_err()
            .starts_with("month: expected"));
        assert!(month_range("from", "oct").is_err());
    }
}
