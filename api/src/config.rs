use serde::Deserialize;

/// `[api]` of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address `gpuwatch serve` listens on (dcgm-exporter's port by default).
    pub listen: String,
    /// Largest request body as sent (compressed), bytes.
    pub max_body_bytes: usize,
    /// Largest request body after decompression, bytes (guards against gzip bombs).
    pub max_decompressed_bytes: usize,
    /// Largest number of samples in one ingest request.
    pub max_samples: usize,
    /// How far in the future a sample's time may be (clock skew), seconds.
    #[serde(
        rename = "max_future",
        alias = "max_future_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub max_future_secs: i64,
    /// How old a sample may be, days (older data would be dropped by retention anyway).
    pub max_age_days: i64,
    /// `[api.tls]`: HTTPS (and optionally mTLS); plain HTTP without it.
    pub tls: Option<crate::tls::TlsConfig>,
    /// How long a token lookup is remembered, seconds; a revoked token is
    /// refused at the latest this long after. 0 asks the database every time.
    #[serde(
        rename = "token_cache",
        alias = "token_cache_secs",
        deserialize_with = "gpuwatch_store::duration::seconds"
    )]
    pub token_cache_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:9400".into(),
            max_body_bytes: 8 << 20,
            max_decompressed_bytes: 64 << 20,
            max_samples: 100_000,
            max_future_secs: 300,
            max_age_days: 30,
            tls: None,
            token_cache_secs: 5,
        }
    }
}

impl ApiConfig {
    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            e.push(format!(
                "api.listen: not an address like 127.0.0.1:9400, got {:?}",
                self.listen
            ));
        }
        if self.max_body_bytes < 1024 {
            e.push(format!(
                "api.max_body_bytes: must be at least 1024, got {}",
                self.max_body_bytes
            ));
        }
        if self.max_decompressed_bytes < self.max_body_bytes {
            e.push("api.max_decompressed_bytes: must be at least api.max_body_bytes".into());
        }
        if self.max_samples == 0 {
            e.push("api.max_samples: must be at least 1".into());
        }
        if self.max_future_secs < 0 {
            e.push("api.max_future_secs: must not be negative".into());
        }
        if self.max_age_days < 1 {
            e.push("api.max_age_days: must be at least 1".into());
        }
        if self.token_cache_secs > 60 {
            e.push(format!(
                "api.token_cache: at most 60s (a revoked token works that long), got {}s",
                self.token_cache_secs
            ));
        }
        if let Some(tls) = &self.tls {
            e.extend(tls.validate());
        }
        e
    }
}
