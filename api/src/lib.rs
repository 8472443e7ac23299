//! gpuwatch's HTTP service, `gpuwatch serve`.
//!
//! - `GET /health`: the process is up. `GET /ready`: the database answers
//!   and its schema is what this binary expects (seed 003's probes).
//! - `GET /metrics`: Prometheus exposition from the [`gpuwatch_exporter`]
//!   snapshot (dcgm-exporter and node_exporter names).
//! - `/api/v1`: [`ingest`] for agents, then the management and reporting
//!   routes declared in one table ([`endpoints`]) that also writes the
//!   OpenAPI document served at `/api/v1/openapi.json`.
//! - [`auth`]: bearer tokens with roles, stored hashed, made and revoked
//!   by `gpuwatch token`; every route states the roles that may call it.
//!
//! Every error is a JSON body `{"error": {"status", "message", "details"?}}`,
//! unknown routes and methods included.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alerting;
pub mod auth;
pub mod billing;
mod config;
pub mod endpoints;
mod error;
pub mod extract;
pub mod ingest;
pub mod inventory;
pub mod list;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use gpuwatch_exporter::Exporter;
use gpuwatch_store::{BatchWriter, Pool, WriterConfig};
use tokio_util::sync::CancellationToken;

pub use config::ApiConfig;
use endpoints::{query, schema, Api, Endpoint, AGENT, FINANCE, READ, WRITE};
pub use error::ApiError;

/// host id → (inventory fingerprint, UUID → gpus.id).
type KnownInventory = Arc<Mutex<HashMap<String, (u64, HashMap<String, i64>)>>>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    writer: Arc<BatchWriter>,
    cfg: Arc<ApiConfig>,
    exporter: Arc<Exporter>,
    webhook_defaults: Arc<gpuwatch_alerter::WebhookConfig>,
    due_days: u32,
    /// host id → (inventory fingerprint, UUID → gpus.id): inventory is
    /// written only when it changes.
    known: KnownInventory,
}

impl AppState {
    /// State over a pool; `exporter` serves `/metrics` (its refresh loop
    /// is run by the caller, see [`Exporter::run`]).
    pub fn new(pool: Pool, writer: WriterConfig, cfg: ApiConfig, exporter: Arc<Exporter>) -> Self {
        AppState {
            writer: Arc::new(BatchWriter::new(pool.clone(), writer)),
            pool,
            cfg: Arc::new(cfg),
            exporter,
            webhook_defaults: Arc::default(),
            due_days: 30,
            known: Arc::default(),
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

    fn invoice_due_days(&self) -> u32 {
        self.due_days
    }

    fn webhook_defaults(&self) -> &gpuwatch_alerter::WebhookConfig {
        &self.webhook_defaults
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// `/api/v1`'s endpoints: the router and the OpenAPI document, from one table.
pub fn api(state: AppState) -> (Router<AppState>, serde_json::Value) {
    use alerting as al;
    use billing as bi;
    use gpuwatch_alerter::admin;
    use inventory as inv;
    use serde_json::Value;
    Api::new(state)
        .add_self_authenticated(
            Endpoint::get(
                "/api/v1/ingest",
                AGENT,
                "Store one batch of a host's samples (gzip'd JSON, IngestPayload).",
                schema::<serde_json::Value>,
            )
            .with_body("post", schema::<serde_json::Value>, 200),
            post(ingest::ingest),
        )
        .add(
            Endpoint::get(
                "/api/v1/hosts",
                READ,
                "Hosts with their latest sample.",
                schema::<list::Page<inv::Host>>,
            )
            .query(query::<inv::HostQuery>),
            get(inv::list_hosts),
        )
        .add(
            Endpoint::get(
                "/api/v1/hosts/{id}",
                READ,
                "One host, its latest sample and its GPUs.",
                schema::<inv::HostDetail>,
            ),
            get(inv::get_host),
        )
        .add(
            Endpoint::get(
                "/api/v1/gpus",
                READ,
                "GPUs with their latest sample.",
                schema::<list::Page<inv::Gpu>>,
            )
            .query(query::<inv::GpuQuery>),
            get(inv::list_gpus),
        )
        .add(
            Endpoint::get(
                "/api/v1/gpus/{id}",
                READ,
                "One GPU and its latest sample.",
                schema::<inv::Gpu>,
            ),
            get(inv::get_gpu),
        )
        .add(
            Endpoint::get(
                "/api/v1/series",
                READ,
                "A metric over time from the right tier (raw, hourly, daily), averaged per step.",
                schema::<inv::Series>,
            )
            .query(query::<inv::SeriesQuery>),
            get(inv::series),
        )
        .add(
            Endpoint::get(
                "/api/v1/alert-rules",
                READ,
                "Alert rules.",
                schema::<list::Page<gpuwatch_alerter::rule::Rule>>,
            )
            .query(query::<admin::RuleQuery>),
            get(al::list_rules),
        )
        .add(
            Endpoint::get(
                "/api/v1/alert-rules",
                WRITE,
                "Create a rule; every field and template is checked first.",
                schema::<gpuwatch_alerter::rule::Rule>,
            )
            .with_body("post", schema::<admin::RuleInput>, 201),
            post(al::create_rule),
        )
        .add(
            Endpoint::get(
                "/api/v1/alert-rules/{id}",
                READ,
                "One rule.",
                schema::<gpuwatch_alerter::rule::Rule>,
            ),
            get(al::get_rule),
        )
        .add(
            Endpoint::get(
                "/api/v1/alert-rules/{id}",
                WRITE,
                "Replace a rule.",
                schema::<gpuwatch_alerter::rule::Rule>,
            )
            .with_body("put", schema::<admin::RuleInput>, 200),
            put(al::update_rule),
        )
        .add(
            Endpoint::get(
                "/api/v1/alert-rules/{id}",
                WRITE,
                "Delete a rule (soft).",
                schema::<Value>,
            )
            .method("delete", 204),
            delete(al::delete_rule),
        )
        .add(
            Endpoint::get(
                "/api/v1/silences",
                READ,
                "Silences.",
                schema::<list::Page<admin::Silence>>,
            )
            .query(query::<admin::SilenceQuery>),
            get(al::list_silences),
        )
        .add(
            Endpoint::get(
                "/api/v1/silences",
                WRITE,
                "Create a silence.",
                schema::<admin::Silence>,
            )
            .with_body("post", schema::<admin::SilenceInput>, 201),
            post(al::create_silence),
        )
        .add(
            Endpoint::get(
                "/api/v1/silences/{id}",
                READ,
                "One silence.",
                schema::<admin::Silence>,
            ),
            get(al::get_silence),
        )
        .add(
            Endpoint::get(
                "/api/v1/silences/{id}",
                WRITE,
                "Replace a silence.",
                schema::<admin::Silence>,
            )
            .with_body("put", schema::<admin::SilenceInput>, 200),
            put(al::update_silence),
        )
        .add(
            Endpoint::get(
                "/api/v1/silences/{id}",
                WRITE,
                "Expire a silence.",
                schema::<Value>,
            )
            .method("delete", 204),
            delete(al::delete_silence),
        )
        .add(
            Endpoint::get(
                "/api/v1/webhooks",
                READ,
                "Webhooks (secrets are never returned).",
                schema::<list::Page<admin::Webhook>>,
            )
            .query(query::<admin::WebhookQuery>),
            get(al::list_webhooks),
        )
        .add(
            Endpoint::get(
                "/api/v1/webhooks",
                WRITE,
                "Create a webhook; its secret is write-only.",
                schema::<admin::Webhook>,
            )
            .with_body("post", schema::<admin::WebhookInput>, 201),
            post(al::create_webhook),
        )
        .add(
            Endpoint::get(
                "/api/v1/webhooks/{id}",
                READ,
                "One webhook.",
                schema::<admin::Webhook>,
            ),
            get(al::get_webhook),
        )
        .add(
            Endpoint::get(
                "/api/v1/webhooks/{id}",
                WRITE,
                "Replace a webhook; without secret the stored one stays.",
                schema::<admin::Webhook>,
            )
            .with_body("put", schema::<admin::WebhookInput>, 200),
            put(al::update_webhook),
        )
        .add(
            Endpoint::get(
                "/api/v1/webhooks/{id}",
                WRITE,
                "Delete a webhook.",
                schema::<Value>,
            )
            .method("delete", 204),
            delete(al::delete_webhook),
        )
        .add(
            Endpoint::get(
                "/api/v1/alerts",
                READ,
                "Pending and firing alerts.",
                schema::<list::Page<admin::AlertRecord>>,
            )
            .query(query::<admin::AlertQuery>),
            get(al::active_alerts),
        )
        .add(
            Endpoint::get(
                "/api/v1/alerts/history",
                READ,
                "Alerts in every state, newest first.",
                schema::<list::Page<admin::AlertRecord>>,
            )
            .query(query::<admin::AlertQuery>),
            get(al::alert_history),
        )
        .add(
            Endpoint::get(
                "/api/v1/notifications",
                READ,
                "Notifications of the outbox, with their delivery state.",
                schema::<list::Page<admin::Notification>>,
            )
            .query(query::<admin::NotificationQuery>),
            get(al::list_notifications),
        )
        .add(
            Endpoint::get(
                "/api/v1/notifications/{id}/replay",
                WRITE,
                "Send a dead-lettered notification again.",
                schema::<Value>,
            )
            .method("post", 202),
            post(al::replay_notification),
        )
        .add(
            Endpoint::get(
                "/api/v1/reports/usage",
                FINANCE,
                "Usage by customer, workspace, environment, resource or GPU model (JSON, or CSV with format=csv); sums exactly to the invoices.",
                schema::<bi::UsageReport>,
            )
            .query(query::<gpuwatch_billing::UsageQuery>),
            get(bi::usage),
        )
        .add(
            Endpoint::get("/api/v1/invoices", FINANCE, "Invoices with their lines.", schema::<gpuwatch_billing::InvoicePage>)
                .query(query::<gpuwatch_billing::InvoiceQuery>),
            get(bi::list_invoices),
        )
        .add(
            Endpoint::get("/api/v1/invoices/{id}", FINANCE, "One invoice with its lines.", schema::<gpuwatch_billing::Invoice>),
            get(bi::get_invoice),
        )
        .add(
            Endpoint::get("/api/v1/invoices/{id}/issue", FINANCE, "Issue a draft invoice; it never changes afterwards.", schema::<gpuwatch_billing::Invoice>)
                .method("post", 200),
            post(bi::issue_invoice),
        )
        .add(
            Endpoint::get("/api/v1/invoices/{id}/pay", FINANCE, "Mark an issued invoice paid.", schema::<gpuwatch_billing::Invoice>)
                .method("post", 200),
            post(bi::pay_invoice),
        )
        .add(
            Endpoint::get("/api/v1/invoices/{id}/void", FINANCE, "Void a draft or issued invoice.", schema::<gpuwatch_billing::Invoice>)
                .method("post", 200),
            post(bi::void_invoice),
        )
        .add(
            Endpoint::get("/api/v1/prices", FINANCE, "Effective-dated prices per resource and GPU model.", schema::<Vec<gpuwatch_billing::PriceEntry>>),
            get(bi::list_prices),
        )
        .add(
            Endpoint::get("/api/v1/prices", FINANCE, "Add a price from a date; the price it follows is closed.", schema::<gpuwatch_billing::PriceEntry>)
                .with_body("post", schema::<gpuwatch_billing::NewPrice>, 201),
            post(bi::add_price),
        )
        .finish()
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api(state.clone());
    let doc = Arc::new(doc);
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .merge(api)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route; the routes are listed in /api/v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method; see /api/v1/openapi.json",
            )
        })
        // The ingest handler enforces its own limits, with a JSON answer;
        // other bodies are small JSON documents.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// `/ready`: 200 when the database answers and every migration this binary
/// embeds is applied, naming the role (primary or standby) of the server
/// reached; 503 saying which check failed otherwise.
async fn ready(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let client = st.pool.get().await?;
    let role = gpuwatch_store::replication::role(&**client).await?;
    let pending = gpuwatch_store::pending_migrations(&client).await?;
    if !pending.is_empty() {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the database schema is not current on the {} reached: run `gpuwatch migrate`",
                role.as_str()
            ),
        );
        e.details = pending;
        return Err(e);
    }
    Ok(Json(serde_json::json!({
        "status": "ready",
        "migrations": gpuwatch_store::migrations().len(),
        "database": { "role": role.as_str() },
    })))
}

/// `/metrics`: the snapshot's bytes as they are (gzip'd once per refresh
/// for scrapers that accept it), then self-metrics.
async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let accept_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (chunks, gzipped) = st.exporter.scrape_encoded(accept_gzip);
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let mut resp = (
        [(header::CONTENT_TYPE, gpuwatch_exporter::CONTENT_TYPE)],
        Body::from_stream(stream),
    )
        .into_response();
    if gzipped {
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            axum::http::HeaderValue::from_static("gzip"),
        );
    }
    resp
}

/// Serves until `shutdown`, finishing requests in flight.
pub async fn serve(state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.cfg.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (api.listen / GPUWATCH_LISTEN): {e}",
                    state.cfg.listen
                ),
            )
        })?;
    let addr = listener.local_addr()?;
    // One line a supervisor (or a test) can read the real port from.
    tracing::info!(listen = %addr, "serving /api/v1, /metrics, /health and /ready");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
