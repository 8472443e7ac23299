//! What a scrape of `/metrics` answers: the snapshot as it is, then the
//! self-metrics of this process, gzip'd when the scraper asks.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use prometheus::{Encoder, TextEncoder};

use crate::Exporter;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's `Accept-Encoding` values admit gzip.
pub fn accepts_gzip<'a>(accept_encoding: impl IntoIterator<Item = &'a str>) -> bool {
    accept_encoding
        .into_iter()
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

impl Exporter {
    /// The whole `/metrics` answer to a request with `headers`: the body of
    /// [`Exporter::scrape_encoded`], gzip'd when the scraper accepts it.
    /// `gpuwatch serve` and the agent both answer with it.
    pub fn http_response(&self, headers: &axum::http::HeaderMap) -> axum::response::Response {
        use axum::http::{header, HeaderValue};
        use axum::response::IntoResponse;
        let accept_gzip = accepts_gzip(
            headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let (chunks, gzipped) = self.scrape_encoded(accept_gzip);
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let mut resp = (
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            axum::body::Body::from_stream(stream),
        )
            .into_response();
        if gzipped {
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        resp
    }

    /// A scrape's body, in chunks: the fleet snapshot as it is (no copy),
    /// then this process's self-metrics.
    pub fn scrape(&self) -> Vec<Bytes> {
        self.scrape_encoded(false).0
    }

    /// Like [`Exporter::scrape`]; when `accept_gzip` and the snapshot has
    /// been compressed, the chunks are gzip members (a valid multi-member
    /// gzip stream, as Go's reader in Prometheus accepts) and the second
    /// value is true.
    pub fn scrape_encoded(&self, accept_gzip: bool) -> (Vec<Bytes>, bool) {
        if accept_gzip {
            self.gzip_wanted.store(true, Ordering::Relaxed);
        }
        let snap = self.snapshot();
        let mut own = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut own) {
            tracing::warn!(error = %e, "cannot encode gpuwatch's own metrics");
        }
        let compressed = snap.as_ref().and_then(|s| match &s.lazy_gzip {
            Some(lazy) if accept_gzip => {
                Some(lazy.get_or_init(|| Bytes::from(gzip(&s.body))).clone())
            }
            _ => s.gzip.clone(),
        });
        match snap {
            Some(_) if accept_gzip && compressed.is_some() => {
                let fleet = compressed.expect("checked");
                (vec![fleet, Bytes::from(gzip(&own))], true)
            }
            Some(s) => (vec![s.body.clone(), Bytes::from(own)], false),
            None if accept_gzip => (vec![Bytes::from(gzip(&own))], true),
            None => (vec![Bytes::from(own)], false),
        }
    }
}

/// One gzip member, at the fastest level: the snapshot is re-made every few
/// seconds, so speed matters more than the last few percent of size.
pub(crate) fn gzip(text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 5),
        flate2::Compression::fast(),
    );
    gz.write_all(text).expect("writing to memory");
    gz.finish().expect("writing to memory")
}
