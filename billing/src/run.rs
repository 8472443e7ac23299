//! `gpuwatch billing`: the meter and the invoice run on their cron schedules.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::grid::Grid;
use crate::invoice::{cut_invoices_with, CutReport, InvoiceDefaults, InvoiceOptions};
use crate::meter::{meter_until_caught_up, MeterOptions, MeterReport};
use crate::Result;

impl Settings {
    /// The meter's options.
    pub fn meter_options(&self) -> MeterOptions {
        MeterOptions {
            grid: Grid {
                period: self.period,
                offset: self.offset,
            },
            lateness: self.lateness,
            max_periods: self.max_periods_per_run,
            default_currency: Some(self.default_currency),
        }
    }

    /// What invoices take from configuration beyond their options.
    pub fn invoice_defaults(&self) -> InvoiceDefaults {
        InvoiceDefaults {
            tax_rate: self.default_tax_rate,
        }
    }

    /// The invoice run's options.
    pub fn invoice_options(&self) -> InvoiceOptions {
        InvoiceOptions {
            grace: self.invoice_grace,
            auto_issue: self.auto_issue,
            due_days: self.due_days,
        }
    }
}

/// `billing --once`: meter until caught up, then cut what invoices are due.
pub async fn run_once(
    pool: &gpuwatch_store::Pool,
    s: &Settings,
    now: DateTime<Utc>,
) -> Result<(MeterReport, CutReport)> {
    let m = meter_until_caught_up(pool, &s.meter_options(), now).await?;
    let c = cut_invoices_with(pool, &s.invoice_options(), &s.invoice_defaults(), now).await?;
    Ok((m, c))
}

/// The long-running role: one meter run per tick of `schedule`, the invoice
/// run at each tick of `invoice_schedule` plus the grace period (and again
/// after each meter run while a due month waits for the meter). Failures are
/// logged and retried at the next tick; the loop ends with `shutdown`.
pub async fn run(pool: gpuwatch_store::Pool, s: Settings, shutdown: CancellationToken) {
    // Catch up on start, as the invoice run does: periods that closed while
    // the meter was down are billed now, not at the next tick.
    match meter_until_caught_up(&pool, &s.meter_options(), Utc::now()).await {
        Ok(r) => log_meter(&r),
        Err(e) => tracing::error!(error = %e, "meter run failed; retrying at the next tick"),
    }
    let mut invoice_pending = true; // catch up on start
    let mut next_invoice = next_tick(&s.invoice_schedule, Utc::now()).map(|t| t + s.invoice_grace);
    loop {
        let now = Utc::now();
        if invoice_pending {
            match cut_invoices_with(&pool, &s.invoice_options(), &s.invoice_defaults(), now).await {
                Ok(r) => {
                    invoice_pending = r.waiting_for_meter.is_some();
                    if let Some(w) = r.waiting_for_meter {
                        tracing::info!(waiting = %w, "invoices wait for the meter; retried after its next run");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "invoice run failed; retrying after the next meter run")
                }
            }
        }
        let Some(next_meter) = next_tick(&s.schedule, Utc::now()) else {
            tracing::error!("billing.schedule has no future tick; the meter stops");
            return;
        };
        let wake = next_invoice.map_or(next_meter, |i| i.min(next_meter));
        let sleep = (wake - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
        }
        let now = Utc::now();
        if next_invoice.is_some_and(|i| i <= now) {
            invoice_pending = true;
            next_invoice = next_tick(&s.invoice_schedule, now).map(|t| t + s.invoice_grace);
        }
        if next_meter <= now {
            // Each chunk of periods is its own transaction, so a long
            // catch-up never holds the watermark lock for long.
            match meter_until_caught_up(&pool, &s.meter_options(), now).await {
                Ok(r) => log_meter(&r),
                Err(e) => {
                    tracing::error!(error = %e, "meter run failed; retrying at the next tick")
                }
            }
        }
    }
}

fn next_tick(schedule: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&after).next()
}

fn log_meter(r: &MeterReport) {
    tracing::info!(
        from = ?r.from, to = ?r.to, records = r.records, corrections = r.corrections,
        retried = r.retried, skipped = r.errors.len(), "meter run"
    );
}
