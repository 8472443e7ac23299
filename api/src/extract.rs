//! Request extractors whose rejections are JSON errors that say what is
//! wrong, instead of axum's plain-text defaults.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON body; unknown fields are rejected by the target type
/// (`#[serde(deny_unknown_fields)]`). A NUL anywhere in it (a string or a
/// key) is refused up front: PostgreSQL cannot store NUL in text or JSONB,
/// so it would otherwise fail in the database as if the database were at
/// fault.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(e) => return Err(json_rejection(e)),
        };
        if let Some(at) = nul_in(&value, String::new()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{at}: must not contain NUL (\\u0000)"),
            ));
        }
        // With the path of the field that does not fit (`threshold: invalid
        // type…`), as axum's own JSON extractor reports it.
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(|e| {
                let at = e.path().to_string();
                let message = if at == "." {
                    format!("the body does not fit: {}", e.inner())
                } else {
                    format!("the body does not fit: {at}: {}", e.inner())
                };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
            })
    }
}

/// The path (`labels.rack`, `matchers[0].value`) of the first string or key
/// holding a NUL.
fn nul_in(v: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if at.is_empty() {
            "body".to_string()
        } else {
            at.clone()
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_in(x, format!("{}[{i}]", here()))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(format!("{} (a key)", path.escape_debug()))
            } else {
                nul_in(x, path)
            }
        }),
        _ => None,
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON: send Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body does not fit: {}", source_text(&e)),
        ),
        // Too large (413) and unreadable bodies keep axum's status.
        other => ApiError::new(other.status(), other.body_text()),
    }
}

/// The innermost cause: serde's message names the field and the problem.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Query parameters; unknown ones are rejected by the target type. A
/// control character in any name or value is refused first (422): no
/// identifier, filter or matcher holds one, and NUL would fail in the
/// database.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Ok(axum::extract::Query(pairs)) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        {
            for (k, v) in &pairs {
                if k.chars().chain(v.chars()).any(char::is_control) {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "query parameter {}: must not contain control characters (NUL, newline, ...)",
                            k.escape_debug()
                        ),
                    ));
                }
            }
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("bad query parameters: {}", source_text(&e)),
            )),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// A path parameter; one with a control character is refused (422).
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await {
            for (k, v) in &raw {
                if v.chars().any(char::is_control) {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("path parameter {k}: must not contain control characters"),
                    ));
                }
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("bad path parameter: {}", e.body_text()),
            )),
        }
    }
}

/// Checks a text input before it reaches a query: 1 to `max` characters and
/// no control characters (PostgreSQL refuses NUL in text, which would
/// otherwise surface as a database error). 422 naming `field` otherwise.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let problem = if value.is_empty() {
        Some("must not be empty".to_string())
    } else if value.chars().count() > max {
        Some(format!("is longer than {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters (NUL, newline, ...)".to_string())
    } else {
        None
    };
    match problem {
        Some(p) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {p}"),
        )),
        None => Ok(()),
    }
}
