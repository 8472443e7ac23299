//! Webhook delivery: Alertmanager's v4 body, signed per Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">`), with the webhook's own timeout.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Attempt;

/// A `webhooks` row as the sender needs it.
pub struct WebhookTarget {
    /// `webhooks.id`
    pub id: i64,
    /// Endpoint.
    pub url: String,
    /// Signing secret (`whsec_<base64>` or raw); None: unsigned.
    pub secret: Option<String>,
    /// Extra headers.
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// The HMAC key of a secret: Standard Webhooks' `whsec_` secrets are
/// base64, anything else is used as its bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| B64.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail here.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&signing_key(secret)).expect("hmac accepts any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Parses `Retry-After`: seconds or an HTTP date.
pub fn retry_after(v: &str) -> Option<Duration> {
    if let Ok(s) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    (t.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// Sends one attempt.
pub async fn send(http: &reqwest::Client, w: &WebhookTarget, id: &str, body: &[u8]) -> Attempt {
    let ts = Utc::now().timestamp();
    let mut req = http
        .post(&w.url)
        .timeout(w.timeout)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("gpuwatch-alerter/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string());
    if let Some(secret) = w.secret.as_deref().filter(|s| !s.is_empty()) {
        req = req.header("webhook-signature", sign(secret, id, ts, body));
    }
    for (k, v) in &w.headers {
        if let Some(v) = v.as_str() {
            req = req.header(k.as_str(), v);
        }
    }
    let resp = match req.body(body.to_vec()).send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                format!("timed out after {:?}", w.timeout)
            } else {
                chain(&e)
            };
            return Attempt::failed(w.url.clone(), what, false);
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    let text = resp.text().await.unwrap_or_default();
    let ok = status.is_success();
    let code = status.as_u16();
    Attempt {
        status: Some(code as i32),
        response: Some(text.chars().take(1024).collect()),
        error: (!ok).then(|| format!("HTTP {status}")),
        ok,
        permanent: !ok && (400..500).contains(&code) && code != 408 && code != 429,
        retry_after,
        url: w.url.clone(),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // From the Standard Webhooks spec's reference test vectors.
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None); // in the past
        assert!(retry_after("soon").is_none());
        // An HTTP date (IMF-fixdate) a minute ahead: about 60 s from now.
        let ahead = (Utc::now() + chrono::Duration::seconds(60))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = retry_after(&ahead).expect("a future HTTP date");
        assert!((55..=60).contains(&d.as_secs()), "{ahead} -> {d:?}");
    }
}
