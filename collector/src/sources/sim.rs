//! A simulated fleet for machines without GPUs: N hosts × M GPUs whose
//! samples are a pure function of (seed, series, time), so the same seed and
//! times always give the same rows.
//!
//! Utilisation follows a daily curve (busy in the afternoon UTC, quiet at
//! night) with per-GPU level and phase plus noise; temperature and power
//! follow utilisation; counters (energy, disk and network bytes) are closed
//! form integrals of their rates, so they only ever grow and their rates
//! match the gauges. GPU 0 of host 0 runs hot when `hot_gpu` is set, and the
//! last host goes silent `silent_host_after_secs` after start.

use std::f64::consts::TAU;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Timelike, Utc};
use gpuwatch_store::inventory::{GpuInfo, HostInfo};
use gpuwatch_store::{EnvSample, GpuSample, HostSample};

use crate::{GpuReading, SimConfig};

const GIB: i64 = 1 << 30;
const DAY: f64 = 86_400.0;
/// Counters count from here, like a driver loaded on 2026-01-01.
const COUNTER_EPOCH: i64 = 1_767_225_600;

/// (model, architecture, compute capability, memory GiB, power limit W, idle W)
const MODELS: &[(&str, &str, &str, i64, i32, f64)] = &[
    ("NVIDIA H100 80GB HBM3", "Hopper", "9.0", 80, 700, 70.0),
    ("NVIDIA A100-SXM4-40GB", "Ampere", "8.0", 40, 400, 50.0),
    ("NVIDIA L40S", "Ada Lovelace", "8.9", 48, 350, 35.0),
    ("Tesla V100-SXM2-32GB", "Volta", "7.0", 32, 300, 40.0),
];

/// The simulated fleet.
#[derive(Debug, Clone)]
pub struct SimFleet {
    cfg: SimConfig,
    started: DateTime<Utc>,
    /// Set once the simulated control plane has written the environments'
    /// rows: their samples are sent from then on, never before (a sample
    /// of an environment the database does not know is refused).
    environments: Option<Arc<AtomicBool>>,
}

/// Hosts that carry simulated environments (the first ones), and how many each.
const ENV_HOSTS: u32 = 6;
const ENVS_PER_HOST: u32 = 2;
/// The plan's fixed times of day (seconds after midnight UTC): the all-day
/// environments resize at noon; batch environments run again in the evening.
const NOON: i64 = 43_200;
const EVENING: std::ops::Range<i64> = 54_000..79_200;
/// The simulated control plane's customers.
pub const SIM_CUSTOMERS: [&str; 3] = ["acme-research", "globex-ai", "initech-labs"];

/// One simulated environment: where it runs, whose it is, which GPUs it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEnv {
    /// `environments.id`.
    pub id: String,
    /// Host index.
    pub host: u32,
    /// Index into [`SIM_CUSTOMERS`].
    pub customer: usize,
    /// The GPU indices it holds on its host.
    pub gpus: Vec<u32>,
    /// Its GPUs' model.
    pub gpu_model: String,
    /// 0: runs all day and doubles its CPU and memory at noon UTC; 1: a batch
    /// environment that runs twice a day.
    kind: u32,
    /// Batch start (seconds after midnight) and run length.
    start: i64,
    length: i64,
}

/// What an environment holds at a moment: the columns the meter bills from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvState {
    /// `running` or `stopped`.
    pub status: &'static str,
    /// Cores.
    pub cpu: i32,
    /// Bytes.
    pub memory: i64,
    /// GPUs.
    pub gpu: i32,
}

/// splitmix64: a tiny, well-mixed hash, stable across versions (unlike a seeded std RNG).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A number in [0, 1) from a key.
fn unit(key: u64) -> f64 {
    (mix(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// A smooth-enough utilisation curve and its closed-form time integral.
struct Curve {
    mean: f64,
    amp: f64,
    phase: f64,
}

impl Curve {
    fn at(&self, t: f64) -> f64 {
        self.mean + self.amp * (TAU * t / DAY + self.phase).sin()
    }
    /// ∫₀ᵗ at(s) ds
    fn integral(&self, t: f64) -> f64 {
        let w = TAU / DAY;
        self.mean * t - self.amp / w * ((w * t + self.phase).cos() - self.phase.cos())
    }
}

impl SimFleet {
    /// A fleet whose silent host counts from `started`.
    pub fn new(cfg: SimConfig, started: DateTime<Utc>) -> Self {
        SimFleet {
            cfg,
            started,
            environments: None,
        }
    }

    /// Sends environment samples once `ready` is set (by the simulated
    /// control plane, after it wrote the environments).
    pub fn with_environments(&mut self, ready: Arc<AtomicBool>) {
        self.environments = Some(ready);
    }

    /// The simulated environments: [`ENVS_PER_HOST`] on each of the first
    /// [`ENV_HOSTS`] hosts, each holding half of its host's GPUs.
    pub fn environments(&self) -> Vec<SimEnv> {
        let half = (self.cfg.gpus_per_host / 2).max(1);
        let mut out = Vec::new();
        for h in 0..self.cfg.hosts.min(ENV_HOSTS) {
            for k in 0..ENVS_PER_HOST {
                let gpus: Vec<u32> =
                    (k * half..((k + 1) * half).min(self.cfg.gpus_per_host)).collect();
                if gpus.is_empty() {
                    continue;
                }
                let u = unit(self.key(8, h as u64, k as u64));
                out.push(SimEnv {
                    id: format!("sim-env-{h:03}-{k}"),
                    host: h,
                    customer: (h * ENVS_PER_HOST + k) as usize % SIM_CUSTOMERS.len(),
                    gpus,
                    gpu_model: self.model(h).0.to_string(),
                    kind: k,
                    start: 3_600 + (u * 7_200.0) as i64,
                    length: 14_400 + (unit(self.key(9, h as u64, k as u64)) * 14_400.0) as i64,
                });
            }
        }
        out
    }

    /// The state of `e` at `t`, from its daily plan.
    pub fn env_state(&self, e: &SimEnv, t: DateTime<Utc>) -> EnvState {
        let secs = t.num_seconds_from_midnight() as i64;
        let gpu = e.gpus.len() as i32;
        let base = EnvState {
            status: "running",
            cpu: 8 * gpu,
            memory: 32 * GIB * gpu as i64,
            gpu,
        };
        match e.kind {
            0 if secs >= NOON => EnvState {
                cpu: base.cpu * 2,
                memory: base.memory * 2,
                ..base
            },
            0 => base,
            _ if (e.start..e.start + e.length).contains(&secs) || EVENING.contains(&secs) => base,
            _ => EnvState {
                status: "stopped",
                ..base
            },
        }
    }

    /// The times in a day (seconds after midnight) at which `e` changes.
    fn env_changes(e: &SimEnv) -> Vec<i64> {
        match e.kind {
            0 => vec![0, NOON],
            _ => vec![e.start, e.start + e.length, EVENING.start, EVENING.end],
        }
    }

    /// Every change of every environment in `(from, to]`, in time order:
    /// what a control plane would have done over that time.
    pub fn env_events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, SimEnv, EnvState)> {
        let envs = self.environments();
        let mut out = Vec::new();
        let Ok(mut day) = from.duration_trunc(TimeDelta::days(1)) else {
            return out;
        };
        while day <= to {
            for e in &envs {
                for s in Self::env_changes(e) {
                    let at = day + TimeDelta::seconds(s);
                    if at > from && at <= to {
                        out.push((at, e.clone(), self.env_state(e, at)));
                    }
                }
            }
            day += TimeDelta::days(1);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        out
    }

    /// When `e`'s current run began (its network counters count from there).
    fn running_since(&self, e: &SimEnv, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = t.duration_trunc(TimeDelta::days(1)).unwrap_or(t);
        let secs = t.num_seconds_from_midnight() as i64;
        let start = match e.kind {
            0 => 0,
            _ if secs >= EVENING.start => EVENING.start,
            _ => e.start,
        };
        day + TimeDelta::seconds(start)
    }

    /// Samples of the environments running at `t` on reporting hosts, from
    /// the GPU samples of the same collection; none until the control plane
    /// has written the environments.
    pub fn env_samples(&self, t: DateTime<Utc>, gpus: &[GpuReading]) -> Vec<EnvSample> {
        if !self
            .environments
            .as_ref()
            .is_some_and(|r| r.load(Ordering::Acquire))
        {
            return Vec::new();
        }
        let mut out = Vec::new();
        for e in self.environments() {
            let state = self.env_state(&e, t);
            if state.status != "running" || !self.reports(e.host, t) {
                continue;
            }
            let host = Self::host_id(e.host);
            let mine: Vec<&GpuSample> = gpus
                .iter()
                .map(|g| &g.sample)
                .filter(|g| g.host_id == host)
                .enumerate()
                .filter(|(i, _)| e.gpus.contains(&(*i as u32)))
                .map(|(_, g)| g)
                .collect();
            let util = mine
                .iter()
                .filter_map(|g| g.utilization_percent)
                .sum::<f64>()
                / mine.len().max(1) as f64;
            let load = util / 100.0;
            let used = (state.memory as f64 * (0.25 + 0.6 * load)) as i64;
            let up = (t - self.running_since(&e, t)).num_seconds().max(0);
            out.push(EnvSample {
                env_id: e.id.clone(),
                host_id: host,
                collected_at: t,
                cpu_usage_percent: Some(round2(state.cpu as f64 * 100.0 * (0.15 + 0.7 * load))),
                memory_used: Some(used),
                memory_usage_percent: Some(round2(100.0 * used as f64 / state.memory as f64)),
                gpu_usage_percent: Some(round2(util)),
                gpu_memory_used: Some(mine.iter().filter_map(|g| g.memory_used).sum()),
                network_rx_bytes: Some(up * 40_000_000),
                network_tx_bytes: Some(up * 6_000_000),
            });
        }
        out
    }

    fn key(&self, a: u64, b: u64, c: u64) -> u64 {
        mix(self.cfg.seed ^ mix(a ^ mix(b ^ mix(c))))
    }

    /// Host ids, in order.
    pub fn host_id(h: u32) -> String {
        format!("sim-host-{h:03}")
    }

    fn model(&self, h: u32) -> &'static (&'static str, &'static str, &'static str, i64, i32, f64) {
        &MODELS[h as usize % MODELS.len()]
    }

    /// The hosts as the inventory sees them.
    pub fn hosts(&self) -> Vec<HostInfo> {
        (0..self.cfg.hosts)
            .map(|h| (h, ["us-west", "eu-central", "ap-east"][h as usize % 3]))
            .map(|(h, region)| HostInfo {
                id: Self::host_id(h),
                name: format!("GPU-Server-{h:03}"),
                hostname: format!("gpu{h:03}.sim.gpuwatch.local"),
                ip_address: format!("10.{}.{}.{}", 20 + h / 65_536, (h / 256) % 256, h % 256),
                os_type: "linux".into(),
                os_version: "Debian GNU/Linux 12 (simulated)".into(),
                arch: "x86_64".into(),
                total_cpu: 64,
                total_memory: 512 * GIB,
                total_disk: 4096 * GIB,
                total_gpu: self.cfg.gpus_per_host as i32,
                labels: serde_json::json!({
                    "simulated": "true",
                    "region": region,
                    "zone": format!("{}", (b'a' + (h % 3) as u8) as char),
                }),
            })
            .collect()
    }

    /// The GPUs as the inventory sees them.
    pub fn gpus(&self) -> Vec<GpuInfo> {
        let mut out = Vec::new();
        for h in 0..self.cfg.hosts {
            let (name, arch, cc, mem, limit, _) = *self.model(h);
            for g in 0..self.cfg.gpus_per_host {
                out.push(GpuInfo {
                    host_id: Self::host_id(h),
                    gpu_index: g as i32,
                    uuid: self.uuid(h, g),
                    name: name.into(),
                    brand: "NVIDIA".into(),
                    architecture: arch.into(),
                    memory_total: mem * GIB,
                    compute_capability: cc.into(),
                    power_limit: Some(limit),
                    temperature_limit: Some(85),
                    pci_bus_id: Some(format!("00000000:{:02X}:00.0", 0x17 + g)),
                    driver_version: Some("550.54.15".into()),
                    serial: None,
                    vbios_version: None,
                });
            }
        }
        out
    }

    fn uuid(&self, h: u32, g: u32) -> String {
        let a = self.key(1, h as u64, g as u64);
        let b = mix(a);
        format!(
            "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// Whether host `h` still reports at `t`.
    pub fn reports(&self, h: u32, t: DateTime<Utc>) -> bool {
        let silent =
            self.cfg.silent_host_after_secs > 0 && self.cfg.hosts > 1 && h == self.cfg.hosts - 1;
        !(silent && (t - self.started).num_seconds() >= self.cfg.silent_host_after_secs as i64)
    }

    fn gpu_curve(&self, h: u32, g: u32) -> Curve {
        let k = self.key(2, h as u64, g as u64);
        // Busiest around 14:00 UTC, each host a little shifted, each GPU its own level.
        let peak_hour = 14.0 + (unit(k) - 0.5) * 4.0;
        Curve {
            mean: 0.35 + 0.35 * unit(k ^ 1),
            amp: 0.15 + 0.15 * unit(k ^ 2),
            phase: TAU * (0.25 - peak_hour / 24.0),
        }
    }

    /// Samples of every reporting GPU and host at `t` (host gauges include
    /// the gpu_avg_* of their GPUs).
    pub fn sample(&self, t: DateTime<Utc>) -> (Vec<GpuReading>, Vec<HostSample>) {
        let mut gpus = Vec::new();
        let mut hosts = Vec::new();
        for h in (0..self.cfg.hosts).filter(|&h| self.reports(h, t)) {
            let first = gpus.len();
            for g in 0..self.cfg.gpus_per_host {
                gpus.push(self.gpu_sample(h, g, t));
            }
            hosts.push(self.host_sample(h, t, &gpus[first..]));
        }
        (gpus, hosts)
    }

    fn gpu_sample(&self, h: u32, g: u32, t: DateTime<Utc>) -> GpuReading {
        let (_, _, _, mem_gib, limit, idle) = *self.model(h);
        let secs = t.timestamp();
        let noise = unit(self.key(3, (h as u64) << 16 | g as u64, secs as u64)) - 0.5;
        let curve = self.gpu_curve(h, g);
        let hot = self.cfg.hot_gpu && h == 0 && g == 0;
        let util = if hot {
            0.97 + noise * 0.04
        } else {
            (curve.at(secs as f64) + noise * 0.16).clamp(0.0, 1.0)
        };
        let span = limit as f64 - idle;
        let power = idle + span * util;
        let temperature = if hot {
            87.0 + noise * 4.0
        } else {
            32.0 + 45.0 * util + noise * 3.0
        };
        let mem_total = mem_gib * GIB;
        let mem_frac = (0.1 + 0.8 * util).min(0.99);
        let memory_used = (mem_total as f64 * mem_frac) as i64;
        // Energy: ∫ power dt since the counter epoch, from the noise-free curve.
        let since = (secs - COUNTER_EPOCH).max(0) as f64;
        let energy_j = idle * since
            + span
                * if hot {
                    0.97 * since
                } else {
                    curve.integral(since)
                };
        let xid = if unit(self.key(4, (h as u64) << 16 | g as u64, secs as u64 / 3600)) < 0.002 {
            Some(79)
        } else {
            None
        };
        let video = unit(self.key(7, (h as u64) << 16 | g as u64, 0));
        GpuReading {
            uuid: self.uuid(h, g),
            sample: GpuSample {
                gpu_id: 0,
                host_id: Self::host_id(h),
                collected_at: t,
                utilization_percent: Some(round2(util * 100.0)),
                memory_used: Some(memory_used),
                memory_usage_percent: Some(round2(100.0 * memory_used as f64 / mem_total as f64)),
                temperature: Some(round2(temperature)),
                power_draw: Some(round2(power)),
                fan_speed_percent: Some(round2((30.0 + temperature - 40.0).clamp(30.0, 100.0))),
                sm_clock: Some((1_100.0 + 880.0 * util) as i32),
                memory_clock: Some(if mem_gib >= 80 { 2_619 } else { 1_593 }),
                process_count: Some(if util > 0.05 {
                    1 + (util * 3.0) as i32
                } else {
                    0
                }),
                memory_copy_util_percent: Some(round2(util * 60.0)),
                memory_free: Some(mem_total - memory_used),
                memory_temperature: Some(round2(temperature + 4.0)),
                energy_consumed_mj: Some((energy_j * 1000.0) as i64),
                pcie_tx_bytes_per_sec: Some((util * 2.0e9) as i64),
                pcie_rx_bytes_per_sec: Some((util * 6.0e9) as i64),
                ecc_sbe_volatile: Some(0),
                ecc_dbe_volatile: Some(0),
                xid_last: xid,
                throttle_reasons: Some(if hot { 0x20 } else { 0 }), // 0x20: SW thermal slowdown
                // Video work follows the load, more on some GPUs than others.
                encoder_util_percent: Some(round2(util * 40.0 * video)),
                decoder_util_percent: Some(round2(util * 70.0 * video)),
            },
        }
    }

    fn host_sample(&self, h: u32, t: DateTime<Utc>, gpus: &[GpuReading]) -> HostSample {
        let secs = t.timestamp();
        let k = self.key(5, h as u64, 0);
        let noise = unit(self.key(6, h as u64, secs as u64)) - 0.5;
        let day = t.num_seconds_from_midnight() as f64 / DAY;
        let cpu = (0.2 + 0.5 * unit(k) * (0.6 + 0.4 * (TAU * (day - 0.35)).sin()) + noise * 0.1)
            .clamp(0.01, 1.0);
        let mem_total = 512 * GIB;
        let memory_used = (mem_total as f64 * (0.3 + 0.4 * cpu)) as i64;
        let disk_total = 4096 * GIB;
        // Disk fills slowly over the year, so a disk alert is reachable on some hosts.
        let disk_frac =
            (0.35 + 0.3 * unit(k ^ 7) + (secs - COUNTER_EPOCH).max(0) as f64 / 3.15e7 * 0.2)
                .min(0.97);
        let disk_used = (disk_total as f64 * disk_frac) as i64;
        let since = (secs - COUNTER_EPOCH).max(0) as f64;
        let n = gpus.len().max(1) as f64;
        let avg = |f: fn(&GpuSample) -> Option<f64>| {
            gpus.iter().filter_map(|g| f(&g.sample)).sum::<f64>() / n
        };
        HostSample {
            host_id: Self::host_id(h),
            collected_at: t,
            cpu_usage_percent: Some(round2(cpu * 100.0)),
            cpu_load_1m: Some(round2(cpu * 64.0 * (1.0 + noise * 0.2))),
            cpu_load_5m: Some(round2(cpu * 64.0)),
            cpu_load_15m: Some(round2(cpu * 64.0 * 0.95)),
            memory_used: Some(memory_used),
            memory_available: Some(mem_total - memory_used),
            memory_usage_percent: Some(round2(100.0 * memory_used as f64 / mem_total as f64)),
            disk_used: Some(disk_used),
            disk_available: Some(disk_total - disk_used),
            disk_usage_percent: Some(round2(100.0 * disk_frac)),
            disk_io_read_bytes: Some((since * 40.0e6) as i64),
            disk_io_write_bytes: Some((since * 15.0e6) as i64),
            network_rx_bytes: Some((since * 120.0e6) as i64),
            network_tx_bytes: Some((since * 45.0e6) as i64),
            network_rx_packets: Some((since * 90.0e3) as i64),
            network_tx_packets: Some((since * 40.0e3) as i64),
            gpu_avg_utilization: Some(round2(avg(|g| g.utilization_percent))),
            gpu_avg_memory_used: Some(
                gpus.iter()
                    .filter_map(|g| g.sample.memory_used)
                    .sum::<i64>()
                    / n as i64,
            ),
            gpu_avg_temperature: Some(round2(avg(|g| g.temperature))),
            gpu_avg_power: Some(round2(avg(|g| g.power_draw))),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fleet(seed: u64) -> SimFleet {
        let cfg = SimConfig {
            hosts: 3,
            gpus_per_host: 4,
            seed,
            hot_gpu: true,
            silent_host_after_secs: 60,
            environments: true,
        };
        SimFleet::new(cfg, Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap())
    }

    #[test]
    fn environment_events_replay_to_the_plans_state() {
        let f = fleet(3);
        let day = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let envs = f.environments();
        assert_eq!(envs.len(), 6, "{envs:?}");
        // Replaying the day's events from midnight gives the state the plan
        // says at every minute, so a control plane that applies events
        // writes exactly the plan's history.
        let mut state: std::collections::HashMap<String, EnvState> = envs
            .iter()
            .map(|e| (e.id.clone(), f.env_state(e, day)))
            .collect();
        let events = f.env_events(day, day + TimeDelta::days(1) - TimeDelta::seconds(1));
        assert!(events.len() >= 3 * 4, "{}", events.len());
        let mut next = events.iter().peekable();
        for m in 0..1_440 {
            let t = day + TimeDelta::minutes(m);
            while let Some((at, e, s)) = next.peek() {
                if *at > t {
                    break;
                }
                state.insert(e.id.clone(), *s);
                next.next();
            }
            for e in &envs {
                assert_eq!(state[&e.id], f.env_state(e, t), "{} at {t}", e.id);
            }
        }
        // Something runs, something stops, something resizes.
        let noon = day + TimeDelta::hours(12);
        assert!(envs
            .iter()
            .any(|e| f.env_state(e, noon).cpu > f.env_state(e, day).cpu));
        assert!(envs.iter().any(|e| f.env_state(e, day).status == "stopped"));
    }

    #[test]
    fn environment_samples_wait_for_the_control_plane() {
        let mut f = fleet(3);
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 30).unwrap();
        let (gpus, _) = f.sample(t);
        assert!(f.env_samples(t, &gpus).is_empty());
        let ready = Arc::new(AtomicBool::new(false));
        f.with_environments(ready.clone());
        assert!(f.env_samples(t, &gpus).is_empty());
        ready.store(true, Ordering::Release);
        let envs = f.env_samples(t, &gpus);
        let running = f
            .environments()
            .iter()
            .filter(|e| f.env_state(e, t).status == "running")
            .count();
        assert_eq!(envs.len(), running);
        assert!(envs.iter().all(|e| e.gpu_usage_percent.is_some()));
    }

    #[test]
    fn same_seed_same_samples_other_seed_other_samples() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 30).unwrap();
        assert_eq!(fleet(7).sample(t), fleet(7).sample(t));
        assert_eq!(fleet(7).gpus(), fleet(7).gpus());
        assert_ne!(fleet(7).sample(t).0, fleet(8).sample(t).0);
    }

    #[test]
    fn uuids_are_unique_and_shaped_like_nvml() {
        let gpus = fleet(1).gpus();
        let mut uuids: Vec<_> = gpus.iter().map(|g| g.uuid.clone()).collect();
        uuids.sort();
        uuids.dedup();
        assert_eq!(uuids.len(), 12);
        assert!(
            uuids.iter().all(|u| u.starts_with("GPU-") && u.len() == 40),
            "{uuids:?}"
        );
    }

    #[test]
    fn hot_gpu_is_above_the_danger_threshold_and_others_are_not() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 30).unwrap();
        let (gpus, _) = fleet(1).sample(t);
        assert!(gpus[0].sample.temperature.unwrap() >= 85.0);
        assert!(gpus[1..]
            .iter()
            .all(|g| g.sample.temperature.unwrap() < 85.0));
    }

    #[test]
    fn last_host_goes_silent_after_the_configured_time() {
        let f = fleet(1);
        let before = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 24, 0, 1, 0).unwrap();
        assert_eq!(f.sample(before).1.len(), 3);
        assert_eq!(f.sample(after).1.len(), 2);
        assert_eq!(f.sample(after).0.len(), 8);
    }

    #[test]
    fn counters_never_decrease_and_gauges_stay_in_range() {
        let f = fleet(3);
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let mut last = [0i64; 12];
        for step in 0..2_000 {
            let t = t0 + chrono::Duration::seconds(step * 45);
            if !f.reports(2, t) {
                break;
            }
            let (gpus, hosts) = f.sample(t);
            for (i, g) in gpus.iter().enumerate() {
                let e = g.sample.energy_consumed_mj.unwrap();
                assert!(e >= last[i], "energy went back at step {step}");
                last[i] = e;
                let u = g.sample.utilization_percent.unwrap();
                assert!((0.0..=100.0).contains(&u));
            }
            assert!(hosts
                .iter()
                .all(|h| (0.0..=100.0).contains(&h.cpu_usage_percent.unwrap())));
        }
    }

    #[test]
    fn every_sample_is_inside_the_catalogued_ranges_with_video_utilisation() {
        use gpuwatch_store::Sample;
        fn in_range<S: Sample>(s: &S) {
            for (col, v) in S::CATALOGUE.iter().zip(s.numbers()) {
                let problem = v.and_then(|v| col.spec.range.problem(v));
                assert_eq!(problem, None, "{}.{}", S::TABLE, col.name);
            }
        }
        let f = fleet(5);
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        for step in 0..200 {
            let (gpus, hosts) = f.sample(t0 + chrono::Duration::seconds(step * 433));
            for g in &gpus {
                in_range(&g.sample);
                assert!(g.sample.encoder_util_percent.is_some());
                assert!(g.sample.decoder_util_percent.is_some());
            }
            hosts.iter().for_each(in_range);
        }
    }
}
