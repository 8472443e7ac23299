//! HTTPS for `gpuwatch serve` (`[api.tls]`), rustls with the ring provider.
//!
//! - The certificate and key are PEM files; a background task checks their
//!   modification times every [`RELOAD_EVERY`] and swaps in a renewed pair,
//!   so a certificate manager can replace the files without a restart. A pair
//!   that does not load (half written, key and certificate not matching) is
//!   logged and the old one stays until the next check.
//! - With `client_ca`, every client must present a certificate signed by it
//!   (mTLS). Its identity (first SAN DNS name, else the subject CN) travels
//!   with each request as a [`ClientCertHost`] extension; [`cert_host`]
//!   reads it, so ingest can bind the certificate to the host it reports.
//! - Plain HTTP stays the default: no `[api.tls]`, no TLS.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for a renewal.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A client that has not finished its handshake by then is dropped, so idle
/// sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[api.tls]`: serve HTTPS instead of plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// Every problem, as `key: what is wrong` lines: files that cannot be
    /// read or hold no usable PEM, and a key that does not match.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let provider = provider();
        let certs = certs(&self.cert, "api.tls.cert")
            .map_err(|m| e.push(m))
            .ok();
        let key = private_key(&self.key).map_err(|m| e.push(m)).ok();
        if let (Some(certs), Some(key)) = (certs, key) {
            if let Err(m) = certified(certs, key, &provider) {
                e.push(m);
            }
        }
        if let Some(ca) = &self.client_ca {
            if let Err(m) = roots(ca) {
                e.push(m);
            }
        }
        e
    }
}

/// The verified identity of the client certificate of a connection (mTLS
/// only): its first SAN DNS name, else its subject CN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertHost(pub String);

/// The host the request's client certificate names, if the connection has
/// a verified one.
pub fn cert_host<B>(req: &axum::http::Request<B>) -> Option<String> {
    req.extensions()
        .get::<ClientCertHost>()
        .map(|h| h.0.clone())
}

/// Serves `app` over TLS on `listener` until `shutdown`, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: &TlsConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let resolver = Arc::new(Reloading::load(tls).map_err(invalid)?);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(tls, resolver.clone())?));
    tokio::spawn(resolver.watch(shutdown.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let host = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| identity(der));
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    if let Some(h) = &host {
                        req.extensions_mut().insert(ClientCertHost(h.clone()));
                    }
                    let mut app = app.clone();
                    tower_service::Service::call(&mut app, req)
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

fn server_config(tls: &TlsConfig, resolver: Arc<Reloading>) -> std::io::Result<ServerConfig> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("api.tls: {e}")))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca).map_err(invalid)?),
                provider,
            )
            .build()
            .map_err(|e| invalid(format!("api.tls.client_ca={}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    // Only HTTP/1.1 is served; saying so keeps ALPN clients from asking for h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The current certificate, swapped when its files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

/// What tells a renewal: modification time and size of both files.
type Stamp = [(Option<SystemTime>, u64); 2];

impl Reloading {
    fn load(tls: &TlsConfig) -> Result<Reloading, String> {
        let pair = read_pair(&tls.cert, &tls.key)?;
        Ok(Reloading {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            current: RwLock::new(Arc::new(pair)),
        })
    }

    fn stamp(&self) -> Stamp {
        let of =
            |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
        [of(&self.cert), of(&self.key)]
    }

    async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut seen = self.stamp();
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let now = self.stamp();
            if now == seen {
                continue;
            }
            match read_pair(&self.cert, &self.key) {
                Ok(pair) => {
                    // A poisoned lock still holds a whole Arc: take it over.
                    let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                    *current = Arc::new(pair);
                    seen = now;
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                // `seen` stays, so the next tick tries again: the files may be mid-write.
                Err(e) => {
                    tracing::warn!(error = %e, "renewed TLS certificate not loaded; the previous one stays")
                }
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Some(current.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    certified(certs(cert, "api.tls.cert")?, private_key(key)?, &provider())
}

fn certified(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("api.tls.key: not a usable private key ({e})"))?;
    let pair = CertifiedKey::new(certs, signer);
    pair.keys_match()
        .map_err(|e| format!("api.tls.key: does not belong to api.tls.cert ({e})"))?;
    Ok(pair)
}

fn certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{key}: {}: {e}", path.display());
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&e))?;
    if list.is_empty() {
        return Err(fail(&"no PEM certificate in the file"));
    }
    Ok(list)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("api.tls.key: {}: no PEM private key ({e})", path.display()))
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs(ca, "api.tls.client_ca")?);
    if added == 0 {
        return Err(format!(
            "api.tls.client_ca: {}: no usable CA certificate in the file",
            ca.display()
        ));
    }
    Ok(store)
}

/// The first SAN DNS name of a (verified) certificate, else its subject CN.
fn identity(der: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
        });
    san.or_else(|| {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
    })
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(names: Vec<String>, cn: &str) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn identity_is_the_first_dns_name_else_the_common_name() {
        let both = cert_with(vec!["gpu-007.dc1".into(), "alt.dc1".into()], "ignored");
        assert_eq!(identity(&both).as_deref(), Some("gpu-007.dc1"));
        let cn_only = cert_with(vec![], "gpu-008");
        assert_eq!(identity(&cn_only).as_deref(), Some("gpu-008"));
    }

    #[test]
    fn cert_host_reads_the_extension_only() {
        let mut req = axum::http::Request::new(());
        assert_eq!(cert_host(&req), None);
        req.extensions_mut()
            .insert(ClientCertHost("gpu-007".into()));
        assert_eq!(cert_host(&req).as_deref(), Some("gpu-007"));
    }

    #[test]
    fn unreadable_files_are_each_named() {
        let cfg = TlsConfig {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
            client_ca: Some("/nonexistent/ca.pem".into()),
        };
        let errors = cfg.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("api.tls.cert: /nonexistent/cert.pem"));
        assert!(errors[1].starts_with("api.tls.key: /nonexistent/key.pem"));
        assert!(errors[2].starts_with("api.tls.client_ca: /nonexistent/ca.pem"));
    }
}
