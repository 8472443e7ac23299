//! TLS to the database, as libpq does it.
//!
//! tokio-postgres understands `sslmode` `disable`, `prefer` and `require`
//! only, and brings no TLS of its own. [`split`] takes libpq's TLS keys
//! (`sslmode` with `verify-ca` and `verify-full`, `sslrootcert`, `sslcert`,
//! `sslkey`) out of `database.url`, so the rest parses as before, and
//! [`DbTls::connector`] builds a rustls connector (ring provider) that checks
//! what the mode asks for:
//!
//! | sslmode | encrypted | chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | no | - | - |
//! | `prefer` (default), `require` | if the server can / always | only with `sslrootcert` | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! libpq also reads `~/.postgresql/root.crt` and friends when the URL names no
//! file; gpuwatch reads only the files the URL names, so what is trusted is in
//! the configuration.

mod connect;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;

use connect::{ChainOnly, Encrypt};
pub use connect::{MakeRustls, RustlsConnect, RustlsStream};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, and the server's chain must lead to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host of the URL.
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            // libpq's `allow` tries plain first; gpuwatch does not guess.
            other => return Err(format!(
                "sslmode={other} is not supported; use disable, prefer, require, verify-ca or verify-full"
            )),
        })
    }
}

/// The TLS part of `database.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbTls {
    /// `sslmode`.
    pub mode: Mode,
    /// `sslrootcert`: the CA bundle the server's chain must lead to.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: this client's certificate (PEM).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: its private key (PEM).
    pub client_key: Option<PathBuf>,
}

const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits `url` (a URL or a key=value string) into what tokio-postgres
/// parses and the TLS settings, which it would refuse or ignore.
pub fn split(url: &str) -> Result<(String, DbTls), String> {
    let mut tls = DbTls::default();
    let mut set = |key: &str, value: String| -> Result<(), String> {
        match key {
            "sslmode" => tls.mode = Mode::parse(&value)?,
            "sslrootcert" => tls.root_cert = Some(value.into()),
            "sslcert" => tls.client_cert = Some(value.into()),
            _ => tls.client_key = Some(value.into()),
        }
        Ok(())
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if KEYS.contains(&k) {
                        set(k, percent_decode(v))?;
                    } else {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value, raw) in kv_tokens(url) {
            if KEYS.contains(&key.as_str()) {
                set(&key, value)?;
            } else {
                kept.push(raw);
            }
        }
        kept.join(" ")
    };
    tls.check()?;
    Ok((rest, tls))
}

impl DbTls {
    fn check(&self) -> Result<(), String> {
        if matches!(self.mode, Mode::VerifyCa | Mode::VerifyFull) && self.root_cert.is_none() {
            return Err(format!(
                "sslmode={} needs sslrootcert=/path/to/ca.pem (the CA that signed the server's certificate)",
                if self.mode == Mode::VerifyCa { "verify-ca" } else { "verify-full" }
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("sslcert and sslkey go together: give both or neither".into());
        }
        Ok(())
    }

    /// What tokio-postgres itself enforces: the verify modes never fall
    /// back to plain text.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector for these settings, reading the files the URL names.
    /// Errors name the file and the URL key.
    pub fn connector(&self) -> Result<MakeRustls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root_cert, self.mode) {
            (_, Mode::Disable) | (None, _) => Arc::new(Encrypt(provider.clone())),
            (Some(ca), mode) => {
                let chain = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("sslrootcert={}: {e}", ca.display()))?;
                // libpq checks the chain whenever it has a root certificate,
                // and the name only for verify-full.
                if mode == Mode::VerifyFull {
                    chain
                } else {
                    Arc::new(ChainOnly(chain))
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("database TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certs(cert, "sslcert")?, private_key(key)?)
                .map_err(|e| {
                    format!(
                        "sslcert={} and sslkey={} do not make a client certificate: {e}",
                        cert.display(),
                        key.display()
                    )
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(MakeRustls(Arc::new(config)))
    }
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs(ca, "sslrootcert")?);
    if added == 0 {
        return Err(format!(
            "sslrootcert={}: no usable CA certificate in the file",
            ca.display()
        ));
    }
    Ok(store)
}

fn certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let read = |e: &dyn std::fmt::Display| format!("{key}={}: {e}", path.display());
    let list = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(&e))?;
    if list.is_empty() {
        return Err(read(&"no PEM certificate in the file"));
    }
    Ok(list)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("sslkey={}: no PEM private key ({e})", path.display()))
}

/// Turns a TLS failure from tokio-postgres into one line that says what to
/// fix, or `None` where the error is not about TLS.
pub fn explain(target: &str, e: &tokio_postgres::Error) -> Option<String> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        let rustls_err = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_err {
            return Some(describe(target, r));
        }
        src = err.source();
    }
    let text = crate::error::db_message(e);
    text.contains("server does not support TLS").then(|| {
        format!("the server at {target} does not accept TLS; turn ssl on there or use sslmode=prefer or sslmode=disable")
    })
}

fn describe(target: &str, e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "certificate for {} does not name host {}: check the URL's host or use sslmode=verify-ca",
            presented.iter().map(|p| bare_name(p)).collect::<Vec<_>>().join(", "),
            expected.to_str()
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => format!(
            "the certificate of {target} does not name its host: check the URL's host or use sslmode=verify-ca"
        ),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the certificate of {target} is not signed by a CA in sslrootcert: give the CA that signed it"
        ),
        rustls::Error::InvalidCertificate(c) => {
            format!("the certificate of {target} is not acceptable ({c:?})")
        }
        other => format!("handshake with {target} failed: {other}"),
    }
}

/// webpki reports presented names in their Debug form
/// (`DnsName("db.example")`, `IpAddress(10.0.0.5)`); an operator wants the
/// name.
fn bare_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok();
        match (bytes[i], hex().and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value` tokens of a libpq key=value string: (key, unquoted value,
/// the token as written, to pass on unchanged).
fn kv_tokens(s: &str) -> Vec<(String, String, String)> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|c| c.1);
    let skip_ws = |mut i: usize| {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = skip_ws(0);
    while i < chars.len() {
        let start = chars[i].0;
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        i = skip_ws(i);
        if at(i) == Some('=') {
            i = skip_ws(i + 1);
        }
        let mut value = String::new();
        let quoted = at(i) == Some('\'');
        if quoted {
            i += 1;
        }
        while let Some(c) = at(i) {
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                i += usize::from(quoted);
                break;
            }
            if c == '\\' {
                i += 1;
            }
            value.extend(at(i));
            i += 1;
        }
        let end = chars.get(i).map_or(s.len(), |c| c.0);
        out.push((key, value, s[start..end].to_string()));
        i = skip_ws(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_keys_leave_the_url_and_the_rest_stays() {
        let (rest, tls) = split(
            "postgres://u:p@db.example:6543/x?sslmode=verify-full&application_name=a&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db.example:6543/x?application_name=a");
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        rest.parse::<tokio_postgres::Config>().unwrap();
    }

    #[test]
    fn key_value_strings_are_split_too() {
        let (rest, tls) =
            split("host=db port=5432 sslmode=verify-ca sslrootcert='/a b/ca.pem' password='x y'")
                .unwrap();
        assert_eq!(rest, "host=db port=5432 password='x y'");
        assert_eq!(tls.mode, Mode::VerifyCa);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/a b/ca.pem")));
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"x y"[..]));
    }

    #[test]
    fn defaults_and_refusals_are_libpqs() {
        let (_, tls) = split("postgres://u@h/db").unwrap();
        assert_eq!(tls.mode, Mode::Prefer);
        assert_eq!(tls.ssl_mode(), SslMode::Prefer);
        assert!(split("postgres://u@h/db?sslmode=verify-full")
            .unwrap_err()
            .contains("needs sslrootcert"));
        assert!(split("postgres://u@h/db?sslmode=allow")
            .unwrap_err()
            .contains("not supported"));
        assert!(split("postgres://u@h/db?sslcert=/c.pem")
            .unwrap_err()
            .contains("go together"));
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(bare_name("DnsName(\"db.example\")"), "db.example");
        assert_eq!(bare_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(bare_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn a_missing_root_certificate_names_the_file_and_key() {
        let (_, tls) =
            split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap();
        let err = tls.connector().err().unwrap();
        assert!(err.starts_with("sslrootcert=/nonexistent/ca.pem:"), "{err}");
    }
}
