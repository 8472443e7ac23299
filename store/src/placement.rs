//! Where environments run: the running environments placed on one host,
//! as an agent samples them. One query for both ways an agent learns its
//! list: straight from the database (direct sink) or from `gpuwatch serve`
//! (`GET /api/v1/agent/environments`, HTTP sink).

use crate::{Pool, StoreError};

/// A running environment on a host: what its agent needs to find and
/// scale its cgroup.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacedEnvironment {
    /// `environments.id`
    #[schemars(length(min = 1, max = 64))]
    pub id: String,
    /// The container's id, where the platform records one.
    pub container_id: Option<String>,
    /// Its cgroup below the root, where the platform records one.
    pub cgroup_path: Option<String>,
    /// Allocated CPU cores.
    #[schemars(range(min = 0))]
    pub cpu: i32,
    /// Allocated memory, bytes.
    #[schemars(range(min = 0))]
    pub memory: i64,
}

/// The running, not deleted environments placed on `host`.
pub async fn running_on(pool: &Pool, host: &str) -> Result<Vec<PlacedEnvironment>, StoreError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT id, container_id, cgroup_path, cpu, memory FROM environments
             WHERE host_id = $1 AND status = 'running' AND deleted_at IS NULL
             ORDER BY id",
            &[&host],
        )
        .await
        .map_err(|e| StoreError::query("listing a host's running environments", e))?;
    Ok(rows
        .iter()
        .map(|r| PlacedEnvironment {
            id: r.get(0),
            container_id: r.get(1),
            cgroup_path: r.get(2),
            cpu: r.get(3),
            memory: r.get(4),
        })
        .collect())
}
