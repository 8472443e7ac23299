//! From status history to billable usage: the pure part of the meter.
//!
//! An environment is billed while its status is `running`, for what it has
//! allocated (reservation, not utilisation): CPU cores, memory in GiB, GPUs
//! of its model. A DLWorkspace job is metered the same way from its own
//! status history, for its GPUs only (`job_gpu`, priced per GPU type, or by
//! the job_gpu price without a type), and billed or only reported as its
//! cluster's `billing` setting says. [`meter_period`] cuts one period of one environment into
//! segments of constant allocation and price; anything that makes the period
//! unbillable (a negative allocation, a resource with no price in force, a
//! currency the meter does not know) fails the whole period with one message
//! naming the environment, resource and period.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::money::Currency;

/// A billed resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// CPU cores, priced per core-hour.
    Cpu,
    /// Memory, priced per GiB-hour.
    Memory,
    /// GPUs of one model, priced per GPU-hour of that model.
    Gpu,
    /// A DLWorkspace job's GPUs, priced per GPU-hour of its GPU type (the
    /// price without a model where its type has none).
    JobGpu,
}

impl Resource {
    /// All billed resources, in record order.
    pub const ALL: [Resource; 4] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Gpu,
        Resource::JobGpu,
    ];

    /// Name in `billing_records.resource_type` and `billing_prices`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Gpu => "gpu",
            Resource::JobGpu => "job_gpu",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The unit of a quantity-hour, for reports.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "core-hour",
            Resource::Memory => "GiB-hour",
            Resource::Gpu | Resource::JobGpu => "GPU-hour",
        }
    }

    /// Whether prices and records of it name a GPU model.
    pub fn per_model(self) -> bool {
        matches!(self, Resource::Gpu | Resource::JobGpu)
    }
}

/// What a history row is the history of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An environment (`environment_status_history`): cpu, memory, gpu.
    Environment,
    /// A DLWorkspace job (`training_job_status_history`): job_gpu only;
    /// `billed` false for a cluster whose jobs are only reported.
    Job {
        /// The cluster's `billing` is "bill".
        billed: bool,
    },
}

impl Subject {
    /// The resources it is metered for.
    pub fn resources(self) -> &'static [Resource] {
        match self {
            Subject::Environment => &[Resource::Cpu, Resource::Memory, Resource::Gpu],
            Subject::Job { .. } => &[Resource::JobGpu],
        }
    }

    /// Whether its records go on invoices (false: usage reports only).
    pub fn billed(self) -> bool {
        match self {
            Subject::Environment => true,
            Subject::Job { billed } => billed,
        }
    }
}

/// One row of `environment_status_history` (or of a job's history, read
/// through the `billing_history` view): the state from `valid_from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Environment or job.
    pub subject: Subject,
    /// When this state began (whole seconds).
    pub valid_from: DateTime<Utc>,
    /// Owner; None for a job whose owner maps to no customer yet.
    pub customer_id: Option<i64>,
    /// Workspace, if any.
    pub workspace_id: Option<i64>,
    /// Status; only `running` is billed.
    pub status: String,
    /// CPU cores.
    pub cpu: i32,
    /// Memory in bytes.
    pub memory: i64,
    /// GPUs.
    pub gpu: i32,
    /// GPU model (the GPU price key).
    pub gpu_model: Option<String>,
}

/// One row of `billing_prices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// Priced resource.
    pub resource: Resource,
    /// GPU model ("" for cpu and memory).
    pub gpu_model: String,
    /// Price per unit-hour.
    pub unit_price: Decimal,
    /// Currency code as stored (checked when used); None: the customer's
    /// currency, else the default.
    pub currency: Option<String>,
    /// In force from.
    pub valid_from: DateTime<Utc>,
    /// In force until (exclusive); None = open.
    pub valid_to: Option<DateTime<Utc>>,
}

/// Prices by resource and model, each list sorted by start.
#[derive(Debug, Default, Clone)]
pub struct PriceBook {
    by_key: HashMap<(Resource, String), Vec<Price>>,
    /// Currencies of customers that have their own (billing_customer_settings).
    customer_currency: HashMap<i64, String>,
    /// `billing.default_currency`, for prices and customers that give none.
    default_currency: Option<Currency>,
}

impl PriceBook {
    /// Indexes a price list.
    pub fn new(prices: Vec<Price>) -> PriceBook {
        let mut by_key: HashMap<(Resource, String), Vec<Price>> = HashMap::new();
        for p in prices {
            by_key
                .entry((p.resource, p.gpu_model.clone()))
                .or_default()
                .push(p);
        }
        for v in by_key.values_mut() {
            v.sort_by_key(|p| p.valid_from);
        }
        PriceBook {
            by_key,
            ..PriceBook::default()
        }
    }

    /// Where a price gives no currency: the customer's, else `default`.
    pub fn with_currencies(
        mut self,
        customer_currency: HashMap<i64, String>,
        default: Option<Currency>,
    ) -> PriceBook {
        self.customer_currency = customer_currency;
        self.default_currency = default;
        self
    }

    /// The currency a price bills a customer in.
    fn currency(&self, p: &Price, customer: i64) -> Result<&'static str, String> {
        let code = p
            .currency
            .as_deref()
            .or_else(|| self.customer_currency.get(&customer).map(String::as_str));
        match (code, self.default_currency) {
            (Some(c), _) => Currency::parse(c).map(|c| c.code),
            (None, Some(d)) => Ok(d.code),
            (None, None) => Err(
                "no currency: the price gives none, nor the customer (billing_customer_settings) nor billing.default_currency".into(),
            ),
        }
    }

    /// The price in force at `t`.
    fn at(&self, r: Resource, model: &str, t: DateTime<Utc>) -> Option<&Price> {
        let list = self.by_key.get(&(r, model.to_string()))?;
        let i = list.partition_point(|p| p.valid_from <= t);
        list[..i]
            .last()
            .filter(|p| p.valid_to.is_none_or(|end| t < end))
    }
}

/// One billable segment: constant allocation, price and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Owner.
    pub customer_id: i64,
    /// Workspace, if any.
    pub workspace_id: Option<i64>,
    /// Resource.
    pub resource: Resource,
    /// GPU model for gpu rows.
    pub gpu_model: Option<String>,
    /// Units held (cores, GiB, GPUs).
    pub quantity: Decimal,
    /// Price per unit-hour.
    pub unit_price: Decimal,
    /// Currency.
    pub currency: &'static str,
    /// Segment start.
    pub start: DateTime<Utc>,
    /// Segment end (exclusive).
    pub end: DateTime<Utc>,
    /// Whether it goes on invoices (false: a report-only cluster's job).
    pub billed: bool,
}

impl Usage {
    /// Seconds covered.
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }

    fn joins(&self, next: &Usage) -> bool {
        self.end == next.start
            && self.customer_id == next.customer_id
            && self.workspace_id == next.workspace_id
            && self.resource == next.resource
            && self.gpu_model == next.gpu_model
            && self.quantity == next.quantity
            && self.unit_price == next.unit_price
            && self.currency == next.currency
            && self.billed == next.billed
    }
}

const BYTES_PER_GIB: i64 = 1 << 30;

/// Quantity of `r` held in state `s`; Err names what is wrong.
fn quantity(r: Resource, s: &State) -> Result<Decimal, String> {
    let (q, what) = match r {
        Resource::Cpu => (Decimal::from(s.cpu), "cores"),
        Resource::Memory => (
            // Exact for any whole number of KiB (at most 20 decimals).
            Decimal::from(s.memory) / Decimal::from(BYTES_PER_GIB),
            "bytes",
        ),
        Resource::Gpu | Resource::JobGpu => (Decimal::from(s.gpu), "GPUs"),
    };
    if q.is_sign_negative() && !q.is_zero() {
        let raw = match r {
            Resource::Cpu => s.cpu.to_string(),
            Resource::Memory => s.memory.to_string(),
            Resource::Gpu | Resource::JobGpu => s.gpu.to_string(),
        };
        return Err(format!("negative quantity {raw} {what}"));
    }
    Ok(q)
}

/// Bills one period `[start, end)` of one environment or job. `states` is
/// its history sorted by (valid_from, id); the last state at or before
/// `start` is in force at `start`.
pub fn meter_period(
    env_id: &str,
    states: &[State],
    prices: &PriceBook,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Usage>, String> {
    let mut out: Vec<Usage> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let first = states
        .partition_point(|s| s.valid_from <= start)
        .saturating_sub(1);
    for (i, s) in states.iter().enumerate().skip(first) {
        let a = s.valid_from.max(start);
        let b = states.get(i + 1).map_or(end, |n| n.valid_from.min(end));
        if a >= b || s.valid_from >= end {
            continue;
        }
        if s.status != "running" {
            continue;
        }
        for &r in s.subject.resources() {
            let fail = |what: String| {
                format!(
                    "{} {env_id} resource {} period {}..{}: {what}",
                    match s.subject {
                        Subject::Environment => "environment",
                        Subject::Job { .. } => "job",
                    },
                    r.as_str(),
                    start.to_rfc3339(),
                    end.to_rfc3339()
                )
            };
            let q = match quantity(r, s) {
                Ok(q) if q.is_zero() => continue,
                Ok(q) => q,
                Err(e) => {
                    problems.push(fail(e));
                    continue;
                }
            };
            let Some(customer_id) = s.customer_id else {
                problems.push(fail(
                    "the owner maps to no customer yet (dlworkspace_unmapped_owners); map it and the next run bills it".into(),
                ));
                continue;
            };
            let model = match (r, s.gpu_model.as_deref()) {
                (Resource::Gpu | Resource::JobGpu, Some(m)) if !m.is_empty() => m,
                (Resource::Gpu, _) => {
                    problems.push(fail(
                        "no price in force: the environment holds GPUs but has no gpu_model".into(),
                    ));
                    continue;
                }
                _ => "",
            };
            let mut at = a;
            while at < b {
                // A job's GPU type without a price of its own takes job_gpu's
                // price without a model.
                let found = prices.at(r, model, at).or_else(|| {
                    (r == Resource::JobGpu && !model.is_empty())
                        .then(|| prices.at(r, "", at))
                        .flatten()
                });
                let Some(p) = found else {
                    let m = if model.is_empty() {
                        String::new()
                    } else {
                        format!(" for model {model:?}")
                    };
                    problems.push(fail(format!(
                        "no price in force{m} at {}; add one to billing_prices",
                        at.to_rfc3339()
                    )));
                    break;
                };
                let currency = match prices.currency(p, customer_id) {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(fail(format!("price {}: {e}", p.unit_price)));
                        break;
                    }
                };
                // Split at price changes and at month starts (a period of a
                // shifted grid may straddle one; invoices are per calendar month).
                let seg_end = p.valid_to.map_or(b, |t| t.min(b)).min(next_month(at));
                let u = Usage {
                    customer_id,
                    workspace_id: s.workspace_id,
                    resource: r,
                    gpu_model: (r.per_model() && !model.is_empty()).then(|| model.to_string()),
                    quantity: q,
                    unit_price: p.unit_price,
                    currency,
                    start: at,
                    end: seg_end,
                    billed: s.subject.billed(),
                };
                push_merged(&mut out, u);
                at = seg_end;
            }
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(problems.join("; "));
    }
    out.sort_by_key(|x| (x.resource, x.start));
    Ok(out)
}

/// The first instant of the month after the one holding `t` (UTC).
fn next_month(t: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Appends, joining with the previous segment of the same resource when
/// nothing billable changed (so a status flip that changes nothing billed
/// does not split a record).
fn push_merged(out: &mut Vec<Usage>, u: Usage) {
    if let Some(prev) = out.iter_mut().rev().find(|p| p.resource == u.resource) {
        if prev.joins(&u) && next_month(prev.start) > u.start {
            prev.end = u.end;
            return;
        }
    }
    out.push(u);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }
    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }
    fn state(at: &str, status: &str, cpu: i32, gpu: i32) -> State {
        State {
            subject: Subject::Environment,
            valid_from: t(at),
            customer_id: Some(1),
            workspace_id: None,
            status: status.into(),
            cpu,
            memory: 2 * BYTES_PER_GIB,
            gpu,
            gpu_model: Some("H100".into()),
        }
    }
    fn price(r: Resource, model: &str, p: &str, cur: &str, from: &str, to: Option<&str>) -> Price {
        Price {
            resource: r,
            gpu_model: model.into(),
            unit_price: d(p),
            currency: Some(cur.into()),
            valid_from: t(from),
            valid_to: to.map(t),
        }
    }
    fn book() -> PriceBook {
        PriceBook::new(vec![
            price(
                Resource::Cpu,
                "",
                "0.05",
                "CNY",
                "2026-01-01T00:00:00Z",
                Some("2026-10-01T10:30:00Z"),
            ),
            price(
                Resource::Cpu,
                "",
                "0.06",
                "CNY",
                "2026-10-01T10:30:00Z",
                None,
            ),
            price(
                Resource::Memory,
                "",
                "0.01",
                "CNY",
                "2026-01-01T00:00:00Z",
                None,
            ),
            price(
                Resource::Gpu,
                "H100",
                "20",
                "CNY",
                "2026-01-01T00:00:00Z",
                None,
            ),
        ])
    }

    #[test]
    fn splits_at_status_resize_and_price_changes() {
        let states = vec![
            state("2026-10-01T09:50:00Z", "running", 4, 1),
            state("2026-10-01T10:15:00Z", "running", 8, 1),
            state("2026-10-01T10:45:00Z", "stopped", 8, 1),
        ];
        let u = meter_period(
            "env-1",
            &states,
            &book(),
            t("2026-10-01T10:00:00Z"),
            t("2026-10-01T11:00:00Z"),
        )
        .unwrap();
        let cpu: Vec<_> = u
            .iter()
            .filter(|x| x.resource == Resource::Cpu)
            .map(|x| (x.quantity, x.unit_price, x.seconds()))
            .collect();
        assert_eq!(
            cpu,
            vec![
                (d("4"), d("0.05"), 900),
                (d("8"), d("0.05"), 900),
                (d("8"), d("0.06"), 900)
            ]
        );
        // Memory and GPU did not change at 10:15: one segment each.
        let mem: Vec<_> = u
            .iter()
            .filter(|x| x.resource == Resource::Memory)
            .map(|x| (x.quantity, x.seconds()))
            .collect();
        assert_eq!(mem, vec![(d("2"), 2700)]);
    }

    #[test]
    fn bad_input_names_environment_resource_and_period() {
        let mut s = state("2026-10-01T09:00:00Z", "running", -2, 1);
        s.gpu_model = Some("T4".into());
        let e = meter_period(
            "env-9",
            &[s],
            &book(),
            t("2026-10-01T10:00:00Z"),
            t("2026-10-01T11:00:00Z"),
        )
        .unwrap_err();
        assert!(e.contains("environment env-9 resource cpu period 2026-10-01T10:00:00+00:00..2026-10-01T11:00:00+00:00: negative quantity -2 cores"), "{e}");
        assert!(
            e.contains("resource gpu") && e.contains("no price in force for model \"T4\""),
            "{e}"
        );
        let b = PriceBook::new(vec![
            price(Resource::Cpu, "", "1", "XYZ", "2026-01-01T00:00:00Z", None),
            price(
                Resource::Memory,
                "",
                "1",
                "CNY",
                "2026-01-01T00:00:00Z",
                None,
            ),
            price(
                Resource::Gpu,
                "H100",
                "1",
                "CNY",
                "2026-01-01T00:00:00Z",
                None,
            ),
        ]);
        let e = meter_period(
            "env-9",
            &[state("2026-10-01T09:00:00Z", "running", 2, 1)],
            &b,
            t("2026-10-01T10:00:00Z"),
            t("2026-10-01T11:00:00Z"),
        )
        .unwrap_err();
        assert!(
            e.contains("resource cpu") && e.contains("unknown currency \"XYZ\""),
            "{e}"
        );
    }

    #[test]
    fn a_period_straddling_a_month_start_is_split_there() {
        let states = vec![state("2026-10-31T00:00:00Z", "running", 1, 0)];
        let u = meter_period(
            "e",
            &states,
            &book(),
            t("2026-10-31T23:30:00Z"),
            t("2026-11-01T00:30:00Z"),
        )
        .unwrap();
        let cpu: Vec<_> = u
            .iter()
            .filter(|x| x.resource == Resource::Cpu)
            .map(|x| (x.start, x.end))
            .collect();
        assert_eq!(
            cpu,
            vec![
                (t("2026-10-31T23:30:00Z"), t("2026-11-01T00:00:00Z")),
                (t("2026-11-01T00:00:00Z"), t("2026-11-01T00:30:00Z")),
            ]
        );
    }

    #[test]
    fn nothing_before_the_first_state_or_while_stopped() {
        let states = vec![state("2026-10-01T10:59:59Z", "running", 1, 0)];
        let u = meter_period(
            "e",
            &states,
            &book(),
            t("2026-10-01T10:00:00Z"),
            t("2026-10-01T11:00:00Z"),
        )
        .unwrap();
        assert_eq!(u.len(), 2); // cpu and memory, one second each; no GPUs held
        assert!(u.iter().all(|x| x.seconds() == 1));
    }

    fn job(at: &str, status: &str, gpus: i32, model: Option<&str>, billed: bool) -> State {
        State {
            subject: Subject::Job { billed },
            cpu: 0,
            memory: 0,
            gpu_model: model.map(str::to_string),
            ..state(at, status, 0, gpus)
        }
    }

    #[test]
    fn a_job_bills_its_gpus_by_type_or_the_default_job_price() {
        let mut prices = book().by_key.into_values().flatten().collect::<Vec<_>>();
        prices.push(price(
            Resource::JobGpu,
            "A100",
            "12",
            "CNY",
            "2026-01-01T00:00:00Z",
            None,
        ));
        prices.push(price(
            Resource::JobGpu,
            "",
            "10",
            "CNY",
            "2026-01-01T00:00:00Z",
            None,
        ));
        let prices = PriceBook::new(prices);
        let (a, b) = (t("2026-10-01T10:00:00Z"), t("2026-10-01T11:00:00Z"));
        for (model, want_price, want_model) in [
            (Some("A100"), "12", Some("A100")),
            (Some("V100"), "10", Some("V100")),
            (None, "10", None),
        ] {
            let states = vec![
                job("2026-10-01T10:10:00Z", "running", 4, model, true),
                job("2026-10-01T10:40:00Z", "finished", 4, model, true),
            ];
            let u = meter_period("job:1", &states, &prices, a, b).unwrap();
            assert_eq!(u.len(), 1, "{u:?}");
            assert_eq!(u[0].resource, Resource::JobGpu);
            assert_eq!((u[0].quantity, u[0].seconds()), (d("4"), 1800));
            assert_eq!(u[0].unit_price, d(want_price));
            assert_eq!(u[0].gpu_model.as_deref(), want_model);
            assert!(u[0].billed);
        }
        // A report-only cluster's job: the same usage, not for invoices.
        let states = vec![job(
            "2026-10-01T10:10:00Z",
            "running",
            2,
            Some("A100"),
            false,
        )];
        let u = meter_period("job:2", &states, &prices, a, b).unwrap();
        assert!(!u[0].billed);
        // No job price at all, or no customer: the period fails, naming why.
        let e = meter_period("job:3", &states, &book(), a, b).unwrap_err();
        assert!(
            e.starts_with("job job:3 resource job_gpu") && e.contains("no price in force"),
            "{e}"
        );
        let mut unmapped = states.clone();
        unmapped[0].customer_id = None;
        let e = meter_period("job:4", &unmapped, &prices, a, b).unwrap_err();
        assert!(e.contains("maps to no customer"), "{e}");
    }
}
