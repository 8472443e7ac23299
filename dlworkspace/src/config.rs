//! `[dlworkspace]` of the config file: the clusters to mirror.

use std::time::Duration;

use serde::Deserialize;

/// `[dlworkspace]`: one `[[dlworkspace.clusters]]` table per cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlworkspaceConfig {
    /// The clusters whose MySQL `jobs` are mirrored; none means the source
    /// does not run.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
}

/// One DLWorkspace cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster id, as in the database name `DLWorkspaceCluster-<id>`;
    /// it keys the cluster's jobs in `training_jobs`.
    pub id: String,
    /// `mysql://user:pass@host:3306/DLWorkspaceCluster-<id>`; the user needs
    /// SELECT only (the sync also opens its sessions read-only).
    pub url: String,
    /// How often the cluster is polled ("30s").
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
    /// How a job's `userName` becomes a customer.
    #[serde(default)]
    pub owner_rule: OwnerRule,
    /// Whether the meter bills the cluster's jobs' GPU-hours ("bill"),
    /// only reports them in usage reports ("report", the default), or
    /// leaves them out ("off").
    #[serde(default)]
    pub billing: JobBilling,
}

/// What the meter does with a cluster's jobs (`billing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobBilling {
    /// GPU-hours become billing records that go on invoices.
    Bill,
    /// GPU-hours appear in usage reports (priced, as `report_only`) and
    /// never on an invoice.
    #[default]
    Report,
    /// Not metered.
    Off,
}

impl JobBilling {
    /// The name in configuration and in `dlworkspace_clusters.billing`.
    pub fn name(self) -> &'static str {
        match self {
            JobBilling::Bill => "bill",
            JobBilling::Report => "report",
            JobBilling::Off => "off",
        }
    }
}

fn default_poll_interval() -> String {
    "30s".into()
}

/// How a DLWorkspace `userName` maps to `customers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerRule {
    /// `customers.username` equals `userName`.
    #[default]
    Username,
    /// An explicit row of `dlworkspace_owner_map` (cluster, userName).
    Table,
}

impl OwnerRule {
    /// The name used in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            OwnerRule::Username => "username",
            OwnerRule::Table => "table",
        }
    }
}

/// The shortest poll interval accepted: each cycle opens a MySQL session.
const MIN_POLL: Duration = Duration::from_secs(1);

impl ClusterConfig {
    /// The parsed poll interval; [`DlworkspaceConfig::validate`] has
    /// checked it, so a bad value here falls back to the default.
    pub fn poll(&self) -> Duration {
        humantime::parse_duration(&self.poll_interval).unwrap_or(Duration::from_secs(30))
    }

    fn problems(&self, n: usize, out: &mut Vec<String>) {
        let key = |k: &str| format!("dlworkspace.clusters[{n}].{k}");
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push(format!(
                "{}: must be 1 to 64 letters, digits, '-' or '_', got {:?}",
                key("id"),
                self.id
            ));
        }
        match mysql_async::Opts::from_url(&self.url) {
            Err(e) => out.push(format!(
                "{}: not a MySQL URL ({e}); write mysql://user:pass@host:3306/DLWorkspaceCluster-{}",
                key("url"),
                self.id
            )),
            Ok(opts) if opts.db_name().is_none() => out.push(format!(
                "{}: names no database; end it with /DLWorkspaceCluster-{}",
                key("url"),
                self.id
            )),
            Ok(_) => {}
        }
        match humantime::parse_duration(&self.poll_interval) {
            Err(e) => out.push(format!(
                "{}: not a duration ({e}), got {:?}; write e.g. \"30s\"",
                key("poll_interval"),
                self.poll_interval
            )),
            Ok(d) if d < MIN_POLL => out.push(format!(
                "{}: must be at least 1s, got {:?}",
                key("poll_interval"),
                self.poll_interval
            )),
            Ok(_) => {}
        }
    }
}

impl DlworkspaceConfig {
    /// Every problem, as `dlworkspace.clusters[N].key: what is wrong` lines.
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (n, c) in self.clusters.iter().enumerate() {
            c.problems(n, &mut out);
            if self.clusters[..n].iter().any(|o| o.id == c.id) {
                out.push(format!(
                    "dlworkspace.clusters[{n}].id: {:?} is configured twice; each cluster once",
                    c.id
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> DlworkspaceConfig {
        toml::from_str(s).expect("toml")
    }

    #[test]
    fn a_cluster_with_defaults_is_valid() {
        let c = parse(
            r#"[[clusters]]
id = "7"
url = "mysql://ro:pw@db:3306/DLWorkspaceCluster-7"
"#,
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let k = &c.clusters[0];
        assert_eq!(k.poll(), Duration::from_secs(30));
        assert_eq!(k.owner_rule, OwnerRule::Username);
        assert_eq!(k.billing, JobBilling::Report);
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let c = parse(
            r#"[[clusters]]
id = "a b"
url = "postgres://x"
poll_interval = "soon"

[[clusters]]
id = "a b"
url = "mysql://ro@db:3306"
poll_interval = "10ms"
owner_rule = "table"
billing = "bill"
"#,
        );
        let e = c.validate();
        for want in [
            "dlworkspace.clusters[0].id:",
            "dlworkspace.clusters[0].url: not a MySQL URL",
            "dlworkspace.clusters[0].poll_interval: not a duration",
            "dlworkspace.clusters[1].url: names no database",
            "dlworkspace.clusters[1].poll_interval: must be at least 1s",
            "dlworkspace.clusters[1].id: \"a b\" is configured twice",
        ] {
            assert!(
                e.iter().any(|l| l.starts_with(want)),
                "{want} missing in {e:#?}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_rules_are_refused() {
        let bad_key = toml::from_str::<DlworkspaceConfig>(
            "[[clusters]]\nid = \"1\"\nurl = \"mysql://h/d\"\npoll = \"1s\"\n",
        );
        assert!(bad_key.is_err());
        let bad_rule = toml::from_str::<DlworkspaceConfig>(
            "[[clusters]]\nid = \"1\"\nurl = \"mysql://h/d\"\nowner_rule = \"email\"\n",
        );
        assert!(bad_rule.is_err());
        let bad_billing = toml::from_str::<DlworkspaceConfig>(
            "[[clusters]]\nid = \"1\"\nurl = \"mysql://h/d\"\nbilling = \"yes\"\n",
        );
        assert!(bad_billing.is_err());
        let old_key = toml::from_str::<DlworkspaceConfig>(
            "[[clusters]]\nid = \"1\"\nurl = \"mysql://h/d\"\nbill = true\n",
        );
        assert!(old_key.is_err(), "bill became billing");
    }
}
