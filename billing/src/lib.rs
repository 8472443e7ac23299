//! gpuwatch billing: the meter, monthly invoices and finance usage reports.
//!
//! - Usage comes from reservations, not samples: a trigger on `environments`
//!   writes every status and allocation change to
//!   `environment_status_history`, to the second ([`usage`] turns it into
//!   segments of constant allocation and price). DLWorkspace jobs come the
//!   same way from `training_job_status_history` (resource `job_gpu`); the
//!   meter reads both through the `billing_history` view.
//! - [`meter`] bills closed periods of a UTC [`grid::Grid`] into
//!   `billing_records` (one row per environment, resource and period, split
//!   where allocation or price changes), advancing its watermark in the same
//!   transaction. The database refuses double billing (unique key plus an
//!   exclusion constraint on overlapping intervals). History that changes
//!   behind the watermark becomes correction records; bad input skips that
//!   environment's period whole and is recorded in `billing_meter_errors`.
//! - [`invoice`] cuts monthly invoices per customer and currency after a
//!   grace period; [`report`] splits invoice lines for finance so rows sum
//!   exactly to the invoices; [`prices`] manages effective-dated prices.
//!
//! Money: `NUMERIC` in SQL, [`rust_decimal::Decimal`] in Rust, never a float.
//! **The one rounding rule**: an invoice line is the exact sum over its
//! records of quantity × seconds × unit price / 3600, rounded once to two
//! decimals, half away from zero, by the SQL function `gpuwatch_round_money`
//! (exact div/mod arithmetic); an invoice total is the exact sum of its
//! rounded lines. Nothing else rounds money (not `Decimal::round_dp`, which
//! is banker's rounding, nor SQL `round()`). Report rows that split a line
//! get its amount by largest remainder, so they add up to the cent.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
mod config;
mod error;
pub mod format;
pub mod grid;
pub mod invoice;
pub mod meter;
mod metrics;
pub mod money;
pub mod prices;
pub mod report;
mod run;
pub mod usage;

pub use config::{BillingConfig, Settings};
pub use error::{BillingError, Result};
pub use format::{csv_table, ReportFormat};
pub use invoice::{
    cut_invoices, get_invoice, list_invoices, transition, Invoice, InvoiceLine, InvoicePage,
    InvoiceQuery, Transition,
};
pub use meter::{meter_once, meter_until_caught_up, MeterOptions, MeterReport};
pub use metrics::register_metrics;
pub use prices::{add_price, list_prices, NewPrice, PriceEntry};
pub use report::{to_csv, usage_report, GroupBy, UsageQuery, UsageRow, UsageSpec};
pub use run::{run, run_once};
