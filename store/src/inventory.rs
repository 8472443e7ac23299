//! Shared queries for the inventory tables `hosts` and `gpus`.
//!
//! Registration keeps hosts apart: a GPU UUID held by another host is a
//! conflict (only an explicit [`move_gpu`] gives it to another host), a GPU
//! replaced at the same index registers beside the old one, which is marked
//! removed and keeps its history, and an operator's `maintenance` status
//! survives the host's own reports.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

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
    /// PCI bus id, e.g. "00000000:17:00.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// Driver version, e.g. "550.54.15".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// Board serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// VBIOS version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vbios_version: Option<String>,
}

/// The status a report leaves a host in: `online`, unless an operator put
/// it in `maintenance`, which only an operator ends.
const REPORTED_STATUS: &str =
    "CASE WHEN hosts.status = 'maintenance' THEN 'maintenance' ELSE 'online' END";

/// Inserts or refreshes a host with a heartbeat at `now`; a host in
/// maintenance stays in maintenance. Takes the host row's lock, so
/// registrations of one host are serialised for the rest of the transaction.
pub async fn upsert_host_in<C: GenericClient>(
    c: &C,
    h: &HostInfo,
    now: DateTime<Utc>,
) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO hosts (id, name, hostname, ip_address, os_type, os_version, arch,
                                total_cpu, total_memory, total_disk, total_gpu, labels,
                                status, health_status, last_heartbeat)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,'online','healthy',$13)
             ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, hostname = EXCLUDED.hostname, ip_address = EXCLUDED.ip_address,
                os_type = EXCLUDED.os_type, os_version = EXCLUDED.os_version, arch = EXCLUDED.arch,
                total_cpu = EXCLUDED.total_cpu, total_memory = EXCLUDED.total_memory,
                total_disk = EXCLUDED.total_disk, total_gpu = EXCLUDED.total_gpu,
                labels = EXCLUDED.labels || hosts.operator_labels, status = {REPORTED_STATUS},
                last_heartbeat = GREATEST(hosts.last_heartbeat, EXCLUDED.last_heartbeat)"
        ),
        &[
            &h.id, &h.name, &h.hostname, &h.ip_address, &h.os_type, &h.os_version, &h.arch,
            &h.total_cpu, &h.total_memory, &h.total_disk, &h.total_gpu, &h.labels, &now,
        ],
    )
    .await
    .map_err(|e| StoreError::query(format!("registering host {}", h.id), e))?;
    Ok(())
}

/// [`upsert_host_in`] on a connection of `pool`.
pub async fn upsert_host(pool: &Pool, h: &HostInfo, now: DateTime<Utc>) -> Result<()> {
    let client = pool.get().await?;
    let c: &tokio_postgres::Client = &client;
    upsert_host_in(c, h, now).await
}

/// Registers `host`'s GPUs as its inventory now and returns UUID →
/// `gpus.id`. Call after [`upsert_host_in`] in the same transaction.
///
/// A UUID another host holds is a [`StoreError::Conflict`] naming that
/// host. A GPU of `host` missing from `gpus`, or whose index a new UUID
/// takes (a swapped card), is marked removed; one that reappears is
/// present again.
pub async fn register_gpus<C: GenericClient>(
    c: &C,
    host: &str,
    gpus: &[GpuInfo],
) -> Result<HashMap<String, i64>> {
    let what = |e| StoreError::query(format!("registering the GPUs of host {host}"), e);
    let uuids: Vec<&str> = gpus.iter().map(|g| g.uuid.as_str()).collect();
    let held = c
        .query(
            "SELECT uuid, host_id, id FROM gpus WHERE uuid = ANY($1) AND host_id <> $2 ORDER BY uuid",
            &[&uuids, &host],
        )
        .await
        .map_err(what)?;
    if let Some(r) = held.first() {
        let (uuid, holder, id): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        return Err(StoreError::Conflict(format!(
            "GPU {uuid} is registered to host {holder:?}, not {host:?}; if the card really moved, \
             an admin moves it first (POST /api/v1/gpus/{id}/move)"
        )));
    }
    let indexes: Vec<i32> = gpus.iter().map(|g| g.gpu_index).collect();
    // Present GPUs that left, or whose index a different UUID now holds.
    c.execute(
        "UPDATE gpus SET removed_at = now()
         WHERE host_id = $1 AND removed_at IS NULL
           AND (NOT (uuid = ANY($2))
                OR (gpu_index, uuid) NOT IN (SELECT * FROM unnest($3::int[], $2::text[])))",
        &[&host, &uuids, &indexes],
    )
    .await
    .map_err(what)?;
    let mut ids = HashMap::with_capacity(gpus.len());
    for g in gpus {
        ids.insert(g.uuid.clone(), upsert_gpu_row(c, g).await?);
    }
    Ok(ids)
}

/// Inserts or refreshes one GPU of its host, present again if it was
/// marked removed. The `WHERE` keeps a UUID of another host untouched even
/// if it was registered there after [`register_gpus`] looked.
async fn upsert_gpu_row<C: GenericClient>(c: &C, g: &GpuInfo) -> Result<i64> {
    let row = c
        .query_opt(
            "INSERT INTO gpus (host_id, gpu_index, uuid, name, brand, architecture, memory_total,
                               compute_capability, power_limit, temperature_limit,
                               pci_bus_id, driver_version, serial, vbios_version)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
             ON CONFLICT (uuid) DO UPDATE SET
                gpu_index = EXCLUDED.gpu_index, name = EXCLUDED.name,
                brand = EXCLUDED.brand, architecture = EXCLUDED.architecture,
                memory_total = EXCLUDED.memory_total, compute_capability = EXCLUDED.compute_capability,
                power_limit = EXCLUDED.power_limit, temperature_limit = EXCLUDED.temperature_limit,
                pci_bus_id = EXCLUDED.pci_bus_id, driver_version = EXCLUDED.driver_version,
                serial = EXCLUDED.serial, vbios_version = EXCLUDED.vbios_version,
                removed_at = NULL
             WHERE gpus.host_id = EXCLUDED.host_id
             RETURNING id",
            &[
                &g.host_id, &g.gpu_index, &g.uuid, &g.name, &g.brand, &g.architecture,
                &g.memory_total, &g.compute_capability, &g.power_limit, &g.temperature_limit,
                &g.pci_bus_id, &g.driver_version, &g.serial, &g.vbios_version,
            ],
        )
        .await
        .map_err(|e| StoreError::query(format!("registering GPU {} of host {}", g.uuid, g.host_id), e))?;
    row.map(|r| r.get(0)).ok_or_else(|| {
        StoreError::Conflict(format!(
            "GPU {} was registered to another host meanwhile; not registered to {:?}",
            g.uuid, g.host_id
        ))
    })
}

/// Registers one GPU outside a host's full inventory (tests, tools);
/// the same rules as [`register_gpus`] for a UUID of another host.
pub async fn upsert_gpu(pool: &Pool, g: &GpuInfo) -> Result<i64> {
    let client = pool.get().await?;
    let c: &tokio_postgres::Client = &client;
    upsert_gpu_row(c, g).await
}

/// True when every id of `ids` is a present GPU of `host`: what a cached
/// registration must still be to be used without registering again.
pub async fn still_registered<C: GenericClient>(c: &C, host: &str, ids: &[i64]) -> Result<bool> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM gpus WHERE id = ANY($1) AND host_id = $2 AND removed_at IS NULL",
            &[&ids, &host],
        )
        .await
        .map_err(|e| StoreError::query(format!("checking the registered GPUs of host {host}"), e))?
        .get(0);
    Ok(n == ids.len() as i64)
}

/// Moves GPU `id` to `host` at `gpu_index` (an admin's explicit call: the
/// card was physically moved). Its samples stay where they are: each
/// carries the host it was taken on.
pub async fn move_gpu<C: GenericClient>(
    c: &C,
    id: i64,
    host: &str,
    gpu_index: i32,
) -> Result<bool> {
    let n = c
        .execute(
            "UPDATE gpus SET host_id = $2, gpu_index = $3, removed_at = NULL WHERE id = $1",
            &[&id, &host, &gpu_index],
        )
        .await
        .map_err(|e| StoreError::query(format!("moving GPU {id} to host {host}"), e))?;
    Ok(n == 1)
}

/// Records each GPU's latest sample time (`gpus.last_seen_at`), never
/// moving it back.
pub async fn seen<C: GenericClient>(c: &C, ids: &[i64], at: &[DateTime<Utc>]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    c.execute(
        "UPDATE gpus g SET last_seen_at = v.at
         FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, at)
         WHERE g.id = v.id AND (g.last_seen_at IS NULL OR g.last_seen_at < v.at)",
        &[&ids, &at],
    )
    .await
    .map_err(|e| StoreError::query("recording when GPUs were last seen", e))?;
    Ok(())
}

/// Records a heartbeat for hosts that just reported; maintenance is kept.
pub async fn heartbeat_in<C: GenericClient>(
    c: &C,
    host_ids: &[String],
    at: DateTime<Utc>,
) -> Result<()> {
    if host_ids.is_empty() {
        return Ok(());
    }
    c.execute(
        &format!(
            "UPDATE hosts SET last_heartbeat = $2, status = {REPORTED_STATUS}
             WHERE id = ANY($1) AND (last_heartbeat IS NULL OR last_heartbeat < $2)"
        ),
        &[&host_ids, &at],
    )
    .await
    .map_err(|e| StoreError::query("recording host heartbeats", e))?;
    Ok(())
}

/// [`heartbeat_in`] on a connection of `pool`.
pub async fn heartbeat(pool: &Pool, host_ids: &[String], at: DateTime<Utc>) -> Result<()> {
    let client = pool.get().await?;
    let c: &tokio_postgres::Client = &client;
    heartbeat_in(c, host_ids, at).await
}
