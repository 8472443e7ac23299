//! `[billing]` of the config file.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::money::Currency;

/// `[billing]`: when the meter and the invoice run fire, and how they wait
/// for late data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// When the meter runs: a cron expression of the `cron` crate (seconds
    /// first, UTC), e.g. "0 10 * * * *" = ten past every hour.
    pub schedule: String,
    /// Length of a billing period on the UTC grid ("1h", "30m", "1d").
    pub period: String,
    /// Shift of the period grid from the epoch ("0s"; "30m" makes periods
    /// run from :30 to :30).
    pub period_offset: String,
    /// The meter bills only periods that ended at least this long ago, so
    /// status changes reported a little late are seen before billing.
    pub allowed_lateness: String,
    /// Periods metered per transaction when catching up (each commit
    /// advances the watermark together with its records).
    pub max_periods_per_run: u32,
    /// When the invoice run fires (cron, UTC): "0 0 0 1 * *" = 00:00 on the
    /// first of each month.
    pub invoice_schedule: String,
    /// The invoice run waits this long after its schedule fires, and cuts
    /// only months that ended at least this long ago.
    pub invoice_grace: String,
    /// Issue invoices as soon as they are cut (false: they stay drafts until
    /// issued through the API).
    pub auto_issue: bool,
    /// Days from issue to due date.
    pub due_days: u32,
    /// Currency of prices and customers that give none (ISO 4217).
    pub default_currency: String,
    /// Tax rate of customers without their own in billing_customer_settings
    /// ("0.06" = 6%), applied once per invoice to its subtotal.
    pub default_tax_rate: String,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            schedule: "0 10 * * * *".into(),
            period: "1h".into(),
            period_offset: "0s".into(),
            allowed_lateness: "5m".into(),
            max_periods_per_run: 24,
            invoice_schedule: "0 0 0 1 * *".into(),
            invoice_grace: "6h".into(),
            auto_issue: true,
            due_days: 30,
            default_currency: "CNY".into(),
            default_tax_rate: "0".into(),
        }
    }
}

/// The parsed, validated form of [`BillingConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Meter schedule.
    pub schedule: cron::Schedule,
    /// Period length.
    pub period: chrono::Duration,
    /// Grid shift.
    pub offset: chrono::Duration,
    /// Allowed lateness.
    pub lateness: chrono::Duration,
    /// Periods per transaction.
    pub max_periods_per_run: u32,
    /// Invoice schedule.
    pub invoice_schedule: cron::Schedule,
    /// Invoice grace.
    pub invoice_grace: chrono::Duration,
    /// Issue invoices when cut.
    pub auto_issue: bool,
    /// Days to due date.
    pub due_days: u32,
    /// Currency of prices and customers that give none.
    pub default_currency: Currency,
    /// Tax rate of customers without their own.
    pub default_tax_rate: rust_decimal::Decimal,
}

fn duration(key: &str, raw: &str, errors: &mut Vec<String>) -> chrono::Duration {
    match humantime::parse_duration(raw) {
        Ok(d) => chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
        Err(e) => {
            errors.push(format!(
                "billing.{key}: not a duration ({e}), got {raw:?}; write e.g. \"1h\" or \"5m\""
            ));
            chrono::Duration::zero()
        }
    }
}

fn schedule(key: &str, raw: &str, errors: &mut Vec<String>) -> Option<cron::Schedule> {
    cron::Schedule::from_str(raw)
        .map_err(|e| {
            errors.push(format!(
                "billing.{key}: not a cron expression ({e}), got {raw:?}; six fields, seconds first, e.g. \"0 10 * * * *\""
            ))
        })
        .ok()
}

impl BillingConfig {
    /// Every problem, as `billing.key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        self.settings().err().unwrap_or_default()
    }

    /// Parses and checks every key; all errors at once.
    pub fn settings(&self) -> Result<Settings, Vec<String>> {
        let mut e = Vec::new();
        let sched = schedule("schedule", &self.schedule, &mut e);
        let inv = schedule("invoice_schedule", &self.invoice_schedule, &mut e);
        let period = duration("period", &self.period, &mut e);
        let offset = duration("period_offset", &self.period_offset, &mut e);
        let lateness = duration("allowed_lateness", &self.allowed_lateness, &mut e);
        let grace = duration("invoice_grace", &self.invoice_grace, &mut e);
        if period < chrono::Duration::seconds(60)
            || period > chrono::Duration::days(1)
            || period.num_seconds() % 60 != 0
            || 86_400 % period.num_seconds().max(1) != 0
        {
            e.push(format!(
                "billing.period: must be whole minutes from 1m to 1d dividing a day, got {:?}",
                self.period
            ));
        }
        if offset >= period && period > chrono::Duration::zero() {
            e.push(format!(
                "billing.period_offset: must be shorter than billing.period, got {:?}",
                self.period_offset
            ));
        }
        if self.max_periods_per_run == 0 {
            e.push("billing.max_periods_per_run: must be at least 1, got 0".into());
        }
        let currency = Currency::parse(&self.default_currency).map_err(|m| {
            e.push(format!("billing.default_currency: {m}"));
        });
        let tax = match self
            .default_tax_rate
            .trim()
            .parse::<rust_decimal::Decimal>()
        {
            Ok(r)
                if r >= rust_decimal::Decimal::ZERO
                    && r < rust_decimal::Decimal::ONE
                    && r.scale() <= 6 =>
            {
                r
            }
            _ => {
                e.push(format!(
                    "billing.default_tax_rate: a fraction from 0 up to 1 with at most 6 decimals (\"0.06\" = 6%), got {:?}",
                    self.default_tax_rate
                ));
                rust_decimal::Decimal::ZERO
            }
        };
        match (sched, inv, currency) {
            (Some(schedule), Some(invoice_schedule), Ok(default_currency)) if e.is_empty() => {
                Ok(Settings {
                    schedule,
                    period,
                    offset,
                    lateness,
                    max_periods_per_run: self.max_periods_per_run,
                    invoice_schedule,
                    invoice_grace: grace,
                    auto_issue: self.auto_issue,
                    due_days: self.due_days,
                    default_currency,
                    default_tax_rate: tax,
                })
            }
            _ => Err(e),
        }
    }
}

impl Settings {
    /// The period length as a std duration (for display).
    pub fn period_std(&self) -> Duration {
        self.period.to_std().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = BillingConfig::default().settings().unwrap();
        assert_eq!(s.period, chrono::Duration::hours(1));
        assert_eq!(s.lateness, chrono::Duration::minutes(5));
    }

    #[test]
    fn every_bad_key_is_reported() {
        let cfg = BillingConfig {
            schedule: "hourly".into(),
            period: "7m".into(),
            allowed_lateness: "soon".into(),
            default_currency: "XXX".into(),
            default_tax_rate: "6%".into(),
            ..BillingConfig::default()
        };
        let e = cfg.validate();
        assert_eq!(e.len(), 5, "{e:?}");
        for key in [
            "schedule",
            "period",
            "allowed_lateness",
            "default_currency",
            "default_tax_rate",
        ] {
            assert!(
                e.iter().any(|m| m.starts_with(&format!("billing.{key}:"))),
                "{key}: {e:?}"
            );
        }
    }
}
