//! [`AppState`]: what every handler shares.

use std::sync::Arc;

use gpuwatch_exporter::Exporter;
use gpuwatch_store::{Ingestor, Pool, WriterConfig};

use crate::ApiConfig;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) pool: Pool,
    /// The store's one ingest path (it caches unchanged inventories).
    pub(crate) ingestor: Arc<Ingestor>,
    pub(crate) cfg: Arc<ApiConfig>,
    pub(crate) exporter: Arc<Exporter>,
    pub(crate) webhook_defaults: Arc<gpuwatch_alerter::WebhookConfig>,
    pub(crate) due_days: u32,
    /// Token lookups, remembered for `api.token_cache`.
    pub(crate) tokens: Arc<crate::auth::TokenCache>,
}

impl AppState {
    /// State over a pool; `exporter` serves `/metrics` (its refresh loop
    /// is run by the caller, see [`Exporter::run`]).
    pub fn new(pool: Pool, writer: WriterConfig, cfg: ApiConfig, exporter: Arc<Exporter>) -> Self {
        AppState {
            tokens: Arc::new(crate::auth::TokenCache::new(
                std::time::Duration::from_secs(cfg.token_cache_secs),
            )),
            ingestor: Arc::new(Ingestor::new(
                pool.clone(),
                writer,
                crate::ingest::limits(&cfg),
            )),
            pool,
            cfg: Arc::new(cfg),
            exporter,
            webhook_defaults: Arc::default(),
            due_days: 30,
        }
    }

    /// Timeout and attempts of webhooks created without them
    /// (`[alerter.webhook]`).
    pub fn with_webhook_defaults(mut self, d: gpuwatch_alerter::WebhookConfig) -> Self {
        self.webhook_defaults = Arc::new(d);
        self
    }

    /// Payment term of invoices issued through the API (`billing.due_days`).
    pub fn with_invoice_due_days(mut self, days: u32) -> Self {
        self.due_days = days;
        self
    }

    pub(crate) fn invoice_due_days(&self) -> u32 {
        self.due_days
    }

    pub(crate) fn webhook_defaults(&self) -> &gpuwatch_alerter::WebhookConfig {
        &self.webhook_defaults
    }

    /// The caller of a request (401/403 when its token is not good),
    /// through the token cache.
    pub async fn caller(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<crate::auth::Caller, crate::ApiError> {
        self.tokens.caller(&self.pool, headers).await
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}
