//! Bearer tokens: created and revoked by `gpuwatch token`, checked per
//! request against a SHA-256 hash; the token itself is never stored or logged.
//! Agent tokens are bound to one host unless made `--any-host`; tokens may
//! expire; lookups are cached for a few seconds ([`TokenCache`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
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
    /// The token's name (who acknowledged an alert).
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// For agent tokens bound to a host: that host.
    pub host_id: Option<String>,
    /// An agent token created with `--any-host`: it may report for any host.
    pub any_host: bool,
}

impl Caller {
    /// The host an agent-only request is about: the token's bound host, or,
    /// for an `--any-host` (or admin) token, the host the request names.
    pub fn agent_host<'a>(&'a self, asked: Option<&'a str>) -> Result<&'a str, ApiError> {
        match (&self.host_id, asked) {
            (Some(bound), None) => Ok(bound),
            (Some(bound), Some(h)) if h == bound => Ok(bound),
            (Some(bound), Some(h)) => {
                // A misconfigured or hostile agent: worth an operator's look.
                tracing::warn!(token.id = self.token_id, host.id = %bound, asked = %h, "agent token asked for another host; refused");
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("this token reports for host {bound:?}, not {h:?}"),
                ))
            }
            (None, Some(h)) => Ok(h),
            (None, None) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "host: required, because this token is not bound to a host",
            )),
        }
    }
}

pub(crate) fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token and its record. Returns (id, token); the token is shown once.
/// An agent token without `host_id` reports for any host, as with
/// `gpuwatch token create --any-host` ([`crate::tokens::create`] is the
/// checked path operators take).
pub async fn create(
    pool: &Pool,
    name: &str,
    role: &str,
    host_id: Option<&str>,
) -> Result<(i64, String), StoreError> {
    let role = Role::parse(role).ok_or_else(|| {
        StoreError::Unsupported(format!("role {role:?} is not one of {}", ROLES.join(", ")))
    })?;
    let spec = crate::tokens::NewToken {
        name,
        role,
        host_id,
        any_host: role == Role::Agent && host_id.is_none(),
        expires_at: None,
    };
    crate::tokens::insert(pool, &spec).await
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

/// The bearer token of a request, or 401 saying how to send one.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <token>",
            )
        })?;
    Ok(header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be \"Bearer <token>\"",
            )
        })?
        .trim())
}

/// A live token as the database holds it.
#[derive(Debug, Clone)]
struct Found {
    caller: Caller,
    expires_at: Option<DateTime<Utc>>,
}

impl Found {
    /// The caller, or 401 once the token has expired: checked on every
    /// request, cached or not, so expiry is exact.
    fn check(&self, now: DateTime<Utc>) -> Result<Caller, ApiError> {
        match self.expires_at {
            Some(at) if at <= now => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "token {} expired at {}; create a new one with `gpuwatch token create`",
                    self.caller.token_id,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            )),
            _ => Ok(self.caller.clone()),
        }
    }
}

/// The caller of a request, or 401 with what is wrong; asks the database
/// every time (see [`TokenCache`] for the cached path).
pub async fn caller(pool: &Pool, headers: &HeaderMap) -> Result<Caller, ApiError> {
    lookup(pool, &hash(bearer(headers)?))
        .await?
        .check(Utc::now())
}

async fn lookup(pool: &Pool, token_hash: &str) -> Result<Found, ApiError> {
    // Where standbys serve reads, a token is also checked there while the
    // primary cannot be reached (a failover), so reads keep answering; a
    // standby cannot record the use, and a revocation reaches it within the
    // replication lag.
    let found = match find(pool, token_hash, true).await {
        Err(e) if e.is_temporary() && pool.has_readers() => {
            find(pool.readers(), token_hash, false).await
        }
        other => other,
    };
    let row = found
        .map_err(ApiError::from)?
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
    Ok(Found {
        caller: Caller {
            token_id,
            name: row.get(5),
            role,
            host_id: row.get(2),
            any_host: row.get(3),
        },
        expires_at: row.get(4),
    })
}

/// The live record of a token; `mark_use` records its use in the same
/// statement (no extra round trip; the cache keeps it to one write per token
/// per cache period).
async fn find(
    pool: &Pool,
    token_hash: &str,
    mark_use: bool,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    let sql = if mark_use {
        "UPDATE api_tokens SET last_used_at = now() \
         WHERE token_hash = $1 AND revoked_at IS NULL \
         RETURNING id, role, host_id, any_host, expires_at, name"
    } else {
        "SELECT id, role, host_id, any_host, expires_at, name FROM api_tokens \
         WHERE token_hash = $1 AND revoked_at IS NULL"
    };
    let client = pool.get().await?;
    client
        .query_opt(sql, &[&token_hash])
        .await
        .map_err(|e| StoreError::query("looking up the token", e))
}

/// Most tokens a cache holds; past it, the cache starts over (a flood of
/// distinct valid tokens is not a case worth more memory).
const CACHE_ENTRIES: usize = 10_000;

/// Token lookups remembered for `ttl`, so a busy API does not query the
/// token table on every request. A revoked token is refused at the latest
/// `ttl` after its revocation, by every replica, with no signal between
/// them: each entry simply ages out. Unknown tokens are never cached, so
/// guessing cannot fill it. A zero `ttl` turns it off.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Found)>>,
}

impl TokenCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The caller of a request, from the cache while its entry is fresh.
    pub async fn caller(&self, pool: &Pool, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let key = hash(bearer(headers)?);
        if let Some(found) = self.fresh(&key) {
            return found.check(Utc::now());
        }
        let found = lookup(pool, &key).await?;
        if !self.ttl.is_zero() {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), found.clone()));
        }
        found.check(Utc::now())
    }

    fn fresh(&self, key: &str) -> Option<Found> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((at, found)) if at.elapsed() < self.ttl => Some(found.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }
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
