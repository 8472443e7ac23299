//! `[collector.cgroup]`: where and how the environment source reads.

use std::path::PathBuf;

use serde::Deserialize;

/// `[collector.cgroup]`: where the environment source reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Where the cgroup filesystems are mounted (default "/sys/fs/cgroup"):
    /// the cgroup v2 hierarchy itself, or the directory holding the v1
    /// controllers (`memory/`, `cpuacct/`) and `unified/`. Mounts that
    /// /proc/self/mountinfo lists below it win; where it lists none there,
    /// the files below it decide, then mounts elsewhere.
    pub root: PathBuf,
    /// Where procfs is mounted (default "/proc").
    pub proc_path: PathBuf,
    /// An environment's cgroup below the hierarchy (below each controller's
    /// mount on cgroup v1), with `{container_id}` and `{env_id}` filled in
    /// (default "system.slice/docker-{container_id}.scope", Docker with the
    /// systemd cgroup driver; "docker/{container_id}" with the cgroupfs one).
    pub path_pattern: String,
    /// Which cgroup version to read (default "auto": detected per host).
    pub version: CgroupVersion,
    /// Where the container runtime keeps a container's metadata, `{id}`
    /// being its id: the agent's `/metrics` takes a GPU process's pod name,
    /// namespace and container name from the first readable one (default:
    /// containerd's and CRI-O's OCI `config.json`, Docker's `config.v2.json`).
    pub pod_metadata: Vec<String>,
}

/// `collector.cgroup.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Detected from the host's mounts: v2, v1, or hybrid (v1 controllers
    /// beside a v2 hierarchy without them), which reads as v1.
    #[default]
    Auto,
    /// The v1 `memory` and `cpuacct` controllers.
    V1,
    /// The unified (v2) hierarchy.
    V2,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            root: PathBuf::from("/sys/fs/cgroup"),
            proc_path: PathBuf::from("/proc"),
            path_pattern: "system.slice/docker-{container_id}.scope".into(),
            version: CgroupVersion::Auto,
            pod_metadata: vec![
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json".into(),
                "/run/containers/storage/overlay-containers/{id}/userdata/config.json".into(),
                "/var/lib/docker/containers/{id}/config.v2.json".into(),
            ],
        }
    }
}

const PLACEHOLDERS: [&str; 2] = ["{container_id}", "{env_id}"];

impl CgroupConfig {
    /// Every problem, as `collector.cgroup.<key>: what is wrong` lines.
    /// (`version` is a closed set: a value outside it fails to parse.)
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (key, path) in [("root", &self.root), ("proc_path", &self.proc_path)] {
            if !path.is_absolute() {
                e.push(format!(
                    "collector.cgroup.{key}: must be an absolute path, got {path:?}"
                ));
            }
        }
        let p = &self.path_pattern;
        if !PLACEHOLDERS.iter().any(|ph| p.contains(ph)) {
            e.push(format!(
                "collector.cgroup.path_pattern: must contain {{container_id}} or {{env_id}}, got {p:?}"
            ));
        }
        let rest = PLACEHOLDERS
            .iter()
            .fold(p.clone(), |s, ph| s.replace(ph, ""));
        if rest.contains('{') || rest.contains('}') {
            e.push(format!(
                "collector.cgroup.path_pattern: only {{container_id}} and {{env_id}} may appear in braces, got {p:?}"
            ));
        }
        for m in &self.pod_metadata {
            if !m.starts_with('/') || !m.contains("{id}") {
                e.push(format!(
                    "collector.cgroup.pod_metadata: each entry must be an absolute path containing {{id}}, got {m:?}"
                ));
            }
        }
        if p.split('/').any(|c| c == "..") {
            e.push(format!(
                "collector.cgroup.path_pattern: must stay below collector.cgroup.root (no \"..\"), got {p:?}"
            ));
        }
        e
    }
}
