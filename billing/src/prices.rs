//! The price list: effective-dated prices per unit-hour.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{db, BillingError, Result};
use crate::money::Currency;
use crate::usage::Resource;

/// A stored price.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PriceEntry {
    /// Id.
    pub id: i64,
    /// cpu, memory, gpu or job_gpu.
    pub resource_type: String,
    /// GPU model of gpu prices ("" otherwise).
    pub gpu_model: String,
    /// Price per unit-hour.
    pub unit_price: Decimal,
    /// Currency; None: the customer's, else `billing.default_currency`.
    pub currency: Option<String>,
    /// In force from.
    pub valid_from: DateTime<Utc>,
    /// In force until (exclusive); None = until further notice.
    pub valid_to: Option<DateTime<Utc>>,
}

/// A new price. The open-ended price it follows (same resource and model,
/// starting earlier) is closed at `valid_from`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrice {
    /// cpu, memory, gpu or job_gpu (a DLWorkspace job's GPU-hour).
    pub resource_type: String,
    /// Required for gpu; for job_gpu the job's GPU type, or absent for the
    /// price of job GPUs whose type has none of its own; absent otherwise.
    #[serde(default)]
    pub gpu_model: Option<String>,
    /// Price per unit-hour (a string or number; kept exact).
    pub unit_price: Decimal,
    /// ISO 4217 code the meter knows; absent: each customer's currency, else
    /// `billing.default_currency`.
    #[serde(default)]
    pub currency: Option<String>,
    /// In force from (whole seconds).
    pub valid_from: DateTime<Utc>,
    /// In force until (exclusive).
    #[serde(default)]
    pub valid_to: Option<DateTime<Utc>>,
}

impl NewPrice {
    fn check(&self) -> Vec<String> {
        let mut e = Vec::new();
        let r = Resource::parse(&self.resource_type);
        if r.is_none() {
            e.push(format!(
                "resource_type: must be cpu, memory, gpu or job_gpu, got {:?}",
                self.resource_type
            ));
        }
        match (r, self.gpu_model.as_deref()) {
            (Some(Resource::Gpu), None | Some("")) => {
                e.push("gpu_model: required for a gpu price".into())
            }
            (Some(Resource::Cpu | Resource::Memory), Some(m)) if !m.is_empty() => {
                e.push("gpu_model: only gpu and job_gpu prices have a model".into())
            }
            _ => {}
        }
        if self.unit_price.is_sign_negative() {
            e.push(format!(
                "unit_price: must not be negative, got {}",
                self.unit_price
            ));
        }
        if self.unit_price.scale() > 10 {
            e.push(format!(
                "unit_price: at most 10 decimals, got {}",
                self.unit_price
            ));
        }
        if let Some(Err(m)) = self.currency.as_deref().map(Currency::parse) {
            e.push(format!("currency: {m}"));
        }
        if self.valid_from.timestamp_subsec_nanos() != 0 {
            e.push("valid_from: must be a whole second".into());
        }
        if self.valid_to.is_some_and(|t| t <= self.valid_from) {
            e.push("valid_to: must be after valid_from".into());
        }
        e
    }
}

const COLUMNS: &str =
    "id, resource_type, gpu_model, unit_price, currency::text, valid_from, valid_to";

fn entry(r: &tokio_postgres::Row) -> PriceEntry {
    PriceEntry {
        id: r.get(0),
        resource_type: r.get(1),
        gpu_model: r.get(2),
        unit_price: r.get(3),
        currency: r.get(4),
        valid_from: r.get(5),
        valid_to: r.get(6),
    }
}

/// Every price, by resource, model and start.
pub async fn list_prices(pool: &gpuwatch_store::Pool) -> Result<Vec<PriceEntry>> {
    let c = pool.get().await?;
    let rows = c
        .query(&format!("SELECT {COLUMNS} FROM billing_prices ORDER BY resource_type, gpu_model, valid_from"), &[])
        .await
        .map_err(db("listing billing_prices"))?;
    Ok(rows.iter().map(entry).collect())
}

/// Adds a price; `Conflict` if it overlaps a price already in force for
/// part of its span (other than the open-ended one it closes).
pub async fn add_price(pool: &gpuwatch_store::Pool, p: &NewPrice) -> Result<PriceEntry> {
    let problems = p.check();
    if !problems.is_empty() {
        return Err(BillingError::Invalid(problems));
    }
    let model = p.gpu_model.clone().unwrap_or_default();
    let mut c = pool.get().await?;
    let tx = c
        .transaction()
        .await
        .map_err(db("starting a price change"))?;
    tx.execute(
        "UPDATE billing_prices SET valid_to = $3
         WHERE resource_type = $1 AND gpu_model = $2 AND valid_to IS NULL AND valid_from < $3",
        &[&p.resource_type, &model, &p.valid_from],
    )
    .await
    .map_err(db("closing the price in force"))?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO billing_prices (resource_type, gpu_model, unit_price, currency, valid_from, valid_to)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[&p.resource_type, &model, &p.unit_price, &p.currency, &p.valid_from, &p.valid_to],
        )
        .await
        .map_err(db("adding a price (it overlaps another price of this resource and model)"))?;
    tx.commit().await.map_err(db("committing a price change"))?;
    Ok(entry(&row))
}
