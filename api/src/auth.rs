//! Bearer tokens: created and revoked by `gpuwatch token`, checked per
//! request against a SHA-256 hash; the token itself is never stored or logged.

use axum::http::{HeaderMap, StatusCode};
use gpuwatch_store::{Pool, StoreError};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// Roles a token can have.
pub const ROLES: [&str; 5] = ["admin", "operator", "finance", "viewer", "agent"];

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `api_tokens.id`
    pub token_id: i64,
    /// The token's role.
    pub role: String,
    /// For agent tokens bound to a host: that host.
    pub host_id: Option<String>,
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token and its record. Returns (id, token); the token is shown once.
pub async fn create(
    pool: &Pool,
    name: &str,
    role: &str,
    host_id: Option<&str>,
) -> Result<(i64, String), StoreError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| StoreError::Unsupported(format!("no randomness for a token: {e}")))?;
    let token = format!(
        "gwt_{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO api_tokens (name, role, host_id, token_hash, token_prefix) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&name, &role, &host_id, &hash(&token), &&token[..12]],
        )
        .await
        .map_err(|e| StoreError::query("creating the token", e))?;
    Ok((row.get(0), token))
}

/// Revokes a token by id; false if there was no such live token.
pub async fn revoke(pool: &Pool, id: i64) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await
        .map_err(|e| StoreError::query(format!("revoking token {id}"), e))?;
    Ok(n == 1)
}

/// The caller of a request, or 401 with what is wrong.
pub async fn caller(pool: &Pool, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <token>",
            )
        })?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be \"Bearer <token>\"",
            )
        })?
        .trim();
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, role, host_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&hash(token)],
        )
        .await
        .map_err(|e| ApiError::from(StoreError::query("looking up the token", e)))?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
    Ok(Caller {
        token_id: row.get(0),
        role: row.get(1),
        host_id: row.get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
