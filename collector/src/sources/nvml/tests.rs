//! The mapping and the source, over a test double instead of a GPU.

use chrono::TimeZone;

use super::*;

const GIB: u64 = 1 << 30;

/// A backend that returns fixed readings; `None` in `gpus` fails that read.
struct FakeGpus {
    gpus: Vec<Option<RawGpu>>,
    xids: Vec<XidEvent>,
}

impl GpuBackend for FakeGpus {
    fn device_count(&mut self) -> Result<u32, SourceError> {
        Ok(self.gpus.len() as u32)
    }
    fn read(&mut self, index: u32) -> Result<RawGpu, SourceError> {
        self.gpus[index as usize]
            .clone()
            .ok_or_else(|| SourceError::Nvml("GPU is lost".into()))
    }
    fn drain_xids(&mut self) -> Vec<XidEvent> {
        std::mem::take(&mut self.xids)
    }
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// An A100 with every field supported.
fn a100(index: u32) -> RawGpu {
    RawGpu {
        index,
        uuid: format!("GPU-a100-{index}"),
        name: "NVIDIA A100-SXM4-80GB".into(),
        brand: Some("NVIDIA".into()),
        architecture: Some("Ampere".into()),
        memory_total: 80 * GIB,
        memory_used: 20 * GIB,
        memory_free: 60 * GIB,
        compute_capability: Some((8, 0)),
        utilization_gpu: Some(87),
        utilization_memory: Some(41),
        utilization_encoder: Some(12),
        utilization_decoder: Some(57),
        temperature: Some(66),
        memory_temperature: Some(71),
        temperature_slowdown: Some(87),
        power_usage_mw: Some(245_500),
        power_limit_mw: Some(400_000),
        fan_speed: Some(35),
        sm_clock_mhz: Some(1410),
        memory_clock_mhz: Some(1593),
        energy_mj: Some(123_456_789_012),
        pcie_tx_kb_per_sec: Some(1000),
        pcie_rx_kb_per_sec: Some(2_000_000),
        ecc_corrected_volatile: Some(3),
        ecc_uncorrected_volatile: Some(0),
        throttle_reasons: Some(0x20 | 0x4),
        processes: Some(vec![
            RawProcess {
                pid: 100,
                used_memory: Some(12 * GIB),
            },
            RawProcess {
                pid: 200,
                used_memory: None,
            },
        ]),
        pci_bus_id: Some("00000000:17:00.0".into()),
        driver_version: Some("550.54.15".into()),
        serial: Some("1652221012345".into()),
        vbios_version: Some("92.00.45.00.06".into()),
    }
}

/// A GPU that supports only what every GPU must (index, names, memory).
fn bare(index: u32) -> RawGpu {
    RawGpu {
        index,
        uuid: format!("GPU-bare-{index}"),
        name: "Some GPU".into(),
        memory_total: 8 * GIB,
        memory_used: 2 * GIB,
        memory_free: 6 * GIB,
        ..RawGpu::default()
    }
}

#[test]
fn units_are_converted_to_the_columns_units() {
    let r = to_reading(&a100(0), "host-1", at(), None);
    let s = &r.sample;
    assert_eq!(r.uuid, "GPU-a100-0");
    assert_eq!(s.host_id, "host-1");
    assert_eq!(s.collected_at, at());
    assert_eq!(s.power_draw, Some(245.5), "mW → W");
    assert_eq!(s.pcie_tx_bytes_per_sec, Some(1_024_000), "KB/s → bytes/s");
    assert_eq!(s.pcie_rx_bytes_per_sec, Some(2_048_000_000));
    assert_eq!(s.memory_usage_percent, Some(25.0), "used/total × 100");
    assert_eq!(s.memory_used, Some(20 * GIB as i64));
    assert_eq!(s.memory_free, Some(60 * GIB as i64));
    assert_eq!(s.utilization_percent, Some(87.0));
    assert_eq!(s.memory_copy_util_percent, Some(41.0));
    assert_eq!(s.encoder_util_percent, Some(12.0), "NVENC busy %");
    assert_eq!(s.decoder_util_percent, Some(57.0), "NVDEC busy %");
    assert_eq!(s.temperature, Some(66.0));
    assert_eq!(s.memory_temperature, Some(71.0));
    assert_eq!(s.fan_speed_percent, Some(35.0));
    assert_eq!((s.sm_clock, s.memory_clock), (Some(1410), Some(1593)));
    assert_eq!(s.energy_consumed_mj, Some(123_456_789_012), "already mJ");
    assert_eq!((s.ecc_sbe_volatile, s.ecc_dbe_volatile), (Some(3), Some(0)));
    assert_eq!(s.throttle_reasons, Some(0x24));
    assert_eq!(s.process_count, Some(2));
    assert_eq!(s.xid_last, None);
}

#[test]
fn unsupported_fields_become_null() {
    let s = to_reading(&bare(0), "h", at(), None).sample;
    assert_eq!(s.memory_usage_percent, Some(25.0));
    assert_eq!(
        s,
        GpuSample {
            host_id: "h".into(),
            collected_at: at(),
            memory_used: Some(2 * GIB as i64),
            memory_usage_percent: Some(25.0),
            memory_free: Some(6 * GIB as i64),
            ..GpuSample::default()
        }
    );
    let zero = RawGpu {
        memory_total: 0,
        ..bare(1)
    };
    assert_eq!(
        to_reading(&zero, "h", at(), None)
            .sample
            .memory_usage_percent,
        None
    );
}

#[test]
fn inventory_row_uses_watts_and_dotted_compute_capability() {
    let info = to_info(&a100(3), "host-1");
    assert_eq!(info.gpu_index, 3);
    assert_eq!(info.compute_capability, "8.0");
    assert_eq!(info.power_limit, Some(400));
    assert_eq!(info.temperature_limit, Some(87));
    assert_eq!(info.memory_total, 80 * GIB as i64);
    assert_eq!(info.architecture, "Ampere");
    assert_eq!(info.pci_bus_id.as_deref(), Some("00000000:17:00.0"));
    assert_eq!(info.driver_version.as_deref(), Some("550.54.15"));
    assert_eq!(info.serial.as_deref(), Some("1652221012345"));
    assert_eq!(info.vbios_version.as_deref(), Some("92.00.45.00.06"));
    let bare = to_info(&bare(0), "host-1");
    assert_eq!((bare.power_limit, bare.temperature_limit), (None, None));
    assert_eq!((bare.pci_bus_id, bare.driver_version), (None, None));
    assert_eq!(bare.compute_capability, "unknown");
}

#[test]
fn xids_go_to_the_gpu_that_reported_them_and_are_drained() {
    let xid = |uuid: &str, xid| XidEvent {
        uuid: uuid.into(),
        xid,
        at: at(),
    };
    let mut src = GpuSource::with_backend(Box::new(FakeGpus {
        gpus: vec![Some(a100(0)), Some(a100(1))],
        xids: vec![xid("GPU-a100-1", 48), xid("GPU-a100-1", 79)],
    }));
    let (gpus, _) = src.sample("h", at());
    assert_eq!(gpus[0].sample.xid_last, None);
    assert_eq!(
        gpus[1].sample.xid_last,
        Some(79),
        "the last XID of the interval"
    );
    let (again, _) = src.sample("h", at());
    assert!(again.iter().all(|g| g.sample.xid_last.is_none()));
}

#[test]
fn a_failing_gpu_is_skipped_and_the_others_report() {
    let mut src = GpuSource::with_backend(Box::new(FakeGpus {
        gpus: vec![Some(a100(0)), None, Some(bare(2))],
        xids: Vec::new(),
    }));
    let (gpus, procs) = src.sample("h", at());
    let uuids: Vec<_> = gpus.iter().map(|g| g.uuid.as_str()).collect();
    assert_eq!(uuids, ["GPU-a100-0", "GPU-bare-2"]);
    assert!(src.failing.contains(&1));
    assert_eq!(
        procs,
        [
            GpuProcess {
                uuid: "GPU-a100-0".into(),
                pid: 100,
                used_memory: 12 * GIB,
            },
            GpuProcess {
                uuid: "GPU-a100-0".into(),
                pid: 200,
                used_memory: 0,
            },
        ]
    );
    assert_eq!(src.inventory("h").len(), 2);
}

#[test]
fn without_a_driver_the_source_is_off_and_says_why() {
    match NvmlBackend::open() {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("library"), "{msg}");
            assert!(msg.contains("no NVIDIA driver"), "{msg}");
            let mut src = GpuSource::open();
            assert!(!src.is_on());
            assert_eq!(src.sample("h", at()), (Vec::new(), Vec::new()));
            assert!(src.inventory("h").is_empty());
        }
        // A host with a driver: the real backend must at least open.
        Ok(_) => assert!(GpuSource::open().is_on()),
    }
}
