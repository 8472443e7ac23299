//! Which Kubernetes pod and container a process runs in, from its cgroup
//! path, as dcgm-exporter attributes GPUs to pods (it asks the kubelet's
//! pod-resources socket; the agent reads what the kubelet wrote into the
//! cgroup tree instead).
//!
//! The kubelet places a container's processes at
//! - `…/kubepods/<qos>/pod<uid>/<container id>` (cgroupfs driver; `<qos>`
//!   absent for Guaranteed pods), or
//! - `…/kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<container id>.scope`
//!   (systemd driver; `<runtime>` is `cri-containerd`, `crio` or `docker`).
//!
//! The path holds the pod's UID, not its name or namespace: those come from
//! the container runtime's metadata for the container id
//! ([`CgroupConfig::pod_metadata`](super::CgroupConfig::pod_metadata): an
//! OCI `config.json` with the CRI annotations, or Docker's
//! `config.v2.json` labels). Where none is readable, the pod is named by
//! its UID and the container by its id, and no namespace is given.

use std::path::Path;

/// A container of a pod, as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's UID, with dashes.
    pub uid: String,
    /// The container's id (the runtime's full id).
    pub container_id: String,
}

/// What `/metrics` labels a GPU of a pod with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLabels {
    /// The pod's name (its UID where the runtime's metadata is unreadable).
    pub pod: String,
    /// Its namespace, where known.
    pub namespace: Option<String>,
    /// The container's name (its id where unknown).
    pub container: String,
}

/// The pod container a cgroup path belongs to, if it has the kubelet's layout.
pub fn pod_of_cgroup(path: &str) -> Option<PodRef> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let kube = parts.iter().position(|p| p.starts_with("kubepods"))?;
    for (i, seg) in parts.iter().enumerate().skip(kube) {
        let Some(uid) = pod_uid(seg) else {
            continue;
        };
        let container = parts.get(i + 1).map(|c| container_id(c))?;
        if container.is_empty() {
            return None;
        }
        return Some(PodRef {
            uid,
            container_id: container.to_string(),
        });
    }
    None
}

/// `pod<uid>` (cgroupfs) or `kubepods-…-pod<uid_>.slice` (systemd).
fn pod_uid(seg: &str) -> Option<String> {
    let raw = match seg.strip_suffix(".slice") {
        Some(s) => s.rsplit_once("-pod")?.1,
        None => seg.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let ok = uid.len() >= 8 && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then_some(uid)
}

/// The container id of a container's cgroup directory name.
fn container_id(seg: &str) -> &str {
    let s = seg.strip_suffix(".scope").unwrap_or(seg);
    ["cri-containerd-", "crio-", "docker-", "containerd-"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s)
}

/// The pod's labels: names from the first readable metadata file of
/// `patterns` (`{id}` is the container id), else the ids.
pub fn pod_labels(pod: &PodRef, patterns: &[String]) -> PodLabels {
    let meta = patterns.iter().find_map(|p| {
        let path = p.replace("{id}", &pod.container_id);
        metadata(Path::new(&path))
    });
    match meta {
        Some(m) => PodLabels {
            pod: m.pod.unwrap_or_else(|| pod.uid.clone()),
            namespace: m.namespace,
            container: m.container.unwrap_or_else(|| pod.container_id.clone()),
        },
        None => PodLabels {
            pod: pod.uid.clone(),
            namespace: None,
            container: pod.container_id.clone(),
        },
    }
}

#[derive(Default)]
struct Meta {
    pod: Option<String>,
    namespace: Option<String>,
    container: Option<String>,
}

/// containerd's CRI annotations, then CRI-O's and Docker's (same keys as
/// labels of the container).
const KEYS: [[&str; 3]; 2] = [
    [
        "io.kubernetes.cri.sandbox-name",
        "io.kubernetes.cri.sandbox-namespace",
        "io.kubernetes.cri.container-name",
    ],
    [
        "io.kubernetes.pod.name",
        "io.kubernetes.pod.namespace",
        "io.kubernetes.container.name",
    ],
];

fn metadata(path: &Path) -> Option<Meta> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let maps = [&doc["annotations"], &doc["Config"]["Labels"]];
    let get = |key: &str| {
        maps.iter()
            .find_map(|m| m.get(key)?.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let m = KEYS
        .iter()
        .map(|[p, n, c]| Meta {
            pod: get(p),
            namespace: get(n),
            container: get(c),
        })
        .find(|m| m.pod.is_some())?;
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f5b3c1e-7a4d-4c2b-9e1f-2a3b4c5d6e7f";

    #[test]
    fn cgroupfs_and_systemd_layouts() {
        let want = |cid: &str| {
            Some(PodRef {
                uid: UID.into(),
                container_id: cid.into(),
            })
        };
        assert_eq!(
            pod_of_cgroup(&format!("/kubepods/burstable/pod{UID}/abc123")),
            want("abc123")
        );
        assert_eq!(
            pod_of_cgroup(&format!("/kubepods/pod{UID}/abc123")),
            want("abc123")
        );
        let u = UID.replace('-', "_");
        assert_eq!(
            pod_of_cgroup(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-abc123.scope"
            )),
            want("abc123")
        );
        assert_eq!(
            pod_of_cgroup(&format!(
                "/kubepods.slice/kubepods-pod{u}.slice/crio-abc123.scope"
            )),
            want("abc123")
        );
        // Not a pod, or the pod's own cgroup without a container.
        assert_eq!(pod_of_cgroup("/system.slice/docker-abc.scope"), None);
        assert_eq!(
            pod_of_cgroup(&format!("/kubepods/burstable/pod{UID}")),
            None
        );
        assert_eq!(pod_of_cgroup(&format!("/user.slice/pod{UID}/x")), None);
    }

    #[test]
    fn names_from_runtime_metadata_else_ids() {
        let dir = tempfile::tempdir().unwrap();
        let pod = PodRef {
            uid: UID.into(),
            container_id: "abc123".into(),
        };
        let pattern = format!("{}/{{id}}/config.json", dir.path().display());
        assert_eq!(
            pod_labels(&pod, std::slice::from_ref(&pattern)),
            PodLabels {
                pod: UID.into(),
                namespace: None,
                container: "abc123".into()
            }
        );
        std::fs::create_dir(dir.path().join("abc123")).unwrap();
        std::fs::write(
            dir.path().join("abc123/config.json"),
            r#"{"annotations": {"io.kubernetes.cri.sandbox-name": "trainer-0",
                "io.kubernetes.cri.sandbox-namespace": "ml", "io.kubernetes.cri.container-name": "main"}}"#,
        )
        .unwrap();
        assert_eq!(
            pod_labels(&pod, &[pattern]),
            PodLabels {
                pod: "trainer-0".into(),
                namespace: Some("ml".into()),
                container: "main".into()
            }
        );
    }
}
