//! DLWorkspace's job statuses: the closed set `jobStatus` takes, shared by
//! the sync, the API's job list and the exporter's job counts.

use std::fmt;

/// A DLWorkspace job status. Its lifecycle is
/// `unapproved → queued → scheduling → running → finished | failed | error`,
/// with `pausing → paused` and `killing → killed` on the side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Submitted, waiting for approval.
    Unapproved,
    /// Approved, waiting for resources.
    Queued,
    /// Resources found, pods being placed.
    Scheduling,
    /// Running on the cluster.
    Running,
    /// Ended successfully.
    Finished,
    /// Ended with a failure of the job itself.
    Failed,
    /// Being paused.
    Pausing,
    /// Paused; its resources are released.
    Paused,
    /// Being killed.
    Killing,
    /// Killed by its owner or an administrator.
    Killed,
    /// Ended by an error of the platform.
    Error,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 11] = [
        JobStatus::Unapproved,
        JobStatus::Queued,
        JobStatus::Scheduling,
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Pausing,
        JobStatus::Paused,
        JobStatus::Killing,
        JobStatus::Killed,
        JobStatus::Error,
    ];

    /// The string DLWorkspace writes (and `training_jobs.job_status` keeps).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Unapproved => "unapproved",
            JobStatus::Queued => "queued",
            JobStatus::Scheduling => "scheduling",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Pausing => "pausing",
            JobStatus::Paused => "paused",
            JobStatus::Killing => "killing",
            JobStatus::Killed => "killed",
            JobStatus::Error => "error",
        }
    }

    /// Parses DLWorkspace's string; anything else is `None` (a bad row).
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the job has ended: its row no longer changes.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Error | JobStatus::Killed
        )
    }

    /// The final statuses as a SQL list, for queries that filter on them.
    pub fn final_sql_list() -> String {
        JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_nothing_else_parses() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("Running"), None);
        assert_eq!(JobStatus::parse(""), None);
    }

    #[test]
    fn the_migration_allows_exactly_these_statuses() {
        let sql = include_str!("../../migrations/0024_dlworkspace.sql");
        for s in JobStatus::ALL {
            assert!(sql.contains(&format!("'{s}'")), "{s} missing in 0024");
        }
        assert_eq!(
            JobStatus::final_sql_list(),
            "'finished', 'failed', 'killed', 'error'"
        );
        assert!(sql.contains("NOT IN ('finished', 'failed', 'error', 'killed')"));
    }
}
