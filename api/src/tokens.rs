//! `gpuwatch token create|revoke`: the checks an operator's arguments get
//! before a token is made or revoked ([`crate::auth`] stores them).

use gpuwatch_store::{Pool, StoreError};

use crate::auth::{self, ROLES};

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

/// Checks `role` and the host binding, then creates the token: its id and
/// the token itself (shown once; only its hash is kept).
pub async fn create(
    pool: &Pool,
    name: &str,
    role: &str,
    host: Option<&str>,
) -> Result<(i64, String), TokenError> {
    check(role, host)?;
    Ok(auth::create(pool, name, role, host).await?)
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

fn check(role: &str, host: Option<&str>) -> Result<(), TokenError> {
    if !ROLES.contains(&role) {
        return Err(TokenError::Usage(format!(
            "--role {role:?} is not one of {}",
            ROLES.join(", ")
        )));
    }
    if host.is_some() && role != "agent" {
        return Err(TokenError::Usage(
            "--host only applies to --role agent".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_host_bindings_are_checked_before_the_database() {
        assert!(check("agent", Some("gpu01")).is_ok());
        assert!(check("viewer", None).is_ok());
        let e = check("root", None).unwrap_err().to_string();
        assert!(e.starts_with("--role \"root\" is not one of admin"), "{e}");
        let e = check("viewer", Some("gpu01")).unwrap_err().to_string();
        assert_eq!(e, "--host only applies to --role agent");
    }
}
