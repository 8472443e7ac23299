//! Delivery workers: claim one due outbox row with `FOR UPDATE SKIP LOCKED`,
//! send it, log the attempt in `webhook_logs`, and record the outcome, all
//! in the claim's transaction. The row stays locked while it is sent, so no
//! other worker or replica can send it too; a crash mid-send rolls the claim
//! back and the row is sent again with the same id, which is why receivers
//! get `webhook-id` as an idempotency key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::channels::email::EmailChannel;
use crate::channels::webhook::{self, WebhookTarget};
use crate::channels::Attempt;
use crate::error::{q, AlerterError, Result};
use crate::telemetry::{DELIVERY_DURATION, NOTIFICATIONS};
use crate::AlerterConfig;

/// Sends what the outbox holds.
pub struct Deliverer {
    pool: gpuwatch_store::Pool,
    cfg: AlerterConfig,
    http: reqwest::Client,
    email: Option<EmailChannel>,
}

/// What [`Deliverer::deliver_one`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// Delivered.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed for good (dead letter).
    Dead,
}

impl Deliverer {
    /// Builds the HTTP and SMTP clients.
    pub fn new(pool: gpuwatch_store::Pool, cfg: AlerterConfig) -> Result<Deliverer> {
        let http = reqwest::Client::builder().build().map_err(|e| {
            AlerterError::Invalid(vec![format!("alerter: cannot build the HTTP client: {e}")])
        })?;
        let email = EmailChannel::new(&cfg.smtp).map_err(|e| AlerterError::Invalid(vec![e]))?;
        Ok(Deliverer {
            pool,
            cfg,
            http,
            email,
        })
    }

    /// Claims and sends one due notification.
    pub async fn deliver_one(&self) -> Result<Outcome> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(q("starting a delivery"))?;
        let Some(row) = tx
            .query_opt(
                "SELECT o.id::text, o.channel, o.webhook_id, o.email_to, o.payload, o.attempts,
                        o.total_attempts, w.url, w.secret, w.headers, w.timeout_ms, w.max_attempts,
                        (w.enabled AND w.deleted_at IS NULL)
                 FROM alert_outbox o LEFT JOIN webhooks w ON w.id = o.webhook_id
                 WHERE o.status = 'pending' AND o.next_attempt_at <= now()
                 ORDER BY o.next_attempt_at LIMIT 1
                 FOR UPDATE OF o SKIP LOCKED",
                &[],
            )
            .await
            .map_err(q("claiming a notification"))?
        else {
            return Ok(Outcome::Idle);
        };
        let id: String = row.get(0);
        let channel: String = row.get(1);
        let webhook_id: Option<i64> = row.get(2);
        let payload: Value = row.get(4);
        let attempts: i32 = row.get(5);
        let total: i32 = row.get(6);
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let started = Instant::now();
        let (attempt, max_attempts) = if channel == "webhook" {
            let live: Option<bool> = row.get(12);
            let max: i32 = row
                .get::<_, Option<i32>>(11)
                .unwrap_or(self.cfg.webhook.max_attempts);
            if live != Some(true) {
                let msg = format!(
                    "webhook {} is deleted or disabled; enable it and replay the notification",
                    webhook_id.unwrap_or_default()
                );
                (
                    Attempt::failed(
                        row.get::<_, Option<String>>(7).unwrap_or_default(),
                        msg,
                        true,
                    ),
                    max,
                )
            } else {
                let url: String = row.get(7);
                match crate::store::json(&row, 9) {
                    Ok(headers) => {
                        let target = WebhookTarget {
                            id: webhook_id.unwrap_or_default(),
                            url,
                            secret: row.get(8),
                            headers,
                            timeout: Duration::from_millis(row.get::<_, i32>(10).max(1) as u64),
                        };
                        (webhook::send(&self.http, &target, &id, &body).await, max)
                    }
                    // Sending without the headers the receiver expects (auth,
                    // routing) could deliver to the wrong place: a dead letter
                    // to fix and replay instead.
                    Err(e) => {
                        let msg = format!(
                            "webhook {}: {e}; fix its headers with PUT /api/v1/webhooks/{} and replay the notification",
                            webhook_id.unwrap_or_default(),
                            webhook_id.unwrap_or_default()
                        );
                        (Attempt::failed(url, msg, true), max)
                    }
                }
            }
        } else {
            let to = crate::store::json::<Vec<String>>(&row, 3);
            let a = match (&self.email, to) {
                (_, Err(e)) => Attempt::failed(
                    "smtp://".into(),
                    format!("notification {id}: {e}; the recipients are unknown, nothing was sent"),
                    true,
                ),
                (Some(e), Ok(to)) => e.send(&id, &to, &payload).await,
                (None, Ok(_)) => Attempt::failed(
                    "smtp://".into(),
                    "e-mail is not configured: set alerter.smtp.host, then replay the notification"
                        .into(),
                    false,
                ),
            };
            (a, self.cfg.smtp.max_attempts)
        };
        let latency = started.elapsed();
        DELIVERY_DURATION
            .with_label_values(&[&channel])
            .observe(latency.as_secs_f64());
        tx.execute(
            "INSERT INTO webhook_logs (webhook_id, notification_id, attempt, request_url, request_body,
                 status_code, response_body, latency_ms, error, succeeded)
             VALUES ($1, $2::text::uuid, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &webhook_id,
                &id,
                &(total + 1),
                &attempt.url,
                &payload,
                &attempt.status,
                &attempt.response,
                &(latency.as_millis().min(i32::MAX as u128) as i32),
                &attempt.error,
                &attempt.ok,
            ],
        )
        .await
        .map_err(q("logging a delivery attempt"))?;
        let outcome = if attempt.ok {
            Outcome::Delivered
        } else if attempt.permanent || attempts + 1 >= max_attempts {
            Outcome::Dead
        } else {
            Outcome::Retry
        };
        let delay = backoff::delay(
            Duration::from_secs_f64(self.cfg.webhook.backoff_base_secs),
            Duration::from_secs_f64(self.cfg.webhook.backoff_max_secs),
            (attempts + 1) as u32,
            backoff::jitter(),
            attempt.retry_after,
        );
        let status = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Dead => "dead",
            _ => "pending",
        };
        tx.execute(
            "UPDATE alert_outbox SET status = $2::text, attempts = attempts + 1, total_attempts = total_attempts + 1,
                 last_error = $3, delivered_at = CASE WHEN $2::text = 'delivered' THEN now() END,
                 next_attempt_at = CASE WHEN $2::text = 'pending' THEN now() + make_interval(secs => $4) ELSE next_attempt_at END
             WHERE id = $1::text::uuid",
            &[&id, &status, &attempt.error, &delay.as_secs_f64()],
        )
        .await
        .map_err(q("recording a delivery"))?;
        tx.commit().await.map_err(q("committing a delivery"))?;
        let result = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Dead => "dead",
            _ => "retry",
        };
        NOTIFICATIONS.with_label_values(&[&channel, result]).inc();
        match outcome {
            Outcome::Dead => tracing::error!(
                notification.id = %id, channel = %channel, attempts = attempts + 1,
                error = attempt.error.as_deref().unwrap_or(""),
                "notification dead-lettered; fix the receiver, then replay it"
            ),
            Outcome::Retry => tracing::warn!(
                notification.id = %id, channel = %channel, attempt = attempts + 1,
                retry_in_ms = delay.as_millis() as u64, error = attempt.error.as_deref().unwrap_or(""),
                "delivery failed; will retry"
            ),
            _ => tracing::debug!(notification.id = %id, channel = %channel, "delivered"),
        }
        Ok(outcome)
    }

    /// Delivers until nothing is due (for `--once`).
    pub async fn drain(&self) -> Result<usize> {
        let mut n = 0;
        while self.deliver_one().await? != Outcome::Idle {
            n += 1;
        }
        Ok(n)
    }

    /// A worker: delivers whatever is due, sleeping between polls or until woken.
    pub async fn work(self: Arc<Self>, wake: Arc<Notify>, shutdown: CancellationToken) {
        // The current send finishes before shutdown is looked at: cancelling
        // mid-send would only cause a re-send after restart.
        while !shutdown.is_cancelled() {
            match self.deliver_one().await {
                Ok(Outcome::Idle) => {}
                Ok(_) => continue,
                Err(e) => tracing::warn!(error = %e, "delivery worker: database error; retrying"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll_interval()) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}
