//! The intended Citus layout of every table: the one declaration that a
//! distributed deployment follows and that a test checks against the live
//! catalogue after all migrations (`tests/suite/citus.rs`: keys of
//! distributed tables include the distribution column, no foreign key Citus
//! refuses, every table classified).
//!
//! - **Distributed** on `host_id`, all in one co-location group: the raw
//!   metric tables and their tiers, the only tables that grow with fleet ×
//!   time. One host's batch, its tier rows and its reads land on one shard.
//! - **Reference** (a copy on every node): the catalogue that distributed
//!   queries join against — hosts, GPUs, environments, customers and the
//!   like. Small, read by everything, written rarely (but see DESIGN for the
//!   per-batch heartbeat).
//! - **Local** (on the coordinator only): control-plane state written
//!   under leases, advisory locks or `SKIP LOCKED` (alerting, billing,
//!   bookkeeping), which grows with customers and events, not with samples.
//!
//! Citus is not installed here; [`citus_sql`] is what an operator would run
//! on a coordinator after `gpuwatch migrate`, unverified.

/// Where a table lives in a Citus cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Sharded on the named column, co-located with every other distributed table.
    Distributed(&'static str),
    /// Replicated to every node.
    Reference,
    /// Kept on the coordinator.
    Local,
}

use Placement::{Distributed, Local, Reference};

/// The distribution column of every distributed table's co-location group.
pub const HOST: Placement = Distributed("host_id");

/// Every table of the schema (partitions and chunks follow their parent).
pub const LAYOUT: &[(&str, Placement)] = &[
    // Samples and tiers: distributed and co-located on the host.
    ("gpu_metrics", HOST),
    ("gpu_metrics_1h", HOST),
    ("gpu_metrics_1d", HOST),
    ("host_metrics", HOST),
    ("host_metrics_1h", HOST),
    ("host_metrics_1d", HOST),
    ("environment_metrics", HOST),
    ("environment_metrics_1h", HOST),
    ("environment_metrics_1d", HOST),
    // The catalogue joined by distributed queries.
    ("hosts", Reference),
    ("gpus", Reference),
    ("environments", Reference),
    ("port_mappings", Reference),
    ("customers", Reference),
    ("workspaces", Reference),
    ("workspace_members", Reference),
    ("resource_quotas", Reference),
    ("datasets", Reference),
    ("dataset_versions", Reference),
    ("models", Reference),
    ("model_versions", Reference),
    ("images", Reference),
    ("image_versions", Reference),
    ("inference_services", Reference),
    ("system_configs", Reference),
    // Fleet rollups: one row per bucket, written by one aggregator.
    ("gpu_metrics_fleet_1h", Local),
    ("gpu_metrics_fleet_1d", Local),
    ("host_metrics_fleet_1h", Local),
    ("host_metrics_fleet_1d", Local),
    ("environment_metrics_fleet_1h", Local),
    ("environment_metrics_fleet_1d", Local),
    // Bookkeeping of migrations and tiers.
    ("gpuwatch_schema_migrations", Local),
    ("gpuwatch_schema_functions", Local),
    ("gpuwatch_tier_state", Local),
    ("gpuwatch_tier_invalidations", Local),
    // Alerting.
    ("alert_rules", Local),
    ("alert_records", Local),
    ("alert_groups", Local),
    ("alert_outbox", Local),
    ("silences", Local),
    ("inhibit_rules", Local),
    ("webhooks", Local),
    ("webhook_logs", Local),
    ("notifications", Local),
    // Billing: the ledger, its prices and the meter's state.
    ("billing_records", Local),
    ("billing_prices", Local),
    ("billing_meter_state", Local),
    ("billing_meter_errors", Local),
    ("billing_recompute_queue", Local),
    ("billing_customer_settings", Local),
    ("invoices", Local),
    ("environment_status_history", Local),
    // Jobs and the DLWorkspace mirror.
    ("training_jobs", Local),
    ("training_job_status_history", Local),
    ("artifacts", Local),
    ("dlworkspace_clusters", Local),
    ("dlworkspace_cursors", Local),
    ("dlworkspace_retry", Local),
    ("dlworkspace_owner_map", Local),
    // The rest of the control plane.
    ("api_tokens", Local),
    ("audit_logs", Local),
    ("dataset_usage", Local),
    ("issues", Local),
    ("requirements", Local),
    ("comments", Local),
];

/// The placement of `table`, if it is declared.
pub fn placement(table: &str) -> Option<Placement> {
    LAYOUT.iter().find(|(t, _)| *t == table).map(|(_, p)| *p)
}

/// The statements that would lay the schema out on a Citus coordinator:
/// reference tables first (distributed tables' foreign keys point at them),
/// then the distributed tables in one co-location group. Local tables stay
/// as they are. Not run by gpuwatch: Citus is not part of the supported
/// backends yet.
pub fn citus_sql() -> String {
    let mut out = Vec::new();
    for (t, p) in LAYOUT {
        if *p == Reference {
            out.push(format!("SELECT create_reference_table('{t}');"));
        }
    }
    let mut first: Option<&str> = None;
    for (t, p) in LAYOUT {
        if let Distributed(col) = p {
            let with = first.unwrap_or("none");
            out.push(format!(
                "SELECT create_distributed_table('{t}', '{col}', colocate_with => '{with}');"
            ));
            first.get_or_insert(*t);
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_is_declared_once() {
        let mut names: Vec<&str> = LAYOUT.iter().map(|(t, _)| *t).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a table is declared twice");
    }

    #[test]
    fn distributed_tables_join_one_group_after_the_reference_tables() {
        let sql = citus_sql();
        let first_dist = sql.find("create_distributed_table").unwrap();
        let last_ref = sql.rfind("create_reference_table").unwrap();
        assert!(last_ref < first_dist, "{sql}");
        assert!(sql.contains(
            "create_distributed_table('gpu_metrics', 'host_id', colocate_with => 'none')"
        ));
        assert!(sql.contains(
            "create_distributed_table('environment_metrics_1d', 'host_id', colocate_with => 'gpu_metrics')"
        ));
    }
}
