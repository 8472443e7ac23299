//! The web console: the Vue app built from `console/` into `console/dist`
//! (by scripts/console.sh, run from `build.rs`), embedded in the binary and
//! served at `/` by the router's fallback. Anything under `/api/` that no
//! route took stays a JSON 404, so API clients never get HTML.
//!
//! Assets named by content hash (`/assets/…`) are cached for a year;
//! `index.html` is revalidated on every load so a new binary's console is
//! picked up at once. A path that is no file is a client route of the app
//! and gets `index.html`. Text files are embedded gzip'd too (by
//! scripts/console.sh) and sent so to clients that accept it.

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use include_dir::{include_dir, Dir};

use gpuwatch_billing::cli::{InvoiceArgs, ReportError};

use crate::auth::{Caller, ROLES};
use crate::extract::Params;
use crate::{ApiError, AppState};

static ASSETS: Dir<'static> = include_dir!("$GPUWATCH_CONSOLE_DIR");

/// Every role may ask who it is.
pub const ANY: &[&str] = &ROLES;

/// What `GET /api/v1/whoami` answers: the console offers only what the
/// role may do.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct WhoAmI {
    /// `api_tokens.id` of the token used.
    pub token_id: i64,
    /// admin, operator, finance, viewer or agent.
    pub role: String,
    /// For an agent token bound to a host: that host.
    pub host_id: Option<String>,
}

/// `GET /api/v1/whoami`
pub async fn whoami(Extension(c): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        token_id: c.token_id,
        role: c.role.to_string(),
        host_id: c.host_id,
    })
}

/// `GET /api/v1/reports/invoices` parameters: those of
/// `gpuwatch report invoices`.
#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceExportQuery {
    /// Month, YYYY-MM.
    pub month: Option<String>,
    /// Only this customer.
    pub customer_id: Option<i64>,
    /// draft, issued, paid or void.
    pub status: Option<String>,
    /// csv (default) or json.
    pub format: Option<String>,
}

/// `GET /api/v1/reports/invoices`: what `gpuwatch report invoices` prints,
/// through the same function, so a download equals the command's output.
pub async fn invoice_export(
    State(st): State<AppState>,
    Params(q): Params<InvoiceExportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "csv".into());
    if !matches!(format.as_str(), "csv" | "json") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("format: must be csv or json, got {format:?}"),
        ));
    }
    let args = InvoiceArgs {
        month: q.month,
        customer: q.customer_id,
        status: q.status,
        format: format.clone(),
    };
    let body = gpuwatch_billing::cli::invoices(st.pool(), args)
        .await
        .map_err(|e| match e {
            ReportError::Usage(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            ReportError::Billing(b) => b.into(),
        })?;
    let (ctype, disposition) = if format == "csv" {
        (
            "text/csv; charset=utf-8",
            "attachment; filename=\"invoices.csv\"",
        )
    } else {
        ("application/json", "inline")
    };
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The router's fallback: the console for GET/HEAD outside `/api/`, the
/// JSON 404 for everything else.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || (method != Method::GET && method != Method::HEAD) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no such route; the routes are listed in /api/v1/openapi.json",
        )
        .into_response();
    }
    let name = path.trim_start_matches('/');
    let (name, file) = match ASSETS.get_file(name) {
        Some(f) if !name.is_empty() => (name, f),
        // A missing file with an extension is a broken link, not a page.
        _ if name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.')) =>
        {
            return (StatusCode::NOT_FOUND, "no such file in the console\n").into_response();
        }
        _ => match ASSETS.get_file("index.html") {
            Some(f) => ("index.html", f),
            None => return (StatusCode::NOT_FOUND, "the console is not built\n").into_response(),
        },
    };
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    // scripts/console.sh stores `NAME.gz` beside each text file.
    let gz = accepts_gzip(&headers)
        .then(|| ASSETS.get_file(format!("{name}.gz")))
        .flatten();
    let mut resp = match gz {
        Some(z) => {
            let mut r = z.contents().into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => file.contents().into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The embedded assets' total size, bytes, compressed copies included.
pub fn embedded_bytes() -> usize {
    fn walk(d: &Dir<'_>) -> usize {
        d.files().map(|f| f.contents().len()).sum::<usize>() + d.dirs().map(walk).sum::<usize>()
    }
    walk(&ASSETS)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ttf") => "font/ttf",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated_by_its_q_value() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn the_console_has_an_index_page() {
        assert!(ASSETS.get_file("index.html").is_some());
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
    }
}
