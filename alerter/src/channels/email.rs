//! E-mail delivery through lettre's async SMTP transport (no TLS on a
//! trusted relay, STARTTLS, or implicit TLS, with rustls), one multipart
//! text + HTML message per group flush. The Message-ID carries the
//! notification's idempotency id.

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use std::collections::BTreeMap;

use super::Attempt;
use crate::config::SmtpConfig;

/// The SMTP client, built once from `[alerter.smtp]`.
#[derive(Clone)]
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    url: String,
}

impl EmailChannel {
    /// Builds the transport; None when `smtp.host` is empty (e-mail off).
    pub fn new(cfg: &SmtpConfig) -> Result<Option<EmailChannel>, String> {
        if cfg.host.is_empty() {
            return Ok(None);
        }
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let mut b = match cfg.tls.as_str() {
            "tls" => T::relay(&cfg.host).map_err(|e| format!("alerter.smtp: {e}"))?,
            "starttls" => T::starttls_relay(&cfg.host).map_err(|e| format!("alerter.smtp: {e}"))?,
            _ => T::builder_dangerous(&cfg.host),
        }
        .port(cfg.port)
        .timeout(Some(std::time::Duration::from_secs_f64(cfg.timeout_secs)));
        if !cfg.username.is_empty() {
            b = b.credentials(Credentials::new(cfg.username.clone(), cfg.password.clone()));
        }
        let from = cfg
            .from
            .parse()
            .map_err(|e| format!("alerter.smtp.from {:?}: {e}", cfg.from))?;
        Ok(Some(EmailChannel {
            transport: b.build(),
            from,
            url: format!("smtp://{}:{}", cfg.host, cfg.port),
        }))
    }

    /// Sends one message for a notification.
    pub async fn send(&self, id: &str, to: &[String], payload: &Value) -> Attempt {
        let (subject, text, html) = render(payload);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{id}@gpuwatch>")));
        for addr in to {
            match addr.parse::<Mailbox>() {
                Ok(m) => b = b.to(m),
                Err(e) => {
                    return Attempt::failed(
                        self.url.clone(),
                        format!("recipient {addr:?}: {e}"),
                        true,
                    )
                }
            }
        }
        let msg = match b.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        ) {
            Ok(m) => m,
            Err(e) => {
                return Attempt::failed(
                    self.url.clone(),
                    format!("building the message: {e}"),
                    true,
                )
            }
        };
        match self.transport.send(msg).await {
            Ok(r) => Attempt {
                status: r.code().to_string().parse().ok(),
                response: Some(r.message().collect::<Vec<_>>().join(" ")),
                error: None,
                ok: true,
                permanent: false,
                retry_after: None,
                url: self.url.clone(),
            },
            Err(e) => Attempt {
                status: e.status().and_then(|c| c.to_string().parse().ok()),
                response: None,
                error: Some(format!("smtp: {e}")),
                ok: false,
                permanent: e.is_permanent(),
                retry_after: None,
                url: self.url.clone(),
            },
        }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Labels that say what is alerting, in the order a subject names them
/// (the last three: a DLWorkspace cluster, a job's status, the job).
const IDENTIFYING: [&str; 8] = [
    "host",
    "gpu",
    "gpu_uuid",
    "environment",
    "customer",
    "cluster",
    "status",
    "job",
];

/// "critical GpuHot: host=h1 gpu=0 gpu_uuid=GPU-0": severity and alert name
/// first, then whichever identifying labels the group's alerts share (or
/// its group labels), so a subject line alone tells which machine.
fn headline(p: &Value) -> String {
    let common: BTreeMap<String, String> = pairs(p.get("commonLabels")).into_iter().collect();
    let group: BTreeMap<String, String> = pairs(p.get("groupLabels")).into_iter().collect();
    let get = |k: &str| {
        common
            .get(k)
            .or_else(|| group.get(k))
            .filter(|v| !v.is_empty())
    };
    let mut head: Vec<String> = ["severity", "alertname"]
        .iter()
        .filter_map(|k| get(k).cloned())
        .collect();
    if head.is_empty() {
        head.push("gpuwatch alert".into());
    }
    let ids: Vec<String> = IDENTIFYING
        .iter()
        .filter_map(|k| get(k).map(|v| format!("{k}={v}")))
        .collect();
    if ids.is_empty() {
        head.join(" ")
    } else {
        format!("{}: {}", head.join(" "), ids.join(" "))
    }
}

/// Subject, text and HTML of a v4 payload. Written against the payload's
/// shape with defaults everywhere, so a malformed payload still yields a
/// message rather than none.
pub fn render(p: &Value) -> (String, String, String) {
    let alerts = p
        .get("alerts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let firing = alerts.iter().filter(|a| s(a, "status") == "firing").count();
    let subject = format!(
        "[{}{}] {}",
        s(p, "status").to_uppercase(),
        if firing > 0 {
            format!(":{firing}")
        } else {
            String::new()
        },
        headline(p)
    );
    let mut text = format!("{subject}\n\n");
    let mut html = format!("<html><body><h2>{}</h2>", esc(&subject));
    for a in &alerts {
        let name = a
            .get("labels")
            .and_then(|l| l.get("alertname"))
            .and_then(Value::as_str)
            .unwrap_or("alert");
        text.push_str(&format!(
            "{} {} since {}\n",
            s(a, "status").to_uppercase(),
            name,
            s(a, "startsAt")
        ));
        html.push_str(&format!(
            "<h3>{} {}</h3><table>",
            esc(&s(a, "status").to_uppercase()),
            esc(name)
        ));
        for (k, v) in pairs(a.get("annotations"))
            .into_iter()
            .chain(pairs(a.get("labels")))
        {
            text.push_str(&format!("  {k}: {v}\n"));
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&k),
                esc(&v)
            ));
        }
        html.push_str(&format!(
            "</table><p><a href=\"{0}\">{0}</a></p>",
            esc(s(a, "generatorURL"))
        ));
        text.push('\n');
    }
    text.push_str(&format!("{}\n", s(p, "externalURL")));
    html.push_str("</body></html>");
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_even_a_malformed_payload() {
        let (subject, text, html) = render(&serde_json::json!({"alerts": "nope"}));
        assert!(subject.contains("gpuwatch alert"));
        assert!(!text.is_empty() && html.contains("</html>"));
    }

    #[test]
    fn html_is_escaped() {
        let p = serde_json::json!({"status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "<b>x</b>"}, "annotations": {}}]});
        let (_, _, html) = render(&p);
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
    }
}
