//! TLS of the HTTP sink (`collector.http.ca`, `client_cert`, `client_key`).
//!
//! With `ca` the agent trusts that bundle only, as a fleet with its own CA
//! wants; without it, an https URL is checked against the system's CA store
//! and Mozilla's roots. `client_cert` and `client_key` are presented when
//! `gpuwatch serve` asks for a client certificate (mTLS).

use std::path::{Path, PathBuf};

/// The TLS files of `[collector.http]`.
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// The URL the sink posts to.
    pub url: &'a str,
    /// `collector.http.ca`.
    pub ca: Option<&'a PathBuf>,
    /// `collector.http.client_cert`.
    pub client_cert: Option<&'a PathBuf>,
    /// `collector.http.client_key`.
    pub client_key: Option<&'a PathBuf>,
}

impl TlsFiles<'_> {
    /// Every problem, as `key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if let Some(ca) = self.ca {
            if let Err(m) = ca_bundle(ca) {
                e.push(m);
            }
            if !self.url.starts_with("https://") {
                e.push(format!(
                    "collector.http.ca: set, but collector.http.url {:?} is not https://; the CA would not be used",
                    self.url
                ));
            }
        }
        match (self.client_cert, self.client_key) {
            (Some(_), Some(_)) => {
                if let Err(m) = self.identity() {
                    e.push(m);
                }
            }
            (None, None) => {}
            _ => e.push(
                "collector.http.client_cert, collector.http.client_key: give both or neither"
                    .into(),
            ),
        }
        e
    }

    /// `builder` with these files applied.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        let mut builder = builder.use_rustls_tls();
        if let Some(ca) = self.ca {
            builder = builder.tls_built_in_root_certs(false);
            for cert in ca_bundle(ca)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if self.client_cert.is_some() {
            builder = builder.identity(self.identity()?);
        }
        Ok(builder)
    }

    fn identity(&self) -> Result<reqwest::Identity, String> {
        let (Some(cert), Some(key)) = (self.client_cert, self.client_key) else {
            return Err("collector.http.client_cert, collector.http.client_key: give both".into());
        };
        let mut pem = read(cert, "collector.http.client_cert")?;
        if !pem.windows(11).any(|w| w == b"CERTIFICATE") {
            return Err(format!(
                "collector.http.client_cert: {}: no PEM certificate in the file",
                cert.display()
            ));
        }
        pem.push(b'\n');
        pem.extend(read(key, "collector.http.client_key")?);
        reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "collector.http.client_key: {}: not a PEM private key for collector.http.client_cert ({})",
                key.display(),
                chain(&e)
            )
        })
    }
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: {}: {e}", path.display()))
}

fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = read(path, "collector.http.ca")?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(list) if !list.is_empty() => Ok(list),
        Ok(_) => Err(format!(
            "collector.http.ca: {}: no PEM certificate in the file",
            path.display()
        )),
        Err(e) => Err(format!(
            "collector.http.ca: {}: {}",
            path.display(),
            chain(&e)
        )),
    }
}

/// A request error with its causes (reqwest's own line says only "error
/// sending request"), and for TLS failures what to configure.
pub fn explain(e: &reqwest::Error) -> String {
    let text = chain(e);
    let hint = if text.contains("invalid peer certificate") {
        "; the server's certificate is not trusted: set collector.http.ca to the CA that signed it"
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        "; the server requires a client certificate: set collector.http.client_cert and collector.http.client_key"
    } else if text.contains("received fatal alert") {
        "; the server refused the TLS handshake: check collector.http.client_cert against the server's api.tls.client_ca"
    } else {
        ""
    };
    format!("{text}{hint}")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(inner) = src {
        let s = inner.to_string();
        // hyper and io wrap the same message more than once.
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        src = inner.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_file_is_named() {
        let (ca, cert, key) = (
            PathBuf::from("/nonexistent/ca.pem"),
            PathBuf::from("/nonexistent/agent.pem"),
            PathBuf::from("/nonexistent/agent.key"),
        );
        let files = TlsFiles {
            url: "http://central:9400",
            ca: Some(&ca),
            client_cert: Some(&cert),
            client_key: Some(&key),
        };
        let e = files.validate();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("collector.http.ca: /nonexistent/ca.pem:"),
            "{e:?}"
        );
        assert!(e[1].contains("is not https://"), "{e:?}");
        assert!(
            e[2].starts_with("collector.http.client_cert: /nonexistent/agent.pem:"),
            "{e:?}"
        );
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let files = TlsFiles {
            url: "https://central:9400",
            ca: Some(&junk),
            client_cert: Some(&junk),
            client_key: None,
        };
        let e = files.validate();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("no PEM certificate"), "{e:?}");
        assert!(e[1].contains("give both or neither"), "{e:?}");
    }
}
