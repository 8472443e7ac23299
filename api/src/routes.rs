//! The route table: `/api/v1` from one list of [`Endpoint`]s (which also
//! writes the OpenAPI document), plus the probes and the fallbacks.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};

use crate::endpoints::{
    query, schema, Api, Endpoint, ADMIN, AGENT, AGENT_ONLY, FINANCE, READ, WRITE,
};
use crate::probes::{metrics, ready};
use crate::{agent, alerting, billing, ingest, inventory, jobs, list, ApiError, AppState};

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
                crate::endpoints::ingest_result,
            )
            .with_body("post", crate::endpoints::ingest_payload, 200),
            post(ingest::ingest),
        )
        .add(
            Endpoint::get(
                "/api/v1/agent/environments",
                AGENT_ONLY,
                "The running environments placed on the agent token's host.",
                schema::<Vec<gpuwatch_store::placement::PlacedEnvironment>>,
            )
            .query(query::<agent::EnvironmentsQuery>),
            get(agent::environments),
        )
        .add(
            Endpoint::get(
                "/api/v1/whoami",
                crate::console::ANY,
                "The calling token's id and role (the console offers what the role may do).",
                schema::<crate::console::WhoAmI>,
            ),
            get(crate::console::whoami),
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
                "/api/v1/hosts/{id}",
                WRITE,
                "Put a host into maintenance (kept through its reports) or back online; set the operator's labels.",
                schema::<inv::HostDetail>,
            )
            .with_body("patch", schema::<inv::HostPatch>, 200),
            patch(inv::patch_host),
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
                "/api/v1/jobs",
                READ,
                "DLWorkspace training jobs, newest first.",
                schema::<list::Page<jobs::Job>>,
            )
            .query(query::<jobs::JobQuery>),
            get(jobs::list_jobs),
        )
        .add(
            Endpoint::get(
                "/api/v1/jobs/{cluster}/{job_id}",
                READ,
                "One training job and its status history.",
                schema::<jobs::JobDetail>,
            ),
            get(jobs::get_job),
        )
        .add(
            Endpoint::get(
                "/api/v1/gpus/{id}/move",
                ADMIN,
                "Move a GPU to another host (the card was moved); its UUID is refused to the old host from then on.",
                schema::<inv::Gpu>,
            )
            .with_body("post", schema::<inv::GpuMove>, 200),
            post(inv::move_gpu),
        )
        .add(
            Endpoint::get(
                "/api/v1/series",
                READ,
                "A metric over time from the right tier (raw, hourly, daily): avg, min, max, sum, count or p95 of a gauge, increase or rate of a counter, per step.",
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
                "/api/v1/inhibit-rules",
                READ,
                "Inhibition rules.",
                schema::<list::Page<admin::Inhibition>>,
            )
            .query(query::<admin::InhibitionQuery>),
            get(al::list_inhibitions),
        )
        .add(
            Endpoint::get(
                "/api/v1/inhibit-rules",
                WRITE,
                "Create an inhibition rule.",
                schema::<admin::Inhibition>,
            )
            .with_body("post", schema::<admin::InhibitionInput>, 201),
            post(al::create_inhibition),
        )
        .add(
            Endpoint::get(
                "/api/v1/inhibit-rules/{id}",
                READ,
                "One inhibition rule.",
                schema::<admin::Inhibition>,
            ),
            get(al::get_inhibition),
        )
        .add(
            Endpoint::get(
                "/api/v1/inhibit-rules/{id}",
                WRITE,
                "Replace an inhibition rule.",
                schema::<admin::Inhibition>,
            )
            .with_body("put", schema::<admin::InhibitionInput>, 200),
            put(al::update_inhibition),
        )
        .add(
            Endpoint::get(
                "/api/v1/inhibit-rules/{id}",
                WRITE,
                "Delete an inhibition rule.",
                schema::<Value>,
            )
            .method("delete", 204),
            delete(al::delete_inhibition),
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
                "/api/v1/alerts/{id}/acknowledge",
                WRITE,
                "Acknowledge an open alert (by the token's name): while it fires, repeat_interval does not re-notify it; 409 once resolved.",
                schema::<admin::AlertRecord>,
            )
            .method("post", 200),
            post(al::acknowledge_alert),
        )
        .add(
            Endpoint::get(
                "/api/v1/alerts/{id}/acknowledge",
                WRITE,
                "Take an acknowledgement back: repeat_interval re-notifies the alert again.",
                schema::<admin::AlertRecord>,
            )
            .method("delete", 200),
            delete(al::unacknowledge_alert),
        )
        .add(
            Endpoint::get(
                "/api/v1/notifications",
                READ,
                "Notifications of the outbox, with their delivery state and the alerts each carries.",
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
            .query(query::<gpuwatch_billing::UsageQuery>)
            .or_csv(),
            get(bi::usage),
        )
        .add(
            Endpoint::get("/api/v1/reports/invoices", FINANCE, "Invoices as `gpuwatch report invoices` prints them (CSV, one row per line, or JSON).", schema::<String>)
                .query(query::<crate::console::InvoiceExportQuery>)
                .or_csv(),
            get(crate::console::invoice_export),
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
        .fallback(crate::console::fallback)
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
