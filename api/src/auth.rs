//! Bearer tokens: created and revoked by `gpuwatch token`, checked per
//! request against a SHA-256 hash; the token itself is never stored or logged.

use axum::http::{HeaderMap, StatusCode};
use gpuwatch_store::{Pool, StoreError};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The role of a token: what its caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Rules, silences, webhooks and the fleet.
    Operator,
    /// Reports, invoices and prices.
    Finance,
    /// Read only.
    Viewer,
    /// A collector pushing samples.
    Agent,
}

impl Role {
    /// Every role, in the order they are listed to users.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Finance,
        Role::Viewer,
        Role::Agent,
    ];

    /// The role's name, as stored in `api_tokens.role`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Finance => "finance",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The names of the roles a token can have, derived from [`Role`].
pub const ROLES: [&str; 5] = [
    Role::ALL[0].as_str(),
    Role::ALL[1].as_str(),
    Role::ALL[2].as_str(),
    Role::ALL[3].as_str(),
    Role::ALL[4].as_str(),
];

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `api_tokens.id`
    pub token_id: i64,
    /// The token's role.
    pub role: Role,
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
    let role = Role::parse(role).ok_or_else(|| {
        StoreError::Unsupported(format!("role {role:?} is not one of {}", ROLES.join(", ")))
    })?;
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
            &[&name, &role.as_str(), &host_id, &hash(&token), &&token[..12]],
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
    // Where standbys serve reads, a token is also checked there while the
    // primary cannot be reached (a failover), so reads keep answering;
    // revocations reach the standbys within the replication lag.
    let found = match lookup(pool, token).await {
        Err(e) if e.is_temporary() && pool.has_readers() => lookup(pool.readers(), token).await,
        other => other,
    };
    let row = found?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))?;
    let token_id: i64 = row.get(0);
    let stored: String = row.get(1);
    // A role this version does not know grants nothing.
    let role = Role::parse(&stored).ok_or_else(|| {
        tracing::error!(token.id = token_id, role = %stored, "token refused: its role is not one gpuwatch knows");
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("token {token_id} has role {stored:?}, which is not one of {}; create a new token", ROLES.join(", ")),
        )
    })?;
    Ok(Caller {
        token_id,
        role,
        host_id: row.get(2),
    })
}

/// The live token record of `token`, if any.
async fn lookup(pool: &Pool, token: &str) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let client = pool.get().await?;
    client
        .query_opt(
            "SELECT id, role, host_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&hash(token)],
        )
        .await
        .map_err(|e| StoreError::query("looking up the token", e))
}

#[cfg(test)]
mod tests {
    use super::{hash, Role, ROLES};

    #[test]
    fn roles_parse_their_names_only() {
        assert_eq!(ROLES, ["admin", "operator", "finance", "viewer", "agent"]);
        assert!(ROLES
            .iter()
            .all(|r| Role::parse(r).is_some_and(|x| x == *r)));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
