//! The HTTP sink: `POST /api/v1/ingest` on `gpuwatch serve`, one request per
//! host of a batch, gzip'd JSON ([`IngestPayload`]), with the host's bearer token.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use super::SinkError;
use crate::{HttpConfig, Inventory};
use flate2::{write::GzEncoder, Compression};
use gpuwatch_store::{Batch, IngestPayload, PAYLOAD_VERSION};

use super::tls::explain;

/// Pushes batches to the central service.
pub struct HttpSink {
    client: reqwest::Client,
    endpoint: String,
    environments: String,
    token: String,
    inventory: Inventory,
}

impl HttpSink {
    /// A sink for `cfg`.
    pub fn new(cfg: &HttpConfig) -> Result<Self, SinkError> {
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(cfg.timeout_secs));
        let client = cfg
            .tls_files()
            .apply(builder)
            .map_err(|message| SinkError {
                transient: false,
                message,
            })?
            .build()
            .map_err(|e| SinkError {
                transient: false,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(HttpSink {
            client,
            endpoint: format!("{}/api/v1/ingest", cfg.url.trim_end_matches('/')),
            environments: format!(
                "{}/api/v1/agent/environments",
                cfg.url.trim_end_matches('/')
            ),
            token: cfg.token.clone(),
            inventory: Vec::new(),
        })
    }

    /// Remembers the inventory; it travels with every payload and the server
    /// writes it only when it changed.
    pub fn register(&mut self, inv: &Inventory) {
        self.inventory = inv.clone();
    }

    /// Sends the batch, one request per host. A failure part-way is safe to
    /// retry whole: the server skips samples it already stored.
    pub async fn send(&mut self, batch: &Batch) -> Result<u64, SinkError> {
        let mut per_host: HashMap<&str, Batch> = HashMap::new();
        for r in &batch.gpu {
            per_host
                .entry(&r.sample.host_id)
                .or_default()
                .gpu
                .push(r.clone());
        }
        for h in &batch.host {
            per_host.entry(&h.host_id).or_default().host.push(h.clone());
        }
        for e in &batch.env {
            per_host.entry(&e.host_id).or_default().env.push(e.clone());
        }
        let mut inserted = 0;
        let mut hosts: Vec<_> = per_host.into_iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        for (host_id, part) in hosts {
            let Some((host, gpus)) = self.inventory.iter().find(|(h, _)| h.id == host_id) else {
                return Err(SinkError {
                    transient: false,
                    message: format!(
                        "batch names host {host_id:?}, which this agent did not register"
                    ),
                });
            };
            let payload = IngestPayload {
                version: PAYLOAD_VERSION,
                host: host.clone(),
                gpus: gpus.clone(),
                batch: part,
            };
            inserted += self.post(&payload).await?;
        }
        Ok(inserted)
    }

    async fn post(&self, payload: &IngestPayload) -> Result<u64, SinkError> {
        let json = serde_json::to_vec(payload).map_err(|e| SinkError {
            transient: false,
            message: format!("cannot encode the payload: {e}"),
        })?;
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        let body = gz
            .write_all(&json)
            .and_then(|_| gz.finish())
            .map_err(|e| SinkError {
                transient: false,
                message: format!("cannot compress the payload: {e}"),
            })?;
        let resp = self
            .client
            .post(&self.endpoint)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError {
                transient: true,
                message: format!("POST {} failed: {}", self.endpoint, explain(&e)),
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            let inserted = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["inserted"].as_u64())
                .unwrap_or(0);
            return Ok(inserted);
        }
        let code = status.as_u16();
        if code == 401 || code == 403 {
            tracing::error!(status = code, answer = %text.trim(), "serve refused this agent's token; fix collector.http.token (batches wait in the spool)");
        }
        let transient = status.is_server_error() || matches!(code, 401 | 403 | 408 | 429);
        Err(SinkError {
            transient,
            message: format!("POST {} answered {status}: {}", self.endpoint, text.trim()),
        })
    }

    /// The running environments placed on `host`, from serve's agent
    /// endpoint (the token decides which host that may be).
    pub async fn environments(&self, host: &str) -> Option<Vec<crate::sources::cgroup::EnvTarget>> {
        let got = async {
            let resp = self
                .client
                .get(&self.environments)
                .query(&[("host", host)])
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| explain(&e))?;
            let status = resp.status();
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                return Err(format!("answered {status}: {}", text.trim()));
            }
            resp.json::<Vec<gpuwatch_store::placement::PlacedEnvironment>>()
                .await
                .map_err(|e| format!("the answer is not an environment list: {e}"))
        };
        match got.await {
            Ok(placed) => Some(placed.into_iter().map(Into::into).collect()),
            Err(e) => {
                tracing::warn!(url = %self.environments, error = %e, "cannot refresh the environment list; keeping the last one");
                None
            }
        }
    }
}
