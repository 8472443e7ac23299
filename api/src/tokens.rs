//! `gpuwatch token create|list|revoke`: the checks an operator's arguments
//! get before a token is made, and the token table's queries
//! ([`crate::auth`] checks tokens on requests).

use chrono::{DateTime, Utc};
use gpuwatch_store::{Pool, StoreError};

use crate::auth::{self, Role, ROLES};

/// What a token command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// An argument the operator got wrong; the message names it.
    #[error("{0}")]
    Usage(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `gpuwatch token create` was asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateArgs<'a> {
    /// `--name`
    pub name: &'a str,
    /// `--role`
    pub role: &'a str,
    /// `--host`
    pub host: Option<&'a str>,
    /// `--any-host`
    pub any_host: bool,
    /// `--expires`, a humantime duration from now (`30d`, `12h`).
    pub expires: Option<&'a str>,
}

/// A token row to insert, checked.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// A name to recognise it by.
    pub name: &'a str,
    /// Its role.
    pub role: Role,
    /// The one host an agent token reports for.
    pub host_id: Option<&'a str>,
    /// An agent token that reports for any host.
    pub any_host: bool,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as `gpuwatch token list` shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// `api_tokens.id`
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The first characters of the token, to recognise it by.
    pub prefix: String,
    /// Its role, as stored.
    pub role: String,
    /// The host it is bound to, `*` for `--any-host`, empty otherwise.
    pub host: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the server last looked it up.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Checks the arguments, then creates the token: its id and the token
/// itself (shown once; only its hash is kept).
pub async fn create(pool: &Pool, args: &CreateArgs<'_>) -> Result<(i64, String), TokenError> {
    let spec = check(args, Utc::now())?;
    Ok(insert(pool, &spec).await?)
}

/// Stores a new token: (id, token).
pub(crate) async fn insert(pool: &Pool, t: &NewToken<'_>) -> Result<(i64, String), StoreError> {
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
            "INSERT INTO api_tokens (name, role, host_id, any_host, expires_at, token_hash, token_prefix) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &t.name,
                &t.role.as_str(),
                &t.host_id,
                &t.any_host,
                &t.expires_at,
                &auth::hash(&token),
                &&token[..12],
            ],
        )
        .await
        .map_err(|e| StoreError::query("creating the token", e))?;
    Ok((row.get(0), token))
}

/// Every token, newest first (revoked ones too, marked so).
pub async fn list(pool: &Pool) -> Result<Vec<TokenInfo>, TokenError> {
    let client = pool.get().await.map_err(TokenError::Store)?;
    let rows = client
        .query(
            "SELECT id, name, token_prefix, role, \
                    CASE WHEN any_host THEN '*' ELSE coalesce(host_id, '') END, \
                    created_at, last_used_at, expires_at, revoked_at \
             FROM api_tokens ORDER BY id DESC",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("listing the tokens", e))?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            name: r.get(1),
            prefix: r.get(2),
            role: r.get(3),
            host: r.get(4),
            created_at: r.get(5),
            last_used_at: r.get(6),
            expires_at: r.get(7),
            revoked_at: r.get(8),
        })
        .collect())
}

/// The table `gpuwatch token list` prints.
pub fn render(tokens: &[TokenInfo]) -> String {
    let time = |t: &Option<DateTime<Utc>>| {
        t.map_or("-".to_string(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    let mut rows = vec![[
        "ID",
        "PREFIX",
        "ROLE",
        "HOST",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATE",
        "NAME",
    ]
    .map(String::from)];
    let now = Utc::now();
    for t in tokens {
        let state = match (t.revoked_at, t.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(e)) if e <= now => "expired",
            _ => "live",
        };
        let host = match t.host.as_str() {
            "*" => "(any host)".to_string(),
            "" => "-".to_string(),
            h => format!("{h:?}").trim_matches('"').to_string(),
        };
        rows.push([
            t.id.to_string(),
            t.prefix.clone(),
            t.role.clone(),
            host,
            time(&Some(t.created_at)),
            time(&t.last_used_at),
            time(&t.expires_at),
            state.to_string(),
            format!("{:?}", t.name).trim_matches('"').to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Revokes the live token `id`; an unknown or already revoked id is the
/// operator's mistake.
pub async fn revoke(pool: &Pool, id: i64) -> Result<(), TokenError> {
    if auth::revoke(pool, id).await? {
        Ok(())
    } else {
        Err(TokenError::Usage(format!("no live token with id {id}")))
    }
}

fn usage(msg: impl Into<String>) -> TokenError {
    TokenError::Usage(msg.into())
}

fn check<'a>(a: &CreateArgs<'a>, now: DateTime<Utc>) -> Result<NewToken<'a>, TokenError> {
    let role = Role::parse(a.role).ok_or_else(|| {
        usage(format!(
            "--role {:?} is not one of {}",
            a.role,
            ROLES.join(", ")
        ))
    })?;
    if role != Role::Agent && (a.host.is_some() || a.any_host) {
        return Err(usage("--host and --any-host only apply to --role agent"));
    }
    if role == Role::Agent {
        match (a.host, a.any_host) {
            (Some(_), true) => return Err(usage(
                "--host and --any-host exclude each other: bind the token to one host, or to none",
            )),
            (None, false) => {
                return Err(usage(
                    "--role agent needs --host HOST (the one host it reports for); \
                     pass --any-host instead only for a gateway that reports for many hosts",
                ))
            }
            (Some(h), false) if h.is_empty() || h.len() > 64 || h.chars().any(char::is_control) => {
                return Err(usage(format!(
                    "--host {h:?}: a host id is 1 to 64 characters without control characters"
                )))
            }
            _ => {}
        }
    }
    let expires_at = match a.expires {
        None => None,
        Some(s) => {
            let d = humantime::parse_duration(s)
                .map_err(|e| usage(format!("--expires {s:?}: {e}; write e.g. 30d or 12h")))?;
            let d = chrono::Duration::from_std(d)
                .ok()
                .filter(|d| *d > chrono::Duration::zero())
                .and_then(|d| now.checked_add_signed(d))
                .filter(|t| t.timestamp() < 253_402_300_800) // 10000-01-01
                .ok_or_else(|| {
                    usage(format!(
                        "--expires {s:?}: must be more than zero and less than 8000 years"
                    ))
                })?;
            Some(d)
        }
    };
    Ok(NewToken {
        name: a.name,
        role,
        host_id: a.host,
        any_host: a.any_host,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(role: &'a str, host: Option<&'a str>, any_host: bool) -> CreateArgs<'a> {
        CreateArgs {
            name: "t",
            role,
            host,
            any_host,
            expires: None,
        }
    }

    fn err(a: CreateArgs<'_>) -> String {
        check(&a, Utc::now()).unwrap_err().to_string()
    }

    #[test]
    fn roles_and_host_bindings_are_checked_before_the_database() {
        assert!(check(&args("agent", Some("gpu01"), false), Utc::now()).is_ok());
        assert!(check(&args("agent", None, true), Utc::now()).is_ok());
        assert!(check(&args("viewer", None, false), Utc::now()).is_ok());
        assert!(err(args("root", None, false)).starts_with("--role \"root\" is not one of admin"));
        assert_eq!(
            err(args("viewer", Some("gpu01"), false)),
            "--host and --any-host only apply to --role agent"
        );
        assert!(err(args("agent", None, false)).starts_with("--role agent needs --host HOST"));
        assert!(err(args("agent", Some("a"), true)).contains("exclude each other"));
        assert!(err(args("agent", Some("a\nb"), false)).contains("control characters"));
    }

    #[test]
    fn expiry_is_a_duration_from_now() {
        let now = Utc::now();
        let mut a = args("viewer", None, false);
        a.expires = Some("30d");
        let t = check(&a, now).unwrap();
        assert_eq!(t.expires_at, Some(now + chrono::Duration::days(30)));
        for bad in ["0s", "soon", "100000y"] {
            a.expires = Some(bad);
            let e = check(&a, now).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--expires {bad:?}")), "{e}");
        }
    }
}
