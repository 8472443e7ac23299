//! Delivery workers: claim one due outbox row with `FOR UPDATE SKIP LOCKED`
//! and commit a lease on it together with the attempt's `webhook_logs` row
//! (outcome unknown), send it, then record the outcome. While the lease runs
//! (the send's timeout and a margin) no other worker or replica takes the
//! row; a crash mid-send leaves the logged attempt, and the row is sent
//! again with the same id once the lease expires, which is why receivers
//! get `webhook-id` as an idempotency key. The next attempt is timed from
//! the end of the failed one; retries go on for the retry window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::channels::alertmanager;
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
        let Some(claim) = self.claim().await? else {
            return Ok(Outcome::Idle);
        };
        let started = Instant::now();
        let attempt = self.send(&claim).await;
        let latency = started.elapsed();
        DELIVERY_DURATION
            .with_label_values(&[&claim.channel])
            .observe(latency.as_secs_f64());
        self.record(&claim, &attempt, latency).await
    }

    /// Takes one due row: pushes its next attempt past this one's timeout
    /// (the lease) and logs the attempt as `unknown`, committed before
    /// anything is sent, so a crash mid-send leaves the attempt on record
    /// and the row comes due again when the lease runs out. No lock is
    /// held across the send.
    async fn claim(&self) -> Result<Option<Claim>> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await.map_err(q("starting a delivery"))?;
        let Some(row) = tx
            .query_opt(
                "SELECT o.id::text, o.channel, o.webhook_id, o.email_to, o.payload, o.attempts,
                        o.total_attempts, w.url, w.secret, w.headers, w.timeout_ms, w.max_attempts,
                        (w.enabled AND w.deleted_at IS NULL), o.group_key, o.retry_since, o.target_url
                 FROM alert_outbox o LEFT JOIN webhooks w ON w.id = o.webhook_id
                 WHERE o.status = 'pending' AND o.next_attempt_at <= now()
                 ORDER BY o.next_attempt_at LIMIT 1
                 FOR UPDATE OF o SKIP LOCKED",
                &[],
            )
            .await
            .map_err(q("claiming a notification"))?
        else {
            return Ok(None);
        };
        let claim = Claim::from_row(&row, &self.cfg);
        // The margin covers what the timeout does not: connecting to the
        // database again to record the outcome.
        let lease = claim.timeout + LEASE_MARGIN;
        tx.execute(
            "UPDATE alert_outbox SET total_attempts = total_attempts + 1,
                 next_attempt_at = clock_timestamp() + make_interval(secs => $2)
             WHERE id = $1::text::uuid",
            &[&claim.id, &lease.as_secs_f64()],
        )
        .await
        .map_err(q("leasing a notification"))?;
        let log_id: i64 = tx
            .query_one(
                "INSERT INTO webhook_logs (webhook_id, notification_id, attempt, request_url, request_body, succeeded)
                 VALUES ($1, $2::text::uuid, $3, $4, $5, NULL) RETURNING id",
                &[&claim.webhook_id, &claim.id, &claim.attempt_no, &claim.url(), &claim.payload],
            )
            .await
            .map_err(q("logging a delivery attempt"))?
            .get(0);
        tx.commit().await.map_err(q("committing a claim"))?;
        Ok(Some(Claim { log_id, ..claim }))
    }

    async fn send(&self, c: &Claim) -> Attempt {
        let body = serde_json::to_vec(&c.payload).unwrap_or_default();
        match &c.target {
            Target::Webhook(Ok(t)) => webhook::send(&self.http, t, &c.id, &body).await,
            Target::Webhook(Err(msg)) => Attempt::failed(c.url(), msg.clone(), true),
            Target::Email(Err(e)) => Attempt::failed(
                "smtp://".into(),
                format!(
                    "notification {}: {e}; the recipients are unknown, nothing was sent",
                    c.id
                ),
                true,
            ),
            Target::Email(Ok(to)) => match &self.email {
                Some(e) => e.send(&c.id, to, &c.payload).await,
                None => Attempt::failed(
                    "smtp://".into(),
                    "e-mail is not configured: set alerter.smtp.host, then replay the notification"
                        .into(),
                    false,
                ),
            },
        }
    }

    /// Writes the outcome: the log row, and the outbox row (delivered, next
    /// attempt timed from now, the end of this attempt, or dead).
    async fn record(&self, c: &Claim, attempt: &Attempt, latency: Duration) -> Result<Outcome> {
        let (outcome, delay) = decide(&self.cfg, c, attempt, Utc::now());
        let mut conn = self.pool.get().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(q("starting to record a delivery"))?;
        tx.execute(
            "UPDATE webhook_logs SET request_url = $2, status_code = $3, response_body = $4,
                 latency_ms = $5, error = $6, succeeded = $7
             WHERE id = $1",
            &[
                &c.log_id,
                &attempt.url,
                &attempt.status,
                &attempt.response,
                &(latency.as_millis().min(i32::MAX as u128) as i32),
                &attempt.error,
                &attempt.ok,
            ],
        )
        .await
        .map_err(q("logging a delivery attempt"))?;
        let status = outcome.status();
        let updated = tx
            .execute(
                "UPDATE alert_outbox SET status = $2::text, attempts = attempts + 1,
                     last_error = $3, delivered_at = CASE WHEN $2::text = 'delivered' THEN now() END,
                     retry_since = COALESCE(retry_since, $5),
                     next_attempt_at = CASE WHEN $2::text = 'pending'
                         THEN clock_timestamp() + make_interval(secs => $4) ELSE next_attempt_at END
                 WHERE id = $1::text::uuid AND status = 'pending' AND total_attempts = $6",
                &[&c.id, &status, &attempt.error, &delay.as_secs_f64(), &c.started_at, &c.attempt_no],
            )
            .await
            .map_err(q("recording a delivery"))?;
        if outcome == Outcome::Dead {
            tx.execute(
                "UPDATE alert_groups SET dead_lettered_at = now() WHERE group_key = $1",
                &[&c.group_key],
            )
            .await
            .map_err(q("marking a group for re-notification"))?;
        }
        tx.commit().await.map_err(q("committing a delivery"))?;
        if updated == 0 {
            // Replayed, or taken over after the lease ran out: the newer
            // attempt owns the row; this one stays in the log only.
            tracing::warn!(notification.id = %c.id, "notification changed while it was sent; its outcome is only logged");
        }
        report(c, attempt, &outcome, delay);
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

/// Time beyond a send's own timeout before a claimed row is due again.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// A claimed notification: what to send and where.
struct Claim {
    id: String,
    channel: String,
    webhook_id: Option<i64>,
    group_key: String,
    payload: Value,
    /// Attempts since written or replayed, before this one.
    attempts: i32,
    max_attempts: i32,
    /// This attempt's number in `webhook_logs`.
    attempt_no: i32,
    log_id: i64,
    timeout: Duration,
    started_at: DateTime<Utc>,
    retry_since: Option<DateTime<Utc>>,
    target: Target,
}

/// Where a claim goes, or why it cannot go anywhere (a dead letter).
enum Target {
    Webhook(std::result::Result<WebhookTarget, String>),
    Email(std::result::Result<Vec<String>, String>),
}

impl Claim {
    fn from_row(row: &tokio_postgres::Row, cfg: &AlerterConfig) -> Claim {
        let id: String = row.get(0);
        let channel: String = row.get(1);
        let webhook_id: Option<i64> = row.get(2);
        let (target, timeout, max_attempts) = if channel == "alertmanager" {
            let timeout = Duration::from_secs_f64(cfg.webhook.timeout_secs);
            let url: String = row.get(15);
            // A later post supersedes this one, and an old firing post
            // retried after a resolve would re-open the alert: a few tries only.
            (
                Target::Webhook(Ok(alertmanager::target(&url, timeout))),
                timeout,
                3,
            )
        } else if channel == "webhook" {
            let wid = webhook_id.unwrap_or_default();
            let url: Option<String> = row.get(7);
            let timeout = row
                .get::<_, Option<i32>>(10)
                .map_or(Duration::from_secs_f64(cfg.webhook.timeout_secs), |ms| {
                    Duration::from_millis(ms.max(1) as u64)
                });
            let live: Option<bool> = row.get(12);
            let target = if live != Some(true) {
                Err(format!(
                    "webhook {wid} is deleted or disabled; enable it and replay the notification"
                ))
            } else {
                // Sending without the headers the receiver expects (auth,
                // routing) could deliver to the wrong place: a dead letter
                // to fix and replay instead.
                crate::store::json(row, 9)
                    .map(|headers| WebhookTarget {
                        id: wid,
                        url: url.clone().unwrap_or_default(),
                        secret: row.get(8),
                        headers,
                        timeout,
                    })
                    .map_err(|e| format!("webhook {wid}: {e}; fix its headers with PUT /api/v1/webhooks/{wid} and replay the notification"))
            };
            let max = row
                .get::<_, Option<i32>>(11)
                .unwrap_or(cfg.webhook.max_attempts);
            (Target::Webhook(target), timeout, max)
        } else {
            let to = crate::store::json::<Vec<String>>(row, 3).map_err(|e| e.to_string());
            (
                Target::Email(to),
                Duration::from_secs_f64(cfg.smtp.timeout_secs),
                cfg.smtp.max_attempts,
            )
        };
        Claim {
            id,
            channel,
            webhook_id,
            group_key: row.get(13),
            payload: row.get(4),
            attempts: row.get(5),
            max_attempts,
            attempt_no: row.get::<_, i32>(6) + 1,
            log_id: 0,
            timeout,
            started_at: Utc::now(),
            retry_since: row.get(14),
            target,
        }
    }

    /// What the log's request_url shows before the attempt says more.
    fn url(&self) -> String {
        match &self.target {
            Target::Webhook(Ok(t)) => t.url.clone(),
            Target::Webhook(Err(_)) => String::new(),
            Target::Email(_) => "smtp://".into(),
        }
    }
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Dead => "dead",
            _ => "pending",
        }
    }
}

/// Delivered, retried after a delay, or dead: dead when retrying cannot
/// help, when the webhook's attempt ceiling is reached, or when the next
/// attempt would fall outside the retry window opened by the first failure.
fn decide(cfg: &AlerterConfig, c: &Claim, a: &Attempt, now: DateTime<Utc>) -> (Outcome, Duration) {
    let delay = backoff::delay(
        Duration::from_secs_f64(cfg.webhook.backoff_base_secs),
        Duration::from_secs_f64(cfg.webhook.backoff_max_secs),
        (c.attempts + 1) as u32,
        backoff::jitter(),
        a.retry_after,
    );
    if a.ok {
        return (Outcome::Delivered, delay);
    }
    let since = c.retry_since.unwrap_or(c.started_at);
    let window_spent = backoff::window_spent(since, now, delay, cfg.retry_duration());
    if a.permanent || c.attempts + 1 >= c.max_attempts || window_spent {
        (Outcome::Dead, delay)
    } else {
        (Outcome::Retry, delay)
    }
}

fn report(c: &Claim, attempt: &Attempt, outcome: &Outcome, delay: Duration) {
    let result = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Dead => "dead",
        _ => "retry",
    };
    NOTIFICATIONS.with_label_values(&[&c.channel, result]).inc();
    let error = attempt.error.as_deref().unwrap_or("");
    match outcome {
        Outcome::Dead => tracing::error!(
            notification.id = %c.id, channel = %c.channel, attempts = c.attempts + 1, error,
            "notification dead-lettered; fix the receiver, then replay it"
        ),
        Outcome::Retry => tracing::warn!(
            notification.id = %c.id, channel = %c.channel, attempt = c.attempts + 1,
            retry_in_ms = delay.as_millis() as u64, error,
            "delivery failed; will retry"
        ),
        _ => tracing::debug!(notification.id = %c.id, channel = %c.channel, "delivered"),
    }
}
