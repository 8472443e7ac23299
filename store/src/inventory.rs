//! Shared queries for the inventory tables `hosts` and `gpus`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Pool, Result, StoreError};

/// What a collector knows about its host (columns of `hosts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// Stable id, e.g. "host-gpu01".
    pub id: String,
    /// Display name.
    pub name: String,
    /// DNS name.
    pub hostname: String,
    /// Primary internal address.
    pub ip_address: String,
    /// "linux" or "windows".
    pub os_type: String,
    /// e.g. "Debian 12".
    pub os_version: String,
    /// e.g. "x86_64".
    pub arch: String,
    /// CPU cores.
    pub total_cpu: i32,
    /// Bytes of RAM.
    pub total_memory: i64,
    /// Bytes of disk.
    pub total_disk: i64,
    /// Number of GPUs.
    pub total_gpu: i32,
    /// Labels from the config, e.g. {"region": "us-west"}.
    pub labels: serde_json::Value,
}

/// What a collector knows about one GPU (columns of `gpus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInfo {
    /// Owning host.
    pub host_id: String,
    /// NVML index.
    pub gpu_index: i32,
    /// NVML UUID, "GPU-…".
    pub uuid: String,
    /// Model name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// "NVIDIA".
    pub brand: String,
    /// e.g. "Hopper".
    pub architecture: String,
    /// Framebuffer bytes.
    pub memory_total: i64,
    /// e.g. "9.0".
    pub compute_capability: String,
    /// Enforced power limit, watts.
    pub power_limit: Option<i32>,
    /// Slowdown temperature, °C.
    pub temperature_limit: Option<i32>,
}

/// Inserts or refreshes a host and marks it online with a heartbeat.
pub async fn upsert_host(pool: &Pool, h: &HostInfo, now: DateTime<Utc>) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO hosts (id, name, hostname, ip_address, os_type, os_version, arch,
                                total_cpu, total_memory, total_disk, total_gpu, labels,
                                status, health_status, last_heartbeat)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,'online','healthy',$13)
             ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, hostname = EXCLUDED.hostname, ip_address = EXCLUDED.ip_address,
                os_type = EXCLUDED.os_type, os_version = EXCLUDED.os_version, arch = EXCLUDED.arch,
                total_cpu = EXCLUDED.total_cpu, total_memory = EXCLUDED.total_memory,
                total_disk = EXCLUDED.total_disk, total_gpu = EXCLUDED.total_gpu,
                labels = EXCLUDED.labels, status = 'online', last_heartbeat = EXCLUDED.last_heartbeat",
            &[
                &h.id, &h.name, &h.hostname, &h.ip_address, &h.os_type, &h.os_version, &h.arch,
                &h.total_cpu, &h.total_memory, &h.total_disk, &h.total_gpu, &h.labels, &now,
            ],
        )
        .await
        .map_err(|e| StoreError::query(format!("registering host {}", h.id), e))?;
    Ok(())
}

/// Inserts or refreshes a GPU (keyed by UUID) and returns its `gpus.id`.
pub async fn upsert_gpu(pool: &Pool, g: &GpuInfo) -> Result<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO gpus (host_id, gpu_index, uuid, name, brand, architecture, memory_total,
                               compute_capability, power_limit, temperature_limit, last_seen_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10, now())
             ON CONFLICT (uuid) DO UPDATE SET
                host_id = EXCLUDED.host_id, gpu_index = EXCLUDED.gpu_index, name = EXCLUDED.name,
                brand = EXCLUDED.brand, architecture = EXCLUDED.architecture,
                memory_total = EXCLUDED.memory_total, compute_capability = EXCLUDED.compute_capability,
                power_limit = EXCLUDED.power_limit, temperature_limit = EXCLUDED.temperature_limit,
                last_seen_at = now()
             RETURNING id",
            &[
                &g.host_id, &g.gpu_index, &g.uuid, &g.name, &g.brand, &g.architecture,
                &g.memory_total, &g.compute_capability, &g.power_limit, &g.temperature_limit,
            ],
        )
        .await
        .map_err(|e| StoreError::query(format!("registering GPU {} of host {}", g.uuid, g.host_id), e))?;
    Ok(row.get(0))
}

/// Records a heartbeat for hosts that just reported.
pub async fn heartbeat(pool: &Pool, host_ids: &[String], at: DateTime<Utc>) -> Result<()> {
    if host_ids.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE hosts SET last_heartbeat = $2, status = 'online'
             WHERE id = ANY($1) AND (last_heartbeat IS NULL OR last_heartbeat < $2)",
            &[&host_ids, &at],
        )
        .await
        .map_err(|e| StoreError::query("recording host heartbeats", e))?;
    Ok(())
}
