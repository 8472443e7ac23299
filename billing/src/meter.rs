//! The meter: closed periods of status history → `billing_records`. The
//! history is `billing_history`: environments' and DLWorkspace jobs' (a
//! job's records are keyed `job:<training_jobs.id>` in `env_id`).
//!
//! One run, in one transaction: lock the watermark row, bill every period
//! from the watermark up to `now - allowed lateness` (at most
//! `max_periods_per_run` of them), write corrections for history that
//! changed behind the watermark, retry periods that earlier failed for bad
//! input, then advance the watermark and commit. A period of an environment
//! with bad input is skipped whole and recorded in `billing_meter_errors`;
//! the others go on. Double billing is refused by the database (the
//! exclusion constraint on billing_records), whatever the meter does.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures_util::pin_mut;
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use crate::error::{db, Result};
use crate::grid::Grid;
use crate::usage::{meter_period, Price, PriceBook, Resource, State, Subject, Usage};
use crate::{metrics, BillingError};

/// What the meter needs to know.
#[derive(Debug, Clone, Copy)]
pub struct MeterOptions {
    /// The period grid.
    pub grid: Grid,
    /// Bill only periods ending at least this long before now.
    pub lateness: chrono::Duration,
    /// Periods per transaction.
    pub max_periods: u32,
    /// Currency of prices and customers that give none (`billing.default_currency`).
    pub default_currency: Option<crate::money::Currency>,
}

/// What one meter run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MeterReport {
    /// Watermark before the run (None: nothing metered yet).
    pub from: Option<DateTime<Utc>>,
    /// Watermark after the run.
    pub to: Option<DateTime<Utc>>,
    /// Usage records written.
    pub records: u64,
    /// Correction records written (reversals and replacements).
    pub corrections: u64,
    /// Earlier failed periods billed by this run.
    pub retried: u64,
    /// One message per environment period skipped for bad input.
    pub errors: Vec<String>,
    /// True when the watermark reached `now - lateness`.
    pub caught_up: bool,
}

/// Usage rows to write, with their environment.
type Rows = Vec<(String, Usage)>;

/// A skipped environment period: env, start, end, message.
type Skipped = (String, DateTime<Utc>, DateTime<Utc>, String);

/// Runs the meter once (one transaction) as of `now`.
pub async fn meter_once(
    pool: &gpuwatch_store::Pool,
    opts: &MeterOptions,
    now: DateTime<Utc>,
) -> Result<MeterReport> {
    let started = std::time::Instant::now();
    let mut client = pool.get().await?;
    let tx = client
        .transaction()
        .await
        .map_err(db("starting the meter transaction"))?;
    let report = run_in(&tx, opts, now).await?;
    tx.commit()
        .await
        .map_err(db("committing billing records and the watermark"))?;
    metrics::meter_run(
        report.records,
        report.corrections,
        report.errors.len(),
        started.elapsed(),
    );
    Ok(report)
}

/// Runs the meter until it has caught up with `now - lateness`.
pub async fn meter_until_caught_up(
    pool: &gpuwatch_store::Pool,
    opts: &MeterOptions,
    now: DateTime<Utc>,
) -> Result<MeterReport> {
    let mut total = MeterReport::default();
    loop {
        let r = meter_once(pool, opts, now).await?;
        if total.from.is_none() {
            total.from = r.from;
        }
        total.to = r.to;
        total.records += r.records;
        total.corrections += r.corrections;
        total.retried += r.retried;
        // Each chunk retries the periods skipped so far: report each once.
        for e in r.errors {
            if !total.errors.contains(&e) {
                total.errors.push(e);
            }
        }
        total.caught_up = r.caught_up;
        if r.caught_up {
            return Ok(total);
        }
    }
}

async fn run_in(
    tx: &Transaction<'_>,
    opts: &MeterOptions,
    now: DateTime<Utc>,
) -> Result<MeterReport> {
    let grid = opts.grid;
    let wm: Option<DateTime<Utc>> = tx
        .query_one(
            "SELECT watermark FROM billing_meter_state WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(db(
            "locking the meter watermark (billing_meter_state; run gpuwatch migrate?)",
        ))?
        .get(0);
    let target = grid.floor(now - opts.lateness);
    let start = match wm {
        Some(w) => w,
        None => {
            let first: Option<DateTime<Utc>> = tx
                .query_one("SELECT min(valid_from) FROM billing_history", &[])
                .await
                .map_err(db("reading the first status change"))?
                .get(0);
            first.map_or(target, |f| grid.floor(f).min(target))
        }
    };
    let end = (start + grid.period * opts.max_periods as i32)
        .min(target)
        .max(start);
    let mut report = MeterReport {
        from: wm,
        to: Some(end),
        caught_up: end >= target,
        ..MeterReport::default()
    };
    let prices = PriceBook::new(load_prices(tx).await?)
        .with_currencies(customer_currencies(tx).await?, opts.default_currency);
    let mut rows: Rows = Vec::new();
    let mut errors: Vec<Skipped> = Vec::new();

    // Behind the old watermark first: corrections and retries.
    // Retried rows are written before corrections compare against the table.
    if let Some(w) = wm {
        let mut retried: Rows = Vec::new();
        retries(tx, &prices, w, &mut retried, &mut report, &mut errors).await?;
        report.records += copy_rows(tx, &retried, false).await?;
        corrections(tx, &grid, &prices, w, &mut report, &mut errors).await?;
    }
    // New periods.
    if end > start {
        let states = load_states(tx, start, end).await?;
        for (env, hist) in &states {
            for (ps, pe) in grid.periods(start, end) {
                match meter_period(env, hist, &prices, ps, pe) {
                    Ok(us) => rows.extend(us.into_iter().map(|u| (env.clone(), u))),
                    Err(m) => errors.push((env.clone(), ps, pe, m)),
                }
            }
        }
    }
    report.records += copy_rows(tx, &rows, false).await?;
    record_errors(tx, &errors).await?;
    report.errors.extend(errors.into_iter().map(|e| e.3));
    tx.execute(
        "UPDATE billing_meter_state SET watermark = $1, updated_at = now() WHERE id = 1",
        &[&end],
    )
    .await
    .map_err(db("advancing the meter watermark"))?;
    Ok(report)
}

/// Upserts skipped periods in one statement; logs each new one.
async fn record_errors(tx: &Transaction<'_>, errors: &[Skipped]) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let envs: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = errors.iter().map(|e| e.1).collect();
    let ends: Vec<DateTime<Utc>> = errors.iter().map(|e| e.2).collect();
    let msgs: Vec<&str> = errors.iter().map(|e| e.3.as_str()).collect();
    let fresh = tx
        .query(
            "INSERT INTO billing_meter_errors (env_id, period_start, period_end, message)
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[])
             ON CONFLICT (env_id, period_start) WHERE resolved_at IS NULL
             DO UPDATE SET message = EXCLUDED.message, last_seen_at = now()
             RETURNING env_id, period_start, period_end, message, xmax = 0",
            &[&envs, &starts, &ends, &msgs],
        )
        .await
        .map_err(db("recording skipped billing periods"))?;
    let mut repeated = 0;
    for r in &fresh {
        if r.get::<_, bool>(4) {
            let (env, ps, pe, m): (String, DateTime<Utc>, DateTime<Utc>, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            tracing::error!(env.id = %env, period.start = %ps, period.end = %pe, error = %m, "billing period skipped for bad input; fix the data and the next run bills it");
        } else {
            repeated += 1;
        }
    }
    if repeated > 0 {
        tracing::warn!(
            periods = repeated,
            "billing periods still skipped for bad input (see billing_meter_errors)"
        );
    }
    Ok(())
}

async fn customer_currencies(tx: &Transaction<'_>) -> Result<HashMap<i64, String>> {
    let rows = tx
        .query(
            "SELECT customer_id, currency::text FROM billing_customer_settings WHERE currency IS NOT NULL",
            &[],
        )
        .await
        .map_err(db("reading customers' currencies (billing_customer_settings)"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn load_prices(tx: &Transaction<'_>) -> Result<Vec<Price>> {
    let rows = tx
        .query(
            "SELECT resource_type, gpu_model, unit_price, currency::text, valid_from, valid_to FROM billing_prices",
            &[],
        )
        .await
        .map_err(db("reading billing_prices"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Price {
                resource: Resource::parse(r.get(0))?,
                gpu_model: r.get(1),
                unit_price: r.get(2),
                currency: r.get(3),
                valid_from: r.get(4),
                valid_to: r.get(5),
            })
        })
        .collect())
}

/// What the meter reads of `billing_history` (migration 0031: every
/// environment's history and the jobs' of clusters that are not "off").
const STATE_COLUMNS: &str =
    "env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from, subject, billed";

fn group_states(rows: Vec<tokio_postgres::Row>) -> Vec<(String, Vec<State>)> {
    let mut out: Vec<(String, Vec<State>)> = Vec::new();
    for r in rows {
        let env: String = r.get(0);
        let subject = match r.get::<_, &str>(9) {
            "job" => Subject::Job { billed: r.get(10) },
            _ => Subject::Environment,
        };
        let s = State {
            subject,
            customer_id: r.get(1),
            workspace_id: r.get(2),
            status: r.get(3),
            cpu: r.get(4),
            memory: r.get(5),
            gpu: r.get(6),
            gpu_model: r.get(7),
            valid_from: r.get(8),
        };
        match out.last_mut() {
            Some((e, v)) if *e == env => v.push(s),
            _ => out.push((env, vec![s])),
        }
    }
    out
}

/// Every environment's states relevant to `[start, end)`: the one in force
/// at `start` and the changes before `end`.
async fn load_states(
    tx: &Transaction<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(String, Vec<State>)>> {
    // Ids are per table: a row is (env_id, id).
    let sql = format!(
        "SELECT {STATE_COLUMNS} FROM billing_history
         WHERE valid_from < $2
           AND (valid_from >= $1 OR (env_id, id) IN (
                SELECT DISTINCT ON (env_id) env_id, id FROM billing_history
                WHERE valid_from <= $1 ORDER BY env_id, valid_from DESC, id DESC))
         ORDER BY env_id, valid_from, id"
    );
    let rows = tx.query(&sql, &[&start, &end]).await.map_err(db(
        "reading billing_history (environments' and jobs' status history)",
    ))?;
    Ok(group_states(rows))
}

async fn env_states(tx: &Transaction<'_>, envs: &[String]) -> Result<HashMap<String, Vec<State>>> {
    let sql = format!(
        "SELECT {STATE_COLUMNS} FROM billing_history
         WHERE env_id = ANY($1) ORDER BY env_id, valid_from, id"
    );
    let rows = tx.query(&sql, &[&envs]).await.map_err(db(
        "reading billing_history (environments' and jobs' status history)",
    ))?;
    Ok(group_states(rows).into_iter().collect())
}

/// Periods skipped earlier for bad input: billed now if the input is fixed.
async fn retries(
    tx: &Transaction<'_>,
    prices: &PriceBook,
    wm: DateTime<Utc>,
    rows: &mut Rows,
    report: &mut MeterReport,
    errors: &mut Vec<Skipped>,
) -> Result<()> {
    let open = tx
        .query(
            "SELECT e.id, e.env_id, e.period_start, e.period_end,
                    EXISTS (SELECT 1 FROM billing_records r WHERE r.env_id = e.env_id
                            AND r.start_time >= e.period_start AND r.start_time < e.period_end)
             FROM billing_meter_errors e
             WHERE e.resolved_at IS NULL AND e.period_end <= $1 ORDER BY e.env_id, e.period_start",
            &[&wm],
        )
        .await
        .map_err(db("reading billing_meter_errors"))?;
    if open.is_empty() {
        return Ok(());
    }
    let envs: Vec<String> = open
        .iter()
        .map(|r| r.get(1))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let states = env_states(tx, &envs).await?;
    let mut resolved: Vec<i64> = Vec::new();
    let mut requeue: (Vec<String>, Vec<DateTime<Utc>>) = (Vec::new(), Vec::new());
    for r in &open {
        let (id, env, ps, pe, billed): (i64, String, DateTime<Utc>, DateTime<Utc>, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        if billed {
            // A correction of this period failed earlier: recompute it as a
            // correction, not as fresh usage (which the constraint would refuse).
            resolved.push(id);
            requeue.0.push(env);
            requeue.1.push(ps);
            continue;
        }
        let hist = states.get(&env).map_or(&[][..], |v| v.as_slice());
        match meter_period(&env, hist, prices, ps, pe) {
            Ok(us) => {
                rows.extend(us.into_iter().map(|u| (env.clone(), u)));
                resolved.push(id);
                report.retried += 1;
            }
            Err(m) => errors.push((env, ps, pe, m)),
        }
    }
    tx.execute(
        "UPDATE billing_meter_errors SET resolved_at = now() WHERE id = ANY($1)",
        &[&resolved],
    )
    .await
    .map_err(db("resolving billed periods in billing_meter_errors"))?;
    tx.execute(
        "INSERT INTO billing_recompute_queue (env_id, from_time) SELECT * FROM unnest($1::text[], $2::timestamptz[])",
        &[&requeue.0, &requeue.1],
    )
    .await
    .map_err(db("queueing corrections"))?;
    Ok(())
}

/// An effective (not reversed) record, as compared with a recomputation.
struct Effective {
    id: i64,
    usage: Usage,
}

/// History changed behind the watermark: compare what is billed with what
/// the history now says, period by period, and write the difference as
/// correction records (reverse what is wrong, add what is right).
async fn corrections(
    tx: &Transaction<'_>,
    grid: &Grid,
    prices: &PriceBook,
    wm: DateTime<Utc>,
    report: &mut MeterReport,
    errors: &mut Vec<Skipped>,
) -> Result<()> {
    let queued = tx
        .query(
            "WITH claimed AS (DELETE FROM billing_recompute_queue RETURNING env_id, from_time)
             SELECT env_id, min(from_time) FROM claimed GROUP BY env_id ORDER BY env_id",
            &[],
        )
        .await
        .map_err(db("claiming billing_recompute_queue"))?;
    if queued.is_empty() {
        return Ok(());
    }
    let envs: Vec<String> = queued.iter().map(|r| r.get(0)).collect();
    let states = env_states(tx, &envs).await?;
    let mut reversals: Vec<i64> = Vec::new();
    let mut additions: Rows = Vec::new();
    for q in &queued {
        let env: String = q.get(0);
        let from = grid.floor(q.get::<_, DateTime<Utc>>(1));
        if from >= wm {
            continue;
        }
        let hist = states.get(&env).map_or(&[][..], |v| v.as_slice());
        let mut billed = effective(tx, &env, from, wm).await?;
        let open: HashSet<DateTime<Utc>> = tx
            .query(
                "SELECT period_start FROM billing_meter_errors WHERE env_id = $1 AND resolved_at IS NULL",
                &[&env],
            )
            .await
            .map_err(db("reading billing_meter_errors"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for (ps, pe) in grid.periods(from, wm) {
            if open.contains(&ps) {
                continue; // the retry path bills it once the input is fixed
            }
            let fresh = match meter_period(&env, hist, prices, ps, pe) {
                Ok(us) => us,
                Err(m) => {
                    errors.push((env.clone(), ps, pe, m));
                    continue;
                }
            };
            let mut old: Vec<Effective> = Vec::new();
            billed.retain_mut(|e| {
                if e.usage.start >= ps && e.usage.start < pe {
                    old.push(Effective {
                        id: e.id,
                        usage: e.usage.clone(),
                    });
                    false
                } else {
                    true
                }
            });
            for u in fresh {
                match old.iter().position(|e| e.usage == u) {
                    Some(i) => {
                        old.swap_remove(i);
                    }
                    None => additions.push((env.clone(), u)),
                }
            }
            reversals.extend(old.iter().map(|e| e.id));
        }
    }
    if !reversals.is_empty() {
        let n = tx
            .execute(
                "INSERT INTO billing_records (customer_id, env_id, workspace_id, resource_type, gpu_model,
                     quantity, usage_seconds, unit_price, currency, start_time, end_time, is_correction, corrects_id,
                     billed)
                 SELECT customer_id, env_id, workspace_id, resource_type, gpu_model,
                     -quantity, usage_seconds, unit_price, currency, start_time, end_time, true, id, billed
                 FROM billing_records WHERE id = ANY($1)",
                &[&reversals],
            )
            .await
            .map_err(db("writing reversal corrections"))?;
        report.corrections += n;
    }
    report.corrections += copy_rows(tx, &additions, true).await?;
    Ok(())
}

/// Records of `env` starting in `[from, to)` that still count: not
/// reversals, not reversed.
async fn effective(
    tx: &Transaction<'_>,
    env: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Effective>> {
    let rows = tx
        .query(
            "SELECT r.id, r.customer_id, r.workspace_id, r.resource_type, r.gpu_model, r.quantity,
                    r.unit_price, r.currency::text, r.start_time, r.end_time, r.billed
             FROM billing_records r
             WHERE r.env_id = $1 AND r.start_time >= $2 AND r.start_time < $3 AND r.corrects_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM billing_records x WHERE x.corrects_id = r.id)",
            &[&env, &from, &to],
        )
        .await
        .map_err(db("reading billed records for a correction"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let currency: String = r.get(7);
            Some(Effective {
                id: r.get(0),
                usage: Usage {
                    customer_id: r.get(1),
                    workspace_id: r.get(2),
                    resource: Resource::parse(r.get(3))?,
                    gpu_model: r.get(4),
                    quantity: r.get(5),
                    unit_price: r.get(6),
                    currency: crate::money::Currency::parse(&currency).ok()?.code,
                    start: r.get(8),
                    end: r.get(9),
                    billed: r.get(10),
                },
            })
        })
        .collect())
}

/// Binary COPY of usage rows into billing_records.
async fn copy_rows(tx: &Transaction<'_>, rows: &Rows, correction: bool) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sink = tx
        .copy_in(
            "COPY billing_records (customer_id, env_id, workspace_id, resource_type, gpu_model,
                 quantity, usage_seconds, unit_price, currency, start_time, end_time, is_correction, billed)
             FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(db("starting COPY into billing_records"))?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::VARCHAR,
            Type::INT8,
            Type::VARCHAR,
            Type::VARCHAR,
            Type::NUMERIC,
            Type::NUMERIC,
            Type::NUMERIC,
            Type::BPCHAR,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
            Type::BOOL,
            Type::BOOL,
        ],
    );
    pin_mut!(writer);
    for (env, u) in rows {
        let secs = Decimal::from(u.seconds());
        let currency = u.currency.to_string();
        writer
            .as_mut()
            .write(&[
                &u.customer_id,
                env,
                &u.workspace_id,
                &u.resource.as_str(),
                &u.gpu_model,
                &u.quantity,
                &secs,
                &u.unit_price,
                &currency,
                &u.start,
                &u.end,
                &correction,
                &u.billed,
            ])
            .await
            .map_err(copy_error)?;
    }
    writer.finish().await.map_err(copy_error)
}

fn copy_error(e: tokio_postgres::Error) -> BillingError {
    db("writing billing_records (an interval already billed is refused by ex_billing_records_no_overlap)")(e)
}
