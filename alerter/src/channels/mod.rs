//! Receivers: one file per thing we talk to.

pub mod alertmanager;
pub mod email;
pub mod webhook;

use std::time::Duration;

/// How one attempt ended.
#[derive(Debug)]
pub struct Attempt {
    /// HTTP status or SMTP reply code, when one came back.
    pub status: Option<i32>,
    /// A short piece of what the receiver answered.
    pub response: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Delivered.
    pub ok: bool,
    /// Failed for good: retrying cannot help (a 4xx other than 408/429, a
    /// permanent SMTP reply, a missing webhook).
    pub permanent: bool,
    /// The receiver asked us to wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// What the log's request_url column shows.
    pub url: String,
}

impl Attempt {
    pub(crate) fn failed(url: String, error: String, permanent: bool) -> Self {
        Attempt {
            status: None,
            response: None,
            error: Some(error),
            ok: false,
            permanent,
            retry_after: None,
            url,
        }
    }
}
