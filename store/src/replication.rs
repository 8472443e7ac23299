//! Where the database stands in its replication: whether the server a pool
//! reached is the primary or a standby, and how far each standby lags. Read
//! from the views of `migrations/0025_replication.sql`, so `/metrics`, the
//! alerter's rules and `/ready` see the same numbers.

use tokio_postgres::GenericClient;

use crate::{Pool, Result, StoreError};

/// What a server is in its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// In recovery: replays the primary's WAL and refuses writes.
    Standby,
}

impl Role {
    /// Every role, for label sets that must cover them all.
    pub const ALL: [Role; 2] = [Role::Primary, Role::Standby];

    /// The label value: "primary" or "standby".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

/// How far one standby is behind.
#[derive(Debug, Clone, PartialEq)]
pub struct StandbyLag {
    /// The standby's `application_name` (seen from the primary) or its
    /// `cluster_name` (seen from the standby itself).
    pub standby: String,
    /// `pg_stat_replication.state` ("streaming", "catchup", ...) or "replaying".
    pub state: String,
    /// Seconds between the primary flushing WAL and this standby replaying
    /// it; on a standby, the age of the last replayed transaction while WAL
    /// waits to be replayed.
    pub lag_seconds: Option<f64>,
    /// WAL bytes written by the primary (or received) and not yet replayed.
    pub lag_bytes: Option<f64>,
}

/// The replication state as one server sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// The role of the server reached.
    pub role: Role,
    /// Each standby's lag (on a standby: its own).
    pub standbys: Vec<StandbyLag>,
    /// Physical replication slots no standby is streaming from: a standby
    /// that is expected and missing. 0 on a standby or without slots.
    pub missing_standbys: i64,
}

/// The role of the server `c` is connected to.
pub async fn role<C: GenericClient>(c: &C) -> Result<Role> {
    let standby: bool = c
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| StoreError::query("asking the database whether it is a standby", e))?
        .get(0);
    Ok(if standby {
        Role::Standby
    } else {
        Role::Primary
    })
}

/// Reads the role, each standby's lag and the missing standbys in one
/// round trip per view.
pub async fn status(pool: &Pool) -> Result<Replication> {
    let c = pool.get().await?;
    let role = role(&**c).await?;
    let standbys = c
        .query(
            "SELECT standby, state, lag_seconds, lag_bytes FROM gpuwatch_replication ORDER BY standby",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("reading gpuwatch_replication", e))?
        .iter()
        .map(|r| StandbyLag {
            standby: r.get(0),
            state: r.get(1),
            lag_seconds: r.get(2),
            lag_bytes: r.get(3),
        })
        .collect();
    let missing_standbys = c
        .query_one("SELECT missing FROM gpuwatch_replication_missing", &[])
        .await
        .map_err(|e| StoreError::query("reading gpuwatch_replication_missing", e))?
        .get(0);
    Ok(Replication {
        role,
        standbys,
        missing_standbys,
    })
}
